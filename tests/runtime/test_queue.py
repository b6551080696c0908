"""The job queue runs at most N jobs at once, starts the next when one ends, and shares its slots fairly
between sessions."""

import threading
import time

import pytest

from iceviz.runtime.job import Job, JobStatus
from iceviz.runtime.queue import JobQueue, QueueFull


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


def test_a_queue_resized_starts_waiting_jobs_at_once_and_lets_running_ones_finish():
    gate = threading.Event()
    started: list = []
    queue = JobQueue(slots=1)
    jobs = [queue.submit(Job(f"j{i}", lambda: GatedTrainer(gate, started), snapshot_every=None), f"s{i}")
            for i in range(3)]
    assert _wait(lambda: len(started) == 1)
    queue.resize(2)  # a worker joined the cluster
    assert _wait(lambda: len(started) == 2) and jobs[2].status is JobStatus.QUEUED
    queue.resize(0)  # every worker left: at least one slot stays, the running jobs go on
    assert queue.slots == 1 and all(j.status is JobStatus.RUNNING for j in jobs[:2])
    gate.set()
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


def gated(name: str, gate: threading.Event, started: list) -> Job:
    return Job(name, lambda: GatedTrainer(gate, started), snapshot_every=None)


def test_sessions_take_turns_and_positions_follow_the_turns():
    gate = threading.Event()
    started: list = []
    queue = JobQueue(slots=1)
    first = queue.submit(gated("a0", gate, started), "a")  # runs
    a = [queue.submit(gated(f"a{i}", gate, started), "a") for i in (1, 2, 3)]
    b = [queue.submit(gated(f"b{i}", gate, started), "b") for i in (1, 2)]
    c = queue.submit(gated("c1", gate, started), "c")
    assert _wait(lambda: first.status is JobStatus.RUNNING)
    # a's three came first, but b and c do not wait behind all of them
    assert [j.name for j in queue.order()] == ["a1", "b1", "c1", "a2", "b2", "a3"]
    assert queue.position(c) == 2 and queue.position(first) is None and c.position() == 2
    assert queue.session("b").position(b[1]) == 4 and [j.name for j in queue.session("b").jobs] == ["b1", "b2"]
    gate.set()
    for job in [first, *a, *b, c]:
        assert job.wait(5) is JobStatus.DONE


def test_a_session_past_its_cap_is_refused_and_nothing_is_queued():
    gate = threading.Event()
    started: list = []
    queue = JobQueue(slots=1, per_session=2)
    running = queue.submit(gated("r", gate, started), "s")
    waiting = [queue.submit(gated(f"w{i}", gate, started), "s") for i in range(2)]
    extra = gated("x", gate, started)
    with pytest.raises(QueueFull, match="2 of this session's jobs are already waiting for a free worker .at most 2."):
        queue.submit(extra, "s")
    assert extra.status is JobStatus.QUEUED and extra not in queue.jobs
    other = queue.submit(gated("o", gate, started), "t")  # another session is not held back by it
    assert queue.position(other) == 1
    queue.session("s").cancel_all()  # a closed tab cancels its own jobs only
    assert all(j.wait(2) is JobStatus.CANCELLED for j in [running, *waiting])
    assert _wait(lambda: other.status is JobStatus.RUNNING)
    gate.set()
    assert other.wait(5) is JobStatus.DONE


def test_jobs_submitted_together_start_together_even_past_the_slots_when_idle():
    gate = threading.Event()
    started: list = []
    queue = JobQueue(slots=1)
    blocker = queue.submit(gated("blocker", gate, started), "x")
    pair = queue.submit_together([gated("dfnn", gate, started), gated("pinn", gate, started)], "lesson")
    late = queue.submit(gated("late", gate, started), "y")
    assert _wait(lambda: blocker.status is JobStatus.RUNNING)
    time.sleep(0.1)
    # the pair needs two slots of one: it waits until nothing runs, and the later single job does not jump it
    assert [j.status for j in pair] == [JobStatus.QUEUED] * 2 and late.status is JobStatus.QUEUED
    blocker.cancel()
    assert _wait(lambda: all(j.status is JobStatus.RUNNING for j in pair))
    assert late.status is JobStatus.QUEUED and queue.position(late) == 0
    gate.set()
    assert all(j.wait(5) is JobStatus.DONE for j in [*pair, late])


def test_the_server_has_one_queue():
    from iceviz.runtime.queue import server_queue

    assert server_queue() is server_queue() and server_queue().slots >= 1


def test_memory_admits_what_fits_and_refuses_what_never_could():
    from iceviz.runtime.queue import JobTooLarge

    gate = threading.Event()
    started: list = []
    queue = JobQueue(slots=4, memory=10)
    big, small, huge = (gated(n, gate, started) for n in ("big", "small", "huge"))
    big.memory, small.memory, huge.memory = 8, 4, 11
    with pytest.raises(JobTooLarge, match=r"huge would need about .* GiB by its settings, more than this server"):
        queue.submit(huge, "s")
    queue.submit(big, "s")
    queue.submit(small, "t")
    assert _wait(lambda: big.status is JobStatus.RUNNING)
    time.sleep(0.1)
    assert small.status is JobStatus.QUEUED and queue.position(small) == 0  # 8 + 4 > 10: it waits (slots free)
    big.cancel()
    assert _wait(lambda: small.status is JobStatus.RUNNING)
    gate.set()
    assert small.wait(5) is JobStatus.DONE


def test_the_memory_budget_is_settable(monkeypatch):
    from iceviz.runtime.queue import memory_budget

    monkeypatch.setenv("ICEVIZ_MEMORY_BUDGET", "1.5")
    assert memory_budget() == int(1.5 * 2**30)
    monkeypatch.setenv("ICEVIZ_MEMORY_BUDGET", "lots")
    with pytest.raises(ValueError, match="give the budget in GiB"):
        memory_budget()
    monkeypatch.delenv("ICEVIZ_MEMORY_BUDGET")
    assert memory_budget() > 0


def test_a_server_queue_forgets_the_jobs_that_ended():
    gate = threading.Event()
    started: list = []
    queue = JobQueue(slots=1)
    ran = queue.submit(gated("ran", gate, started), "s")
    dropped = queue.submit(gated("dropped", gate, started), "s")
    dropped.cancel()  # before it ever ran
    assert _wait(lambda: ran.status is JobStatus.RUNNING)
    gate.set()
    assert ran.wait(5) is JobStatus.DONE and dropped.wait(5) is JobStatus.CANCELLED
    assert _wait(lambda: queue.jobs == []) and queue.session("s").jobs == [] and queue.running == []


def test_a_call_task_gives_its_result_and_an_expected_error_in_its_own_words():
    from iceviz.runtime.job import CallTask

    ok = Job("sum", CallTask(sum, ([1, 2, 3],)), snapshot_every=None).start()
    assert ok.wait(5) is JobStatus.DONE and ok.result == 6
    expected = Job("int", CallTask(int, ("x",), (ValueError,)), snapshot_every=None).start()
    assert expected.wait(5) is JobStatus.FAILED and expected.error == "invalid literal for int() with base 10: 'x'"
    other = Job("int", CallTask(int, ("x",)), snapshot_every=None).start()
    assert other.wait(5) is JobStatus.FAILED and other.error.startswith("ValueError: invalid literal")


def test_the_quick_queue_is_the_process_s_own_with_one_slot():
    from iceviz.runtime.queue import quick_queue, server_queue

    assert quick_queue() is quick_queue() and quick_queue() is not server_queue() and quick_queue().slots == 1
