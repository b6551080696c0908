"""Job cards and live rows: what the user reads about a job, drawn from its snapshots."""

import time

from iceviz.app.live import TABLE_FORMATS, JobCard, LiveRow, metrics_frame, shared_limits, waiting_text
from iceviz.runtime.job import Job, JobStatus
from iceviz.training.trainers import training_job
from iceviz.viz.live_figures import shared_ranges


def test_a_failed_worker_job_shows_its_message_on_the_card():
    job = training_job("dfnn", "synthetic:nope", isolate=True).start()
    assert job.wait(60) is JobStatus.FAILED
    card = JobCard(job, "dfnn #1")
    card.update()
    assert "failed" in card.info.object and "unknown synthetic NAME 'nope'" in card.info.object
    assert card.controls.pause_disabled and card.controls.cancel_disabled


def test_live_row_draws_the_snapshot_and_follows_new_ones():
    job = training_job("pinn", "synthetic:curve", snapshot_every=0.05, planned_epochs=30).start()
    assert job.wait(60) is JobStatus.DONE, job.error
    final = job.latest()
    ds = final.fields
    row = LiveRow("pinn", final, shared_limits([final]), job.history(),
                  shared_ranges((ds.x.values[0], ds.x.values[-1], ds.y.values[0], ds.y.values[-1])))
    image = row.divergence.source.data["image"][0]
    assert image.shape == ds["divergence"].shape
    limit = shared_limits([final])["div_limit"]
    assert (row.divergence.mapper.low, row.divergence.mapper.high) == (-limit, limit)  # symmetric
    assert len(row.loss.sources["loss_data"].data["epoch"]) > 0
    # the run held out validation points: their error beside the loss, and the kept epoch marked
    history = job.history()
    first = [h for h in history if "phase" not in h]
    assert len(row.loss.validation.data["epoch"]) == len(first) == 30
    # then the refit on every point, up to the kept epoch, drawn over the same epochs
    refit = row.loss.sources["refit_data_loss"].data["epoch"]
    assert list(refit) == list(range(1, job.result.best_epoch + 1)) and len(history) == 30 + len(refit)
    card = JobCard(job, "pinn #1")
    card.update()  # the card counts the first phase's epochs and says the model was refitted
    assert f"epoch 30, refitted on all points to epoch {job.result.best_epoch}" in card.info.object
    assert row.loss.kept.span.location == history[-1]["best_epoch"] == job.result.best_epoch
    # the metrics table: the validation RMSE [m²/yr] beside the test RMSE, formatted like it
    frame = metrics_frame([("pinn", job)])
    columns = list(frame.columns)
    assert columns.index("val_rmse_m2_per_yr") == columns.index("rmse_m2_per_yr") + 1
    assert frame.loc[0, "val_rmse_m2_per_yr"] == final.metrics["val_rmse_phys"] > 0
    assert frame.loc[0, "rmse_m2_per_yr"] == final.metrics["rmse_phys"]
    assert TABLE_FORMATS["val_rmse_m2_per_yr"] == TABLE_FORMATS["rmse_m2_per_yr"]
    # a wider shared limit (another model diverges more) redraws with the new scale
    row.push(final, {**shared_limits([final]), "div_limit": 10 * limit}, job.history())
    assert row.divergence.mapper.high == 10 * limit


def test_the_metrics_table_leaves_the_validation_rmse_blank_until_a_run_reports_it():
    job = training_job("dfnn", "synthetic:curve")  # not started: no snapshot yet
    frame = metrics_frame([("dfnn #1", job)])
    assert frame.loc[0, "epochs"] == 0 and frame["val_rmse_m2_per_yr"].isna().all()


def test_a_card_says_what_a_job_waits_for_before_its_first_epoch():
    job = training_job("dfnn", "synthetic:curve")  # not started: queued
    card = JobCard(job, "dfnn #1")
    assert "waiting for a free worker" in card.info.object and "epoch 0" not in card.info.object


def test_a_waiting_job_says_its_place_in_the_servers_line(line_of_three):
    jobs, blocked = line_of_three
    assert waiting_text(jobs[0]) == "starting its worker"
    assert waiting_text(jobs[1]) == "next in line for a free worker"
    assert waiting_text(jobs[2]) == "waiting for a free worker: 1 job(s) ahead"
    assert waiting_text(Job("alone", blocked)) == "waiting for a free worker"  # in no queue


def test_a_card_with_nothing_new_to_say_sends_nothing_and_shows_every_change(line_of_three):
    """A class's waiting cards are polled twice a second: an update that would show the same touches no widget;
    a new place in line is shown at once."""
    jobs, _ = line_of_three
    card = JobCard(jobs[2], "dfnn #3")
    assert "1 job(s) ahead" in card.info.object
    changes: list[str] = []
    for widget, name in ((card.info, "object"), (card.progress, "value"), (card.controls, "pause_label"),
                         (card.controls, "pause_disabled"), (card.progress, "bar_color")):
        widget.param.watch(lambda event: changes.append(event.name), name, onlychanged=False)
    for _ in range(5):
        card.update()
    assert changes == []
    jobs[0].cancel()
    assert jobs[0].wait(5).finished
    deadline = time.monotonic() + 5
    while "next in line" not in card.info.object and time.monotonic() < deadline:
        card.update()
        time.sleep(0.01)
    assert "next in line for a free worker" in card.info.object and "object" in changes
