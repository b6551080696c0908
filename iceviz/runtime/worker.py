"""A job in a worker process: the same :class:`Job`, with its task outside the caller's interpreter.

A server that trains in threads shares one interpreter lock between serving
and training: every Bokeh update slows training and every training step delays
a click. A :class:`ProcessJob` builds and fits its trainer in a child process
instead. The job's thread in the parent only relays:

- child -> parent, through a pipe: history records (batched), snapshots (with
  the records that precede them), the device, and how it ended (result,
  cancelled, or the error message with the child's traceback);
- parent -> child: pause, resume and cancel, through the control's two events,
  which are process-shared here.

Children are forked from a *forkserver* that imported the modules the tasks
need once (:func:`warm_up` starts it, with them, ahead of the first job), so a
job starts in a fraction of a second, and the server's threads and any CUDA state are never
forked. A child that dies without a word (killed, out of memory) fails its
job with its exit code; a child that ignores a cancel is terminated.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import multiprocessing.forkserver
import os
import threading
import time
import traceback
from typing import Any, Callable

from iceviz.runtime.job import Control, Job, JobCancelled, JobFailed, error_message

RECORD_FLUSH_S = 0.25
"""The child sends its history records at least this often (and with every snapshot)."""
CANCEL_GRACE_S = 10.0
"""A child still running this long after a cancel is terminated."""
POLL_S = 0.2
"""How often the relay looks at a silent child to see whether it is still alive."""

_context_lock = threading.Lock()
_context: Any = None


def worker_context(preload: tuple[str, ...] = ()) -> Any:
    """The multiprocessing context jobs fork from: a forkserver that imports ``preload`` (module names) once.

    The first call decides what the forkserver preloads (it lives as long as the process); later calls
    return the same context."""
    global _context
    with _context_lock:
        if _context is None:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(list(preload))
            _context = ctx
        return _context


def warm_up(*preload: str) -> None:
    """Start the forkserver now, importing the modules ``preload`` names (e.g. the trainers: torch, a few
    seconds), rather than at the first job."""
    worker_context(preload)
    multiprocessing.forkserver.ensure_running()


class WorkerFailed(JobFailed):
    """A failure in the worker process; carries the child's message and traceback."""

    def __init__(self, message: str, worker_traceback: str | None = None):
        super().__init__(message)
        self.worker_traceback = worker_traceback


class _RelayControl(Control):
    """The child's control: pause and cancel from the shared events; records and snapshots go to ``send``
    (a pipe's end, or a Dask queue), as ``(kind, payload)`` messages."""

    def __init__(self, send: Callable[[tuple[str, Any]], None], snapshot_every: float | None,
                 events: tuple[Any, Any]):
        super().__init__(snapshot_every=snapshot_every, history_size=1, events=events)
        self._send = send
        self._pending: list[dict[str, Any]] = []
        self._flushed = time.perf_counter()

    def record(self, scalars: dict[str, Any]) -> None:
        self._pending.append(dict(scalars))
        if time.perf_counter() - self._flushed >= RECORD_FLUSH_S:
            self.flush()

    def flush(self, snapshot: Any = None) -> None:
        """Send the pending records (and ``snapshot``, if any) to the parent."""
        records, self._pending = self._pending, []
        self._send(("progress", (records, snapshot)))
        self._flushed = time.perf_counter()

    def publish(self, snapshot: Any) -> None:
        super().publish(snapshot)
        self.flush(snapshot)

    def tick(self) -> None:
        """As :meth:`Control.tick`; about to block in a pause, first send what is pending, so that the parent
        shows where training stopped rather than a record up to RECORD_FLUSH_S old."""
        if not self._resume.is_set() and self._pending:
            self.flush()
        super().tick()


def _child_main(make_trainer: Callable[[], Any], conn: multiprocessing.connection.Connection,
                snapshot_every: float | None, events: tuple[Any, Any], num_threads: int | None, nice: int) -> None:
    """The worker process: build the trainer, train, report how it ended. Never raises."""
    try:
        run_and_report(make_trainer, conn.send, snapshot_every, events, num_threads, nice)
    finally:
        conn.close()


