"""The nine-model Byrd table as one sweep on Dask: wall time with 1 and 2 local workers, and the table itself.

Runs ``iceviz sweep`` (the same code path: :func:`iceviz.training.sweep.run_sweep` on a LocalCluster of N
single-threaded worker processes) over the nine flux models x seeds on ``byrd-mcor:``, each run under the same
wall-clock budget as ``benchmarks/byrd_table.py``, once per worker count. Reported: the sweep's wall time per
worker count (and the ratio), and per model the mean test RMSE and MAD over seeds of the last sweep, beside the
published figures.

Usage: python -m benchmarks.sweep_byrd [--seeds 0,1,2] [--seconds 20] [--workers 1,2] [--json OUT]
"""

from __future__ import annotations

import argparse
import statistics
import time

from benchmarks.byrd_table import PUBLISHED
from benchmarks.common import machine, write_json
from iceviz.models.registry import model_names
from iceviz.runtime.dask_job import local_client
from iceviz.training.sweep import run_sweep, sweep_runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--json")
    args = parser.parse_args()
    models = model_names("flux")
    runs = sweep_runs(models, ["byrd-mcor:"], [int(s) for s in args.seeds.split(",")])
    walls, rows = {}, []
    for workers in (int(w) for w in args.workers.split(",")):
        with local_client(workers) as client:
            start = time.perf_counter()
            rows = run_sweep(runs, client, workers, {"seconds": args.seconds})
            walls[workers] = round(time.perf_counter() - start, 1)
        failed = [r for r in rows if r["status"] != "done"]
        print(f"{workers} worker(s): {len(runs)} runs in {walls[workers]:.1f} s"
              + (f"; {len(failed)} not done: {failed[0]['error']}" if failed else ""))
    table = {}
    for model in models:
        mine = [r for r in rows if r["model"] == model and r["status"] == "done"]
        table[model] = {"rmse": round(statistics.mean(r["rmse"] for r in mine), 3),
                        "mad": statistics.mean(r["mad"] for r in mine), "runs": len(mine),
                        "published_rmse": PUBLISHED[model][0]}
        print(f"{model:9s} RMSE {table[model]['rmse']:.3f} (published {PUBLISHED[model][0]:.3f}), "
              f"MAD {table[model]['mad']:.2g}")
    write_json(args.json, {"benchmark": "nine flux models x seeds on byrd-mcor as one iceviz sweep",
                           "seconds_per_run": args.seconds, "seeds": args.seeds, "machine": machine(),
                           "wall_s": walls, "table": table, "rows": rows})


if __name__ == "__main__":
    main()
