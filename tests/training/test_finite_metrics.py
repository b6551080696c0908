"""A run whose headline scores are not all finite ends failed, with a message naming them, never as done."""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
import pytest
import torch

from iceviz.cli import main
from iceviz.data.specs import load_problem
from iceviz.training.flux_trainer import HEADLINE_METRICS, FluxTrainer
from iceviz.runtime.job import Control, JobStatus
from iceviz.training.checks import TrainingFailed, check_finite_metrics
from iceviz.training.trainers import make_trainer, training_job

from tests.conftest import curve_job

ADVICE = r"The fit diverged or the data hold extreme values: try a lower learning rate \(now [\d.e-]+\)"


def _nan_predictions(monkeypatch) -> None:
    """Every flux prediction NaN from now on (training's validation too: no epoch is ever better)."""
    original = FluxTrainer.predict_scaled
    monkeypatch.setattr(FluxTrainer, "predict_scaled", lambda self, xy: original(self, xy) * math.nan)


def test_finite_scores_pass_and_absent_or_other_keys_are_not_looked_at():
    metrics = {"rmse": 0.1, "mae": 0.05, "r_change_h": math.nan, "per_forcing": {"melt=0": {"r": math.nan}}}
    check_finite_metrics(metrics, ("rmse", "mae", "val_rmse"), "dfnn on x", "after 3 epochs", 1e-3)


def test_every_score_that_is_not_finite_is_named():
    metrics = {"rmse": 0.0058, "rmse_phys": math.inf, "mad_phys": math.nan}
    with pytest.raises(TrainingFailed, match=r"^dfnn on x: the final scores rmse_phys=inf, mad_phys=nan are not "
                                             r"finite \(after 3 epochs\)\. " + ADVICE):
        check_finite_metrics(metrics, HEADLINE_METRICS, "dfnn on x", "after 3 epochs", 1e-3)
    with pytest.raises(TrainingFailed, match=r"the final score rmse=nan is not finite"):
        check_finite_metrics({"rmse": math.nan}, HEADLINE_METRICS, "dfnn on x", "after 3 epochs", 1e-3)


def test_a_flux_job_whose_predictions_turn_nan_ends_failed(jobs, monkeypatch):
    _nan_predictions(monkeypatch)
    job = curve_job(jobs, epochs=2, snapshot_every=None)
    assert job.start().wait(30) is JobStatus.FAILED
    assert job.error.startswith("dfnn on synthetic:curve: the final scores rmse=nan, mae=nan, rmse_phys=nan")
    assert "after 2 epochs" in job.error and "learning rate" in job.error
    assert job.result is None
    latest = job.latest()
    assert latest is None or not latest.final  # the failed run's scores are never published as its result


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
def test_a_flux_scale_of_inf_from_extreme_data_ends_failed_not_with_inf_scores(jobs):
    """The issue's case: a scaled RMSE of 0.0058 shown beside an infinite one in m²/yr, and the run 'done'."""
    problem = load_problem("synthetic:curve")
    extreme = dataclasses.replace(problem, scale=dataclasses.replace(problem.scale, flux=math.inf))
    job = training_job("dfnn", extreme, device="cpu", snapshot_every=None, epochs=2)
    jobs.append(job)
    assert job.start().wait(30) is JobStatus.FAILED
    assert "rmse_phys=inf" in job.error and "extreme values" in job.error
    assert re.search(r"\brmse=", job.error) is None  # the scaled score is finite: it is not named


def test_a_tiny_normal_run_still_ends_done_with_every_headline_score_finite(jobs):
    job = curve_job(jobs, epochs=2, snapshot_every=None)
    assert job.start().wait(30) is JobStatus.DONE, job.error
    assert all(math.isfinite(job.result.metrics[k]) for k in HEADLINE_METRICS if k in job.result.metrics)
    assert job.latest().final


@pytest.mark.filterwarnings("ignore:Mean of empty slice:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_a_viscosity_run_whose_fields_turn_nan_fails(monkeypatch):
    trainer = make_trainer("viscosity-pinn", "shelf:analytic", device="cpu", epochs=3, width=8, depth=2,
                           mu_width=8, mu_depth=2, collocation=50, front_points=20, batch_size=50, lbfgs_fraction=0.0)
    original = trainer.predict
    monkeypatch.setattr(trainer, "predict", lambda xy, derivatives=False: {
        k: v * np.nan for k, v in original(xy, derivatives).items()})
    with pytest.raises(TrainingFailed, match=r"^viscosity-pinn on shelf:analytic: the final scores "
                                             r"mu_rel_error=nan, u_rel_error=nan, .* \(after 3 steps\)"):
        trainer.fit(Control(snapshot_every=None))


def test_an_emulator_whose_predictions_turn_nan_fails_and_persistence_does_not(small_ensemble, monkeypatch):
    data = f"sim:{small_ensemble}"
    persistence = make_trainer("persistence", data, device="cpu")
    result = persistence.fit(Control(snapshot_every=None))
    assert np.isnan(result.metrics["r_change_h"])  # no change predicted: NaN by design, not a failure

    broken = make_trainer("persistence", data, device="cpu")
    original = broken.predict_scaled
    monkeypatch.setattr(broken, "predict_scaled", lambda pairs: original(pairs) * torch.nan)
    with pytest.raises(TrainingFailed, match=r"^persistence on .*: the final scores rmse_h=nan, rmse_v=nan, "
                                             r"rmse_vx=nan, rmse_vy=nan, r=nan are not finite \(after 0 epochs\)"):
        broken.fit(Control(snapshot_every=None))


def test_the_cli_exits_non_zero_with_the_message(monkeypatch, capsys, tmp_path):
    _nan_predictions(monkeypatch)
    out = tmp_path / "run"
    code = main(["train", "dfnn", "--data", "synthetic:curve", "--epochs", "2", "--device", "cpu", "--quiet",
                 "--out", str(out)])
    assert code == 1
    err = capsys.readouterr().err
    assert "iceviz train: dfnn on synthetic:curve failed: dfnn on synthetic:curve: the final scores rmse=nan" in err
    assert not (out / "model.safetensors").exists()  # nothing saved for a failed run
