"""Training on Dask distributed: the same :class:`~iceviz.runtime.job.Job`, its trainer on a Dask worker.

A :class:`DaskJob` submits one task to a Dask cluster (an existing one named by
its scheduler's address, e.g. ``tcp://10.0.0.5:8786``, or any
``distributed.Client``). The task builds the trainer on the worker and trains
it; the job's thread here relays what it sends, exactly as for a worker
process (:func:`iceviz.runtime.worker.relay`):

- worker -> here, through a ``distributed.Queue`` of the job: history records
  (batched), snapshots, the worker's name, the device, and how it ended, each
  pickled by the worker (the queue would try msgpack first, and log every
  fall-back to pickle). On the worker a thread of its own puts them (the
  trainer never waits on the scheduler); here a thread waits on the queue for
  each next message (no polling: a scheduler that lives in a busy app server is
  asked nothing while nothing comes). Measured (``benchmarks/executors.py``): see BENCHMARKS.md;
- here -> worker: pause, resume and cancel through two ``distributed.Event``
  objects, which a thread on the worker asks about every ``CHECK_EVERY_S``; the
  trainer reads its last answer between its steps.

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
import pickle
import queue
import threading
import time
import uuid
from typing import Any, Callable, Iterator

from iceviz.runtime.job import Job
from iceviz.runtime.worker import WorkerFailed, relay, run_and_report

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
"""glibc's ``mallopt`` parameters."""
TRIM_THRESHOLD = 128 * 2**20
MMAP_THRESHOLD = 32 * 2**20
"""What :func:`keep_freed_memory` sets: freed heap kept up to 128 MiB; arrays below 32 MiB (the most glibc's own
dynamic threshold reaches) from the heap rather than from fresh mmaps."""
CHECK_EVERY_S = 0.2
"""How often a trainer on a Dask worker asks the scheduler whether it was paused or cancelled [s]."""
WORKERLESS_S = 30.0
"""A job whose cluster has had no worker this long fails (a task would otherwise wait forever) [s]."""
ENDING_S = 1.0
"""How long a job whose task has ended waits for its last messages before it fails for want of them [s]."""
CLOSING = ("closing", None)
"""The message a job puts on its own queue once it has ended, to stop the thread waiting on it."""
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


_sends: queue.SimpleQueue = queue.SimpleQueue()
_sender: threading.Thread | None = None
_sender_lock = threading.Lock()


def _send_in_order(call: Callable[[], Any]) -> None:
    """Make ``call`` (a request to the scheduler) from this module's sender thread, after every call sent before
    it: a click that pauses a job never waits on the scheduler (measured: 0.2-0.4 s under a class's load), and
    a pause followed by a resume reaches it in that order. A call that fails is dropped (the scheduler has gone:
    the job's own side ends its task)."""
    global _sender
    with _sender_lock:
        if _sender is None or not _sender.is_alive():
            def send() -> None:
                while True:
                    try:
                        _sends.get()()
                    except Exception:  # noqa: BLE001 - see above
                        pass

            _sender = threading.Thread(target=send, name="iceviz-event-sender", daemon=True)
            _sender.start()
    _sends.put(call)


class CachedEvent:
    """A ``distributed.Event`` by name, whose ``is_set`` asks the scheduler at most every ``CHECK_EVERY_S``
    (a trainer calls it between every step); ``wait`` goes straight to it, ``set`` and ``clear`` hold at once
    here and reach the scheduler a moment later (:func:`_send_in_order`). Pickled by name, so the worker's
    copy is the same event. ``client``: a function giving the client to use when the
    event is first needed (None: the worker's, or the default client)."""

    def __init__(self, name: str, client: Callable[[], Any] | None = None):
        self.name, self._client = name, client
        self._event: Any = None
        self._value = False
        self._asked = -math.inf
        self._watcher: threading.Thread | None = None
        self._stop_watching = threading.Event()

    def _get(self) -> Any:
        if self._event is None:
            from distributed import Event

            self._event = Event(self.name, client=self._client() if self._client else None)
        return self._event

    def is_set(self) -> bool:
        if self._watcher is None and time.monotonic() - self._asked >= CHECK_EVERY_S:
            self._value, self._asked = bool(self._get().is_set()), time.monotonic()
        return self._value

    def watch(self) -> None:
        """From now on a thread of its own asks the scheduler every ``CHECK_EVERY_S``, and :meth:`is_set` only
        reads its last answer: the caller (a trainer between its steps) never waits on the scheduler."""
        self._get()  # here: the task's thread knows its worker's client
        stop = self._stop_watching = threading.Event()

        def ask() -> None:
            while not stop.wait(CHECK_EVERY_S):
                try:
                    self._value, self._asked = bool(self._event.is_set()), time.monotonic()
                except Exception:  # noqa: BLE001 - the scheduler is gone: the job's side ends the task
                    return

        self._watcher = threading.Thread(target=ask, name=f"iceviz-watch-{self.name}", daemon=True)
        self._value = bool(self._event.is_set())
        self._watcher.start()

    def stop_watching(self) -> None:
        if self._watcher is not None:
            self._stop_watching.set()
            self._watcher.join()
            self._watcher = None

    def set(self) -> None:
        self._value, self._asked = True, time.monotonic()
        _send_in_order(lambda: self._get().set())

    def clear(self) -> None:
        self._value, self._asked = False, time.monotonic()
        _send_in_order(lambda: self._get().clear())

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


