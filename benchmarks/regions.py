"""The region benchmark: flux models on a fixed suite of problems that span density and size.

The suite (``--list`` prints it with its point counts):

- ``byrd-W-S``: a W km window of the ``byrd-mcor`` tile thinned along its survey lines to one point
  every S m (``0``: as surveyed), its own test tiles kept; scaled like a ``points:`` file of the window
  (coordinates over the window's extent, flux over the training RMS);
- ``FIELD-Nl``: each of the five synthetic fields on N straight flight lines (9: the published lines;
  5 and 20: lines at the golden angle, points 0.035 apart), 2 % noise, the noise-free 20 x 20 grid as
  test, in the field's own units;
- ``glacier-dD-nN``: the synthetic glacier keeping every D-th survey point, noise N % (test exact);
  ``glacier-dense``: the glacier surveyed by 120 lines with points 250 m apart (about 47,000 training
  points), noise 2 %;
- ``real-*``: the region builder on product files written from the synthetic glacier (MEaSUREs,
  BedMachine, Bedmap layouts), split by tiles and by whole flight lines.

Each run is a task on a local Dask cluster of ``--workers`` single-threaded workers (or on the cluster at
``--scheduler``), training on one torch thread through the same path
as ``iceviz train`` (registry defaults, size-aware defaults, the source's hints). Beside iceviz, the
published small-data recipe of the dfNN paper, re-implemented here: a 2 x 32 SiLU stream-function MLP on
the scaled coordinates, AdamW lr 5e-3, weight decay 1e-4, batch 32, double backward, stopped after 100
epochs without a lower training loss or at 2,000 epochs, last-epoch weights (``--recipe-seconds`` caps
its wall time on the largest problems; the results say when the cap bound).

Usage: python -m benchmarks.regions [--problems all|NAME,...] [--models dfnn,...] [--budgets 10,30,120]
                                    [--seeds 3] [--other-models pinn,...] [--other-budget 30]
                                    [--other-seeds 2] [--recipe-seeds 3] [--recipe-seeds-large 3]
                                    [--recipe-seconds 300]
                                    [--recipe-from JSON] [--workers 2] [--scheduler ADDRESS]
                                    [--set KEY=VALUE ...] [--json OUT]
                                    [--list]

The recipe does not depend on iceviz's settings: ``--recipe-from`` reuses its runs from an earlier
results file (the same problems and seeds) instead of training them again.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from benchmarks.common import DEFAULT_BYRD, machine, on_dask
from iceviz.cli import parse_assignments
from iceviz.data import synthetic as syn
from iceviz.data.problem import FluxObservations, FluxProblem, FluxScale
from iceviz.data.region import crop, grid_shape_for

BYRD_WINDOWS = (  # (name, centre x, centre y, width, thinning spacing), metres
    ("byrd-30-0", 490_000.0, -840_000.0, 30_000.0, 0.0),
    ("byrd-50-1000", 540_000.0, -800_000.0, 50_000.0, 1_000.0),
    ("byrd-70-2000", 470_000.0, -880_000.0, 70_000.0, 2_000.0),
    ("byrd-70-600", 530_000.0, -860_000.0, 70_000.0, 600.0),
    ("byrd-100-3000", 500_000.0, -850_000.0, 100_000.0, 3_000.0),
    ("byrd-100-0", 450_000.0, -800_000.0, 100_000.0, 0.0),
    ("byrd-200-0", 500_000.0, -850_000.0, 200_000.0, 0.0),
)
SYNTHETIC_LINES = (5, 9, 20)
LINE_SPACING = 0.035  # unit-square spacing of points along the generated lines (the published lines' ~0.035)
GLACIER_CASES = ((1, 0.02), (3, 0.02), (9, 0.02), (1, 0.1), (3, 0.1), (9, 0.1))
GLACIER_DENSE = dict(n_lines=120, spacing=250.0)
LARGE = 4000
"""Problems with more training points than this are 'large' (``--recipe-seeds-large``)."""
REAL_BOXES = (  # (name, bounds, recipe options)
    ("real-glacier-tiles", syn.GLACIER_BOUNDS, dict(spacing=1000.0, split="tiles")),
    ("real-lower-lines", (420_000.0, 560_000.0, -940_000.0, -800_000.0), dict(spacing=2000.0, split="lines")),
)


# -- the suite -------------------------------------------------------------------------------------------
def _byrd_window(cx: float, cy: float, width: float, spacing: float) -> FluxProblem:
    from iceviz.data.builder import thin
    from iceviz.data.byrd import load_byrd

    half = width / 2
    box = (cx - half, cx + half, cy - half, cy + half)
    p = crop(load_byrd(DEFAULT_BYRD), box)
    train, test = p.train.subset(thin(p.train.xy, spacing)), p.test.subset(thin(p.test.xy, spacing))
    flux = float(np.sqrt(np.mean(np.sum(train.q ** 2, axis=1))))
    return FluxProblem(spec=f"byrd-mcor window {width / 1000:g} km, thinned to {spacing:g} m", train=train,
                       test=test, scale=FluxScale(x0=box[0], y0=box[2], length=width, flux=flux, surface=1000.0),
                       bounds=p.bounds, direction=p.direction, grid_shape=grid_shape_for(p.bounds, 50))


def _field_on_lines(name: str, n_lines: int, noise: float = syn.DEFAULT_NOISE, seed: int = 0) -> FluxProblem:
    base = syn.benchmark_problem(name, noise=noise, seed=seed)
    if n_lines == len(syn.BENCHMARK_FLIGHT_LINES):
        return base
    xy, line = syn.glacier_flight_lines(n_lines, LINE_SPACING, (0.0, 1.0, 0.0, 1.0))
    field = syn.benchmark_field(name)
    q = syn.add_noise(field(xy), noise * syn.mean_magnitude(name), seed)
    scale = base.scale
    train = FluxObservations(xy=scale.xy_to_phys(xy), q=scale.flux * q, line=line)
    return FluxProblem(**{**base.__dict__, "train": train, "spec": f"synthetic:{name} on {n_lines} lines"})


def _glacier(step: int, noise: float) -> FluxProblem:
    p = syn.glacier_problem(noise=noise, seed=0)
    keep = np.arange(0, len(p.train), step)
    return FluxProblem(**{**p.__dict__, "train": p.train.subset(keep),
                          "spec": f"synthetic:glacier every {step} point(s), noise {noise:g}"})


def _real(bounds: tuple[float, float, float, float], options: dict[str, Any]) -> FluxProblem:
    from iceviz.data.builder import RegionRecipe, build_region
    from iceviz.data.product_files import write_glacier_products
    from iceviz.data.products import Catalog

    with tempfile.TemporaryDirectory() as tmp:
        files = write_glacier_products(Path(tmp) / "files")
        catalog = Catalog.discover({k: [v] for k, v in files.items()})
        return build_region(bounds, RegionRecipe(**options), catalog, spec=f"region:box ({options['split']})").problem


def suite() -> dict[str, Callable[[], FluxProblem]]:
    """Every problem of the benchmark by name, built on demand."""
    out: dict[str, Callable[[], FluxProblem]] = {}
    for name, cx, cy, width, spacing in BYRD_WINDOWS:
        out[name] = functools.partial(_byrd_window, cx, cy, width, spacing)
    for field in syn.BENCHMARK_NAMES:
        for n in SYNTHETIC_LINES:
            out[f"{field}-{n}l"] = functools.partial(_field_on_lines, field, n)
    for step, noise in GLACIER_CASES:
        out[f"glacier-d{step}-n{round(100 * noise)}"] = functools.partial(_glacier, step, noise)
    out["glacier-dense"] = functools.partial(syn.glacier_problem, spec="synthetic:glacier, 120 lines, 250 m",
                                             **GLACIER_DENSE)
    for name, bounds, options in REAL_BOXES:
        out[name] = functools.partial(_real, bounds, options)
    return out


@functools.lru_cache(maxsize=4)
def load(name: str) -> FluxProblem:
    return suite()[name]()


# -- the published recipe ----------------------------------------------------------------------------------
def recipe_fit(problem: FluxProblem, seed: int, max_epochs: int = 2000, patience: int = 100,
               seconds: float | None = None) -> dict[str, Any]:
    """The published small-data dfNN recipe (see the module docstring); test RMSE in scaled units."""
    import torch
    from torch import nn

    from iceviz.training.metrics import rmse

    torch.manual_seed(seed)
    scale = problem.scale
    x = torch.tensor(scale.xy_to_scaled(problem.train.xy), dtype=torch.float32)
    q = torch.tensor(problem.train.q / scale.flux, dtype=torch.float32)
    net = nn.Sequential(nn.Linear(2, 32), nn.SiLU(), nn.Linear(32, 32), nn.SiLU(), nn.Linear(32, 1))
    opt = torch.optim.AdamW(net.parameters(), lr=5e-3, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(seed)

    def flux(xb: torch.Tensor, create_graph: bool) -> torch.Tensor:
        xb = xb.detach().requires_grad_(True)
        grad = torch.autograd.grad(net(xb).sum(), xb, create_graph=create_graph)[0]
        return torch.stack([grad[:, 1], -grad[:, 0]], dim=1)

    start, best, wait, epoch, capped = time.perf_counter(), math.inf, 0, 0, False
    n = len(x)
    while epoch < max_epochs:
        if seconds is not None and time.perf_counter() - start > seconds:
            capped = True
            break
        perm = torch.randperm(n, generator=gen)
        total = 0.0
        for i in range(0, n, 32):
            idx = perm[i:i + 32]
            loss = ((flux(x[idx], True) - q[idx]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        epoch += 1
        if total / n < best:
            best, wait = total / n, 0
        else:
            wait += 1
            if wait >= patience:
                break
    xt = torch.tensor(scale.xy_to_scaled(problem.test.xy), dtype=torch.float32)
    pred = torch.cat([flux(xt[i:i + 4096], False) for i in range(0, len(xt), 4096)]).detach().double().numpy()
    return dict(rmse=rmse(pred, problem.test.q / scale.flux), epochs=epoch, seconds=time.perf_counter() - start,
                capped=capped)


# -- running -----------------------------------------------------------------------------------------------
def run_one(task: dict[str, Any]) -> dict[str, Any]:
    """One run in a worker: iceviz (``model``) or the recipe (``model == 'recipe'``)."""
    import torch

    torch.set_num_threads(1)
    problem = load(task["problem"])
    t0 = time.perf_counter()
    if task["model"] == "recipe":
        out = recipe_fit(problem, task["seed"], seconds=task.get("recipe_seconds"))
        return {**task, **out, "wall": time.perf_counter() - t0}
    from iceviz.training.trainers import make_trainer

    try:
        trainer = make_trainer(task["model"], problem, device="cpu", seed=task["seed"], seconds=task["budget"],
                               **task.get("overrides", {}))
    except ValueError as err:  # e.g. -aux on a source without surface elevation
        return {**task, "skipped": str(err)}
    result = trainer.fit()
    m = result.metrics
    return {**task, "rmse": m["rmse"], "mad": m["mad"], "mae": m["mae"], "val_rmse": m.get("val_rmse"),
            "epochs": result.epochs, "best_epoch": result.best_epoch, "stop_reason": result.stop_reason,
            "refit": result.refit,
            "seconds": result.seconds, "train_points": int(len(trainer.q_train)), "val_points": int(len(trainer.q_val)),
            "wall": time.perf_counter() - t0}


def tasks(args: argparse.Namespace, names: list[str], overrides: dict[str, Any],
          reused: set[tuple[str, int]]) -> list[dict[str, Any]]:
    out = []
    for name in names:
        for model in filter(None, args.models.split(",")):
            for budget in (float(b) for b in args.budgets.split(",")):
                out += [dict(problem=name, model=model, budget=budget, seed=s, overrides=overrides)
                        for s in range(args.seeds)]
        for model in filter(None, args.other_models.split(",")):
            out += [dict(problem=name, model=model, budget=args.other_budget, seed=s, overrides=overrides)
                    for s in range(args.other_seeds)]
        seeds = args.recipe_seeds if len(load(name).train) <= LARGE else min(args.recipe_seeds, args.recipe_seeds_large)
        out += [dict(problem=name, model="recipe", seed=s, recipe_seconds=args.recipe_seconds)
                for s in range(seeds) if (name, s) not in reused]
    # the longest first, so that two workers finish together
    return sorted(out, key=lambda t: -(t.get("budget") or args.recipe_seconds or 0))


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Per problem: mean test RMSE of each (model, budget) and of the recipe; ratios to the recipe."""
    table: dict[str, dict[str, Any]] = {}
    for r in results:
        if "rmse" not in r:
            continue
        key = "recipe" if r["model"] == "recipe" else f"{r['model']}@{r['budget']:g}"
        table.setdefault(r["problem"], {}).setdefault(key, []).append(r)
    summary = {}
    for problem, rows in table.items():
        entry = {}
        for key, runs in rows.items():
            entry[key] = dict(rmse=statistics.fmean(x["rmse"] for x in runs),
                              mad=statistics.fmean(x.get("mad", 0.0) for x in runs),
                              epochs=statistics.fmean(x["epochs"] for x in runs),
                              seconds=statistics.fmean(x["seconds"] for x in runs), n=len(runs))
        if "recipe" in entry:
            for key, e in entry.items():
                e["ratio_to_recipe"] = e["rmse"] / entry["recipe"]["rmse"]
        summary[problem] = entry
    return summary


