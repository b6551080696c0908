"""Simulator runs: seconds per time step at ~2k / 10k / 50k nodes, a 20-year run, and an ensemble on 1 vs 2 workers.

1. Time steps: the marine glacier (MISMIP+-like, 640 x 80 km) meshed at three
   resolutions; from its initial state, after one cold momentum solve, a few
   full steps (transport + warm-started momentum solve) of 0.5 a each; the
   median seconds per step (a run's wall time over its steps: it includes the
   run's one warm-started starting solve) and the momentum iterations per step,
   for Newton and, up to ~10k nodes, Picard side by side (at ~50k nodes Picard
   steps take minutes: --picard-50k to measure them anyway).
2. The default scenario (marine glacier, ~2.3k nodes), 20 years at 30 m/a
   of melt from its cached spin-up (the spin-up's own time is reported too).
3. An ensemble of the default scenario over melt 0:30:10 (4 runs) with 1 and
   with 2 worker processes, same runs, same machine.

Usage: python -m benchmarks.sim_runs [--repeats 3] [--steps 4] [--json OUT]
       [--skip-50k] [--picard-50k] [--ensemble-years 10]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

from benchmarks.common import machine, median, write_json
from iceviz.sim.ensemble import run_ensemble
from iceviz.sim.model import Forcing, RunSettings, Simulator
from iceviz.sim.scenarios import get_scenario
from iceviz.sim.spinup import spun_up

SIZES = {"~2k nodes": (10e3, 4e3), "~10k nodes": (4.8e3, 1.9e3), "~50k nodes": (2.15e3, 0.86e3)}
"""(resolution, refined_resolution) [m] of the marine glacier that give about that many nodes."""


def step_costs(resolution: float, refined: float, steps: int, repeats: int, method: str) -> dict:
    simulator = Simulator(get_scenario("marine-glacier", resolution=resolution, refined_resolution=refined))
    settings = RunSettings(years=steps * 0.5, snapshot_every=steps * 0.5, max_dt=0.5, method=method)
    start = simulator.initial_state()
    cold = simulator.solve_velocity(start.h, None, settings)
    start.u, start.v = cold.u, cold.v
    per_step, iterations = [], []
    for _ in range(repeats):
        run = simulator.run(Forcing(melt=30.0), settings, state=start)
        per_step.append((run.wall_time) / len(run.steps["t"]))
        iterations.append(float(np.mean(run.steps["iterations"])))
    return dict(nodes=simulator.mesh.n_nodes, method=method, step_s=round(median(per_step), 4),
                iterations_per_step=round(median(iterations), 2), cold_iterations=cold.iterations)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--skip-50k", action="store_true")
    parser.add_argument("--picard-50k", action="store_true")
    parser.add_argument("--ensemble-years", type=float, default=10.0)
    parser.add_argument("--json")
    args = parser.parse_args()
    out: dict = {"benchmark": "simulator runs", "machine": machine(), "repeats": args.repeats}

    rows = []
    for label, (resolution, refined) in SIZES.items():
        if args.skip_50k and label.startswith("~50k"):
            continue
        big = label.startswith("~50k")
        for method in ("newton", "picard") if (not big or args.picard_50k) else ("newton",):
            row = dict(size=label, **step_costs(resolution, refined, args.steps, args.repeats, method))
            rows.append(row)
            print(row, flush=True)
    out["time_steps"] = rows

    # a fresh spin-up cache (workers inherit it): the spin-up is timed once, then every run starts from it
    os.environ["ICEVIZ_CACHE"] = tempfile.mkdtemp(prefix="iceviz-bench-")
    simulator = Simulator(get_scenario("marine-glacier"))
    t0 = time.perf_counter()
    state, _ = spun_up(simulator)
    spin_s = time.perf_counter() - t0
    walls, runs = [], []
    for _ in range(args.repeats):
        run = simulator.run(Forcing(melt=30.0), RunSettings(years=20.0), state=state)
        walls.append(run.wall_time)
        runs.append(run)
    last = runs[-1]
    out["twenty_years"] = dict(
        nodes=simulator.mesh.n_nodes, spin_up_years=simulator.scenario.spin_up_years,
        spin_up_s=round(spin_s, 2), run_s=round(median(walls), 2), runs_s=[round(w, 2) for w in walls],
        steps=len(last.steps["t"]), iterations=int(last.steps["iterations"].sum()),
        grounding_line_km=[round(float(g) / 1e3, 2) for g in last.diagnostics["grounding_line"][[0, -1]]],
        budget_relative_residual=last.budget.relative_residual)
    print(out["twenty_years"], flush=True)

    ensemble = {}
    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            manifest = run_ensemble("marine-glacier", {}, {"melt": [0.0, 10.0, 20.0, 30.0]},
                                    RunSettings(years=args.ensemble_years), tmp, workers=workers)
            ensemble[workers] = dict(wall_s=round(time.perf_counter() - t0, 2),
                                     runs=len(manifest["runs"]),
                                     failed=sum(r["status"] != "done" for r in manifest["runs"]))
        print(workers, ensemble[workers], flush=True)
    out["ensemble"] = dict(years=args.ensemble_years, melt=[0, 10, 20, 30], one_worker=ensemble[1],
                           two_workers=ensemble[2], speedup=round(ensemble[1]["wall_s"] / ensemble[2]["wall_s"], 2))
    print(out["ensemble"], flush=True)
    write_json(args.json, out)


if __name__ == "__main__":
    main()
