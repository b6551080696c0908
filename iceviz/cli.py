"""The ``iceviz`` command: train models and inspect data specs.

    iceviz train MODEL --data SPEC [--epochs N] [--seconds S] [--seed K]
                 [--device D] [--out DIR] [--json] [--set KEY=VALUE ...]
    iceviz models
    iceviz data list [--json]
    iceviz data info SPEC
    iceviz data add PATH [PATH ...]
    iceviz data remove PATH [PATH ...]
    iceviz data build SPEC --out FILE.csv [--json]
    iceviz data download PRODUCT [--dest DIR] [--url URL] [--sha256 HEX] [--no-add]
    iceviz data fetch [NAME] [--from BASE_URL]
    iceviz sim verify [--json]
    iceviz sim run SCENARIO --out FILE [--melt X] [--smb X] [--calving fixed|retreat] [--retreat-rate X]
                   [--years Y] [--snapshot-every Y] [--set KEY=VALUE ...] [--json] [--quiet]
    iceviz sim ensemble SCENARIO --out DIR [--melt SPEC] [--smb SPEC] [--retreat-rate SPEC] [--workers N]
                        [--scheduler ADDRESS] [--years Y] [--snapshot-every Y] [--set KEY=VALUE ...] [--json] [--quiet]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Sequence


def _parse_value(text: str) -> Any:
    """A --set value: JSON when it parses (numbers, true/false, null), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_assignments(items: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings (``--set``) as a dict; values parsed as JSON when they parse."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        out[key.strip()] = _parse_value(value.strip())
    return out


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    from iceviz.models.registry import get_model
    from iceviz.training.families import get_family

    out = parse_assignments(args.set or [])
    for key in ("epochs", "seconds", "seed"):
        if getattr(args, key) is not None:
            out[key] = getattr(args, key)
    plans_its_length = get_family(get_model(args.model).family).plans_its_length
    if args.seconds is not None and args.epochs is None and not plans_its_length:
        out["epochs"] = 1_000_000  # a time budget alone: epochs no longer bind (flux runs end by their own plan)
    return out


def _progress_loop(job: Any, quiet: bool) -> None:
    """Show a progress bar on stderr until the job ends; Ctrl-C cancels it."""
    from tqdm import tqdm

    bar = tqdm(total=100, unit="%", file=sys.stderr, disable=quiet, dynamic_ncols=True,
               bar_format="{l_bar}{bar}| {n:.0f}/{total}% [{elapsed}<{remaining}{postfix}]")
    shown = None
    try:
        while job.alive or not job.status.finished:
            finished = job.status.finished
            history = job.history()
            if history:
                last = history[-1]
                n = round(100 * last.get("progress", 0.0), 1)
                if (n, last["epoch"]) != shown:  # a line per change, not per poll
                    shown = (n, last["epoch"])
                    bar.n = n
                    loss = last.get("epoch_data_loss", last.get("loss_total", float("nan")))
                    bar.set_postfix(epoch=last["epoch"], loss=f"{loss:.4g}", refresh=False)
                    if not finished and n < 99.5:  # the last state (shown as 100 %) is drawn once, by close()
                        bar.refresh()
            if finished:
                break
            time.sleep(0.2)
    except KeyboardInterrupt:
        job.cancel()
        job.wait(5)
    finally:
        if job.status.completed:  # a run that stopped early (patience, its budget) is complete too
            bar.n = 100
        bar.close()  # draws the final state once


def cmd_train(args: argparse.Namespace) -> int:
    from iceviz.models.registry import get_model
    from iceviz.training.outputs import claimed_folder

    overrides = _overrides(args)
    get_model(args.model).make_params(**overrides)  # bad --set: a usage error (exit 2) before any training
    if not args.out:
        return _train(args, overrides, None)
    with claimed_folder(Path(args.out)) as out:  # unwritable or in use: a usage error (exit 2) before training
        return _train(args, overrides, out)


def _train(args: argparse.Namespace, overrides: dict[str, Any], out: Path | None) -> int:
    """Train, report, and write the run's files under ``out`` (when given, claimed by :func:`cmd_train`)."""
    from iceviz.data.specs import load_problem
    from iceviz.runtime.job import JobStatus
    from iceviz.training.families import get_family
    from iceviz.training.outputs import SaveError
    from iceviz.training.trainers import training_job

    _note_default_ensemble(args.data, args.quiet)
    problem = load_problem(args.data)
    from iceviz.runtime.dask_job import scheduler_address, scheduler_client

    address = scheduler_address(args.scheduler)
    client = None
    if address:
        try:
            client = scheduler_client(address)
        except ValueError as err:
            print(f"iceviz train: {err}", file=sys.stderr)
            return 2
    try:
        job = training_job(args.model, problem, device=args.device, snapshot_every=None,
                           num_threads=args.threads, client=client, **overrides)
        job.start()
        _progress_loop(job, quiet=args.quiet)
        status = job.wait()
    finally:
        if client is not None:
            client.close()
    if not status.completed:
        message = job.error or status.value
        print(f"iceviz train: {args.model} on {args.data} {status.value}" + (f": {job.error}" if job.error else ""),
              file=sys.stderr)
        if args.json:
            print(json.dumps({"model": args.model, "data": args.data, "status": status.value, "error": message}))
        return 1 if status is JobStatus.FAILED else 130
    trainer, result = job.trainer, job.result
    summary = {
        "model": args.model,
        "data": args.data,
        "status": status.value,
        "epochs": result.epochs,
        "steps": result.steps,
        "best_epoch": result.best_epoch,
        "seconds": round(result.seconds, 3),
        "device": str(trainer.device),
        "seed": trainer.params.seed,
    }
    if job.shortfall:
        summary["shortfall"] = job.shortfall
        print(f"iceviz train: {args.model} on {args.data} cut short: {job.shortfall}", file=sys.stderr)
    keys, line = get_family(trainer.spec.family).report(trainer, result)
    summary.update(keys)
    if out is not None:
        try:
            summary["out"] = str(_write_outputs(out, job, summary))
        except SaveError as err:
            print(f"iceviz train: {args.model} on {args.data}: {err}", file=sys.stderr)
            if args.json:
                print(json.dumps(summary | {"error": str(err), "rescued": err.rescued and str(err.rescued)}))
            return 1
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{args.model} on {args.data}: {line} after {result.epochs} epochs, {result.seconds:.1f} s "
              f"on {summary['device']}", file=sys.stderr)
    return 0


