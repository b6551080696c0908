"""Emulators of the simulator on the default ensemble: accuracy at equal epochs or equal wall-clock, and speed-up.

Every model trains in this process, one after the other, on the same ensemble, split and seed, with
``--threads`` torch threads. The speed-up is measured right after each model's training, side by side:
in each of ``--speed-rounds`` rounds the simulator re-runs the first held-out forcing from the cached
spin-up, here, in the same process, and the trained emulator predicts the same snapshots (median of
three passes); the figure is the median over the rounds of simulator ÷ emulator wall time.

    python -m benchmarks.emulators --epochs 40 --json benchmarks/results/emulators_epochs.json \\
        --plot benchmarks/results/emulators_epochs.png
    python -m benchmarks.emulators --epochs 40 --models egcn,gcn,mlp --seeds 1,2,3,4 \\
        --json benchmarks/results/emulators_epochs_seeds.json
    python -m benchmarks.emulators --seconds 200 --models mlp,gcn,cnn,egcn \\
        --json benchmarks/results/emulators_seconds.json
    python -m benchmarks.emulators --epochs 40 --models mlp,gcn --seeds 0,1,2 \\
        --set weight_decay=0.05 --set average=0.99 --json benchmarks/results/emulators_epochs_regularised.json
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np
import torch

from benchmarks.common import machine, write_json
from iceviz.cli import parse_assignments
from iceviz.data.specs import load_problem
from iceviz.models.registry import get_model
from iceviz.sim.model import Forcing, RunSettings, Simulator
from iceviz.sim.scenarios import get_scenario
from iceviz.sim.spinup import spun_up
from iceviz.training.emulator_metrics import break_even
from iceviz.runtime.job import Control
from iceviz.training.trainers import make_trainer

MODELS = ("persistence", "mlp", "gcn", "cnn", "egcn", "egcn-seed")
"""``egcn-seed`` is ``egcn`` with the seed's layer (``layer=seed``)."""
KEYS = ("rmse_h", "rmse_v", "rmse_vx", "rmse_vy", "r", "r_change_h", "r_change_v", "gl_error_final",
        "vaf_rel_error_final", "best_epoch", "val_loss", "per_forcing")


def simulator_seconds(problem: Any, run: int) -> tuple[float, float]:
    """Wall time [s] of re-simulating ``run`` here (from the cached spin-up), and the largest thickness
    difference [m] to the stored run (a check that the rerun is the same computation)."""
    simulator = Simulator(get_scenario(problem.scenario, **problem.overrides))
    state, _ = spun_up(simulator)
    forcing = Forcing(**{k: float(v) for k, v in zip(problem.forcing_keys, problem.forcing[run])})
    t0 = time.perf_counter()
    result = simulator.run(forcing, RunSettings(**problem.settings), state=state)
    seconds = time.perf_counter() - t0
    return seconds, float(np.abs(result.fields["h"] - problem.fields["h"][run]).max())


def train(problem: Any, name: str, epochs: int | None, seconds: float | None, seed: int,
          overrides: dict[str, Any] | None = None, speed_rounds: int = 1) -> dict[str, Any]:
    model, extra = ("egcn", dict(layer="seed")) if name == "egcn-seed" else (name, {})
    budget = dict(epochs=epochs or 1_000_000, seconds=seconds) if name != "persistence" else dict(epochs=1)
    if name != "persistence":
        extra.update(overrides or {})
    trainer = make_trainer(model, problem, device="auto", seed=seed, **budget, **extra)
    control = Control(snapshot_every=None)
    result = trainer.fit(control)
    m = result.metrics
    history = control.history()
    out = dict(model=name, params={k: v for k, v in trainer.params.param.values().items() if k != "name"},
               epochs=result.epochs, train_seconds=result.seconds,
               seconds_per_epoch=result.seconds / result.epochs if result.epochs else 0.0,
               parameters=sum(p.numel() for p in trainer.model.parameters()),
               curve=[dict(epoch=h["epoch"], seconds=h["seconds"], loss_val=h["loss_val"]) for h in history],
               rmse_h_t=rmse_over_time(control.latest().fields), **{k: m[k] for k in KEYS if k in m})
    out.update(speed(trainer, problem, speed_rounds))
    out["break_even_rollouts"] = break_even(out["train_seconds"], out["simulator_seconds"], out["emulator_seconds"])
    return out


