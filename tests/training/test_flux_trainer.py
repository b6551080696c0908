"""Flux training: recovery of known fields, the PINN penalty, +dir, +aux and compatibility checks."""

import dataclasses

import numpy as np
import pytest
import torch

from iceviz.data.specs import load_problem
from iceviz.training.trainers import make_trainer


@pytest.fixture(scope="module")
def curve():
    return load_problem("synthetic:curve")


@pytest.fixture(scope="module")
def glacier():
    return load_problem("synthetic:glacier")


def _mean_baseline_rmse(problem):
    q = problem.train.q / problem.scale.flux
    return float(np.sqrt(np.mean((problem.test.q / problem.scale.flux - q.mean(0)) ** 2)))


def test_dfnn_recovers_a_known_field_with_zero_divergence(curve):
    trainer = make_trainer("dfnn", curve, device="cpu", epochs=150, seed=0)
    result = trainer.fit()
    assert result.metrics["rmse"] < 0.25 * _mean_baseline_rmse(curve)
    assert result.metrics["mad"] < 1e-4
    fields = trainer.snapshot(trainer_control(), final=True).fields
    # error against the analytic truth on the map grid is small where the field is strong
    assert float(fields["error"].mean()) < 0.2 * float(fields["flux_magnitude"].mean())
    # finite differences on the 50 x 50 map agree that the field is (nearly) divergence-free
    fd = np.abs(fields["divergence_fd"].values).mean() / curve.scale.divergence
    assert fd < 0.1 * np.abs(fields["flux_magnitude"].values).mean() / curve.scale.flux


def trainer_control():
    from iceviz.runtime.job import Control

    control = Control(snapshot_every=None)
    control.start_clock()
    return control


def test_pinn_penalty_lowers_divergence(curve):
    kwargs = dict(device="cpu", epochs=120, seed=1, width=64, depth=3)
    nn = make_trainer("nn", curve, **kwargs).fit()
    pinn = make_trainer("pinn", curve, div_weight=0.5, **kwargs).fit()
    assert pinn.metrics["mad"] < 0.5 * nn.metrics["mad"]


def test_direction_guidance_aligns_the_flux(glacier):
    kwargs = dict(device="cpu", epochs=3, seed=0, batch_size=256)
    trainer = make_trainer("nn-dir", glacier, **kwargs)
    trainer.fit()
    xd, ud = trainer.direction
    with torch.no_grad():
        cos = torch.nn.functional.cosine_similarity(trainer.model(xd), ud, dim=1).mean().item()
    assert "dir" in trainer.losses
    assert cos > 0.8


def test_dfnn_aux_is_divergence_free_in_physical_space(glacier):
    kwargs = dict(device="cpu", epochs=3, seed=0)
    total = make_trainer("dfnn-aux", glacier, **kwargs)
    total.fit()
    partial = make_trainer("dfnn-aux", glacier, aux_derivative="partial", **kwargs)
    partial.fit()
    mad_total = total.evaluate()["mad"]
    mad_partial = partial.evaluate()["mad"]
    assert mad_total < 1e-4
    assert mad_partial > 100 * mad_total
    # the smooth surface fitted from training points reproduces the analytic surface
    xy = glacier.test.xy
    s, _ = total.model.surface.value_and_gradient(torch.as_tensor(glacier.scale.xy_to_scaled(xy)))
    err = np.abs(s.numpy() * glacier.scale.surface - glacier.surface_truth(xy))
    assert np.median(err) < 50.0  # metres, on a surface spanning ~150-2000 m


def test_incompatible_data_is_refused(curve):
    with pytest.raises(ValueError, match="surface elevation"):
        make_trainer("dfnn-aux", curve, device="cpu")
    with pytest.raises(ValueError, match="direction guidance"):
        make_trainer("pinn-dir", dataclasses.replace(curve, direction=None), device="cpu")


def test_dfnn_refuses_relu(curve):
    with pytest.raises(ValueError, match="twice"):
        make_trainer("dfnn", curve, device="cpu", activation="relu")


def test_size_defaults_then_problem_hints_apply_and_user_settings_win(curve, glacier):
    from iceviz.models.registry import flux_size_defaults

    small = make_trainer("dfnn", curve, device="cpu")
    sized = flux_size_defaults(len(small.q_train))  # the points fitted, validation held out
    assert {k: getattr(small.params, k) for k in sized} == sized
    hinted = dataclasses.replace(curve, hints=dict(width=128, batch_size=64))
    assert make_trainer("dfnn", hinted, device="cpu").params.width == 128  # a source's hint over the defaults
    assert make_trainer("dfnn", hinted, device="cpu").params.batch_size == 64
    large = make_trainer("dfnn", glacier, device="cpu")
    assert large.params.planned_epochs < small.params.planned_epochs  # more steps per epoch, same steps in all
    assert make_trainer("dfnn", curve, device="cpu", batch_size=64).params.batch_size == 64


def test_cached_surface_values_give_the_same_flux(glacier):
    trainer = make_trainer("dfnn-aux", glacier, device="cpu", epochs=1, seed=0)
    idx = torch.arange(50)
    cached = (trainer.surface_train[0][idx], trainer.surface_train[1][idx])
    with torch.no_grad():
        assert torch.allclose(trainer.model(trainer.x_train[idx], cached), trainer.model(trainer.x_train[idx]))


@pytest.mark.parametrize("model", ["dfnn", "pinn-dir"])
def test_an_ensemble_run_trains_every_member_and_predicts_their_mean(glacier, model):
    """members=3: one run trains three members from their own initialisations; the prediction is their mean
    (exactly divergence-free for dfNN), the members differ, and the losses shown are the terms of one run."""
    from iceviz.models.ensemble import FluxEnsemble

    trainer = make_trainer(model, glacier, device="cpu", epochs=3, seed=0, members=3, batch_size=256)
    result = trainer.fit()
    assert isinstance(trainer.model, FluxEnsemble) and trainer.model.size == 3
    assert np.isfinite(result.metrics["rmse"]) and result.metrics["rmse"] < _mean_baseline_rmse(glacier)
    x = trainer.x_test[:500]
    with torch.no_grad():
        q = trainer.model.members(x)
    assert torch.allclose(q.mean(0), trainer.model(x))
    spread = q.std(0).mean() / q.mean(0).abs().mean()
    assert spread > 1e-3  # three different fits, not three copies
    if model == "dfnn":
        assert result.metrics["mad"] < 1e-4
    single = make_trainer(model, glacier, device="cpu", epochs=3, seed=0, batch_size=256)
    assert set(result.losses) == set(single.fit().losses)  # the same terms, each the members' mean


def test_an_ensemble_checkpoint_predicts_like_its_trainer(curve, tmp_path):
    from iceviz.training.checkpoint import load_checkpoint, save_checkpoint

    trainer = make_trainer("dfnn", curve, device="cpu", epochs=2, seed=1, members=4, grid_shape=(12, 10))
    result = trainer.fit()
    ck = load_checkpoint(save_checkpoint(tmp_path / "ensemble.safetensors", trainer, metrics=result.metrics))
    xy = curve.test.xy[:200]
    x = torch.as_tensor(ck.scale.xy_to_scaled(xy), dtype=torch.float32)
    with torch.no_grad():
        reloaded = ck.model(x).double().numpy() * ck.scale.flux
    assert ck.config["members"] == 4
    np.testing.assert_allclose(reloaded, trainer.predict(xy), rtol=1e-5, atol=1e-6 * np.abs(reloaded).max())