def print_tables(summary: dict[str, Any]) -> None:
    keys = sorted({k for e in summary.values() for k in e if k != "recipe"})
    print("\n| problem | recipe | " + " | ".join(keys) + " |")
    print("|---|---|" + "---|" * len(keys))
    for problem, e in summary.items():
        rec = e.get("recipe", {}).get("rmse")
        cells = [f"{e[k]['rmse']:.3f}" + (f" ({e[k]['ratio_to_recipe']:.2f})" if "ratio_to_recipe" in e[k] else "")
                 if k in e else "" for k in keys]
        print(f"| {problem} | {'' if rec is None else f'{rec:.3f}'} | " + " | ".join(cells) + " |")
    for key in keys:
        ratios = [e[key]["ratio_to_recipe"] for e in summary.values() if key in e and "ratio_to_recipe" in e[key]]
        if ratios:
            print(f"{key}: median ratio to the recipe {statistics.median(ratios):.3f}, at or below it on "
                  f"{sum(r <= 1 for r in ratios)}/{len(ratios)}, worst {max(ratios):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--problems", default="all")
    parser.add_argument("--models", default="dfnn")
    parser.add_argument("--budgets", default="10,30,120")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--other-models", default="dfnn-dir,dfnn-aux,pinn,pinn-dir,pinn-aux,nn,nn-dir,nn-aux")
    parser.add_argument("--other-budget", type=float, default=30.0)
    parser.add_argument("--other-seeds", type=int, default=2)
    parser.add_argument("--recipe-seeds", type=int, default=3)
    parser.add_argument("--recipe-seconds", type=float, default=300.0)
    parser.add_argument("--recipe-seeds-large", type=int, default=3,
                        help=f"recipe seeds on problems of more than {LARGE:,} training points")
    parser.add_argument("--recipe-from", help="reuse the recipe's runs from this earlier --json file")
    parser.add_argument("--workers", type=int, default=2, help="runs at once (local Dask workers, one thread each)")
    parser.add_argument("--scheduler", help="run on this Dask cluster instead of a local one")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", help="write the raw results and the summary here")
    parser.add_argument("--list", action="store_true", help="print the suite with its point counts and stop")
    args = parser.parse_args()
    names = list(suite()) if args.problems == "all" else args.problems.split(",")
    unknown = sorted(set(names) - set(suite()))
    if unknown:
        parser.error(f"unknown problem(s) {unknown}; known: {', '.join(suite())}")
    if args.list:
        for name in names:
            p = load(name)
            print(f"{name:22s} {len(p.train):6d} train {len(p.test):6d} test  {p.spec}")
        return
    results = []
    if args.recipe_from:
        earlier = json.loads(Path(args.recipe_from).read_text())["results"]
        results = [r for r in earlier if r["model"] == "recipe" and r["problem"] in names
                   and r["seed"] < args.recipe_seeds]
    todo = tasks(args, names, parse_assignments(args.set), {(r["problem"], r["seed"]) for r in results})
    started, reused = time.perf_counter(), list(results)
    for r in on_dask(run_one, todo, args.workers, args.scheduler):
        results.append(r)
        what = r.get("skipped") or (f"RMSE {r['rmse']:.4f}, {r['epochs']} epochs, {r.get('stop_reason', '')}"
                                    f"{' (capped)' if r.get('capped') else ''}, {r.get('seconds', 0):.1f} s")
        print(f"[{len(results)}/{len(todo) + len(reused)}] {r['problem']} {r['model']} "
              f"{r.get('budget', '')} seed {r['seed']}: {what}", flush=True)
    summary = summarise(results)
    print_tables(summary)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(dict(machine=machine(), args=vars(args), wall=time.perf_counter() - started,
                                                   summary=summary, results=results), indent=1) + "\n")


if __name__ == "__main__":
    main()