def run_and_report(make_trainer: Callable[[], Any], send: Callable[[tuple[str, Any]], None],
                   snapshot_every: float | None, events: tuple[Any, Any], num_threads: int | None,
                   nice: int, send_trainer: bool = False) -> None:
    """Where the trainer runs (a worker process, a Dask worker): build it, train, and ``send`` the device,
    progress and how it ended (``done``, ``cancelled`` or ``failed``); with ``send_trainer``, the trained
    trainer too (for a caller that saves its model). Never raises."""
    control = _RelayControl(send, snapshot_every, events)
    try:
        if nice:
            os.nice(nice)
        if num_threads is not None:
            import torch  # a task that trains shares torch's process-wide thread count

            torch.set_num_threads(num_threads)
        trainer = make_trainer()
        send(("device", str(getattr(trainer, "device", "cpu"))))
        control.tick()
        result = trainer.fit(control)
        control.flush()
        if send_trainer:
            send(("trainer", trainer))
        send(("done", result))
    except JobCancelled:
        send(("cancelled", None))
    except BaseException as err:  # noqa: BLE001 - the parent must hear about every ending
        try:
            control.flush()
            send(("failed", (error_message(err), traceback.format_exc())))
        except Exception:  # noqa: BLE001 - the parent is gone; nobody to tell
            pass


class ProcessJob(Job):
    """A :class:`Job` whose trainer is built and trained in a worker process.

    Same constructor, states and observation methods as :class:`Job`;
    ``make_trainer`` must be picklable (see
    :class:`~iceviz.training.trainers.TrainerRecipe`). :attr:`trainer` stays
    None (the trainer lives in the child); :attr:`device`, :meth:`latest`,
    :meth:`history` and :attr:`result` come back through the pipe.
    """

    pid: int | None = None
    """The worker process's id while it runs."""

    def _control_events(self) -> tuple[Any, Any]:
        ctx = worker_context()
        return ctx.Event(), ctx.Event()

    def _execute(self) -> Any:
        ctx = worker_context()
        pipe, send = ctx.Pipe(duplex=False)
        process = ctx.Process(target=_child_main, name=f"iceviz-worker-{self.id}-{self.name}", daemon=True,
                              args=(self._make_trainer, send, self.control.snapshot_every, self.control.events,
                                    self._num_threads, self.nice))
        process.start()
        self.pid = process.pid
        self.worker = f"worker process {process.pid}"
        send.close()  # the child holds the only sending end: EOF means it is gone

        def receive(timeout: float) -> tuple[str, Any] | None:
            try:
                if pipe.poll(timeout):
                    return pipe.recv()
                if process.is_alive() or pipe.poll():
                    return None
                raise EOFError
            except (EOFError, OSError):
                process.join(1.0)
                raise WorkerFailed(f"the worker process of {self.name} ended (exit code {process.exitcode}) "
                                   "without reporting a result") from None

        try:
            return relay(self, receive)
        finally:
            pipe.close()
            process.join(1.0)
            if process.is_alive():
                process.terminate()
                process.join()
            self.pid = None


def relay(job: Job, receive: Callable[[float], tuple[str, Any] | None]) -> Any:
    """In the job's thread: copy what the trainer's side sends (``receive(timeout)``: a message, or None when
    none came in time) into the job, until it ends; returns the result, or raises as it ended. A trainer still
    going ``CANCEL_GRACE_S`` after a cancel is given up on."""
    cancel_seen: float | None = None
    while True:
        if job.control.cancelled and cancel_seen is None:
            cancel_seen = time.perf_counter()
        if cancel_seen is not None and time.perf_counter() - cancel_seen > CANCEL_GRACE_S:
            raise JobCancelled()
        message = receive(POLL_S)
        if message is None:
            continue
        kind, payload = message
        if kind == "progress":
            records, snapshot = payload
            for record in records:
                job.control.record(record)
            if snapshot is not None:
                job.control.publish(snapshot)
        elif kind == "device":
            if job.device is not None:  # it began again (its worker died; the cluster gave it to another)
                job.control.restart()
                job.restarts += 1
            job.device = payload
        elif kind == "worker":
            job.worker = payload
        elif kind == "trainer":
            job.trainer = payload
        elif kind == "done":
            return payload
        elif kind == "cancelled":
            raise JobCancelled()
        elif kind == "failed":
            raise WorkerFailed(*payload)