def _note_default_ensemble(spec: str, quiet: bool) -> None:
    """Say so on stderr when ``sim:default`` is about to run the default ensemble (minutes, once)."""
    if quiet or spec.split("?")[0] != "sim:default":
        return
    from iceviz.sim.ensemble import DEFAULT_GRID, DEFAULT_SCENARIO, DEFAULT_SETTINGS, cached_ensemble_dir

    where = cached_ensemble_dir(DEFAULT_SCENARIO, {}, DEFAULT_GRID, DEFAULT_SETTINGS)
    if not (where / "manifest.json").is_file():
        print(f"iceviz: running the default ensemble first (8 runs of 20 years, about two minutes on two cores; "
              f"cached in {where})", file=sys.stderr)


def _write_outputs(out: Path, job: Any, summary: dict[str, Any]) -> Path:
    """Checkpoint, predicted field (CF NetCDF, EPSG:3031) and metrics under ``out``, each written whole
    (metrics.json last); SaveError saying where the model was rescued when they cannot be written."""
    from iceviz.data.netcdf import write_netcdf
    from iceviz.training.checkpoint import save_checkpoint
    from iceviz.training.families import get_family
    from iceviz.training.outputs import save_run

    writers = {
        "model.safetensors": lambda path: save_checkpoint(path, job.trainer, metrics=summary),
        "prediction.nc": lambda path: write_netcdf(
            get_family(job.trainer.spec.family).prediction(job.latest().fields, summary), path),
        "metrics.json": lambda path: path.write_text(json.dumps(summary, indent=2) + "\n"),
    }
    return save_run(out, writers, label=summary["model"])


def _values(text: str) -> list[Any]:
    """``V1,V2,...`` as parsed values (numbers and booleans as JSON)."""
    return [_parse_value(v.strip()) for v in text.split(",") if v.strip()]


