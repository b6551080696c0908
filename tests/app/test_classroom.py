"""A class on one server (simulated sessions, no browsers): everyone starts the lesson at once; the server runs no
more jobs than its slots, every other job shows its place in line, and closing the tabs leaves no worker behind."""

from __future__ import annotations

import os
import time

import pytest

from iceviz.runtime.job import JobStatus
from iceviz.runtime.queue import JobQueue

SESSIONS = 30


def _rss() -> int:
    """This process's resident memory now [bytes] (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
def test_a_class_starting_the_lesson_shares_the_slots_and_leaves_nothing_behind(data_home, monkeypatch):
    from iceviz.app import explorer as ex

    queue = JobQueue(slots=1, memory=8 * 2**30)  # the server's one queue on a 2-core machine: one slot
    monkeypatch.setattr(ex, "server_queue", lambda: queue)
    rss_before = peak = _rss()
    apps = [ex.Explorer() for _ in range(SESSIONS)]
    for app in apps:
        app.lesson_field.value = "curve"
        app._on_lesson()
    jobs = [job for app in apps for _, job in app.lesson_board.jobs]
    assert len(jobs) == 2 * SESSIONS and len(queue.jobs) == 2 * SESSIONS

    most, pids = 0, set()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        running = queue.running
        most = max(most, len(running))
        pids |= {job.pid for job in running if getattr(job, "pid", None)}
        waiting = [job for job in jobs if job.status is JobStatus.QUEUED]
        places = sorted(job.position() for job in waiting)
        assert places == list(range(len(waiting)))  # every waiting job knows its place, no two share one
        for app in apps[:3]:
            app._poll()  # the cards of the first sessions, as their pages would show them
        peak = max(peak, _rss())
        time.sleep(0.2)
    # the lesson's pair starts together even on one slot (alone), never with another session's pair
    assert most == 2
    cards = {job_id: card for app in apps for job_id, card in app.lesson_board.cards_by_id.items()}
    for job in jobs:
        if job.status is JobStatus.QUEUED:
            place = job.position()
            cards[job.id].update()
            expected = "next in line for a free worker" if place == 0 else f"{place} job(s) ahead"
            text = cards[job.id].info.object
            assert expected in text or job.position() != place, text  # (unless the line moved meanwhile)

    for app in apps:  # every tab closes
        app.close()
    for job in jobs:
        assert job.wait(30).finished
    assert all(job.status in (JobStatus.CANCELLED, JobStatus.DONE, JobStatus.SHORT) for job in jobs)
    assert not queue.jobs and pids
    end = time.monotonic() + 15
    while any(_alive(pid) for pid in pids) and time.monotonic() < end:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in pids), "a worker process outlived its closed tab"
    grown = peak - rss_before  # the server's own memory, its sessions and their jobs' relays (workers apart)
    print(f"{SESSIONS} sessions: the server grew by {grown / 2**20:.0f} MiB; at most {most} jobs ran at once")
    assert grown < 2**30, f"the server grew by {grown / 2**20:.0f} MiB for {SESSIONS} sessions"
