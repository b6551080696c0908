"""The explorer's run boards (Training and Lesson tabs): cards, maps of the compared runs, exports."""

from __future__ import annotations

import time

from iceviz.app.board import HOLD_ROWS_POLLS
from iceviz.runtime.job import JobStatus
from iceviz.training.trainers import training_job


def test_a_card_shows_progress_one_poll_before_the_maps_come(data_home):
    """The first poll that finds a snapshot updates the card only; the next adds the row of maps (so the
    browser shows the climbing epochs before it spends seconds drawing figures); reset forgets both."""
    from iceviz.app import explorer as ex

    app = ex.Explorer()
    board = app.board
    job = training_job("dfnn", "synthetic:curve", snapshot_every=0.05, epochs=5).start()
    assert job.wait(60) is JobStatus.DONE, job.error
    board.add([job], ["dfnn #1"])
    app._poll()
    assert "epoch 5" in board.cards_by_id[job.id].info.object
    assert not board.rows and len(board.live) == 0
    app._poll()
    assert job.id in board.rows and len(board.live) == 1 and len(board.losses) == 1
    app._poll()
    assert len(board.live) == 1  # once
    board.reset()
    assert not board.rows and not board.seen and len(board.live) == 0 and len(board.cards) == 0


def test_maps_wait_a_few_polls_for_a_job_still_starting(data_home):
    """A second job that has not shown progress yet holds the first job's maps back (so its first progress is not
    sent behind them), but only for HOLD_ROWS_POLLS polls; once it has shown progress both rows come."""
    from iceviz.app import explorer as ex

    app = ex.Explorer()
    board = app.board
    first = training_job("dfnn", "synthetic:curve", snapshot_every=0.05, epochs=5).start()
    assert first.wait(60) is JobStatus.DONE, first.error
    second = training_job("pinn", "synthetic:curve", snapshot_every=0.05, epochs=5)  # queued, not started
    board.add([first, second], ["dfnn #1", "pinn #2"])
    app._poll()  # the first card shows progress
    for _ in range(HOLD_ROWS_POLLS):
        app._poll()
        assert not board.rows
    app._poll()
    assert set(board.rows) == {first.id} and len(board.live) == 1
    second.start()
    assert second.wait(60) is JobStatus.DONE, second.error
    app._poll()
    assert "epoch 5" in board.cards_by_id[second.id].info.object and len(board.live) == 1
    app._poll()
    assert set(board.rows) == {first.id, second.id} and len(board.live) == 2


def test_the_lesson_leaves_the_plan_to_the_fields_size_and_caps_only_the_time(data_home, monkeypatch):
    """Flux runs end by their plan, patience or seconds: the lesson must not cap them at a small epoch count."""
    from iceviz.app import explorer as ex
    from iceviz.data.specs import load_problem
    from iceviz.data.splits import validation_mask
    from iceviz.models.registry import flux_size_defaults

    app = ex.Explorer()
    submitted = []
    monkeypatch.setattr(app.queue, "submit_together", lambda jobs: submitted.extend(jobs) or jobs)  # not run
    app._on_lesson()
    assert [job.name for job in submitted] == ["dfnn", "pinn"]
    problem = load_problem(f"synthetic:{app.lesson_field.value}?noise={app.lesson_noise.value:g}")
    held, _ = validation_mask(problem.train, problem.bounds)
    planned = flux_size_defaults(int((~held).sum()))["planned_epochs"]
    for job in submitted:
        params = job._make_trainer().params  # the recipe the worker would build
        assert params.seconds == 60 and params.epochs >= planned and params.planned_epochs == planned


def test_a_dfnn_map_and_its_exports_show_zero_divergence_as_zero(data_home, tmp_path):
    """The live map keeps a physical colour floor and says "|∇·q| < … everywhere"; so do the NetCDF (a
    comment) and the PNG (its title); a PINN's leftover divergence gets no such note."""
    import xarray as xr

    from iceviz.app import explorer as ex
    from iceviz.viz import maps

    app = ex.Explorer()
    dfnn = training_job("dfnn", "synthetic:curve", snapshot_every=0.05, epochs=5).start()
    pinn = training_job("pinn", "synthetic:curve", snapshot_every=0.05, epochs=5).start()
    for job in (dfnn, pinn):
        assert job.wait(60) is JobStatus.DONE, job.error
    board = app.board
    board.add([dfnn, pinn], ["dfnn #1", "pinn #2"])
    for _ in range(3):
        app._poll()
    assert board.rows[dfnn.id].divergence.note.text.endswith("everywhere")
    assert board.rows[pinn.id].divergence.note.text == ""
    assert board.rows[dfnn.id].divergence.mapper.high >= maps.DIVERGENCE_FLOOR
    board.export_job.value = dfnn.id
    (tmp_path / "p.nc").write_bytes(board.netcdf_bytes().getvalue())
    with xr.open_dataset(tmp_path / "p.nc") as ds:
        assert "everywhere" in ds["divergence"].attrs["comment"]
    assert board.png_bytes().getvalue()[:8] == b"\x89PNG\r\n\x1a\n"
    board.export_job.value = pinn.id
    (tmp_path / "q.nc").write_bytes(board.netcdf_bytes().getvalue())
    with xr.open_dataset(tmp_path / "q.nc") as ds:
        assert "comment" not in ds["divergence"].attrs


