"""A queue that keeps the machine from being oversubscribed: at most N jobs train at once."""

from __future__ import annotations

import os
import threading

from iceviz.training.job import Job, JobStatus


def default_slots() -> int:
    """Jobs that may train at once: one per CPU core but one, which is left to serve the app (at least one)."""
    return max(1, (os.cpu_count() or 1) - 1)


class JobQueue:
    """First in, first out; a finished job frees its slot and starts the next queued one.

    Parameters
    ----------
    slots : how many jobs may run at the same time.
    """

    def __init__(self, slots: int | None = None):
        self.slots = slots or default_slots()
        self._lock = threading.Lock()
        self._waiting: list[Job] = []
        self._running: list[Job] = []
        self.jobs: list[Job] = []

    def submit(self, job: Job) -> Job:
        """Queue ``job``; it starts now if a slot is free."""
        previous = job.on_finish

        def finished(j: Job) -> None:
            if previous is not None:
                previous(j)
            self._release(j)

        job.on_finish = finished
        with self._lock:
            self.jobs.append(job)
            self._waiting.append(job)
        self._fill()
        return job

    def _release(self, job: Job) -> None:
        with self._lock:
            if job in self._running:
                self._running.remove(job)
        self._fill()

    def _fill(self) -> None:
        to_start = []
        with self._lock:
            self._waiting = [j for j in self._waiting if j.status is JobStatus.QUEUED]
            while self._waiting and len(self._running) < self.slots:
                job = self._waiting.pop(0)
                self._running.append(job)
                to_start.append(job)
        for job in to_start:
            job.start()
            if not job.alive and job.status is not JobStatus.RUNNING:
                self._release(job)  # cancelled between the queue and its start

    def cancel_all(self) -> None:
        """Cancel every queued and running job (e.g. when the browser tab closes)."""
        with self._lock:
            jobs = list(self.jobs)
        for job in jobs:
            job.cancel()
        self._fill()

    def position(self, job: Job) -> int | None:
        """0-based place of ``job`` among the waiting jobs, None if not waiting."""
        with self._lock:
            return self._waiting.index(job) if job in self._waiting else None

    @property
    def running(self) -> list[Job]:
        with self._lock:
            return list(self._running)