def cmd_sweep(args: argparse.Namespace) -> int:
    """Train every combination of models, data specs, seeds and --set values on Dask; write sweep.csv/.json."""
    from iceviz.training.sweep import sweep_runs

    grid = {}
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not _values(value):
            print(f"iceviz sweep: --set expects KEY=V1,V2,..., got {item!r}", file=sys.stderr)
            return 2
        grid[key.strip()] = _values(value)
    try:
        seeds = [int(v) for v in args.seeds.split(",") if v.strip()]
        runs = sweep_runs(args.models, args.data, seeds, grid)
    except ValueError as err:
        print(f"iceviz sweep: {err}", file=sys.stderr)
        return 2
    budget = {k: getattr(args, k) for k in ("epochs", "seconds") if getattr(args, k) is not None}
    try:
        return _sweep(args, runs, budget)
    except ValueError as err:  # an unreachable scheduler, an unusable --out
        print(f"iceviz sweep: {err}", file=sys.stderr)
        return 2


def _sweep(args: argparse.Namespace, runs: list[dict[str, Any]], budget: dict[str, Any]) -> int:
    from iceviz.training.outputs import SaveError, claimed_folder, save_run
    from iceviz.training.sweep import run_sweep

    with claimed_folder(Path(args.out)) as out, _dask_client(args.scheduler, args.workers) as (client, slots):
        bar = None
        if not args.quiet:
            from tqdm import tqdm

            bar = tqdm(total=len(runs), desc="sweep", unit="run", file=sys.stderr)
        start = time.perf_counter()
        rows = run_sweep(runs, client, slots, budget, progress=(lambda done, total: bar.update(1)) if bar else None)
        if bar is not None:
            bar.close()
        summary = {"runs": len(rows), "done": sum(r["status"] == "done" for r in rows), "workers": slots,
                   "wall_time": round(time.perf_counter() - start, 3), "out": str(out)}
        try:
            save_run(out, {"sweep.csv": lambda p: _sweep_table(rows).to_csv(p, index=False),
                           "sweep.json": lambda p: p.write_text(json.dumps({**summary, "rows": rows}, indent=2))},
                     label="sweep", keep=("sweep.csv", "sweep.json"), what="the sweep's table")
        except SaveError as err:
            print(f"iceviz sweep: {err}", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"sweep: {summary['done']} of {summary['runs']} runs done in {summary['wall_time']:.1f} s on "
              f"{slots} worker(s) -> {summary['out']}/sweep.csv")
    return 0 if summary["done"] == summary["runs"] else 1


def _sweep_table(rows: list[dict[str, Any]]) -> Any:
    import pandas as pd

    return pd.DataFrame(rows)


@contextlib.contextmanager
def _dask_client(scheduler: str | None, workers: int) -> Iterator[tuple[Any, int]]:
    """(client, slots): the cluster at ``scheduler`` (--scheduler) or $ICEVIZ_SCHEDULER, else a local one of
    ``workers`` single-threaded worker processes (closed at the end)."""
    from iceviz.runtime.dask_job import local_client, scheduler_address, scheduler_client

    address = scheduler_address(scheduler)
    if address:
        with scheduler_client(address) as client:
            yield client, max(1, len(client.scheduler_info().get("workers", {})))
        return
    with local_client(workers) as client:
        yield client, workers


def cmd_models(args: argparse.Namespace) -> int:
    from iceviz.models.registry import REGISTRY

    width = max(len(name) for name in REGISTRY)
    for name, spec in REGISTRY.items():
        print(f"{name:{width}s} {spec.family:9s} {spec.doc}")
    return 0


def _format_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def _print_files(files: list) -> None:
    from iceviz.geo.crs import format_bounds

    for f in files:
        where = format_bounds(f.footprint) if f.footprint else "no points"
        what = (f"{f.shape[1]} x {f.shape[0]} grid, {f.spacing_m:g} m" if f.shape else f"{f.points} points")
        print(f"  {f.product:15s} {f.path}  [{what}; {where}; {_format_bytes(f.size)}; from {f.origin}]"
              + (f" {f.detail}" if f.detail else ""))


