"""The ``iceviz`` command: train models and inspect data specs.

    iceviz train MODEL --data SPEC [--epochs N] [--seconds S] [--seed K]
                 [--device D] [--out DIR] [--json] [--set KEY=VALUE ...]
    iceviz models
    iceviz data list
    iceviz data info SPEC
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from iceviz.data.problem import DataError


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
    out = parse_assignments(args.set or [])
    for key in ("epochs", "seconds", "seed"):
        if getattr(args, key) is not None:
            out[key] = getattr(args, key)
    if args.seconds is not None and args.epochs is None:
        out["epochs"] = 1_000_000  # a time budget alone: epochs no longer bind
    return out


def _progress_loop(job: Any, quiet: bool) -> None:
    """Show a progress bar on stderr until the job ends; Ctrl-C cancels it."""
    from tqdm import tqdm

    bar = tqdm(total=100, unit="%", file=sys.stderr, disable=quiet, dynamic_ncols=True,
               bar_format="{l_bar}{bar}| {n:.0f}/{total}% [{elapsed}<{remaining}{postfix}]")
    try:
        while job.alive or not job.status.finished:
            history = job.history()
            if history:
                last = history[-1]
                bar.n = round(100 * last.get("progress", 0.0), 1)
                bar.set_postfix(epoch=last["epoch"], loss=f"{last.get('epoch_data_loss', float('nan')):.4g}",
                                refresh=False)
                bar.refresh()
            if job.status.finished:
                break
            time.sleep(0.2)
    except KeyboardInterrupt:
        job.cancel()
        job.wait(5)
    finally:
        if job.status.name == "DONE":
            bar.n = 100
            bar.refresh()
        bar.close()


def cmd_train(args: argparse.Namespace) -> int:
    from iceviz.data.specs import load_problem
    from iceviz.models.registry import get_model
    from iceviz.training.checkpoint import save_checkpoint
    from iceviz.training.job import JobStatus
    from iceviz.training.trainers import training_job

    overrides = _overrides(args)
    get_model(args.model).make_params(**overrides)  # bad --set: a usage error (exit 2) before any training
    problem = load_problem(args.data)
    job = training_job(args.model, problem, device=args.device, snapshot_every=None,
                       num_threads=args.threads, **overrides)
    job.start()
    _progress_loop(job, quiet=args.quiet)
    status = job.wait()
    if status is not JobStatus.DONE:
        message = job.error or status.value
        print(f"iceviz train: {args.model} on {args.data} {status.value}: {message}", file=sys.stderr)
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
        **{k: result.metrics[k] for k in ("rmse", "mae", "mad", "rmse_phys", "mae_phys", "mad_phys")},
        "units": {"rmse": "scaled flux", "mad": "scaled divergence", "rmse_phys": "m2/yr", "mae_phys": "m2/yr",
                  "mad_phys": "m/yr", "flux_scale_m2_per_yr": problem.scale.flux,
                  "divergence_scale_m_per_yr": problem.scale.divergence},
    }
    if args.out:
        summary["out"] = str(_write_outputs(Path(args.out), job, summary, save_checkpoint))
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{args.model} on {args.data}: test RMSE {summary['rmse']:.4f} ({summary['rmse_phys']:.4g} m²/yr), "
              f"MAE {summary['mae']:.4f}, MAD {summary['mad']:.3g} ({summary['mad_phys']:.3g} m/yr) "
              f"after {result.epochs} epochs, {result.seconds:.1f} s on {summary['device']}", file=sys.stderr)
    return 0


def _write_outputs(out: Path, job: Any, summary: dict[str, Any], save_checkpoint: Any) -> Path:
    """Checkpoint, metrics and the predicted field (CF NetCDF, EPSG:3031) under ``out``."""
    from iceviz.data.netcdf import grid_dataset, write_netcdf

    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out / "model.safetensors", job.trainer, metrics=summary)
    (out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    fields = job.latest().fields
    ds = grid_dataset(
        fields["x"].values, fields["y"].values,
        {name: (var.values, var.attrs["units"], var.attrs["long_name"]) for name, var in fields.data_vars.items()},
        attrs={"title": f"iceviz {summary['model']} prediction", "source": f"iceviz {summary['model']}",
               "data_spec": summary["data"], "rmse_phys_m2_per_yr": summary["rmse_phys"],
               "mad_phys_m_per_yr": summary["mad_phys"]},
    )
    write_netcdf(ds, out / "prediction.nc")
    return out


def cmd_models(args: argparse.Namespace) -> int:
    from iceviz.models.registry import REGISTRY

    for name, spec in REGISTRY.items():
        print(f"{name:12s} {spec.family:8s} {spec.doc}")
    return 0


def cmd_data_list(args: argparse.Namespace) -> int:
    from iceviz.data.specs import list_specs

    for pattern, doc in list_specs():
        print(f"{pattern:28s} {doc}")
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


def build_parser() -> argparse.ArgumentParser:
    from iceviz.models.registry import REGISTRY
    from iceviz.training.device import DEVICES

    parser = argparse.ArgumentParser(prog="iceviz", description="Physics-informed learning of Antarctic ice flow.")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a registered model on a data spec")
    train.add_argument("model", choices=list(REGISTRY), metavar="MODEL", help=f"one of: {', '.join(REGISTRY)}")
    train.add_argument("--data", required=True, metavar="SPEC", help="data spec, e.g. synthetic:curve (see 'iceviz data list')")
    train.add_argument("--epochs", type=int, help="epoch budget")
    train.add_argument("--seconds", type=float, help="wall-clock training budget [s]")
    train.add_argument("--seed", type=int, help="random seed")
    train.add_argument("--device", default="auto", help=f"{', '.join(DEVICES)} or cuda:N (default auto)")
    train.add_argument("--out", metavar="DIR", help="write model.safetensors, metrics.json and prediction.nc here")
    train.add_argument("--json", action="store_true", help="print one final JSON line on stdout")
    train.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a hyper-parameter (repeatable)")
    train.add_argument("--threads", type=int, default=1, help="torch CPU threads for training (default 1)")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=cmd_train)

    models = sub.add_parser("models", help="list the registered models")
    models.set_defaults(func=cmd_models)

    data = sub.add_parser("data", help="data specs")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    data_list = data_sub.add_parser("list", help="list the data spec patterns")
    data_list.set_defaults(func=cmd_data_list)
    data_info = data_sub.add_parser("info", help="describe the data a spec loads")
    data_info.add_argument("spec", metavar="SPEC")
    data_info.set_defaults(func=cmd_data_info)

    sim = sub.add_parser("sim", help="the finite-element ice-flow simulator")
    sim_sub = sim.add_subparsers(dest="sim_command", required=True)
    verify = sim_sub.add_parser("verify", help="run the verification cases against closed-form solutions")
    verify.add_argument("--json", action="store_true",
                        help='print one final JSON line {"passed", "cases": [{"name", "error", "tolerance", "passed"}]}')
    verify.set_defaults(func=cmd_sim_verify)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (DataError, ValueError) as err:
        print(f"iceviz: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
