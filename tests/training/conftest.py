"""Shared by the job tests: a fixture that never lets a job outlive its test, and small helpers."""

from __future__ import annotations

import time

import pytest

from iceviz.runtime.job import Job
from iceviz.training.trainers import training_job
from iceviz.training.worker import ProcessJob


@pytest.fixture
def jobs():
    """Collects jobs; any still alive at teardown is cancelled and joined (no thread or worker outlives
    its test). A worker process gets longer to end than a thread."""
    started: list[Job] = []
    yield started
    for job in started:
        job.cancel()
    for job in started:
        job.wait(15 if isinstance(job, ProcessJob) else 5)
        assert not job.alive, f"job {job.name} still running after cancel"
        assert getattr(job, "pid", None) is None, "worker process left behind"


def wait_until(predicate, timeout: float = 10.0, every: float = 0.005) -> bool:
    end = time.perf_counter() + timeout
    while time.perf_counter() < end:
        if predicate():
            return True
        time.sleep(every)
    return predicate()


def curve_job(jobs: list[Job], model: str = "dfnn", data="synthetic:curve", **overrides) -> Job:
    """A job on ``synthetic:curve`` (fast epochs) with frequent snapshots, registered for teardown."""
    overrides.setdefault("snapshot_every", 0.05)
    job = training_job(model, data, device="cpu", **overrides)
    jobs.append(job)
    return job