def cmd_data_list(args: argparse.Namespace) -> int:
    from iceviz.data.products import Catalog
    from iceviz.data.settings import settings_path
    from iceviz.data.specs import list_specs

    specs = list_specs()
    catalog = Catalog.discover()
    if args.json:
        print(json.dumps({"specs": [{"pattern": p, "doc": d} for p, d in specs], "settings": str(settings_path()),
                          "products": catalog.summary(), "problems": catalog.problems}))
        return 0
    for pattern, doc in specs:
        print(f"{pattern:28s} {doc}")
    print(f"\nProduct files for region: specs (settings {settings_path()}, environment, data=PATH):")
    if catalog.files:
        _print_files(catalog.files)
    else:
        print("  none yet: 'iceviz data add PATH' or 'iceviz data download PRODUCT'")
    for problem in catalog.problems:
        print(f"  unusable: {problem}")
    return 0


def cmd_data_add(args: argparse.Namespace) -> int:
    from iceviz.data.overview import SpeedPyramid
    from iceviz.data.products import VELOCITY_PRODUCTS, add_paths
    from iceviz.data.settings import settings_path

    found, problems = add_paths([Path(p) for p in args.paths])
    if found:
        print(f"recorded in {settings_path()}:")
        _print_files(found)
    for f in found:
        if f.product in VELOCITY_PRODUCTS:  # the app's continental map reads these coarse levels
            print(f"preparing the speed map of {f.path.name} (once; the whole mosaic is read)", file=sys.stderr)
            pyramid = SpeedPyramid(f.path, f.product)
            pyramid.prepare()
            pyramid.close()
    for problem in problems:
        print(f"iceviz: error: {problem}", file=sys.stderr)
    return 0 if found and not problems else 2


def cmd_data_remove(args: argparse.Namespace) -> int:
    from iceviz.data.products import remove_paths

    removed = remove_paths([Path(p) for p in args.paths])
    for p in removed:
        print(f"forgot {p}")
    missing = [p for p in args.paths if Path(p).expanduser().resolve() not in removed]
    for p in missing:
        print(f"iceviz: error: {p} is not in the data settings", file=sys.stderr)
    return 0 if not missing else 2


def cmd_data_build(args: argparse.Namespace) -> int:
    from iceviz.data.specs import build_region_from_spec, describe

    build = build_region_from_spec(args.spec)
    build.write(args.out)
    info = describe(build.problem)
    info.update(points_file=str(args.out), counts=build.counts, spec_to_train=f"points:{args.out}")
    print(json.dumps(info) if args.json else json.dumps(info, indent=2))
    return 0


