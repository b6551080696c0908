"""What an executor costs a training run: the same dfNN fit in the job's thread, in a worker process, and as a
task on a Dask worker (a LocalCluster: one single-threaded worker process on localhost).

Each run trains ``dfnn`` on ``synthetic:curve`` for a fixed number of epochs with a snapshot every 0.5 s, as
the app does. Then, on the same cluster, the time a snapshot (30,000 floats) takes from the worker to the job
here, for a worker process and a Dask worker. Reported per executor, median over the repeats: the trainer's
own training seconds (epochs/s, what the executor costs while it trains), and the wall time from submission to
the final result (what a user waits: process or task start, data loading, imports in a fresh worker, the
relay). The three kinds alternate, so the machine's drift falls on all of them alike.

Usage: python -m benchmarks.executors [--epochs 400] [--repeats 3] [--json benchmarks/results/executors.json]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from benchmarks.common import machine, median, quantiles, write_json
from iceviz.runtime.job import JobStatus
from iceviz.training.trainers import training_job
from iceviz.runtime.dask_job import DaskJob, local_client
from iceviz.runtime.worker import ProcessJob, warm_up


def one(kind: str, epochs: int, client) -> dict[str, float]:
    start = time.perf_counter()
    job = training_job("dfnn", "synthetic:curve", snapshot_every=0.5, epochs=epochs, isolate=kind == "process",
                       client=client if kind == "dask" else None).start()
    status = job.wait()
    wall = time.perf_counter() - start
    if status is not JobStatus.DONE:
        raise RuntimeError(f"{kind}: {status.value}: {job.error}")
    return {"train_s": job.result.seconds, "wall_s": wall, "epochs_per_s": job.result.epochs / job.result.seconds}


class StampTask:
    """A task that publishes a snapshot every ``every`` seconds for ``seconds``: the wall-clock time it was
    published at and ``floats`` float32 values (a live map's worth), nothing else (picklable, for any worker)."""

    def __init__(self, seconds: float = 6.0, floats: int = 30_000):
        self.seconds, self.floats = seconds, floats

    def __call__(self) -> "StampTask":
        return self

    def fit(self, control) -> None:
        payload = np.zeros(self.floats, dtype=np.float32)
        control.start_clock()
        end = time.perf_counter() + self.seconds
        while time.perf_counter() < end:
            control.tick()
            if control.snapshot_due():
                control.publish((time.time(), payload))
            time.sleep(0.002)


def snapshot_latency(kind: str, client, every: float = 0.25) -> list[float]:
    """Seconds from a snapshot's publication on the worker to its arrival in the job here, for each snapshot
    of a :class:`StampTask` (the job watched every millisecond)."""
    cls = {"process": ProcessJob, "dask": DaskJob}[kind]
    extra = {"client": client} if kind == "dask" else {}
    job = cls("stamps", StampTask(), snapshot_every=every, num_threads=None, **extra).start()
    seen, delays = None, []
    while not job.status.finished:
        snap = job.latest()
        if snap is not None and snap[0] != seen:
            seen = snap[0]
            delays.append(time.time() - seen)
        time.sleep(0.001)
    if job.status is not JobStatus.DONE:
        raise RuntimeError(f"{kind}: {job.status.value}: {job.error}")
    return delays[1:]  # the first waited for the task to start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args()
    os.environ["ICEVIZ_EXECUTOR"] = "processes"  # the "process" kind: isolated jobs in forked worker processes
    warm_up("iceviz.training.trainers")
    kinds = ("thread", "process", "dask")
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
    with local_client(1) as client:
        for kind in kinds:  # one untimed run each: imports in the worker, the forkserver, the data cache
            one(kind, 5, client)
        for _ in range(args.repeats):
            for kind in kinds:
                runs[kind].append(one(kind, args.epochs, client))
        latency = {kind: snapshot_latency(kind, client) for kind in ("process", "dask")}
    summary = {k: {m: round(median([r[m] for r in v]), 3) for m in ("train_s", "wall_s", "epochs_per_s")}
               for k, v in runs.items()}
    for kind, delays in latency.items():
        stats = summary[kind]["snapshot_latency_s"] = quantiles(delays, digits=4)
        print(f"{kind:8s} snapshot worker -> job: median {stats['median'] * 1e3:.1f} ms, "
              f"max {stats['max'] * 1e3:.1f} ms")
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
