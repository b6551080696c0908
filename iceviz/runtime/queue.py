"""Queues that keep a machine from being oversubscribed, fairly across the sessions that share it.

A :class:`JobQueue` runs at most ``slots`` jobs at once. Waiting jobs start in
turn by session (round robin: a session that just had a job started goes to the
back), so thirty students pressing Start at once each get their turn instead of
the first one's ten jobs running first; a session may have at most
``per_session`` jobs waiting, and a submission past that is refused with
:class:`QueueFull`, whose message says what to do. Jobs meant to run side by
side (the lesson's dfNN and PINN) are submitted together and start together.

:func:`server_queue` gives the one queue of the whole process, shared by every
browser session of a server (and :func:`quick_queue` a second one, of one slot,
for short jobs such as building a region's data, so that they never wait behind
a training); a session talks to it through
:meth:`JobQueue.session`, which sees only its own jobs. A group larger than the
slots (the lesson's two runs on a two-core machine) starts when nothing else
runs, so it never waits forever.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from typing import Callable, Sequence

from iceviz.runtime.job import Job, JobStatus

PER_SESSION = 12
"""Jobs one session may have waiting in a queue (a full lesson comparison and a nine-model training fit)."""


class QueueFull(RuntimeError):
    """A session has as many jobs waiting as it may: nothing was queued; the message says what to do."""


class JobTooLarge(QueueFull):
    """A job whose memory estimate exceeds the queue's whole budget: it could never start, so it is refused."""


MEMORY_VAR = "ICEVIZ_MEMORY_BUDGET"


def memory_budget() -> int:
    """Bytes the jobs of a queue may take together: ``$ICEVIZ_MEMORY_BUDGET`` GiB, else half the machine's
    memory."""
    value = os.environ.get(MEMORY_VAR, "").strip()
    if value:
        try:
            return int(float(value) * 2**30)
        except ValueError:
            raise ValueError(f"${MEMORY_VAR}={value!r}: give the budget in GiB, e.g. 8") from None
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (AttributeError, ValueError, OSError):  # not a POSIX machine: a modest default
        return 4 * 2**30


def default_slots() -> int:
    """Jobs that may train at once: one per CPU core but one, which is left to serve the app (at least one)."""
    return max(1, (os.cpu_count() or 1) - 1)


