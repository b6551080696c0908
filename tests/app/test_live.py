"""Job cards and live rows: what the user reads about a job, drawn from its snapshots."""


from iceviz.app.live import JobCard, LiveRow, shared_limits
from iceviz.training.job import JobStatus
from iceviz.training.trainers import training_job
from iceviz.viz.live_figures import shared_ranges


def test_a_failed_worker_job_shows_its_message_on_the_card():
    job = training_job("dfnn", "synthetic:nope", isolate=True).start()
    assert job.wait(60) is JobStatus.FAILED
    card = JobCard(job, "dfnn #1")
    card.update()
    assert "failed" in card.info.object and "unknown synthetic NAME 'nope'" in card.info.object
    assert card.pause.disabled and card.cancel.disabled


def test_live_row_draws_the_snapshot_and_follows_new_ones():
    job = training_job("pinn", "synthetic:curve", snapshot_every=0.05, epochs=30).start()
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
    # a wider shared limit (another model diverges more) redraws with the new scale
    row.push(final, {**shared_limits([final]), "div_limit": 10 * limit}, job.history())
    assert row.divergence.mapper.high == 10 * limit
