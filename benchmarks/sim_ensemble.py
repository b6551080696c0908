"""Ensembles on the runtime: the same runs serially, on a local process pool, on local Dask clusters of one and
two workers, and on a two-worker "cluster" started with the ``dask`` command-line tools on 127.0.0.1.

The marine glacier (the default ensemble's scenario, 2,345 nodes) under ``--runs`` melt rates for ``--years``
each, from its cached spin-up (spun up once before timing). Reported per executor: the ensemble's wall time
(``run_ensemble``: every run and its file), the time to start the executor (the pool's processes start inside
the ensemble's wall time; a Dask cluster is started before it and reported apart), and the speed-up over the
serial runs. Every executor must give the same runs (checked: the final thickness of every run agrees to the
last bit).

Usage: python -m benchmarks.sim_ensemble [--runs 16] [--years 5] [--json benchmarks/results/sim_ensemble.json]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import command_line_cluster, machine, write_json
from iceviz.runtime.dask_job import local_client
from iceviz.sim.ensemble import DEFAULT_SCENARIO, run_ensemble
from iceviz.sim.model import RunSettings, Simulator
from iceviz.sim.scenarios import get_scenario
from iceviz.sim.spinup import spun_up
from iceviz.sim.ugrid import read_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=16)
    parser.add_argument("--years", type=float, default=5.0)
    parser.add_argument("--json")
    args = parser.parse_args()
    grid = {"melt": [float(m) for m in np.linspace(0.0, 75.0, args.runs)]}
    settings = RunSettings(years=args.years, snapshot_every=0.5)
    spun_up(Simulator(get_scenario(DEFAULT_SCENARIO)))  # the cached spin-up, outside every timing
    executors = [("serial (this process)", "serial", 1), ("process pool, 2 workers", "pool", 2),
                 ("Dask LocalCluster, 1 worker", "local", 1), ("Dask LocalCluster, 2 workers", "local", 2),
                 ("dask scheduler + 2 dask workers (127.0.0.1)", "command line", 2)]
    root = Path(tempfile.mkdtemp(prefix="iceviz-sim-ensemble-"))
    results, finals = [], {}
    try:
        for name, kind, workers in executors:
            out = root / f"e{len(results)}"
            start = time.perf_counter()
            if kind in ("serial", "pool"):
                started = 0.0
                manifest = run_ensemble(DEFAULT_SCENARIO, {}, grid, settings, out, workers=workers)
            else:
                cluster = local_client(workers) if kind == "local" else command_line_cluster(workers, root / "log")
                with cluster as client:
                    started = time.perf_counter() - start
                    manifest = run_ensemble(DEFAULT_SCENARIO, {}, grid, settings, out, client=client)
            failed = [r for r in manifest["runs"] if r["status"] != "done"]
            if failed:
                raise RuntimeError(f"{name}: {len(failed)} run(s) failed: {failed[0].get('error')}")
            finals[name] = [read_run(out / r["file"]).fields["h"][-1] for r in manifest["runs"]]
            results.append(dict(executor=name, wall_s=manifest["wall_time"], start_s=started,
                                workers=manifest["workers"], runs=len(manifest["runs"])))
            print(f"{name}: {manifest['wall_time']:.1f} s for {len(manifest['runs'])} runs "
                  f"(+{started:.1f} s to start)", flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    reference = next(iter(finals.values()))
    for name, hs in finals.items():
        if not all(np.array_equal(a, b) for a, b in zip(reference, hs)):
            raise RuntimeError(f"{name} gave other runs than the serial ones")
    serial = results[0]["wall_s"]
    for r in results:
        r["speedup"] = serial / r["wall_s"]
    write_json(args.json, dict(benchmark="sim_ensemble", scenario=DEFAULT_SCENARIO, runs=args.runs, years=args.years,
                               machine=machine(), results=results, identical_runs=True))


if __name__ == "__main__":
    main()
