"""Helpers shared by the app view tests."""

from __future__ import annotations

import time
from typing import Any, Callable

import pytest


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
