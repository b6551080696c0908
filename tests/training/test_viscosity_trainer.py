"""The viscosity PINN's trainer: losses, phases, sampling, scores, snapshots, jobs, failures, checkpoints."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from iceviz.data.shelf import Raster, validation_split
from iceviz.data.specs import load_problem
from iceviz.data.splits import tile_labels
from iceviz.models.registry import get_model
from iceviz.training.checkpoint import load_checkpoint, save_checkpoint
from iceviz.runtime.job import Control, JobStatus
from iceviz.training.checks import TrainingFailed
from iceviz.training.trainers import make_trainer, training_job
from iceviz.training.viscosity_trainer import data_loss, near_boundary, relative_error

from tests.conftest import wait_until

SMALL = dict(width=16, depth=3, mu_width=16, mu_depth=3, collocation=200, front_points=50, batch_size=200,
             lbfgs_fraction=0.0)
"""A network and batches small enough for quick tests (Adam only unless a test asks for L-BFGS)."""


@pytest.fixture(scope="module")
def shelf():
    return load_problem("shelf:analytic")


def test_relative_error_and_boundary_band():
    assert relative_error(np.array([1.1, 2.2, np.nan]), np.array([1.0, 2.0, 5.0])) == pytest.approx(0.1)
    valid = np.ones((50, 80), bool)
    valid[:, 70:] = False  # open water beyond x index 70
    x, y = np.arange(80) * 1000.0 + 500, np.arange(50) * 1000.0 + 500
    edge = near_boundary(valid, x, y, band=5000.0)
    assert edge[25, 0:5].all() and not edge[25, 5:65].any() and edge[25, 65:70].all() and not edge[:, 70:].any()
    assert edge[0:5, 30].all() and not edge[5:45, 30].any()


def test_wrong_problem_kind_is_refused():
    with pytest.raises(ValueError, match="trains on 'shelf' problems"):
        make_trainer("viscosity-pinn", "synthetic:curve")
    with pytest.raises(ValueError, match="trains on 'flux' problems"):
        make_trainer("dfnn", "shelf:analytic")


def test_loss_is_normalised_by_its_value_at_initialisation(shelf):
    trainer = make_trainer("viscosity-pinn", shelf, device="cpu", **SMALL)
    batch = trainer.batch()
    assert len(batch["x_col"]) == 200 and len(batch["x_front"]) == 50 and len(batch["x_vel"]) == 200
    loss = trainer.total_loss(trainer.loss_terms(batch))
    assert float(loss.detach()) == pytest.approx(1.0)
    assert float(trainer.total_loss(trainer.loss_terms(trainer.batch())).detach()) != pytest.approx(1.0, abs=1e-6)


def test_training_lowers_every_loss_term_and_scores_every_field(shelf):
    trainer = make_trainer("viscosity-pinn", shelf, device="cpu", epochs=300, seed=3, **SMALL)
    control = Control(snapshot_every=None)
    first = {k: float(v.detach()) for k, v in trainer.loss_terms(trainer.batch()).items()}
    result = trainer.fit(control)
    assert result.steps == 300
    for term in ("u", "h"):
        assert result.losses[term] < 0.2 * first[term], term
    assert result.losses["v"] < 0.5 * first["v"]  # v is small and noisy on this shelf: slower
    m = result.metrics
    assert {"mu_rel_error", "mu_rel_error_interior", "mu_rel_error_boundary", "u_rel_error", "v_rel_error",
            "h_rel_error", "residual", "front_residual"} <= set(m)
    assert m["u_rel_error"] < 0.3 and m["h_rel_error"] < 0.1  # from ~100 % at initialisation
    history = control.history()
    assert [r["step"] for r in history] == list(range(50, 301, 50))
    assert all("mu_rel_error" in r and r["phase"] == "adam" for r in history)


def test_final_snapshot_maps_every_cell_in_physical_units(shelf):
    trainer = make_trainer("viscosity-pinn", shelf, device="cpu", epochs=20, **SMALL)
    control = Control(snapshot_every=None)
    trainer.fit(control)
    snap = control.latest()
    ds = snap.fields
    assert snap.final and ds["mu"].shape == shelf.velocity.shape and ds["h"].shape == shelf.thickness.shape
    assert ds["mu"].attrs["units"] == "Pa s" and ds["strain_rate"].attrs["units"] == "yr-1"
    mu = ds["mu"].values
    assert np.all(mu[np.isfinite(mu)] > 0)
    np.testing.assert_allclose(ds["u_misfit"].values, ds["u"].values - shelf.velocity.fields["u"])
    np.testing.assert_allclose(ds["mu_error"].values, (mu - ds["mu_true"].values) / ds["mu_true"].values)
    assert snap.metrics["mu_rel_error"] == pytest.approx(relative_error(mu, shelf.velocity.fields["mu"]))
    np.testing.assert_array_equal(np.column_stack([snap.points["x"], snap.points["y"]]), shelf.front)


def test_live_snapshot_is_coarser_and_cheap(shelf):
    trainer = make_trainer("viscosity-pinn", shelf, device="cpu", epochs=5, **SMALL)
    control = Control(snapshot_every=None)
    control.start_clock()
    live = trainer.snapshot(control)
    assert not live.final and max(live.fields["mu"].shape) <= 100


def test_lbfgs_phase_follows_adam_and_lowers_the_loss_on_its_batch(shelf):
    trainer = make_trainer("viscosity-pinn", shelf, device="cpu", epochs=400, seed=1, **{**SMALL, "lbfgs_fraction": 0.5})
    control = Control(snapshot_every=None)
    result = trainer.fit(control)
    history = control.history()
    phases = [r["phase"] for r in history]
    assert phases[0] == "adam" and phases[-1] == "lbfgs" and not trainer.lbfgs_failed
    lbfgs = [r["loss_total"] for r in history if r["phase"] == "lbfgs"]
    assert len(lbfgs) >= 2 and lbfgs[-1] < lbfgs[0]
    # both phases are validated, the Adam phase at its last step too; the kept weights are the best of either
    switch = next(i for i, r in enumerate(history) if r["phase"] == "lbfgs")
    assert history[switch - 1]["step"] == 200 and history[-1]["step"] == result.steps == 400
    val = [r["val_misfit"] for r in history]
    assert result.best_epoch == history[int(np.argmin(val))]["step"]
    assert data_loss(trainer.validation_terms(), trainer.params.thickness_weight) == pytest.approx(min(val), rel=1e-9)


def test_residual_based_sampling_favours_large_residuals(shelf):
    trainer = make_trainer("viscosity-pinn", shelf, device="cpu", epochs=50, resampling="residual", seed=2, **SMALL)
    trainer.fit(Control(snapshot_every=None))
    trainer._score_candidates()
    from iceviz.physics.ssa import momentum_residual

    def mean_residual(x: torch.Tensor) -> float:
        with torch.no_grad():
            f1, f2 = momentum_residual(*trainer.model.jets(x, 2), buoyancy=1.0)
        return float((f1**2 + f2**2).mean())

    # the candidates' residuals and the sampling density: samples must follow it, i.e. favour large residuals
    r2 = torch.tensor([mean_residual(trainer.x_vel[i:i + 1]) for i in trainer._candidates[:2000].tolist()])
    w = r2 / r2.mean() + 1.0
    expected = float((w * r2).sum() / w.sum())  # E[r²] under density ∝ r²/mean + 1, over these candidates
    assert expected > 1.1 * float(r2.mean())
    trainer._candidates, trainer._weights = trainer._candidates[:2000], w.double()
    trainer.step = 1  # not a re-scoring step
    torch.manual_seed(0)
    adaptive = torch.cat([trainer._collocation() for _ in range(20)])
    assert mean_residual(adaptive) == pytest.approx(expected, rel=0.1)


def test_same_seed_same_run(shelf):
    a = make_trainer("viscosity-pinn", shelf, device="cpu", epochs=30, seed=5, **SMALL).fit()
    b = make_trainer("viscosity-pinn", shelf, device="cpu", epochs=30, seed=5, **SMALL).fit()
    assert a.metrics["mu_rel_error"] == b.metrics["mu_rel_error"]


def test_a_non_finite_loss_fails_naming_the_terms(shelf, monkeypatch):
    trainer = make_trainer("viscosity-pinn", shelf, device="cpu", epochs=10, **SMALL)
    real = trainer.loss_terms

    def poisoned(batch):
        terms = real(batch)
        terms["equation"] = terms["equation"] * float("nan")
        return terms

    monkeypatch.setattr(trainer, "loss_terms", poisoned)
    with pytest.raises(TrainingFailed, match=r"viscosity-pinn on shelf:analytic: the loss became nan.*equation=nan"):
        trainer.fit()


def test_job_streams_viscosity_snapshots_and_cancels(shelf, jobs):
    job = training_job("viscosity-pinn", shelf, device="cpu", snapshot_every=0.2, seconds=60, epochs=1_000_000,
                       **SMALL)
    jobs.append(job.start())
    assert wait_until(lambda: job.latest() is not None and job.latest().step > 0, timeout=30)
    first = job.latest()
    assert wait_until(lambda: job.latest().step > first.step + 20, timeout=30)
    second = job.latest()
    assert not np.allclose(first.fields["mu"].values, second.fields["mu"].values, equal_nan=True)
    job.cancel()
    assert job.wait(5) is JobStatus.CANCELLED


def test_checkpoint_round_trip_predicts_the_same_viscosity(shelf, tmp_path):
    trainer = make_trainer("viscosity-pinn", shelf, device="cpu", epochs=10, **SMALL)
    trainer.fit()
    path = save_checkpoint(tmp_path / "m.safetensors", trainer, metrics={"mu_rel_error": 0.5})
    ck = load_checkpoint(path)
    assert ck.model_name == "viscosity-pinn" and ck.scale is None and ck.metrics["mu_rel_error"] == 0.5
    x = torch.randn(20, 2)
    assert torch.equal(ck.model(x), trainer.model(x))
    assert ck.params["collocation"] == 200


def rows(x: torch.Tensor) -> set[tuple[float, float]]:
    return {tuple(r) for r in x.tolist()}


def test_validation_holds_out_whole_tiles_the_same_on_both_rasters(shelf):
    # a thickness raster on its own, coarser grid: the held-out tiles are places, not cell indices
    thk = shelf.thickness
    problem = dataclasses.replace(shelf, thickness=Raster(thk.x[::3], thk.y[::3], {"h": thk.fields["h"][::3, ::3]}))
    held_v, held_h = validation_split(problem, 0.1, seed=4)
    assert 0.05 < held_v.mean() < 0.2 and 0.05 < held_h.mean() < 0.2
    tiles_v = tile_labels(problem.velocity_points()[0], problem.bounds)
    tiles_h = tile_labels(problem.thickness_points()[0], problem.bounds)
    held_tiles = set(tiles_v[held_v])
    assert len(held_tiles) >= 3 and set(tiles_h[held_h]) == held_tiles
    np.testing.assert_array_equal(held_v, np.isin(tiles_v, list(held_tiles)))  # whole tiles, every cell of them
    np.testing.assert_array_equal(held_h, np.isin(tiles_h, list(held_tiles)))
    # the same seed, the same split; another seed, another
    again = validation_split(problem, 0.1, seed=4)
    np.testing.assert_array_equal(again[0], held_v)
    np.testing.assert_array_equal(again[1], held_h)
    assert not np.array_equal(validation_split(problem, 0.1, seed=5)[0], held_v)
    assert not any(m.any() for m in validation_split(problem, 0.0, seed=4))


def test_no_validation_cell_is_ever_trained_on(shelf):
    trainer = make_trainer("viscosity-pinn", shelf, device="cpu", seed=2, **SMALL)
    assert trainer.has_validation
    np.testing.assert_array_equal(trainer.val_v, validation_split(shelf, 0.1, seed=2)[0])
    val_v, val_h = rows(trainer.x_val_uv), rows(trainer.x_val_h)
    assert len(val_v) == trainer.val_v.sum() and len(trainer.x_uv) + len(val_v) == len(trainer.x_vel)
    batches = [trainer.batch() for _ in range(30)]
    assert not val_v & set().union(*(rows(b["x_vel"]) for b in batches))
    assert not val_h & set().union(*(rows(b["x_thk"]) for b in batches))
    # collocation points are physics, not observations: they still cover the held-out tiles
    assert val_v & set().union(*(rows(b["x_col"]) for b in batches))


def twin_weights(shelf, steps: int, **params) -> dict[str, torch.Tensor]:
    """The weights after exactly ``steps`` Adam steps of a fresh trainer with the same parameters."""
    twin = make_trainer("viscosity-pinn", shelf, device="cpu", **params)
    for _ in range(steps):
        twin._adam_step()
    return twin.model.state_dict()


def assert_weights_equal(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    state = model.state_dict()
    assert state.keys() == weights.keys() and all(torch.equal(state[k], weights[k]) for k in state)


def test_the_kept_weights_are_those_of_the_lowest_validation_misfit(shelf, tmp_path):
    params = dict(SMALL, epochs=210, lr=0.03, seed=0)  # a high rate: the last weights are not the best here
    trainer = make_trainer("viscosity-pinn", shelf, device="cpu", **params)
    control = Control(snapshot_every=None)
    result = trainer.fit(control)
    history = control.history()
    assert [r["step"] for r in history] == [50, 100, 150, 200, 210]  # and the phase's (and run's) last step
    val = [r["val_misfit"] for r in history]
    best = int(np.argmin(val))
    assert val[-1] > 1.2 * val[best] and result.best_epoch == history[best]["step"] == 200
    assert_weights_equal(trainer.model, twin_weights(shelf, 200, **params))
    terms = trainer.validation_terms()
    assert data_loss(terms, trainer.params.thickness_weight) == pytest.approx(val[best], rel=1e-9)
    # the scores, the final snapshot and a checkpoint are of the kept weights
    xy, uv = shelf.velocity_points()
    pred = trainer.predict(xy[trainer.val_v])
    m = control.latest().metrics
    assert m["val_u_rel_error"] == pytest.approx(relative_error(pred["u"], uv[trainer.val_v, 0]), rel=1e-4)
    assert m["val_v_rel_error"] == pytest.approx(relative_error(pred["v"], uv[trainer.val_v, 1]), rel=1e-4)
    assert m["val_h_rel_error"] == result.metrics["val_h_rel_error"] > 0
    np.testing.assert_allclose(control.latest().fields["u"].values[np.isfinite(shelf.velocity.fields["u"])],
                               trainer.predict(xy)["u"])
    ck = load_checkpoint(save_checkpoint(tmp_path / "m.safetensors", trainer))
    assert_weights_equal(ck.model, trainer.model.state_dict())


def test_without_validation_every_cell_is_trained_on_and_the_last_weights_kept(shelf):
    params = dict(SMALL, epochs=60, lr=0.03, seed=0, val_fraction=0.0)
    trainer = make_trainer("viscosity-pinn", shelf, device="cpu", **params)
    assert not trainer.has_validation and len(trainer.x_uv) == len(trainer.x_vel)
    control = Control(snapshot_every=None)
    result = trainer.fit(control)
    assert result.best_epoch == result.steps == 60
    assert not any("val_misfit" in r for r in control.history())
    assert not any(k.startswith("val_") for k in result.metrics)
    assert_weights_equal(trainer.model, twin_weights(shelf, 60, **params))


def test_registry_defaults_are_the_reference_weights():
    p = get_model("viscosity-pinn").make_params()
    assert (p.thickness_weight, p.equation_weight, p.front_weight, p.lr) == (0.6, 0.05, 0.1, 1e-3)


def test_subdomains_add_an_interface_term_that_training_lowers(shelf):
    trainer = make_trainer("viscosity-pinn", shelf, device="cpu", epochs=200, subdomains=2, seed=0, **SMALL)
    model = trainer.model
    assert len(model.edges) == 1 and model.axis == 0 and len(trainer.x_interfaces) == 1  # 80 km along x
    line = trainer.x_interfaces[0]
    assert torch.allclose(line[:, 0], torch.tensor(model.edges[0])) and len(line) > 100
    counts = torch.bincount(model.part_of(trainer.x_vel))
    assert abs(int(counts[0]) - int(counts[1])) < 0.02 * len(trainer.x_vel)
    before = float(model.interface_mismatch(0, line).detach())
    result = trainer.fit(Control(snapshot_every=None))
    assert "interface" in result.losses
    assert float(model.interface_mismatch(0, line).detach()) < 0.2 * before
    assert result.metrics["u_rel_error"] < 0.3 and np.isfinite(result.metrics["mu_rel_error"])


@pytest.mark.slow
def test_the_inversion_recovers_a_small_synthetic_shelf_in_a_short_cpu_budget():
    """The downstream half of the analytic shelf (40 x 50 km, with its front), default network, 30 s on one
    CPU thread: μ within 10 % of the truth (measured 5.6 %), and within 10 % of the least-squares preview,
    which is accurate to ~1 % on this clean synthetic shelf (the test reference)."""
    from iceviz.physics.viscosity_preview import least_squares_viscosity

    problem = load_problem("shelf:analytic?bbox=40000,80000,0,50000")
    truth = problem.velocity.fields["mu"]
    preview = least_squares_viscosity(problem)
    assert relative_error(preview, truth) < 0.02
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trainer = make_trainer("viscosity-pinn", problem, device="cpu", epochs=1_000_000, seconds=30.0, seed=0)
        control = Control(snapshot_every=None)
        result = trainer.fit(control)
    finally:
        torch.set_num_threads(threads)
    assert result.metrics["mu_rel_error"] < 0.10, result.metrics
    mu = control.latest().fields["mu"].values
    assert np.all(mu[np.isfinite(mu)] > 0)
    assert relative_error(mu, preview) < 0.10


def test_annealing_lowers_the_rate_by_a_cosine_before_lbfgs(shelf):
    trainer = make_trainer("viscosity-pinn", shelf, device="cpu", anneal=0.5, **{**SMALL, "lbfgs_fraction": 0.2})
    lr = trainer.params.lr

    def rate(progress: float) -> float:
        trainer._set_lr(progress)
        return trainer.optimizer.param_groups[0]["lr"]

    # the Adam phase is [0, 0.8]; annealing covers its last half, [0.4, 0.8]
    assert rate(0.1) == rate(0.4) == lr
    assert rate(0.6) == pytest.approx(0.5 * lr)
    assert rate(0.8) == pytest.approx(0.0, abs=1e-12)
    trainer.params.anneal = 0.0
    assert rate(0.79) == lr


def test_a_thickness_network_of_its_own_trains_saves_and_loads(tmp_path):
    from iceviz.training.checkpoint import load_checkpoint, save_checkpoint

    trainer = make_trainer("viscosity-pinn", "shelf:analytic?bbox=40000,80000,0,50000", device="cpu", seed=0,
                           epochs=5, separate_thickness=True, lbfgs_fraction=0.0)
    result = trainer.fit(Control(snapshot_every=None))
    assert result.steps == 5 and np.isfinite(result.metrics["h_rel_error"])
    assert trainer.model.config["separate_thickness"] and len(trainer.model.thicknesses) == 1
    path = save_checkpoint(tmp_path / "model.safetensors", trainer)
    again = load_checkpoint(path)
    x = torch.randn(20, 2, dtype=next(trainer.model.parameters()).dtype)
    assert torch.equal(again.model(x), trainer.model(x))
