"""Background jobs: a task (a trainer, a simulation) in a thread, with pause, resume and cancel.

A :class:`Job` never calls into a UI. Whoever shows it (the CLI's progress bar,
the app's periodic callback) polls :meth:`Job.latest` and :meth:`Job.history`.
The task cooperates through a :class:`Control`: it calls
:meth:`Control.tick` between steps (that is where pause blocks and cancel takes
effect), records scalars, and publishes snapshots when
:meth:`Control.snapshot_due` says so. Nothing here knows what a task computes.
"""

from __future__ import annotations

import enum
import itertools
import os
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Protocol


class JobStatus(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    DONE = "done"
    SHORT = "cut short"
    """It ended with a result, but without doing the work it was asked for (see :attr:`Job.shortfall`)."""
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.DONE, JobStatus.SHORT, JobStatus.FAILED, JobStatus.CANCELLED)

    @property
    def completed(self) -> bool:
        """It ended with a result (done, or cut short)."""
        return self in (JobStatus.DONE, JobStatus.SHORT)


class JobCancelled(Exception):
    """Raised inside the training thread by :meth:`Control.tick` after a cancel."""


class JobFailed(RuntimeError):
    """A job that cannot go on (a NaN loss, a diverging solve); its message says why and what to try, and is
    what the job shows as its error (no exception type in front)."""


class Trainer(Protocol):
    """What a job runs. ``fit`` returns when its work or its budget is done (or raises)."""

    def fit(self, control: "Control") -> Any: ...


class Control:
    """The trainer's handle on its job: time, pause / cancel, history and snapshots.

    Parameters
    ----------
    snapshot_every : seconds between published snapshots (None: only on request).
    history_size : how many scalar records the bounded history keeps.
    events : the (resume, cancel) event pair, shared with another process if need be.
    """

    def __init__(self, snapshot_every: float | None = 0.5, history_size: int = 5000,
                 events: tuple[Any, Any] | None = None):
        self._lock = threading.Lock()
        # (resume, cancel): threading.Event by default; multiprocessing events when the trainer runs in
        # another process (see iceviz.runtime.worker), so pause and cancel reach it there.
        self._resume, self._cancel = events or (threading.Event(), threading.Event())
        self._resume.set()
        self._started: float | None = None
        self._cpu_started = 0.0
        self._paused_total = 0.0
        self._paused_at: float | None = None  # set while tick() is blocked by a pause
        self._latest: Any = None
        self._history: deque[dict[str, Any]] = deque(maxlen=history_size)
        self._last_snapshot = -float("inf")
        self.snapshot_every = snapshot_every

    # -- used by the trainer (training thread) --------------------------------
    def start_clock(self) -> None:
        """Start the training clock (the trainer calls this when set-up is done)."""
        with self._lock:
            self._started = time.perf_counter()
            self._cpu_started = time.thread_time()
            self._paused_total = 0.0

    def elapsed(self) -> float:
        """Training seconds so far, pauses excluded (the time :meth:`tick` spent blocked)."""
        with self._lock:
            if self._started is None:
                return 0.0
            now = self._paused_at if self._paused_at is not None else time.perf_counter()
            return now - self._started - self._paused_total

    def cpu_share(self) -> float:
        """The share of one CPU core the calling thread (the trainer's: call it there) has had since
        :meth:`start_clock`: its CPU time over :meth:`elapsed` (1: never short of a core; 0.3: the machine was
        busy)."""
        elapsed = self.elapsed()
        return (time.thread_time() - self._cpu_started) / elapsed if elapsed > 0 else 1.0

    def tick(self) -> None:
        """Between steps: raise JobCancelled after a cancel, block while paused."""
        if self._cancel.is_set():
            raise JobCancelled()
        if not self._resume.is_set():
            with self._lock:
                self._paused_at = time.perf_counter()
            self._resume.wait()
            with self._lock:
                self._paused_total += time.perf_counter() - self._paused_at
                self._paused_at = None
            if self._cancel.is_set():
                raise JobCancelled()

    @property
    def events(self) -> tuple[Any, Any]:
        """The (resume, cancel) event pair."""
        return self._resume, self._cancel

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def record(self, scalars: dict[str, Any]) -> None:
        """Append one scalar record (step, epoch, losses, ...) to the bounded history."""
        with self._lock:
            self._history.append(dict(scalars))

    def snapshot_due(self) -> bool:
        every = self.snapshot_every
        return every is not None and time.perf_counter() - self._last_snapshot >= every

    def publish(self, snapshot: Any) -> None:
        with self._lock:
            self._latest = snapshot
            self._last_snapshot = time.perf_counter()

    # -- used by the job (any thread) ------------------------------------------
    def pause(self) -> None:
        self._resume.clear()

    def resume(self) -> None:
        self._resume.set()

    def cancel(self) -> None:
        self._cancel.set()
        self.resume()

    def restart(self) -> None:
        """The task began again from its start (e.g. on another worker): forget its history and snapshot."""
        with self._lock:
            self._history.clear()
            self._latest = None

    def latest(self) -> Any:
        with self._lock:
            return self._latest

    def history(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._history)


