"""Training on Dask distributed: the same :class:`~iceviz.runtime.job.Job`, its trainer on a Dask worker.

A :class:`DaskJob` submits one task to a Dask cluster (an existing one named by
its scheduler's address, e.g. ``tcp://10.0.0.5:8786``, or any
``distributed.Client``). The task builds the trainer on the worker and trains
it; the job's thread here relays what it sends, exactly as for a worker
process (:func:`iceviz.runtime.worker.relay`):

- worker -> here, through a ``distributed.Queue``: history records (batched),
  snapshots, the device, and how it ended. Measured on this machine (one local
  worker): a snapshot of 2,500 to 30,000 floats arrives in a median 2.6-3.0 ms
  (``distributed``'s structured events, ``log_event`` / ``subscribe_topic``,
  took 1.7-2.4 ms: both far below a snapshot period);
- here -> worker: pause, resume and cancel through two ``distributed.Event``
  objects (a set event is seen by the task in 1.6 ms), which the trainer looks
  at between its steps through a cache, so that it asks the scheduler at most
  every ``CHECK_EVERY_S``.

A worker that dies mid-task: Dask runs the task again on another worker (a
training restarts from its beginning; the job forgets the first attempt's
history and counts it in :attr:`Job.restarts`), and fails it with the
scheduler's words after too many; a cluster left without any worker fails the
job after ``WORKERLESS_S``.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import time
import uuid
from collections import deque
from typing import Any, Callable, Iterator

from iceviz.runtime.job import Job
from iceviz.runtime.worker import WorkerFailed, relay, run_and_report

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
"""glibc's ``mallopt`` parameters."""
TRIM_THRESHOLD = 128 * 2**20
MMAP_THRESHOLD = 32 * 2**20
"""What :func:`keep_freed_memory` sets: freed heap kept up to 128 MiB; arrays below 32 MiB (the most glibc's own
dynamic threshold reaches) from the heap rather than from fresh mmaps."""
CHECK_EVERY_S = 0.1
"""How often a trainer on a Dask worker asks the scheduler whether it was paused or cancelled [s]."""
WORKERLESS_S = 30.0
"""A job whose cluster has had no worker this long fails (a task would otherwise wait forever) [s]."""
RECEIVE_EVERY_S = (0.02, 0.1)
"""How often the job's thread asks the queue for new messages while there are none: first, and at most
(1.5 times less often after each empty answer) [s]."""
SCHEDULER_VAR = "ICEVIZ_SCHEDULER"


def keep_freed_memory() -> None:
    """Undo, in this worker process, the trimming Dask's nanny asks of glibc for every worker it starts
    (``MALLOC_TRIM_THRESHOLD_=65536`` in their environment, distributed's ``nanny.pre-spawn-environ``): with it
    glibc stops adapting its mmap threshold, so every array above 128 KiB is mapped and unmapped again. Measured
    on this machine: a 5-year run of the default glacier took 14-15 s with it against 3.2 s without; these
    thresholds gave 2.9 s. A no-op where the C library has no ``mallopt``."""
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    except (OSError, AttributeError):
        pass


class CachedEvent:
    """A ``distributed.Event`` by name, whose ``is_set`` asks the scheduler at most every ``CHECK_EVERY_S``
    (a trainer calls it between every step); ``set``, ``clear`` and ``wait`` go straight to it. Pickled by
    name, so the worker's copy is the same event. ``client``: a function giving the client to use when the
    event is first needed (None: the worker's, or the default client)."""

    def __init__(self, name: str, client: Callable[[], Any] | None = None):
        self.name, self._client = name, client
        self._event: Any = None
        self._value = False
        self._asked = -math.inf

    def _get(self) -> Any:
        if self._event is None:
            from distributed import Event

            self._event = Event(self.name, client=self._client() if self._client else None)
        return self._event

    def is_set(self) -> bool:
        if time.monotonic() - self._asked >= CHECK_EVERY_S:
            self._value, self._asked = bool(self._get().is_set()), time.monotonic()
        return self._value

    def set(self) -> None:
        self._get().set()
        self._value, self._asked = True, time.monotonic()

    def clear(self) -> None:
        self._get().clear()
        self._value, self._asked = False, time.monotonic()

    def wait(self, timeout: float | None = None) -> bool:
        self._value = bool(self._get().wait(timeout))
        self._asked = time.monotonic()
        return self._value

    def __getstate__(self) -> dict[str, Any]:
        return {"name": self.name}  # on the worker, its own client

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["name"])


class WorkerWatch:
    """Whether a cluster has been without any worker for ``WORKERLESS_S`` (asked at most every 2 s)."""

    def __init__(self, client: Any):
        self.client = client
        self._asked = -math.inf
        self._since: float | None = None

    def too_long(self) -> bool:
        now = time.monotonic()
        if now - self._asked >= 2.0:
            self._asked = now
            workers = self.client.scheduler_info().get("workers", {})
            self._since = None if workers else (self._since or now)
        return self._since is not None and now - self._since > WORKERLESS_S


