"""A job card's Pause / Resume and Cancel buttons: a click reaches the job, the buttons follow its status, and a
click on a disabled button (sent before the browser disabled it) does nothing."""

import threading

import pytest

from iceviz.app.controls import JobControls
from iceviz.app.live import JobCard
from iceviz.runtime.job import Job, JobStatus
from iceviz.runtime.queue import JobQueue
from tests.conftest import wait_until


@pytest.fixture
def running_and_waiting():
    """Two jobs in a one-slot line: the first running until the test ends, the second waiting."""
    gate = threading.Event()

    class Held:
        def fit(self, control):
            while not gate.is_set():
                control.tick()
                gate.wait(0.01)

    queue = JobQueue(slots=1)
    jobs = [queue.submit(Job(f"j{i}", Held, snapshot_every=None), "a session") for i in range(2)]
    assert wait_until(lambda: jobs[0].status is JobStatus.RUNNING)
    yield jobs
    gate.set()
    for job in jobs:
        job.cancel()
        job.wait(5)


def test_pause_resume_and_cancel_clicks_reach_the_job_and_the_buttons_follow(running_and_waiting):
    job = running_and_waiting[0]
    card = JobCard(job, "dfnn #1")
    controls = card.controls
    assert (controls.pause_label, controls.pause_disabled, controls.cancel_disabled) == ("Pause", False, False)
    controls._handle_msg("pause")
    assert job.status is JobStatus.PAUSED and controls.pause_label == "Resume"
    controls._handle_msg("pause")
    assert job.status is JobStatus.RUNNING and controls.pause_label == "Pause"
    controls._handle_msg("cancel")
    assert job.wait(5) is JobStatus.CANCELLED
    card.update()
    assert controls.pause_disabled and controls.cancel_disabled
    assert card.view.objects == [card.info]  # an ended run folds to its line of text


def test_a_click_on_a_disabled_button_does_nothing(running_and_waiting):
    waiting = running_and_waiting[1]
    card = JobCard(waiting, "dfnn #2")
    assert card.controls.pause_disabled and not card.controls.cancel_disabled
    card.controls._handle_msg("pause")  # Pause is disabled while the job waits for a worker
    assert waiting.status is JobStatus.QUEUED
    calls = []
    controls = JobControls(on_pause=lambda: calls.append("pause"), on_cancel=lambda: calls.append("cancel"),
                           cancel_disabled=True)
    for message in ("pause", "cancel", "something else"):
        controls._handle_msg(message)
    assert calls == []
    controls.pause_disabled = False
    controls._handle_msg("pause")
    assert calls == ["pause"]