class _Outbox:
    """On the worker: the task's messages, put on the job's queue by a thread of their own, in order, so that
    the trainer never waits on the scheduler (a put is a round trip to it, slow when the server it lives in is
    busy)."""

    _END = object()

    def __init__(self, put: Callable[[Any], Any]):
        self._put = put
        self._messages: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="iceviz-outbox", daemon=True)
        self._thread.start()

    def send(self, message: Any) -> None:
        self._messages.put(message)

    def _run(self) -> None:
        while (message := self._messages.get()) is not self._END:
            try:
                self._put(message)
            except Exception:  # noqa: BLE001 - the scheduler is gone: nobody to tell
                return

    def close(self) -> None:
        """Send what is left, then stop."""
        self._messages.put(self._END)
        self._thread.join()


def _train_on_worker(make_trainer: Any, queue_name: str, snapshot_every: float | None, events: tuple[Any, Any],
                     num_threads: int | None, send_trainer: bool) -> None:
    """The Dask task: build the trainer, train, and put every message on the job's queue (the first: which
    worker it runs on)."""
    from distributed import Queue, get_worker

    keep_freed_memory()
    channel = Queue(queue_name)
    outbox = _Outbox(lambda message: channel.put(pickle.dumps(message, protocol=5)))
    for event in events:
        event.watch()
    try:
        outbox.send(("worker", f"Dask worker {get_worker().name}"))
        run_and_report(make_trainer, outbox.send, snapshot_every, events, num_threads, nice=0,
                       send_trainer=send_trainer)
    finally:
        outbox.close()
        for event in events:
            event.stop_watching()


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

        inbox: queue.SimpleQueue = queue.SimpleQueue()

        def pull() -> None:
            """Wait on the scheduler for each next message (one request per message, none while nothing comes;
            no timeout, which it would log as an error) until this job's own closing message."""
            while True:
                try:
                    message = pickle.loads(channel.get())
                except Exception:  # noqa: BLE001 - the client closed: the job has ended
                    return
                if message[0] == CLOSING[0]:
                    return
                inbox.put(message)

        threading.Thread(target=pull, name=f"iceviz-inbox-{self.id}", daemon=True).start()
        workerless = WorkerWatch(client)

        def receive(timeout: float) -> tuple[str, Any] | None:
            try:
                return inbox.get(timeout=timeout)
            except queue.Empty:
                pass
            if future.done():  # its last messages may still be on their way: a moment for them
                try:
                    return inbox.get(timeout=ENDING_S)
                except queue.Empty:
                    pass
                if future.status == "error":
                    raise WorkerFailed(f"the Dask task of {self.name} failed: {future.exception()}")
                raise WorkerFailed(f"the Dask task of {self.name} ended ({future.status}) without reporting a "
                                   "result")
            if workerless.too_long():
                raise WorkerFailed(f"{self.name}: the Dask cluster has had no worker for {WORKERLESS_S:g} s; "
                                   "start one with `dask worker SCHEDULER-ADDRESS`")
            return None

        try:
            return relay(self, receive)
        finally:
            if not future.done():
                future.cancel()
            try:
                channel.put(pickle.dumps(CLOSING))  # ends the pulling thread
            except Exception:  # noqa: BLE001 - the client closed already: so has the thread
                pass


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
