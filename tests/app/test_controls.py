"""A job card's Pause / Resume and Cancel buttons: a click reaches the job, the buttons follow its status, and a
click on a disabled button (sent before the browser disabled it) does nothing."""

import pytest

from iceviz.app.controls import JobControls
from iceviz.app.live import JobCard
from iceviz.runtime.job import JobStatus
from tests.conftest import wait_until


@pytest.fixture
def running_and_waiting(line_of_three):
    """The first of three jobs in a one-slot line running (until the test ends), the second waiting."""
    jobs, _ = line_of_three
    assert wait_until(lambda: jobs[0].status is JobStatus.RUNNING)
    return jobs


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
