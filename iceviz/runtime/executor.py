"""Where a server's background jobs run (its executor), chosen once per process.

- ``dask`` (the default): a Dask cluster. Without a scheduler address, an
  embedded ``LocalCluster`` started on first use (no set-up): single-threaded
  worker processes on 127.0.0.1, one per training slot (one per core but one)
  and one more for the quick queue (region builds), so at least two, which
  lets the lesson's pair run side by side on a two-core machine; they run at a
  lower priority than the server. With ``$ICEVIZ_SCHEDULER`` (or
  :func:`configure`), an existing cluster instead (a ``dask scheduler`` /
  ``dask worker`` pair, dask-jobqueue, Kubernetes), whose workers give the
  slots.
- ``processes``: worker processes forked from a forkserver of this process
  (:mod:`iceviz.runtime.worker`), one per job.

``$ICEVIZ_EXECUTOR`` picks one (``dask`` or ``processes``). An embedded
cluster that cannot start (no ``distributed``, no free port) falls back to
worker processes, and :func:`describe` says why.
"""

from __future__ import annotations

import atexit
import importlib
import logging
import math
import os
import threading
import time
from typing import Any

from iceviz.runtime.dask_job import SCHEDULER_VAR, DaskJob, scheduler_address, scheduler_client
from iceviz.runtime.job import Job, lower_thread_priority
from iceviz.runtime.queue import default_slots, resize_server_queue
from iceviz.runtime.worker import ProcessJob, warm_up

EXECUTOR_VAR = "ICEVIZ_EXECUTOR"
EXECUTORS = ("dask", "processes")
QUIET_CLUSTER = {
    "distributed.worker.profile.enabled": False,
    "distributed.scheduler.work-stealing": False,
    "distributed.admin.tick.interval": "500ms",
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.worker.memory.monitor-interval": "1s",
}
"""Dask settings of an embedded cluster: no statistical profiler sampling every task's stack every 10 ms, no work
stealing (a job is one long task per worker), and the event-loop, system and memory monitors at a slower pace.
An idle default cluster took 6 % of a core in the server's process here; training beside a served page ran at
0.76 of the speed in a worker process forked by the server (see BENCHMARKS.md for the figures with these)."""
DESCRIBE_EVERY_S = 5.0
WORKER_NICE = 10
"""How much lower than the server's the embedded cluster's workers' priority is (Linux niceness), so that
clicks are served first."""

_lock = threading.Lock()
_client: Any = None
_cluster: Any = None
_address = ""
"""The scheduler given to :func:`configure` ('' : the environment's, else an embedded cluster)."""
_prepared = False
_described = (-math.inf, "")
"""(when, what) :func:`describe` last said."""
_fallback = ""
"""Why an embedded cluster could not start ('' : it did, or none was tried)."""
_log = logging.getLogger(__name__)


def executor_name() -> str:
    """The executor this process uses: ``$ICEVIZ_EXECUTOR`` (``dask`` by default), ``processes`` after an
    embedded cluster failed to start."""
    name = os.environ.get(EXECUTOR_VAR, "").strip().lower() or "dask"
    if name not in EXECUTORS:
        raise ValueError(f"${EXECUTOR_VAR}={name!r}: use one of {', '.join(EXECUTORS)}")
    return "processes" if _fallback else name


def configure(scheduler: str = "") -> None:
    """Use the Dask cluster whose scheduler is at ``scheduler`` (before the first job; '' : the default)."""
    global _address
    with _lock:
        if _client is not None and scheduler != _address:
            raise RuntimeError("the executor is already running; configure it before the first job")
        _address = scheduler


def cluster_workers() -> int:
    """Worker processes of an embedded cluster: one per training slot (a core each, one core left to the
    server), at least two (the lesson's pair runs side by side), plus one for short jobs (a region build never
    waits behind trainings)."""
    return max(2, default_slots()) + 1


def gpu_lane(worker: int, gpus: int) -> int | None:
    """The GPU (index) the embedded cluster's worker number ``worker`` trains on: the workers take the
    ``gpus`` GPUs in turn, so several share each; None without a GPU."""
    return worker % gpus if gpus > 0 else None


def _set_up_worker(dask_worker: Any = None) -> None:
    """On each worker of an embedded cluster: a lower priority than the server's (its event loop thread: the
    threads it starts inherit it) and its GPU lane, when the machine has GPUs (a job's ``auto`` device is then
    that GPU). The priority first: the import of torch that follows (seconds of CPU in each worker, once, so
    that no job waits for it; :func:`prepare` then imports what jobs need) yields to a newcomer's first clicks."""
    lower_thread_priority(WORKER_NICE)
    import torch

    lane = gpu_lane(int(dask_worker.name), torch.cuda.device_count() if torch.cuda.is_available() else 0)
    if lane is not None:
        torch.cuda.set_device(lane)


