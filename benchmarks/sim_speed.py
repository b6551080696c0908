"""Simulator cost: seconds per Picard and per Newton iteration of the SSA at about 2k, 10k and 50k nodes.

The analytic shelf ramp (iceviz.sim.verify.Ramp) meshed ever finer; each size
runs a fixed number of iterations of each method with Glen's law (assembly +
sparse solve each; Newton also assembles its Jacobian and line-searches),
repeated, and reports the median seconds per iteration, plus the seconds of
one linear solve with a prescribed viscosity and the mesh time.

Usage: python -m benchmarks.sim_speed [--repeats 3] [--iterations 5] [--json OUT]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks.common import machine, median, write_json
from iceviz.sim.mesh import mesh_outline, rectangle
from iceviz.sim.ssa import Geometry, Rheology, SSASolver
from iceviz.sim.verify import Ramp

AREAS = {"~2k nodes": 8.6e5, "~10k nodes": 1.64e5, "~50k nodes": 3.2e4}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--json")
    args = parser.parse_args()
    ramp = Ramp()
    inflow = lambda p: np.column_stack([np.full(len(p), ramp.u0), np.zeros(len(p))])  # noqa: E731
    rows = []
    for label, area in AREAS.items():
        t0 = time.perf_counter()
        mesh = mesh_outline(*rectangle(0, ramp.length, 0, ramp.width), max_area=area)
        mesh_s = time.perf_counter() - t0
        x = mesh.points[:, 0]
        geometry = Geometry(ramp.thickness(x), np.full(mesh.n_nodes, -3000.0))
        t0 = time.perf_counter()
        solver = SSASolver(mesh)
        setup_s = time.perf_counter() - t0
        per_iteration: dict[str, list[float]] = {"picard": [], "newton": []}
        linear = []
        for _ in range(args.repeats):
            for method, times in per_iteration.items():
                t0 = time.perf_counter()
                result = solver.solve(geometry, Rheology(rate_factor=ramp.rate_factor), inflow, tol=0.0,
                                      max_iter=args.iterations, method=method)
                times.append((time.perf_counter() - t0) / result.iterations)
            t0 = time.perf_counter()
            solver.solve(geometry, Rheology(viscosity=ramp.viscosity(x)), inflow)
            linear.append(time.perf_counter() - t0)
        rows.append(dict(size=label, nodes=mesh.n_nodes, triangles=len(mesh.triangles), mesh_s=round(mesh_s, 3),
                         solver_setup_s=round(setup_s, 3),
                         picard_iteration_s=round(median(per_iteration["picard"]), 4),
                         newton_iteration_s=round(median(per_iteration["newton"]), 4),
                         prescribed_viscosity_solve_s=round(median(linear), 4)))
        print(rows[-1], flush=True)
    write_json(args.json, {"benchmark": "SSA cost per Picard / Newton iteration", "machine": machine(),
                           "repeats": args.repeats, "iterations": args.iterations, "rows": rows})


if __name__ == "__main__":
    main()
