"""Helpers shared by the app view tests."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

import pytest

from iceviz.runtime.job import Job
from iceviz.runtime.queue import JobQueue


@pytest.fixture(autouse=True)
def _an_idle_server_queue():
    """Every explorer of a test process shares the server's one queue: no test leaves a job in it for the next."""
    from iceviz.runtime.queue import server_queue

    yield
    queue = server_queue()
    queue.cancel_all()
    for job in queue.running:
        job.wait(15)


def poll_until(view: Any, done: Callable[[], bool], timeout: float = 30.0) -> None:
    """Call ``view.poll()`` (what a served session's periodic callback does) until ``done()``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view.poll()
        if done():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s")


@pytest.fixture
def line_of_three():
    """Three jobs in a one-slot line: the first running (held until the test ends), two waiting."""
    gate = threading.Event()

    class Blocked:
        def fit(self, control):
            while not gate.is_set():
                control.tick()
                gate.wait(0.01)

    queue = JobQueue(slots=1)
    jobs = [queue.submit(Job(f"j{i}", Blocked, snapshot_every=None), f"session-{i}") for i in range(3)]
    yield jobs, Blocked
    gate.set()
    for job in jobs:
        job.cancel()
        job.wait(5)