def _train_on_worker(make_trainer: Any, queue: str, snapshot_every: float | None, events: tuple[Any, Any],
                     num_threads: int | None, send_trainer: bool) -> None:
    """The Dask task: build the trainer, train, and put every message on the job's queue (the first: which
    worker it runs on)."""
    from distributed import Queue, get_worker

    keep_freed_memory()
    channel = Queue(queue)
    channel.put(("worker", f"Dask worker {get_worker().name}"))
    run_and_report(make_trainer, channel.put, snapshot_every, events, num_threads, nice=0,
                   send_trainer=send_trainer)


class DaskJob(Job):
    """A :class:`Job` whose trainer is built and trained by one task on a Dask cluster.

    Same states and observation methods as :class:`Job`; ``make_trainer`` must be picklable
    (:class:`~iceviz.training.trainers.TrainerRecipe`). ``client`` is a ``distributed.Client`` (None: this
    process's executor, :func:`iceviz.runtime.executor.server_client`). With ``keep_trainer``, :attr:`trainer`
    arrives, trained, with the result (to save its model); without, it stays None, as for a
    :class:`~iceviz.runtime.worker.ProcessJob`. ``nice`` is the workers' business here (an embedded cluster's
    run at a lower priority than the server).
    """

    def __init__(self, *args: Any, client: Any = None, keep_trainer: bool = False, **kwargs: Any):
        self.client = client
        self.keep_trainer = keep_trainer
        self.key = f"iceviz-{uuid.uuid4().hex[:12]}"
        super().__init__(*args, **kwargs)

    def _control_events(self) -> tuple[Any, Any]:
        return CachedEvent(f"{self.key}-resume", self._cluster), CachedEvent(f"{self.key}-cancel", self._cluster)

    def _cluster(self) -> Any:
        """The job's client: the one it was given, else this process's executor's."""
        if self.client is None:
            from iceviz.runtime.executor import server_client  # the executor imports this module

            self.client = server_client()
            if self.client is None:
                raise WorkerFailed(f"{self.name}: this process's executor is not Dask; give the job a client")
        return self.client

    def _execute(self) -> Any:
        from distributed import Queue

        client = self._cluster()
        channel = Queue(f"{self.key}-messages", client=client)
        future = client.submit(_train_on_worker, self._make_trainer, channel.name, self.control.snapshot_every,
                               self.control.events, self._num_threads, self.keep_trainer,
                               key=f"{self.key}-{self.name}", pure=False)

        pending: deque[tuple[str, Any]] = deque()
        idle = [RECEIVE_EVERY_S[0]]
        workerless = WorkerWatch(client)

        def receive(timeout: float) -> tuple[str, Any] | None:
            deadline = time.monotonic() + timeout
            while not pending:
                # what is there now, without waiting on the scheduler (a get that waits and times out is logged
                # there as an error), asked for less often the longer nothing comes
                pending.extend(channel.get(batch=True))
                if pending:
                    idle[0] = RECEIVE_EVERY_S[0]
                    break
                if future.done() and not channel.qsize():
                    if future.status == "error":
                        raise WorkerFailed(f"the Dask task of {self.name} failed: {future.exception()}")
                    raise WorkerFailed(f"the Dask task of {self.name} ended ({future.status}) without reporting a "
                                       "result")
                if workerless.too_long():
                    raise WorkerFailed(f"{self.name}: the Dask cluster has had no worker for {WORKERLESS_S:g} s; "
                                       "start one with `dask worker SCHEDULER-ADDRESS`")
                if time.monotonic() >= deadline:
                    return None
                time.sleep(idle[0])
                idle[0] = min(RECEIVE_EVERY_S[1], 1.5 * idle[0])
            return pending.popleft()

        try:
            return relay(self, receive)
        finally:
            if not future.done():
                future.cancel()


def scheduler_address(given: str | None) -> str:
    """The Dask scheduler a command should use: ``given`` (its ``--scheduler``), else ``$ICEVIZ_SCHEDULER``,
    else '' (none: train here)."""
    return given or os.environ.get(SCHEDULER_VAR, "")


def scheduler_client(address: str) -> Any:
    """A ``distributed.Client`` of the cluster whose scheduler is at ``address``; ValueError saying what to
    check when it cannot be reached."""
    from distributed import Client

    try:
        # not the default client: xarray / dask work of this process stays on its local threads (and a client
        # that fails to connect would otherwise leave dask configured for a cluster that is not there)
        return Client(address, timeout="10s", set_as_default=False)
    except (OSError, TimeoutError) as err:
        raise ValueError(f"no Dask scheduler answered at {address} ({type(err).__name__}: {err}): start one with "
                         "`dask scheduler` and a worker with `dask worker ADDRESS`, or check the address") from None


@contextlib.contextmanager
def local_client(workers: int) -> Iterator[Any]:
    """A ``distributed.Client`` of a new local cluster: ``workers`` single-threaded worker processes on
    127.0.0.1, no dashboard; both closed at the end."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster, set_as_default=False) as client:
        yield client