def test_finished_runs_collapse_and_clear_and_only_compared_runs_have_maps(data_home):
    from iceviz.app import explorer as ex

    app = ex.Explorer()
    board = app.board
    first = training_job("dfnn", "synthetic:curve", snapshot_every=0.05, epochs=3).start()
    second = training_job("nn", "synthetic:curve", snapshot_every=0.05, epochs=3).start()
    for job in (first, second):
        assert job.wait(60) is JobStatus.DONE, job.error
    board.add([first], ["dfnn #1"])
    board.add([second], ["nn #2"])  # a new start: its maps replace the compared ones
    for _ in range(3):
        app._poll()
    assert board.compare.value == [second.id] and set(board.rows) == {second.id} and len(board.live) == 1
    card = board.cards_by_id[first.id]
    assert list(card.view) == [card.info] and "ETA" not in card.info.object
    board.compare_runs([first.id, second.id])  # choose both: both rows, in the order the runs started
    for _ in range(2):
        app._poll()
    assert [row for row in board.live] == [board.rows[first.id].view, board.rows[second.id].view]
    assert len(board.table.value) == 2 and board.table.visible and not board.clear_button.disabled
    running = training_job("pinn", "synthetic:curve", snapshot_every=0.05, epochs=10_000, seconds=60).start()
    board.add([running], ["pinn #3"])
    board.clear_finished()
    assert [label for label, _ in board.jobs] == ["pinn #3"] and len(board.cards) == 1
    assert len(board.table.value) == 1 and list(board.export_job.options) == ["pinn #3"]
    assert first.id not in board.rows and second.id not in board.rows
    running.cancel()
    running.wait(30)


def test_the_lesson_has_its_own_runs_and_colour_scales(data_home, monkeypatch):
    """An earlier run in the Training tab (the synthetic glacier: |q| up to ~1e6 m²/yr) changes nothing in the
    lesson: its cards, rows and colour limits are its own; a second Start with another penalty adds only a PINN."""
    from iceviz.app import explorer as ex

    app = ex.Explorer()
    glacier = training_job("dfnn", "synthetic:glacier", snapshot_every=0.05, epochs=3).start()
    assert glacier.wait(60) is JobStatus.DONE, glacier.error
    app.board.add([glacier])
    lesson = []

    def run_now(jobs):
        lesson.extend(jobs)
        return [job.start() for job in jobs]

    monkeypatch.setattr(app.queue, "submit_together", run_now)
    app.lesson_field.value = "curve"
    app._on_lesson()
    app.lesson_weight.value = 0.5
    app._on_lesson()
    assert [job.name for job in lesson] == ["dfnn", "pinn", "pinn"]
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not all(job.latest() is not None and job.history() for job in lesson):
        time.sleep(0.2)
    for job in lesson:
        job.cancel()  # an epoch done is enough for the maps
    for job in lesson:
        job.wait(60)
    for _ in range(HOLD_ROWS_POLLS + 3):
        app._poll()
    board = app.lesson_board
    assert [label for label, _ in board.jobs] == ["dfNN · curve, noise 0.02", "PINN 0.02 · curve, noise 0.02",
                                                  "PINN 0.5 · curve, noise 0.02"]
    assert glacier.id not in board.cards_by_id and all(job.id not in app.board.cards_by_id for job in lesson)
    assert set(board.rows) == {job.id for job in lesson}
    glacier_limit = app.board.rows[glacier.id].flux.mapper.high
    for job in lesson:
        # the curve field's own scale (its |q| ~1e3 m²/yr; an early epoch's prediction may overshoot it 10x)
        assert board.rows[job.id].flux.mapper.high < glacier_limit / 10
    app._on_reset()
    assert not board.jobs and len(app.board.jobs) == 1


def test_the_sidebar_says_when_the_budget_is_too_small_to_mean_anything(data_home):
    from iceviz.app import explorer as ex

    app = ex.Explorer()
    assert app.budget_note.object == ""  # 30 s for dfNN, PINN and NN
    app.state.seconds = 5
    assert "below what gives a meaningful result" in app.budget_note.object and "dfnn 10 s" in app.budget_note.object
    app.state.seconds = 10
    assert app.budget_note.object == ""
