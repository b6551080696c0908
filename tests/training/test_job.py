"""Background training jobs: status, snapshots, history, pause / resume / cancel, failures, seeds.

Two kinds of trainer run here: a tiny fake one (a plain class with ``fit(control)``)
whose steps the test controls exactly, and real :class:`FluxTrainer` jobs on
``synthetic:curve`` (a few hundred training points: fast epochs).
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time

import numpy as np
import pytest

from iceviz.data.problem import FluxObservations
from iceviz.data.specs import load_problem
from iceviz.training.base import FitResult
from iceviz.training.flux_trainer import FluxTrainer
from iceviz.runtime.job import Control, Job, JobStatus
from iceviz.training.checks import TrainingFailed
from iceviz.training.snapshot import Snapshot
from iceviz.training.trainers import make_trainer, training_job
from tests.conftest import curve_job, wait_until

LONG = 10**6  # an epoch budget no test waits for



# --------------------------------------------------------------------------- helpers


class FakeTrainer:
    """Counts steps; records and publishes like a real trainer.

    gate : when given, ``fit`` waits for it before the first step (so a test can see RUNNING).
    fail_at : raise ``exc`` instead of doing this step.
    """

    def __init__(self, steps: int = LONG, delay: float = 0.002, gate: threading.Event | None = None,
                 fail_at: int | None = None, exc: Exception | None = None):
        self.steps, self.delay, self.gate = steps, delay, gate
        self.fail_at, self.exc = fail_at, exc
        self.step = 0
        self.fit_called = False

    def _snapshot(self, control: Control, final: bool = False) -> Snapshot:
        return Snapshot(model="fake", step=self.step, epoch=self.step, seconds=control.elapsed(),
                        progress=min(1.0, self.step / self.steps), losses={"total": 1.0 / (1 + self.step)},
                        final=final)

    def fit(self, control: Control) -> dict:
        self.fit_called = True
        if self.gate is not None:
            assert self.gate.wait(10)
        control.start_clock()
        while self.step < self.steps:
            control.tick()
            if self.fail_at is not None and self.step == self.fail_at:
                raise self.exc or RuntimeError(f"boom at step {self.step}")
            self.step += 1
            control.record({"step": self.step, "seconds": control.elapsed()})
            if control.snapshot_due():
                control.publish(self._snapshot(control))
            time.sleep(self.delay)
        control.publish(self._snapshot(control, final=True))
        return {"steps": self.step}


def fake_job(jobs: list[Job], trainer: FakeTrainer, **kwargs) -> Job:
    job = Job("fake", lambda: trainer, **kwargs)
    jobs.append(job)
    return job


# --------------------------------------------------------------------------- fake trainer


def test_fake_job_status_result_and_bounded_ordered_history(jobs):
    gate = threading.Event()
    trainer = FakeTrainer(steps=50, gate=gate)
    job = fake_job(jobs, trainer, snapshot_every=0.01, history_size=20)
    assert job.status is JobStatus.QUEUED
    assert job.latest() is None and job.history() == [] and job.result is None
    job.start()
    assert job.status is JobStatus.RUNNING  # held at the gate: cannot have finished
    assert job.alive
    gate.set()
    assert job.wait(10) is JobStatus.DONE
    assert not job.alive
    assert job.result == {"steps": 50}
    assert job.trainer is trainer
    assert job.error is None
    history = job.history()
    assert len(history) == 20  # bounded to history_size, oldest dropped
    assert [h["step"] for h in history] == list(range(31, 51))
    latest = job.latest()
    assert latest.final is True and latest.step == 50


def test_start_twice_is_an_error(jobs):
    job = fake_job(jobs, FakeTrainer(steps=3)).start()
    with pytest.raises(RuntimeError, match="already started"):
        job.start()
    assert job.wait(5) is JobStatus.DONE


def test_fake_job_pause_stops_steps_and_clock_then_resume_finishes(jobs):
    trainer = FakeTrainer(steps=200)
    job = fake_job(jobs, trainer, snapshot_every=None)
    t0 = time.perf_counter()
    job.start()
    assert wait_until(lambda: trainer.step >= 10)
    job.pause()
    assert job.status is JobStatus.PAUSED
    time.sleep(0.1)  # let an in-flight step finish
    step, elapsed = trainer.step, job.control.elapsed()
    time.sleep(0.4)
    assert trainer.step == step, "steps advanced while paused"
    assert job.control.elapsed() == elapsed, "the training clock ran while paused"
    assert job.status is JobStatus.PAUSED and job.alive
    job.resume()
    assert job.status is JobStatus.RUNNING
    assert job.control.elapsed() < elapsed + 0.25  # the 0.5 s pause is not counted
    assert job.wait(20) is JobStatus.DONE
    wall = time.perf_counter() - t0
    assert trainer.step == 200 and job.result == {"steps": 200}
    # the clock stood still at least over the 0.4 s checked above (the pause began when the step in flight
    # ended: up to 0.1 s later under load)
    assert job.latest().seconds <= wall - 0.4 + 1e-3


def test_pause_and_resume_are_no_ops_outside_running(jobs):
    job = fake_job(jobs, FakeTrainer(steps=5))
    job.pause()
    assert job.status is JobStatus.QUEUED
    job.start()
    assert job.wait(5) is JobStatus.DONE
    job.pause()
    job.resume()
    assert job.status is JobStatus.DONE


def test_fake_job_cancel_while_running(jobs):
    trainer = FakeTrainer()
    job = fake_job(jobs, trainer).start()
    assert wait_until(lambda: trainer.step >= 5)
    t0 = time.perf_counter()
    job.cancel()
    assert job.wait(1.0) is JobStatus.CANCELLED
    assert time.perf_counter() - t0 < 1.0
    assert not job.alive
    assert job.result is None and job.error is None


def test_fake_job_cancel_while_paused(jobs):
    trainer = FakeTrainer()
    job = fake_job(jobs, trainer).start()
    assert wait_until(lambda: trainer.step >= 5)
    job.pause()
    time.sleep(0.1)
    step = trainer.step
    t0 = time.perf_counter()
    job.cancel()
    assert job.wait(1.0) is JobStatus.CANCELLED
    assert time.perf_counter() - t0 < 1.0
    assert trainer.step == step, "a cancelled paused job must not take another step"


def test_cancel_queued_job_never_builds_the_trainer(jobs):
    calls = []
    job = Job("never", lambda: calls.append(1) or FakeTrainer(steps=3))
    jobs.append(job)
    job.cancel()
    assert job.status is JobStatus.CANCELLED
    assert job.start() is job
    assert not job.alive
    assert job.wait(1) is JobStatus.CANCELLED
    time.sleep(0.05)
    assert calls == [] and job.trainer is None and job.result is None


def test_cancel_while_the_trainer_is_being_built(jobs):
    building, release = threading.Event(), threading.Event()
    trainer = FakeTrainer(steps=3)

    def make():
        building.set()
        release.wait(5)
        return trainer

    job = Job("slow-build", make)
    jobs.append(job)
    job.start()
    assert building.wait(5)
    job.cancel()
    release.set()
    assert job.wait(1.0) is JobStatus.CANCELLED
    assert not trainer.fit_called


def test_trainer_exception_becomes_failed_status_never_reaches_caller(jobs, monkeypatch):
    hooked = []
    monkeypatch.setattr(threading, "excepthook", lambda args: hooked.append(args))
    trainer = FakeTrainer(fail_at=3)
    job = fake_job(jobs, trainer)
    job.start()  # must not raise
    assert job.wait(5) is JobStatus.FAILED  # must not raise either
    assert job.error == "RuntimeError: boom at step 3"
    assert "boom at step 3" in job.traceback and "fit" in job.traceback
    assert job.result is None
    assert hooked == [], "the exception escaped the job thread"
    assert trainer.step == 3


def test_training_failed_message_is_kept_verbatim(jobs):
    job = fake_job(jobs, FakeTrainer(fail_at=0, exc=TrainingFailed("loss is nan; try a lower learning rate")))
    assert job.start().wait(5) is JobStatus.FAILED
    assert job.error == "loss is nan; try a lower learning rate"


def test_exception_while_building_the_trainer_fails_the_job(jobs):
    def make():
        raise ValueError("cannot build this")

    job = Job("bad-build", make)
    jobs.append(job)
    assert job.start().wait(5) is JobStatus.FAILED
    assert job.error == "ValueError: cannot build this"
    assert job.trainer is None


# --------------------------------------------------------------------------- real FluxTrainer jobs


def test_flux_job_runs_to_done_with_final_snapshot_and_history(jobs):
    job = curve_job(jobs, planned_epochs=25, grid_shape=(20, 20))
    assert job.status is JobStatus.QUEUED
    assert job.start().wait(30) is JobStatus.DONE, job.error
    result = job.result
    assert isinstance(result, FitResult)
    batch = job.trainer.params.batch_size
    n, n_all = len(job.trainer.q_train), len(job.trainer.q_all)  # the points fitted: validation held out, then all
    assert 1 <= result.best_epoch <= 25 and result.refit
    # 25 epochs (the plan) on the fitted points, then the refit on every point up to the kept epoch
    assert result.epochs == 25 and result.steps == (25 * math.ceil(n / min(batch, n))
                                                    + result.best_epoch * math.ceil(n_all / min(batch, n_all)))
    assert {"rmse", "mae", "mad", "rmse_phys", "mae_phys", "mad_phys"} <= set(result.metrics)

    snap = job.latest()
    assert snap.final is True and snap.progress == 1.0
    assert snap.step == result.steps and snap.epoch == 25 and snap.model == "dfnn" and snap.device == "cpu"
    assert snap.metrics["rmse"] == result.metrics["rmse"]
    fields = snap.fields
    for name in ("qx", "qy", "divergence", "error"):
        assert name in fields and fields[name].shape == tuple(job.trainer.grid_shape), name
        assert np.isfinite(fields[name].values).all(), name
    # the error field is prediction minus the known synthetic truth, on the grid
    problem = load_problem("synthetic:curve")
    xx, yy = np.meshgrid(fields["x"].values, fields["y"].values)
    truth = problem.truth(np.column_stack([xx.ravel(), yy.ravel()]))
    expected = np.hypot(fields["qx"].values - truth[:, 0].reshape(xx.shape),
                        fields["qy"].values - truth[:, 1].reshape(xx.shape))
    np.testing.assert_allclose(fields["error"].values, expected, rtol=1e-10, atol=1e-6)
    assert fields["error"].values.max() > 0

    history = job.history()
    assert [h["epoch"] for h in history if "phase" not in h] == list(range(1, 26))
    assert [h["epoch"] for h in history if h.get("phase") == "refit"] == list(range(1, result.best_epoch + 1))
    steps = [h["step"] for h in history]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)
    assert all(np.isfinite(h["epoch_data_loss" if "phase" not in h else "refit_data_loss"]) for h in history)


def test_flux_job_history_is_bounded(jobs):
    job = Job("dfnn", lambda: make_trainer("dfnn", "synthetic:curve", device="cpu", epochs=30, refit=False),
              snapshot_every=None, history_size=7)
    jobs.append(job)
    assert job.start().wait(30) is JobStatus.DONE, job.error
    assert [h["epoch"] for h in job.history()] == list(range(24, 31))


def test_flux_job_pause_freezes_steps_and_is_excluded_from_the_time_budget(jobs):
    job = curve_job(jobs, epochs=LONG, seconds=1.0)
    t0 = time.perf_counter()
    job.start()
    assert wait_until(lambda: len(job.history()) >= 3)
    job.pause()
    assert job.status is JobStatus.PAUSED
    time.sleep(0.1)
    step, n_history = job.trainer.step, len(job.history())
    time.sleep(0.5)
    assert job.trainer.step == step and len(job.history()) == n_history
    job.resume()
    assert job.wait(15).completed, job.error  # done, or cut short by its 1 s budget (see the shortfall tests)
    wall = time.perf_counter() - t0
    assert job.trainer.step > step  # resumed and went on training
    assert 1.0 <= job.result.seconds < 3.0
    # paused for 0.6 s (the pause takes hold at the next step, so a little less counts as paused on a busy
    # machine): the pause did not eat the 1 s budget
    assert wall - job.result.seconds >= 0.4


def test_flux_job_cancel_takes_effect_within_a_second(jobs):
    job = curve_job(jobs, epochs=LONG)
    job.start()
    assert wait_until(lambda: len(job.history()) >= 3)
    t0 = time.perf_counter()
    job.cancel()
    assert job.wait(1.0) is JobStatus.CANCELLED
    assert time.perf_counter() - t0 < 1.0
    assert job.result is None
    assert job.latest() is None or not job.latest().final


def test_flux_job_cancel_while_paused(jobs):
    job = curve_job(jobs, epochs=LONG)
    job.start()
    assert wait_until(lambda: len(job.history()) >= 3)
    job.pause()
    time.sleep(0.2)
    step = job.trainer.step
    t0 = time.perf_counter()
    job.cancel()
    assert job.wait(1.0) is JobStatus.CANCELLED
    assert time.perf_counter() - t0 < 1.0
    assert job.trainer.step == step


def test_flux_job_cancel_when_queued(jobs):
    job = curve_job(jobs, epochs=LONG)
    job.cancel()
    job.start()
    assert job.wait(1.0) is JobStatus.CANCELLED
    assert job.trainer is None and not job.alive


def test_bad_data_spec_fails_the_job_with_a_message_naming_it(jobs, monkeypatch):
    hooked = []
    monkeypatch.setattr(threading, "excepthook", lambda args: hooked.append(args))
    job = training_job("dfnn", "synthetic:nope", device="cpu")
    jobs.append(job)
    assert job.start().wait(10) is JobStatus.FAILED
    assert "synthetic:nope" in job.error and "curve" in job.error  # names the spec and the valid names
    assert hooked == []


def test_unknown_model_fails_fast_in_the_callers_thread():
    with pytest.raises(ValueError, match="nonexistent"):
        training_job("nonexistent", "synthetic:curve")


def test_nan_loss_fails_with_advice(jobs, monkeypatch):
    original = FluxTrainer._batch_loss

    def nan_after_three_steps(self, idx):
        loss, terms = original(self, idx)
        if self.step >= 3:
            loss = loss * float("nan")
            terms = {**terms, "total": loss}
        return loss, terms

    monkeypatch.setattr(FluxTrainer, "_batch_loss", nan_after_three_steps)
    job = curve_job(jobs, epochs=50)
    assert job.start().wait(20) is JobStatus.FAILED
    assert "nan" in job.error.lower() and "learning rate" in job.error
    assert "dfnn" in job.error and "synthetic:curve" in job.error
    assert job.trainer.step == 3  # stopped at the first bad step, no update applied


def test_extreme_observations_fail_with_a_nan_message(jobs):
    problem = load_problem("synthetic:curve")
    q = problem.train.q.copy()
    q[:5] = 1e200  # overflows float32
    bad = dataclasses.replace(problem, train=FluxObservations(problem.train.xy, q))
    job = training_job("dfnn", bad, device="cpu", snapshot_every=None, epochs=5)
    jobs.append(job)
    assert job.start().wait(20) is JobStatus.FAILED
    assert "nan" in job.error.lower() and "learning rate" in job.error


def test_live_snapshots_arrive_at_the_configured_rate_and_change(jobs):
    # a small grid keeps a snapshot (~10 ms) well under the 50 ms period, so the period is what paces them
    job = curve_job(jobs, epochs=LONG, seconds=1.0, snapshot_every=0.05, grid_shape=(10, 10))
    published: list[tuple[float, Snapshot, np.ndarray]] = []
    original = job.control.publish

    def recording_publish(snapshot):
        published.append((time.perf_counter(), snapshot, snapshot.fields["qx"].values.copy()))
        original(snapshot)

    job.control.publish = recording_publish
    assert job.start().wait(15).completed, job.error  # done, or cut short by its 1 s budget
    live = [(t, s, qx) for t, s, qx in published if not s.final]
    assert published[-1][1].final and sum(s.final for _, s, _ in published) == 1
    # never faster than the configured period; over a 1 s budget, roughly 1 / 0.05 of them
    times = [t for t, _, _ in live]
    gaps = np.diff(times)
    assert len(live) >= 5, f"only {len(live)} live snapshots in 1 s at snapshot_every=0.05"
    assert len(live) <= 1.0 / 0.05 + 2
    assert gaps.min() >= 0.05 - 1e-6
    assert np.median(gaps) < 0.25
    # consecutive live snapshots show a model that moved
    steps = [s.step for _, s, _ in live]
    assert all(b > a for a, b in zip(steps, steps[1:]))
    (_, a, qx_a), (_, b, _) = live[0], live[1]
    assert np.abs(a.fields["qx"].values - b.fields["qx"].values).max() > 1e-6
    assert not np.array_equal(a.fields["divergence"].values, b.fields["divergence"].values)
    # a published snapshot is never modified afterwards
    np.testing.assert_array_equal(a.fields["qx"].values, qx_a)


def test_same_seed_same_metrics_other_seed_other_metrics():
    first = make_trainer("dfnn", "synthetic:curve", device="cpu", epochs=30, seed=3).fit()
    again = make_trainer("dfnn", "synthetic:curve", device="cpu", epochs=30, seed=3).fit()
    other = make_trainer("dfnn", "synthetic:curve", device="cpu", epochs=30, seed=4).fit()
    assert first.metrics == again.metrics
    assert first.losses == again.losses
    assert other.metrics["rmse"] != first.metrics["rmse"]
    assert other.metrics["mae"] != first.metrics["mae"]