def speed(trainer: Any, problem: Any, rounds: int) -> dict[str, Any]:
    """Speed-up over the simulator for the first held-out run, measured side by side: per round, one simulator
    re-run and then the trained emulator's prediction of the same snapshots (median of three passes)."""
    run = int(problem.split["test"][0])
    sim, emu = [], []
    for _ in range(rounds):
        sim.append(simulator_seconds(problem, run)[0])
        emu.append(trainer.emulator_seconds(run, repeats=3))
    ratios = np.array(sim) / np.array(emu)
    return dict(speedup=float(np.median(ratios)), speedup_rounds=ratios.tolist(), simulator_seconds=float(np.median(sim)),
                emulator_seconds=float(np.median(emu)))


def rmse_over_time(fields: Any) -> list[float]:
    """Thickness RMSE at every snapshot time over the held-out runs, from the final snapshot's maps."""
    return [float(v) for v in np.sqrt((fields["rmse_h_t"].values ** 2).mean(axis=0))]


def plot(payload: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    times = payload["times"]
    colour = {name: f"C{i}" for i, name in enumerate(MODELS)}  # one colour per model in both panels
    for r in payload["results"]:
        if r["seed"] != payload["results"][0]["seed"]:
            continue  # one seed drawn
        c = colour.get(r["model"])
        left.plot(times, r["rmse_h_t"], marker=".", color=c, label=f"{r['model']} ({r['rmse_h']:.1f} m)")
        if r["curve"]:
            right.plot([p["seconds"] for p in r["curve"]], [p["loss_val"] for p in r["curve"]], color=c,
                       label=r["model"])
    left.set(xlabel="model year", ylabel="thickness RMSE over the held-out runs (m)",
             title=f"{payload['mode']}: error over a 20-year rollout")
    right.set(xlabel="training seconds", ylabel="validation MSE (scaled change)", yscale="log",
              title="validation error against wall-clock time")
    left.legend(fontsize=8)
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="sim:default", help="ensemble spec (default: the default ensemble)")
    parser.add_argument("--models", default=",".join(MODELS))
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--epochs", type=int, help="equal epochs for every model")
    group.add_argument("--seconds", type=float, help="equal wall-clock training budget for every model [s]")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds, each model trained once per seed")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a hyper-parameter override for every trained model, e.g. average=0.99 (repeatable)")
    parser.add_argument("--speed-rounds", type=int, default=1,
                        help="simulator and emulator timings side by side per trained model (median ratio)")
    parser.add_argument("--json")
    parser.add_argument("--plot")
    args = parser.parse_args()
    overrides = parse_assignments(args.set)
    torch.set_num_threads(args.threads)
    problem = load_problem(args.data)
    for name in args.models.split(","):
        get_model("egcn" if name == "egcn-seed" else name)
    test_run = int(problem.split["test"][0])
    sim_seconds, rerun_diff = simulator_seconds(problem, test_run)
    results = []
    for seed in (int(s) for s in args.seeds.split(",")):
        for name in args.models.split(","):
            r = dict(train(problem, name, args.epochs, args.seconds, seed, overrides, args.speed_rounds), seed=seed)
            results.append(r)
            print(f"{name} (seed {seed}): {r['epochs']} epochs in {r['train_seconds']:.0f} s, rmse_h "
                  f"{r['rmse_h']:.2f} m, rmse_v {r['rmse_v']:.2f} m/a, speed-up {r['speedup']:.0f}x", flush=True)
    mode = f"{args.epochs} epochs each" if args.epochs else f"{args.seconds:g} s each"
    payload = dict(benchmark="emulators", mode=mode, data=args.data, overrides=overrides, machine=machine(),
                   ensemble=dict(runs=problem.n_runs, nodes=problem.mesh.n_nodes, snapshots=len(problem.times),
                                 years=float(problem.times[-1]), split={k: [problem.label(i) for i in v]
                                                                        for k, v in problem.split.items()},
                                 simulator_dt_mean=problem.mean_dt, max_dt=problem.settings["max_dt"]),
                   simulator=dict(run=problem.label(test_run), seconds=sim_seconds, rerun_max_h_difference=rerun_diff,
                                  recorded_seconds=float(problem.wall_time[test_run])),
                   times=[float(t) for t in problem.times], results=results)
    write_json(args.json, payload)
    if args.plot:
        plot(payload, args.plot)


if __name__ == "__main__":
    main()
