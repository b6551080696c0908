"""Helpers shared by the app view tests."""

from __future__ import annotations

import time
from typing import Any, Callable


def poll_until(view: Any, done: Callable[[], bool], timeout: float = 30.0) -> None:
    """Call ``view.poll()`` (what a served session's periodic callback does) until ``done()``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view.poll()
        if done():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s")
