"""The job queue runs at most N jobs at once and starts the next when one ends."""

import threading
import time

from iceviz.training.job import Job, JobStatus
from iceviz.training.queue import JobQueue


class GatedTrainer:
    def __init__(self, gate: threading.Event, started: list):
        self.gate, self.started = gate, started

    def fit(self, control):
        self.started.append(self)
        while not self.gate.is_set():
            control.tick()
            time.sleep(0.005)
        return "ok"


def _wait(predicate, timeout=5.0):
    end = time.time() + timeout
    while time.time() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_at_most_slots_jobs_run_and_the_rest_wait():
    gates = [threading.Event() for _ in range(3)]
    started: list = []
    queue = JobQueue(slots=2)
    jobs = [queue.submit(Job(f"j{i}", (lambda g=g: GatedTrainer(g, started)), snapshot_every=None)) for i, g in
            enumerate(gates)]
    assert _wait(lambda: len(started) == 2)
    time.sleep(0.1)
    assert len(started) == 2 and jobs[2].status is JobStatus.QUEUED and queue.position(jobs[2]) == 0
    gates[0].set()
    assert _wait(lambda: jobs[2].status is JobStatus.RUNNING)
    for g in gates:
        g.set()
    for j in jobs:
        assert j.wait(5) is JobStatus.DONE


def test_cancel_all_stops_running_and_queued_jobs():
    gate = threading.Event()
    started: list = []
    queue = JobQueue(slots=1)
    jobs = [queue.submit(Job(f"j{i}", lambda: GatedTrainer(gate, started), snapshot_every=None)) for i in range(3)]
    assert _wait(lambda: len(started) == 1)
    queue.cancel_all()
    for j in jobs:
        j.wait(2)
    assert [j.status for j in jobs] == [JobStatus.CANCELLED] * 3
    assert len(started) == 1 and queue.running == []
