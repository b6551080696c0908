"""The explorer's training view: a job's card and its live row of maps, from the job's snapshots."""

from __future__ import annotations

from iceviz.training.job import JobStatus
from iceviz.training.trainers import training_job


def test_a_card_shows_progress_one_poll_before_the_maps_come(data_home):
    """The first poll that finds a snapshot updates the card only; the next adds the row of maps (so the
    browser shows the climbing epochs before it spends seconds drawing figures); reset forgets both."""
    from iceviz.app import explorer as ex

    app = ex.Explorer()
    job = training_job("dfnn", "synthetic:curve", snapshot_every=0.05, epochs=5).start()
    assert job.wait(60) is JobStatus.DONE, job.error
    app._add_jobs([job], ["dfnn #1"])
    app._poll()
    assert "epoch 5" in app.cards_by_id[job.id].info.object
    assert not app.rows and len(app.live) == 0
    app._poll()
    assert job.id in app.rows and len(app.live) == 1 and len(app.losses) == 1
    app._poll()
    assert len(app.live) == 1  # once
    app._on_reset()
    assert not app.rows and not app.seen and len(app.live) == 0


def test_maps_wait_a_few_polls_for_a_job_still_starting(data_home):
    """A second job that has not shown progress yet holds the first job's maps back (so its first progress is not
    sent behind them), but only for HOLD_ROWS_POLLS polls; once it has shown progress both rows come."""
    from iceviz.app import explorer as ex

    app = ex.Explorer()
    first = training_job("dfnn", "synthetic:curve", snapshot_every=0.05, epochs=5).start()
    assert first.wait(60) is JobStatus.DONE, first.error
    second = training_job("pinn", "synthetic:curve", snapshot_every=0.05, epochs=5)  # queued, not started
    app._add_jobs([first, second], ["dfnn #1", "pinn #2"])
    app._poll()  # the first card shows progress
    for _ in range(ex.HOLD_ROWS_POLLS):
        app._poll()
        assert not app.rows
    app._poll()
    assert set(app.rows) == {first.id} and len(app.live) == 1
    second.start()
    assert second.wait(60) is JobStatus.DONE, second.error
    app._poll()
    assert "epoch 5" in app.cards_by_id[second.id].info.object and len(app.live) == 1
    app._poll()
    assert set(app.rows) == {first.id, second.id} and len(app.live) == 2


def test_the_lesson_leaves_the_plan_to_the_fields_size_and_caps_only_the_time(data_home, monkeypatch):
    """Flux runs end by their plan, patience or seconds: the lesson must not cap them at a small epoch count."""
    from iceviz.app import explorer as ex
    from iceviz.data.specs import load_problem
    from iceviz.data.splits import validation_mask
    from iceviz.models.registry import flux_size_defaults

    app = ex.Explorer()
    submitted = []
    monkeypatch.setattr(app.lesson_queue, "submit", lambda job: submitted.append(job) or job)  # built, not run
    app._on_lesson()
    assert [job.name for job in submitted] == ["dfnn", "pinn"]
    problem = load_problem(f"synthetic:{app.lesson_field.value}?noise={app.lesson_noise.value:g}")
    held, _ = validation_mask(problem.train, problem.bounds)
    planned = flux_size_defaults(int((~held).sum()))["planned_epochs"]
    for job in submitted:
        params = job._make_trainer().params  # the recipe the worker would build
        assert params.seconds == 60 and params.epochs >= planned and params.planned_epochs == planned
