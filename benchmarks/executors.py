"""What an executor costs a training run: the same dfNN fit in the job's thread, in a worker process, and as a
task on a Dask worker (a LocalCluster: one single-threaded worker process on localhost).

Each run trains ``dfnn`` on ``synthetic:curve`` for a fixed number of epochs with a snapshot every 0.5 s, as
the app does. Reported per executor, median over the repeats: the trainer's own training seconds (epochs/s,
what the executor costs while it trains), and the wall time from submission to the final result (what a user
waits: process or task start, data loading, imports in a fresh worker, the relay). The three kinds alternate,
so the machine's drift falls on all of them alike.

Usage: python -m benchmarks.executors [--epochs 400] [--repeats 3] [--json benchmarks/results/executors.json]
"""

from __future__ import annotations

import argparse
import time

from benchmarks.common import machine, median, write_json
from iceviz.runtime.job import JobStatus
from iceviz.training.trainers import training_job
from iceviz.runtime.dask_job import local_client
from iceviz.runtime.worker import warm_up


def one(kind: str, epochs: int, client) -> dict[str, float]:
    start = time.perf_counter()
    job = training_job("dfnn", "synthetic:curve", snapshot_every=0.5, epochs=epochs, isolate=kind == "process",
                       client=client if kind == "dask" else None).start()
    status = job.wait()
    wall = time.perf_counter() - start
    if status is not JobStatus.DONE:
        raise RuntimeError(f"{kind}: {status.value}: {job.error}")
    return {"train_s": job.result.seconds, "wall_s": wall, "epochs_per_s": job.result.epochs / job.result.seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args()
    warm_up("iceviz.training.trainers")
    kinds = ("thread", "process", "dask")
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
    with local_client(1) as client:
        for kind in kinds:  # one untimed run each: imports in the worker, the forkserver, the data cache
            one(kind, 5, client)
        for _ in range(args.repeats):
            for kind in kinds:
                runs[kind].append(one(kind, args.epochs, client))
    summary = {k: {m: round(median([r[m] for r in v]), 3) for m in ("train_s", "wall_s", "epochs_per_s")}
               for k, v in runs.items()}
    base = summary["thread"]["epochs_per_s"]
    for kind, s in summary.items():
        s["speed_vs_thread"] = round(s["epochs_per_s"] / base, 3)
        print(f"{kind:8s} {s['epochs_per_s']:7.1f} epochs/s ({s['speed_vs_thread']:.2f} of in-thread), "
              f"training {s['train_s']:.2f} s, submission to result {s['wall_s']:.2f} s")
    write_json(args.json, {"benchmark": "dfnn on synthetic:curve, fixed epochs, three executors",
                           "epochs": args.epochs, "repeats": args.repeats, "machine": machine(),
                           "summary": summary, "runs": runs})


if __name__ == "__main__":
    main()