class JobQueue:
    """At most ``slots`` jobs at once; waiting groups of jobs start in turn by session.

    Parameters
    ----------
    slots : how many jobs may run at the same time.
    per_session : how many jobs one session may have waiting.
    memory : bytes the running jobs may take together (their :attr:`Job.memory` estimates); None: no limit.
    """

    def __init__(self, slots: int | None = None, per_session: int = PER_SESSION, memory: int | None = None):
        self.slots = slots or default_slots()
        self.per_session = per_session
        self.memory = memory
        self._lock = threading.Lock()
        self._waiting: dict[str, deque[list[Job]]] = {}
        """Per session, its groups in the order they came (a group: jobs that start together)."""
        self._turn: deque[str] = deque()
        """Sessions in round-robin order: the front one's next group starts first."""
        self._running: list[Job] = []
        self._session_of: dict[Job, str] = {}
        """Every job waiting or running, with its session (a finished one is forgotten: a server runs for days)."""

    # -- submitting ----------------------------------------------------------------------------------
    def submit(self, job: Job, session: str = "") -> Job:
        """Queue ``job`` for ``session``; it starts now if a slot is free. QueueFull when the session has
        ``per_session`` jobs waiting already."""
        self.submit_together([job], session)
        return job

    def submit_together(self, jobs: Sequence[Job], session: str = "") -> list[Job]:
        """Queue ``jobs`` to start at the same time (when as many slots are free, or all of them when the
        queue is idle and they are more than its slots). QueueFull when they would take the session past
        ``per_session`` waiting jobs."""
        jobs = list(jobs)
        need = sum(job.memory for job in jobs)
        if self.memory is not None and need > self.memory:
            raise JobTooLarge(f"{', '.join(j.name for j in jobs)} would need about {need / 2**30:,.1f} GiB by "
                              f"{'its' if len(jobs) == 1 else 'their'} settings, more than this server lets "
                              f"its jobs take ({self.memory / 2**30:,.1f} GiB, ${MEMORY_VAR}): choose smaller "
                              "settings (points per step, width, depth)")
        with self._lock:
            self._drop_finished()
            waiting = sum(len(group) for group in self._waiting.get(session, ()))
            if waiting + len(jobs) > self.per_session:
                raise QueueFull(f"{waiting} of this session's jobs are already waiting for a free worker (at most "
                                f"{self.per_session}): wait until they start, or cancel some")
            for job in jobs:
                self._hook(job)
                self._session_of[job] = session
            self._waiting.setdefault(session, deque()).append(jobs)
            if session not in self._turn:
                self._turn.append(session)
        self._fill()
        return jobs

    def _hook(self, job: Job) -> None:
        """Free the job's slot when it ends, and let it tell its place in the line."""
        previous = job.on_finish

        def finished(j: Job) -> None:
            if previous is not None:
                previous(j)
            self._release(j)

        job.on_finish = finished
        job.position = lambda: self.position(job)

    # -- running -------------------------------------------------------------------------------------
    def _release(self, job: Job) -> None:
        with self._lock:
            if job in self._running:
                self._running.remove(job)
            self._session_of.pop(job, None)
        self._fill()

    def _drop_finished(self) -> None:
        """(Lock held) forget waiting jobs that were cancelled, and groups and sessions left empty."""
        for session in list(self._waiting):
            for group in self._waiting[session]:
                for job in group:
                    if job.status is not JobStatus.QUEUED:
                        self._session_of.pop(job, None)  # cancelled before it ran: never released
            groups = deque(g for g in ([j for j in group if j.status is JobStatus.QUEUED]
                                       for group in self._waiting[session]) if g)
            if groups:
                self._waiting[session] = groups
            else:
                del self._waiting[session]
                if session in self._turn:
                    self._turn.remove(session)

    def _fill(self) -> None:
        to_start: list[Job] = []
        with self._lock:
            self._drop_finished()
            while self._turn:
                session = self._turn[0]
                group = self._waiting[session][0]
                free = self.slots - len(self._running)
                fits = self.memory is None or sum(j.memory for j in self._running + group) <= self.memory
                if self._running and (len(group) > free or not fits):
                    break  # the next in turn waits for room (later, smaller ones do not jump it: no starvation)
                self._waiting[session].popleft()
                self._turn.rotate(-1)  # this session to the back of the line
                if not self._waiting[session]:
                    del self._waiting[session]
                    self._turn.remove(session)
                self._running += group
                to_start += group
        for job in to_start:
            job.start()
            if not job.alive and job.status is not JobStatus.RUNNING:
                self._release(job)  # cancelled between the queue and its start

    def resize(self, slots: int) -> None:
        """Run at most ``slots`` jobs at once from now on (a cluster gained or lost workers): more room starts
        the next waiting jobs at once; less lets the running ones finish; the same number changes nothing."""
        slots = max(1, int(slots))
        with self._lock:
            if slots == self.slots:
                return
            self.slots = slots
        self._fill()

    # -- observing and cancelling ---------------------------------------------------------------------
    def order(self) -> list[Job]:
        """The waiting jobs in the order they will start (round robin by session, as :meth:`_fill` does)."""
        with self._lock:
            self._drop_finished()
            queues = {s: deque(self._waiting[s]) for s in self._turn}
            turn = deque(self._turn)
        out: list[Job] = []
        while turn:
            session = turn.popleft()
            out += queues[session].popleft()
            if queues[session]:
                turn.append(session)
        return out

    def position(self, job: Job) -> int | None:
        """0-based place of ``job`` among the waiting jobs (in starting order), None if not waiting."""
        order = self.order()
        return order.index(job) if job in order else None

    def cancel_all(self, session: str | None = None) -> None:
        """Cancel every queued and running job (of ``session`` only, when given: e.g. its tab closed)."""
        for job in self.jobs_of(session):
            job.cancel()
        self._fill()

    @property
    def running(self) -> list[Job]:
        with self._lock:
            return list(self._running)

    @property
    def jobs(self) -> list[Job]:
        """The jobs waiting or running."""
        return self.jobs_of(None)

    def jobs_of(self, session: str | None) -> list[Job]:
        """The jobs of ``session`` waiting or running (every session's for None)."""
        with self._lock:
            return [j for j, s in self._session_of.items() if session is None or s == session]

    def session(self, name: str) -> SessionQueue:
        """This queue as one session sees it: its own jobs only."""
        return SessionQueue(self, name)


class SessionQueue:
    """One session's view of a shared :class:`JobQueue`: submit, cancel and count its own jobs."""

    def __init__(self, queue: JobQueue, name: str):
        self.queue, self.name = queue, name

    @property
    def slots(self) -> int:
        return self.queue.slots

    def submit(self, job: Job) -> Job:
        return self.queue.submit(job, self.name)

    def submit_together(self, jobs: Sequence[Job]) -> list[Job]:
        return self.queue.submit_together(jobs, self.name)

    def cancel_all(self) -> None:
        self.queue.cancel_all(self.name)

    def position(self, job: Job) -> int | None:
        return self.queue.position(job)

    @property
    def jobs(self) -> list[Job]:
        return self.queue.jobs_of(self.name)

    @property
    def running(self) -> list[Job]:
        mine = set(self.jobs)
        return [j for j in self.queue.running if j in mine]


_process_queues: dict[str, JobQueue] = {}
_process_lock = threading.Lock()


def _process_queue(name: str, slots: Callable[[], int | None]) -> JobQueue:
    """The process's queue ``name``, made on first use with ``slots()`` slots (asked then only), its jobs'
    memory bounded by :func:`memory_budget`."""
    with _process_lock:
        if name not in _process_queues:
            _process_queues[name] = JobQueue(slots=slots(), memory=memory_budget())
        return _process_queues[name]


def resize_server_queue(slots: int) -> None:
    """Give the server's queue ``slots`` slots, if it has been made (:meth:`JobQueue.resize`)."""
    with _process_lock:
        queue = _process_queues.get("server")
    if queue is not None:
        queue.resize(slots)


def server_queue() -> JobQueue:
    """The process's one queue, shared by every session of a server: one slot per core but one (on an
    existing Dask cluster, one per worker thread, followed as workers come and go: :func:`resize_server_queue`,
    from :func:`iceviz.runtime.executor.describe`)."""
    from iceviz.runtime.executor import server_slots  # the executor imports this module

    return _process_queue("server", server_slots)


def quick_queue() -> JobQueue:
    """The process's queue for short jobs (loading or building a region's data: seconds), shared by every
    session: one slot, so that they never wait behind a training and never run more than one at a time."""
    return _process_queue("quick", lambda: 1)