def cmd_data_download(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from iceviz.data.download import download
    from iceviz.data.products import add_paths

    bars: list = []  # made at the first bytes, so that a refused download prints no empty bar

    def progress(done: int, total: int | None) -> None:
        if not bars:
            bars.append(tqdm(unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr, disable=args.quiet,
                             dynamic_ncols=True))
        bars[0].total = total
        bars[0].n = done
        bars[0].refresh()

    try:
        paths = download(args.product, Path(args.dest) if args.dest else None, args.url, args.sha256, progress)
    finally:
        for bar in bars:
            bar.close()
    for p in paths:
        print(f"{p} (SHA-256 recorded in {p.name}.sha256)")
    if not args.no_add:
        add_paths(paths)
    return 0


def cmd_data_fetch(args: argparse.Namespace) -> int:
    from iceviz.data.public import DATASETS, fetch, is_fetched

    if not args.name:
        for d in DATASETS.values():
            state = "fetched" if is_fetched(d.name) else f"{d.size / 1e6:.1f} MB"
            print(f"{d.name:18s} {d.description} [{state}; then --data {d.spec}]")
        return 0
    paths = fetch(args.name, args.base_url, progress=lambda line: print(f"fetching {line}", file=sys.stderr))
    for p in paths:
        print(p)
    print(f"{args.name}: checked (SHA-256); use it as --data {DATASETS[args.name].spec}", file=sys.stderr)
    return 0


def cmd_data_info(args: argparse.Namespace) -> int:
    from iceviz.data.specs import describe, load_problem

    print(json.dumps(describe(load_problem(args.spec)), indent=2))
    return 0


def cmd_sim_verify(args: argparse.Namespace) -> int:
    from iceviz.sim.verify import CASES

    cases = []
    for make in CASES:
        case = make()
        cases.append(case)
        rate = f", rate {case.rate:.2f}" if case.rate is not None else ""
        print(f"{'PASS' if case.passed else 'FAIL'} {case.name}: error {case.error:.3g} "
              f"(tolerance {case.tolerance:g}{rate}, {case.seconds:.1f} s) - {case.detail}",
              file=sys.stderr if args.json else sys.stdout)
    passed = all(c.passed for c in cases)
    if args.json:
        print(json.dumps({"passed": passed, "cases": [c.as_dict() for c in cases]}))
    return 0 if passed else 1


class _YearsBar:
    """A progress bar on stderr over simulated years, fed by a simulator's ``on_step``; opened at the first step."""

    def __init__(self, label: str, years: float, quiet: bool):
        self.label, self.years, self.quiet, self.bar = label, years, quiet, None

    def __call__(self, state: Any, record: dict) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=self.years, desc=self.label, file=sys.stderr, disable=self.quiet,
                            dynamic_ncols=True, bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.3g}/{total:g} a "
                                                           "[{elapsed}<{remaining}{postfix}]")
        self.bar.update(record["dt"])
        self.bar.set_postfix(iterations=int(record["iterations"]), refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _scenario_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Scenario parameters from --region (sized to its box) and --set (which wins)."""
    sized = {}
    if args.region:  # iceviz.geo needs pyproj: only imported when a region is asked for
        from iceviz.geo import get_region
        from iceviz.sim.scenarios import box_overrides

        sized = box_overrides(args.scenario, get_region(args.region).bounds)
    return {**sized, **parse_assignments(args.set or [])}


def _sim_settings(args: argparse.Namespace) -> Any:
    """RunSettings from --years and --snapshot-every (defaults where not given)."""
    from iceviz.sim.model import RunSettings

    given = {"years": args.years, "snapshot_every": args.snapshot_every}
    return RunSettings(**{k: v for k, v in given.items() if v is not None})


def cmd_sim_run(args: argparse.Namespace) -> int:
    from iceviz.sim.ensemble import forcing_values, make_forcing
    from iceviz.sim.model import Simulator
    from iceviz.sim.scenarios import get_scenario
    from iceviz.sim.spinup import spun_up
    from iceviz.sim.ugrid import write_run
    from iceviz.training.families import get_family, simulator_output

    scenario = get_scenario(args.scenario, **_scenario_overrides(args))
    settings = _sim_settings(args)
    given = {"melt": args.melt, "smb": args.smb, "retreat_rate": args.retreat_rate}
    values = forcing_values({k: v for k, v in given.items() if v is not None})
    if args.calving is not None:
        values["calving"] = args.calving
    forcing = make_forcing(values)
    simulator = Simulator(scenario)
    bar = _YearsBar(f"spin-up {scenario.spin_up_years:g} a", scenario.spin_up_years, args.quiet)
    try:
        state, cached = spun_up(simulator, on_step=bar)
    finally:
        bar.close()
    if cached and not args.quiet:
        print(f"spin-up {scenario.spin_up_years:g} a: from the cache", file=sys.stderr)
    bar = _YearsBar(f"{args.scenario} {settings.years:g} a", settings.years, args.quiet)
    try:
        run = simulator.run(forcing, settings, state, on_step=bar)
    finally:
        bar.close()
    keys, line = get_family("simulator").report(None, run)
    out = write_run(simulator_output(run), args.out)
    summary = {"scenario": args.scenario, "out": str(out), "forcing": forcing.key(), "years": settings.years,
               "spin_up_cached": cached, **keys}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{args.scenario} over {settings.years:g} a: {line} -> {out}")
    return 0


def cmd_sim_ensemble(args: argparse.Namespace) -> int:
    from iceviz.runtime.dask_job import scheduler_address
    from iceviz.sim.ensemble import grid_points, parse_values, run_ensemble

    specs = {"melt": args.melt, "smb": args.smb, "retreat_rate": args.retreat_rate}
    grid = {k: parse_values(spec) for k, spec in specs.items() if spec is not None}
    if not grid:
        raise ValueError("an ensemble needs values to vary: give --melt, --smb and/or --retreat-rate")

    def progress(done: int, total: int, record: dict) -> None:
        if args.quiet:
            return
        point = " ".join(f"{k}={record['forcing'][k]:g}" for k in grid)
        outcome = (f"done in {record['wall_time']:.1f} s, {record['steps']} steps, grounding line "
                   f"{record['grounding_line'] / 1e3:.1f} km" if record["status"] == "done"
                   else f"FAILED: {record['error']}")
        print(f"[{done}/{total}] run {record['index']} {point}: {outcome}", file=sys.stderr, flush=True)

    overrides, settings = _scenario_overrides(args), _sim_settings(args)
    runs = len(grid_points(grid))
    workers = min(args.workers, runs)  # a worker per run at most
    if workers == 1 and not scheduler_address(args.scheduler):
        manifest = run_ensemble(args.scenario, overrides, grid, settings, args.out, progress=progress)
    else:
        with _dask_client(args.scheduler, workers) as (client, _):
            manifest = run_ensemble(args.scenario, overrides, grid, settings, args.out, progress=progress,
                                    client=client)
    failed = sum(run["status"] == "failed" for run in manifest["runs"])
    workers = manifest["workers"]
    summary = {"scenario": args.scenario, "out": str(Path(args.out).expanduser()), "runs": runs,
               "failed": failed, "wall_time": round(manifest["wall_time"], 3), "workers": workers}
    if args.json:
        print(json.dumps(summary))
    else:
        capped = f" (--workers {args.workers} capped: one worker per run at most)" if args.workers > runs else ""
        print(f"{args.scenario}: {runs - failed} of {runs} runs done in {manifest['wall_time']:.1f} s on "
              f"{workers} worker(s){capped} -> {summary['out']}")
    return 1 if failed else 0


def cmd_sim_shelf(args: argparse.Namespace) -> int:
    from iceviz.sim.shelves import SHELVES, write_shelf

    if args.name is None:
        for name, spec in SHELVES.items():
            print(f"{name:10s} {spec.description}")
        return 0
    if args.out is None:
        raise ValueError("give --out FILE.mat to write the shelf")
    out = write_shelf(args.name, args.out, resolution=args.resolution, spacing=args.spacing)
    summary = {"shelf": args.name, "out": str(out), "resolution": args.resolution, "spacing": args.spacing}
    print(json.dumps(summary) if args.json else f"shelf {args.name!r} -> {out}")
    return 0


def _sim_arguments(parser: argparse.ArgumentParser, scenarios: Sequence[str]) -> None:
    """The scenario, run-length, --set, --json and --quiet arguments of ``sim run`` and ``sim ensemble``."""
    parser.add_argument("scenario", metavar="SCENARIO", help=f"one of: {', '.join(scenarios)}")
    parser.add_argument("--years", type=float, help="simulated years per run (default 20)")
    parser.add_argument("--snapshot-every", type=float, metavar="YEARS", help="years between snapshots (default 0.5)")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE",
                        help="override a scenario parameter, e.g. length=200e3 (repeatable)")
    parser.add_argument("--region", metavar="KEY",
                        help="size the scenario to a preset region's box (e.g. byrd, pine-island); --set still wins")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")


def _positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1 (argparse reports anything else as a usage error)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from iceviz.data.public import GITHUB_RAW
    from iceviz.models.registry import REGISTRY
    from iceviz.sim.scenarios import SCENARIOS
    from iceviz.training.device import DEVICES

    parser = argparse.ArgumentParser(prog="iceviz", description="Physics-informed learning of Antarctic ice flow.")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a registered model on a data spec")
    train.add_argument("model", choices=list(REGISTRY), metavar="MODEL", help=f"one of: {', '.join(REGISTRY)}")
    train.add_argument("--data", required=True, metavar="SPEC",
                       help="data spec, e.g. synthetic:curve (see 'iceviz data list')")
    train.add_argument("--epochs", type=int, help="epoch budget")
    train.add_argument("--seconds", type=float, help="wall-clock training budget [s]")
    train.add_argument("--seed", type=int, help="random seed")
    train.add_argument("--device", default="auto", help=f"{', '.join(DEVICES)} or cuda:N (default auto)")
    train.add_argument("--out", metavar="DIR", help="write model.safetensors, metrics.json and prediction.nc here")
    train.add_argument("--json", action="store_true", help="print one final JSON line on stdout")
    train.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a hyper-parameter (repeatable)")
    train.add_argument("--threads", type=_positive_int, default=1, help="torch CPU threads for training (default 1)")
    train.add_argument("--scheduler", metavar="ADDRESS",
                       help="train on a worker of the Dask cluster whose scheduler is at ADDRESS (e.g. "
                            "tcp://10.0.0.5:8786; default $ICEVIZ_SCHEDULER, else here, in this process)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=cmd_train)

    sweep = sub.add_parser("sweep", help="train every combination of models, data, seeds and --set values on Dask")
    sweep.add_argument("models", nargs="+", choices=list(REGISTRY), metavar="MODEL", help="one or more models")
    sweep.add_argument("--data", action="append", required=True, metavar="SPEC", help="data spec (repeatable)")
    sweep.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    sweep.add_argument("--set", action="append", metavar="KEY=V1,V2", help="values of a hyper-parameter (repeatable)")
    sweep.add_argument("--epochs", type=int, help="epoch budget of each run")
    sweep.add_argument("--seconds", type=float, help="wall-clock budget of each run [s]")
    sweep.add_argument("--scheduler", metavar="ADDRESS", help="an existing Dask cluster (default $ICEVIZ_SCHEDULER, "
                                                              "else a local one of --workers processes)")
    sweep.add_argument("--workers", type=_positive_int, default=1, help="local worker processes (default 1)")
    sweep.add_argument("--out", required=True, metavar="DIR", help="write sweep.csv and sweep.json here")
    sweep.add_argument("--json", action="store_true", help="print one final JSON line on stdout")
    sweep.add_argument("--quiet", action="store_true", help="no progress bar")
    sweep.set_defaults(func=cmd_sweep)

    models = sub.add_parser("models", help="list the registered models")
    models.set_defaults(func=cmd_models)

    data = sub.add_parser("data", help="data specs")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    data_list = data_sub.add_parser("list", help="list the data spec patterns and the product files found")
    data_list.add_argument("--json", action="store_true", help="one JSON object: specs, products, problems")
    data_list.set_defaults(func=cmd_data_list)
    data_add = data_sub.add_parser("add", help="record product files or folders (MEaSUREs, BedMachine, Bedmap) "
                                               "in the settings file")
    data_add.add_argument("paths", nargs="+", metavar="PATH")
    data_add.set_defaults(func=cmd_data_add)
    data_remove = data_sub.add_parser("remove", help="forget recorded files or folders")
    data_remove.add_argument("paths", nargs="+", metavar="PATH")
    data_remove.set_defaults(func=cmd_data_remove)
    data_build = data_sub.add_parser("build", help="build a region: spec from the products and write its points "
                                                   "file (train it as points:FILE)")
    data_build.add_argument("spec", metavar="SPEC", help="e.g. region:byrd?spacing=1000&split=lines")
    data_build.add_argument("--out", required=True, metavar="FILE.csv")
    data_build.add_argument("--json", action="store_true", help="one JSON line")
    data_build.set_defaults(func=cmd_data_build)
    data_download = data_sub.add_parser("download", help="download a product (NSIDC needs an Earthdata login: "
                                                         "~/.netrc, EARTHDATA_TOKEN or EARTHDATA_USERNAME / "
                                                         "EARTHDATA_PASSWORD; sent only over https to the Earthdata "
                                                         "hosts and to hosts listed in $ICEVIZ_CREDENTIAL_HOSTS)")
    data_download.add_argument("product", metavar="PRODUCT", help="measures-insar, measures-phase, bedmachine, bedmap")
    data_download.add_argument("--dest", metavar="DIR", help="folder (default: $ICEVIZ_DOWNLOADS or "
                                                              "~/.local/share/iceviz/PRODUCT)")
    data_download.add_argument("--url", help="download this https:// address instead of the product's own "
                                             "(http:// for a mirror or local server: no credentials are sent)")
    data_download.add_argument("--sha256", metavar="HEX", help="expected SHA-256 of the file")
    data_download.add_argument("--no-add", action="store_true", help="do not record the file in the settings")
    data_download.add_argument("--quiet", action="store_true", help="no progress bar")
    data_download.set_defaults(func=cmd_data_download)
    data_fetch = data_sub.add_parser("fetch", help="fetch a public dataset of the reference papers into the user "
                                     "cache, checked by SHA-256 (no NAME: list them)")
    data_fetch.add_argument("name", nargs="?", metavar="NAME", help="byrd-mcor, diffice-synthetic, amery, larsen-c")
    data_fetch.add_argument("--from", dest="base_url", metavar="BASE_URL",
                            help="a mirror laid out as BASE_URL/OWNER/REPO/COMMIT/PATH (default: $ICEVIZ_FETCH_FROM, "
                                 f"else {GITHUB_RAW})")
    data_fetch.set_defaults(func=cmd_data_fetch)
    data_info = data_sub.add_parser("info", help="describe the data a spec loads")
    data_info.add_argument("spec", metavar="SPEC")
    data_info.set_defaults(func=cmd_data_info)

    sim = sub.add_parser("sim", help="the finite-element ice-flow simulator")
    sim_sub = sim.add_subparsers(dest="sim_command", required=True)
    verify = sim_sub.add_parser("verify", help="run the verification cases against closed-form solutions")
    verify.add_argument("--json", action="store_true",
                        help='print one final JSON line '
                             '{"passed", "cases": [{"name", "error", "tolerance", "passed"}]}')
    verify.set_defaults(func=cmd_sim_verify)

    run = sim_sub.add_parser("run", help="spin up (cached) and run a scenario, writing a UGRID NetCDF file")
    _sim_arguments(run, list(SCENARIOS))
    run.add_argument("--melt", type=float, help="basal melt under floating ice [m/a] (default 0)")
    run.add_argument("--smb", type=float, help="surface mass balance [m/a] (default 0.3)")
    run.add_argument("--calving", choices=["fixed", "retreat"],
                     help="calving front: fixed, or retreating at --retreat-rate (default: retreat when the rate "
                          "is positive)")
    run.add_argument("--retreat-rate", type=float, help="front retreat [m/a] (default 0)")
    run.add_argument("--out", required=True, metavar="FILE", help="the run's NetCDF file (UGRID-1.0)")
    run.add_argument("--json", action="store_true", help="print one final JSON line on stdout")
    run.set_defaults(func=cmd_sim_run)

    ensemble = sim_sub.add_parser("ensemble", help="run a scenario for every combination of forcing values "
                                                   "(exit 1 if any run failed)")
    _sim_arguments(ensemble, list(SCENARIOS))
    spec = "start:stop:step (stop included), a value, or comma-separated values"
    ensemble.add_argument("--melt", metavar="SPEC", help=f"basal melt values [m/a]: {spec}")
    ensemble.add_argument("--smb", metavar="SPEC", help=f"surface mass balance values [m/a]: {spec}")
    ensemble.add_argument("--retreat-rate", metavar="SPEC",
                          help=f"front retreat values [m/a] (positive: a retreating front): {spec}")
    ensemble.add_argument("--workers", type=_positive_int, default=1,
                          help="local Dask worker processes, one per run at most (default 1: every run here, in "
                               "this process)")
    ensemble.add_argument("--scheduler", metavar="ADDRESS",
                          help="run on the Dask cluster whose scheduler is at ADDRESS (its workers must see --out; "
                               "default $ICEVIZ_SCHEDULER, else local)")
    ensemble.add_argument("--out", required=True, metavar="DIR", help="write runs/run-NNN.nc and manifest.json here")
    ensemble.add_argument("--json", action="store_true",
                          help='print one final JSON line {"out", "runs", "failed", "wall_time", "workers"}')
    ensemble.set_defaults(func=cmd_sim_ensemble)

    shelf = sim_sub.add_parser("shelf", help="write a synthetic ice shelf with known viscosity in the DIFFICE .mat "
                                             "layout (no NAME: list them)")
    shelf.add_argument("name", nargs="?", metavar="NAME", help="the shelf (see 'iceviz sim shelf')")
    shelf.add_argument("--out", metavar="FILE", help="the .mat file to write")
    shelf.add_argument("--resolution", type=float, default=1000.0, help="mesh triangle side [m] (default 1000)")
    shelf.add_argument("--spacing", type=float, default=200.0, help="grid spacing of the file [m] (default 200)")
    shelf.add_argument("--json", action="store_true", help="print one final JSON line on stdout")
    shelf.set_defaults(func=cmd_sim_shelf)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``iceviz`` command line; its exit code (2: bad input, 130: interrupted).

    Ctrl-C anywhere (imports, data loading, training, writing) ends it with one line, not a traceback.
    """
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except ValueError as err:  # DataError, OutputError and bad arguments are ValueErrors
        print(f"iceviz: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("iceviz: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
