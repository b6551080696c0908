"""Viscosity PINN: time-to-accuracy on a shelf with known viscosity, several seeds, one CPU thread.

For each seed, trains ``viscosity-pinn`` for ``--seconds`` of wall time and
records the viscosity's relative L2 error (on 5,000 fixed cells) every 50
steps against training seconds, then the final scores on every cell: μ
overall, interior and within 5 km of the shelf's edge; u, v, h; residuals.
The reference method's recorded points on SynData_exp1 (science page §2) are
printed beside ours. The least-squares preview is timed and scored in the
same run.

With ``--steps N`` each run stops after N steps instead of a wall-clock
budget: the scores then do not depend on how busy the machine is (compare
settings that way, then check the chosen one at its wall-clock budget).

Each seed is a task on a local Dask cluster of ``--workers`` single-threaded workers (one by default: the seeds
one after the other; two runs side by side share the 2 cores as two benchmarks would), or on the cluster at
``--scheduler``.

Usage: python -m benchmarks.viscosity_pinn [--data SPEC] [--seeds 0,1,2] [--seconds 300 | --steps N]
       [--workers 1] [--scheduler ADDRESS] [--set KEY=VALUE ...] [--json OUT] [--plot PNG]
       python -m benchmarks.viscosity_pinn --replot OUT.json --plot PNG
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from benchmarks.common import REPO, machine, median, on_dask, parse_run_args, write_json
from iceviz.data.specs import load_problem
from iceviz.runtime.job import Control
from iceviz.training.trainers import make_trainer
from iceviz.training.viscosity_trainer import relative_error

SYNDATA = f"diffice:{REPO.parent / 'shared' / 'data' / 'diffice' / 'SynData_exp1.mat'}"
REFERENCE_POINTS = [(158.0, 0.45), (294.0, 0.126), (628.0, 0.112)]
"""(seconds, viscosity error) of DIFFICE_jax on SynData_exp1, these CPUs (science page §2)."""
CHECKPOINTS = (30, 60, 120, 180, 240, 300)


def error_at(history: list[dict], seconds: float) -> float | None:
    """The last recorded viscosity error at or before ``seconds`` of training."""
    before = [r["mu_rel_error"] for r in history if "mu_rel_error" in r and r["seconds"] <= seconds]
    return before[-1] if before else None


def plot(results: dict, path: str) -> None:
    """The viscosity error against training seconds, one line per seed, and the reference's recorded points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for run in results["runs"]:
        t, e = zip(*run["curve"])
        ax.plot(t, 100 * np.array(e), lw=1.4, label=f"iceviz, seed {run['seed']} ({run['ms_per_step']:.0f} ms/step)")
    if "diffice" in results["data"] and "SynData" in results["data"]:
        t, e = zip(*REFERENCE_POINTS)
        ax.plot(t, 100 * np.array(e), "ks--", ms=7, label="DIFFICE_jax reference (science page)")
    ax.axhline(5, color="grey", lw=0.8, ls=":")
    ax.set(yscale="log", xlabel="training time [s], one CPU thread", ylabel="relative L2 error of μ [%]",
           title=f"Time to accuracy: {results['data'].split('/')[-1]}")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def run_seed(task: dict) -> dict:
    """One seed's run (in a Dask worker, on one torch thread): its scores, its viscosity error at the
    :data:`CHECKPOINTS` and its error curve."""
    import torch

    torch.set_num_threads(1)
    trainer = make_trainer("viscosity-pinn", load_problem(task["data"]), device="cpu", seed=task["seed"],
                           **task["budget"], **task["overrides"])
    control = Control(snapshot_every=None, history_size=100_000)
    result = trainer.fit(control)
    history = control.history()
    curve = [(round(r["seconds"], 2), r["mu_rel_error"]) for r in history if "mu_rel_error" in r]
    spent = result.seconds if task["steps"] else task["seconds"]
    at = {str(s): error_at(history, s) for s in CHECKPOINTS if s <= spent}
    m = result.metrics
    print(f"seed {task['seed']}: {result.steps} steps in {result.seconds:.0f} s; " +
          ", ".join(f"{k} {100 * v:.2f} %" for k, v in m.items() if k.endswith("rel_error")) +
          f"; residual {m['residual']:.3g}; at " + ", ".join(f"{s} s {100 * e:.1f} %" for s, e in at.items() if e),
          flush=True)
    return dict(seed=task["seed"], steps=result.steps, seconds=result.seconds,
                ms_per_step=1000 * result.seconds / max(1, result.steps), metrics=m, error_at=at,
                curve=curve[::max(1, len(curve) // 200)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=SYNDATA)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--steps", type=int, help="a step budget instead of --seconds")
    parser.add_argument("--workers", type=int, default=1, help="seeds at once (local Dask workers, one thread each)")
    parser.add_argument("--scheduler", help="run on this Dask cluster instead of a local one")
    parser.add_argument("--plot", help="draw the time-to-accuracy curves to this PNG")
    parser.add_argument("--replot", help="only redraw the plot from this results JSON")
    args, overrides = parse_run_args(parser)
    if args.replot:
        plot(json.loads(Path(args.replot).read_text()), args.plot)
        return
    problem = load_problem(args.data)

    preview = {}
    if problem.has_truth:
        from iceviz.physics.viscosity_preview import least_squares_viscosity

        t = time.perf_counter()
        mu = least_squares_viscosity(problem)
        preview = dict(seconds=time.perf_counter() - t, mu_rel_error=relative_error(mu, problem.velocity.fields["mu"]))
        print(f"least-squares preview: {100 * preview['mu_rel_error']:.2f} % in {preview['seconds']:.1f} s", flush=True)

    budget = dict(epochs=args.steps, seconds=None) if args.steps else dict(epochs=1_000_000, seconds=args.seconds)
    tasks = [dict(data=args.data, seed=int(s), budget=budget, overrides=overrides, steps=args.steps,
                  seconds=args.seconds) for s in args.seeds.split(",")]
    runs = sorted(on_dask(run_seed, tasks, args.workers, args.scheduler), key=lambda r: r["seed"])
    summary = {}
    for key in runs[0]["metrics"]:
        values = [r["metrics"][key] for r in runs]
        summary[key] = dict(median=median(values), worst=float(np.max(values)), best=float(np.min(values)))
    results = dict(benchmark="viscosity_pinn", data=args.data, seconds=None if args.steps else args.seconds,
                   steps=args.steps, overrides=overrides,
                   machine=machine(), reference_points=REFERENCE_POINTS, preview=preview, summary=summary, runs=runs)
    write_json(args.json, results)
    if args.plot:
        plot(results, args.plot)


if __name__ == "__main__":
    main()