def server_client() -> Any:
    """The ``distributed.Client`` this process's jobs are submitted to, started on first use (an embedded
    cluster, or the one at the configured scheduler); None when the executor is ``processes``. ValueError when
    a configured scheduler cannot be reached."""
    global _client, _cluster, _fallback
    if executor_name() != "dask":
        return None
    with _lock:
        if _client is not None or _fallback:  # started, or failed to start, by another thread meanwhile
            return _client
        address = scheduler_address(_address)
        if address:
            _client = scheduler_client(address)
            return _client
        try:
            import dask
            from distributed import Client, LocalCluster

            dask.config.set(QUIET_CLUSTER)  # here (the scheduler's process); the nannies pass it to the workers
            # Dask's comings and goings (clients, workers, closing comms: with tracebacks at shutdown) are not
            # the app's news: warnings and errors only, here and in the workers (they read this at import)
            logging.getLogger("distributed").setLevel(logging.WARNING)
            os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
            _cluster = LocalCluster(n_workers=cluster_workers(), threads_per_worker=1, processes=True,
                                    host="127.0.0.1", dashboard_address=None)
            _client = Client(_cluster, set_as_default=False)
            _client.run(_set_up_worker)
            atexit.register(shutdown)  # before distributed's own exit handlers (last in, first run): in order
        except Exception as err:  # noqa: BLE001 - anything that stops the cluster: serve with worker processes
            _fallback = f"an embedded Dask cluster could not start ({type(err).__name__}: {err})"
            _log.warning("%s; jobs run in worker processes of this server instead", _fallback)
            if _cluster is not None:
                _cluster.close()
            _client = _cluster = None
            return None
        return _client


def isolated_job_class() -> type[Job]:
    """The job class that runs a task off this process with the current executor (DaskJob or ProcessJob)."""
    return DaskJob if server_client() is not None else ProcessJob


def server_slots() -> int | None:
    """How many jobs the server's queue may run at once: an existing cluster's worker threads; None (one per
    core but one) otherwise."""
    if executor_name() == "dask" and (_address or os.environ.get(SCHEDULER_VAR)):
        try:
            client = server_client()
        except ValueError:  # unreachable: every job will fail with the reason
            return None
        if client is not None:
            return max(1, _workers(client)[1])
    return None


def _workers(client: Any) -> tuple[int, int]:
    """(workers, worker threads) of the cluster ``client`` is on (it asks the scheduler)."""
    info = client.scheduler_info().get("workers", {}).values()
    return len(info), sum(int(w.get("nthreads", 1)) for w in info)


def prepare(*preload: str) -> None:
    """Get the executor ready ahead of the first job, in the background: start the embedded cluster (or the
    forkserver) and import the modules ``preload`` names on its workers (torch: seconds). Once per process."""
    global _prepared
    with _lock:
        if _prepared:
            return
        _prepared = True

    def start() -> None:
        try:
            client = server_client()
        except ValueError as err:  # an unreachable scheduler: the first job fails with the same words
            _log.warning("%s", err)
            return
        if client is None:
            warm_up(*preload)
            return
        for name in preload:
            client.run(importlib.import_module, name)

    threading.Thread(target=start, name="iceviz-executor-start", daemon=True).start()


def describe() -> str:
    """One line for people: where this server's jobs run (the cluster's workers counted at most every
    ``DESCRIBE_EVERY_S``: it asks the scheduler). On an existing cluster the server's queue follows its worker
    threads then (a worker lost, or one more started)."""
    global _described
    name = executor_name()
    if name == "processes":
        why = f" ({_fallback})" if _fallback else ""
        return f"worker processes of this server{why}"
    if _client is None:
        return "a Dask cluster (starting)"
    if time.monotonic() - _described[0] >= DESCRIBE_EVERY_S:
        workers, threads = _workers(_client)
        text = (f"an embedded Dask cluster of {workers} worker processes" if _cluster is not None
                else f"the Dask cluster at {_client.scheduler.address} ({workers} workers)")
        if _cluster is None and workers:
            resize_server_queue(threads)
        _described = (time.monotonic(), text)
    return _described[1]


def shutdown() -> None:
    """Close the client and an embedded cluster (tests; a server's exit closes them too)."""
    global _client, _cluster, _fallback, _prepared, _described
    with _lock:
        if _client is not None:
            _client.close()
        if _cluster is not None:
            _cluster.close()
        _client = _cluster = None
        _fallback, _prepared, _described = "", False, (-math.inf, "")