@dataclass(frozen=True)
class CallTask:
    """A function call as a job's task (the ``make_trainer`` of a :class:`Job`): the job's result is
    ``function(*args)``. ``function`` is a module-level function, so that the task pickles (to run in a worker
    process); an exception of a type in ``expected`` fails the job with its own message alone."""

    function: Callable[..., Any]
    args: tuple = ()
    expected: tuple[type[BaseException], ...] = ()

    def __call__(self) -> "_CallRunner":
        return _CallRunner(self)


class _CallRunner:
    def __init__(self, task: CallTask):
        self.task = task

    def fit(self, control: "Control") -> Any:
        control.start_clock()
        try:
            return self.task.function(*self.task.args)
        except self.task.expected as err:
            raise JobFailed(str(err)) from None


_ids = itertools.count(1)


def error_message(err: BaseException) -> str:
    """What a failed job shows: a JobFailed's own words, else the exception's type and message."""
    return str(err) if isinstance(err, JobFailed) else f"{type(err).__name__}: {err}"


def lower_thread_priority(nice: int) -> None:
    """Raise the calling thread's niceness (Linux applies it per thread); a no-op where unsupported."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except (AttributeError, OSError):
        pass


class Job:
    """Runs ``make_trainer()`` then ``trainer.fit(control)`` in a daemon thread.

    Building the trainer happens in the thread too, so a bad data spec or an
    exception anywhere ends as status ``failed`` with the message in
    :attr:`error`; it never escapes into the caller's thread.

    Parameters
    ----------
    name : label for humans (e.g. the model name).
    make_trainer : callable returning an object with ``fit(control)``.
    snapshot_every : seconds between snapshots (None: only the final one).
    num_threads : torch intra-op threads for the training thread (None: leave as is).
        Note torch's setting is process-wide on the CPU.
    on_finish : called with the job, in its thread, once it has ended (any status).
    nice : raise the training thread's niceness by this much (Linux), so that a server
        sharing the machine (the app, the browser) stays responsive; 0 leaves it alone.
    """

    def __init__(
        self,
        name: str,
        make_trainer: Callable[[], Trainer],
        snapshot_every: float | None = 0.5,
        history_size: int = 5000,
        num_threads: int | None = 1,
        on_finish: Callable[["Job"], None] | None = None,
        nice: int = 0,
    ):
        self.id = next(_ids)
        self.nice = nice
        self.on_finish = on_finish
        self.name = name
        self._make_trainer = make_trainer
        self.control = Control(snapshot_every=snapshot_every, history_size=history_size,
                               events=self._control_events())
        self._num_threads = num_threads
        self._status = JobStatus.QUEUED
        self._status_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._ended = threading.Event()
        """Set once the job has finished, whatever its status (a queued job cancelled before it ran too)."""
        self.error: str | None = None
        self.shortfall = ""
        """Why a job that ended with a result did not do the work it was asked for (its status then SHORT)."""
        self.traceback: str | None = None
        self.result: Any = None
        self.trainer: Trainer | None = None
        self.device: str | None = None
        """Where it trains, once the trainer is built."""
        self.worker = ""
        """Where its task runs, for people: '' (a thread of this process), 'worker process 1234', 'Dask worker
        1'."""
        self.restarts = 0
        """How often its task began again from the start (its worker died and another took it over)."""
        self.memory = 0
        """The most memory it may take [bytes] (an estimate its maker gives; 0: unknown, not counted)."""
        self.position: Callable[[], int | None] = lambda: None
        """Its 0-based place among the jobs waiting for a slot (set by the queue it waits in; None: not
        waiting)."""

    def _control_events(self) -> tuple[Any, Any] | None:
        """The (resume, cancel) events of the control; None: thread events (the trainer runs here)."""
        return None

    # -- lifecycle ----------------------------------------------------------
    def start(self) -> "Job":
        with self._status_lock:
            if self._thread is not None:
                raise RuntimeError(f"job {self.name!r} was already started")
            if self._status is JobStatus.CANCELLED:
                self._ended.set()
                return self
            self._status = JobStatus.RUNNING
            self._thread = threading.Thread(target=self._run, name=f"iceviz-job-{self.id}-{self.name}", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            self.result = self._execute()
            self.shortfall = str(getattr(self.result, "shortfall", "") or "")
            self._set(JobStatus.SHORT if self.shortfall else JobStatus.DONE)
        except JobCancelled:
            self._set(JobStatus.CANCELLED)
        except Exception as err:  # noqa: BLE001 - a job must never take the process down
            self.error = error_message(err)
            self.traceback = getattr(err, "worker_traceback", None) or traceback.format_exc()
            self._set(JobStatus.FAILED)
        finally:
            if self.on_finish is not None:
                self.on_finish(self)
            self._ended.set()

    def _execute(self) -> Any:
        """Build the trainer and train, here in the job's thread; returns what ``fit`` returns."""
        if self.nice:
            lower_thread_priority(self.nice)
        if self._num_threads is not None:
            import torch  # a task that trains shares torch's process-wide thread count

            torch.set_num_threads(self._num_threads)
        self.trainer = self._make_trainer()
        self.device = str(getattr(self.trainer, "device", "cpu"))
        self.control.tick()
        return self.trainer.fit(self.control)

    def _set(self, status: JobStatus) -> None:
        with self._status_lock:
            self._status = status

    def pause(self) -> None:
        with self._status_lock:
            if self._status is JobStatus.RUNNING:
                self.control.pause()
                self._status = JobStatus.PAUSED

    def resume(self) -> None:
        with self._status_lock:
            if self._status is JobStatus.PAUSED:
                self.control.resume()
                self._status = JobStatus.RUNNING

    def cancel(self) -> None:
        """Ask the job to stop; the thread ends at its next step (well within a second)."""
        with self._status_lock:
            if self._status is JobStatus.QUEUED:
                self._status = JobStatus.CANCELLED
                self._ended.set()
            elif self._status is JobStatus.PAUSED:
                self._status = JobStatus.RUNNING
        self.control.cancel()

    def wait(self, timeout: float | None = None) -> JobStatus:
        """Block until the job has finished (or ``timeout`` seconds), a job still waiting in a queue too;
        returns the status."""
        if self._ended.wait(timeout) and self._thread is not None:
            self._thread.join()  # it has run its last line: returns at once, and the thread is gone
        return self.status

    # -- observation ----------------------------------------------------------
    @property
    def status(self) -> JobStatus:
        with self._status_lock:
            return self._status

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def latest(self) -> Any:
        return self.control.latest()

    def history(self) -> list[dict[str, Any]]:
        return self.control.history()
