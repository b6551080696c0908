"""Emulator training: persistence is exact at t = 0, training lowers the validation error, scores are honest,
scaling travels with the model, jobs and failures behave."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from iceviz.data.specs import load_problem
from iceviz.training.checkpoint import load_checkpoint, save_checkpoint
from iceviz.training.emulator_data import EmulatorData, EmulatorScales
from iceviz.training.emulator_metrics import break_even, pearson, state_scores
from iceviz.runtime.job import Control, JobStatus
from iceviz.training.checks import TrainingFailed
from iceviz.training.trainers import make_trainer, training_job

from tests.conftest import wait_until

SMALL = dict(width=16, layers=2, channels=2, batch_size=4)


@pytest.fixture(scope="module")
def ensemble(small_ensemble):
    return load_problem(f"sim:{small_ensemble}")


def test_scores_on_known_arrays():
    true = dict(vx=np.array([1.0, 2.0]), vy=np.array([0.0, 0.0]), h=np.array([10.0, 20.0]))
    pred = dict(vx=np.array([1.0, 2.0]), vy=np.array([3.0, 4.0]), h=np.array([16.0, 13.0]))
    s = state_scores(pred, true, dict(vx=np.zeros(2), vy=np.zeros(2), h=np.array([10.0, 10.0])))
    assert s["rmse_h"] == pytest.approx(np.sqrt((36 + 49) / 2)) and s["rmse_v"] == pytest.approx(np.sqrt((9 + 16) / 2))
    assert s["rmse_vx"] == 0 and s["r_vx"] == pytest.approx(1.0) and s["r"] == s["r_h"] == pytest.approx(-1.0)
    assert pearson(np.array([1.0, 2, 3]), np.array([2.0, 4, 6])) == pytest.approx(1.0)
    assert break_even(100.0, 20.0, 0.5) == 6 and break_even(1.0, 1.0, 2.0) == float("inf")


def test_persistence_is_exact_at_the_first_snapshot_and_scored_after_it(ensemble):
    """Persistence: zero error at t = 0 (so is every emulator: the change is t̂ times the network's output)."""
    trainer = make_trainer("persistence", ensemble, device="cpu")
    result = trainer.fit(Control(snapshot_every=None))
    assert result.epochs == 0 and result.steps == 0
    fields, _ = trainer.evaluate(np.array([0]))
    assert np.abs(fields["h_error"].values).max() == 0 and np.abs(fields["speed_error"].values).max() == 0
    m = result.metrics
    test = ensemble.split["test"]
    later = ensemble.fields["h"][test][:, 1:] - ensemble.fields["h"][test][:, :1]
    assert m["rmse_h"] == pytest.approx(np.sqrt(np.mean(later**2)))
    assert m["rmse_h"] > 10 and np.isnan(m["r_change_h"])
    assert set(m["per_forcing"]) == {"melt=40"}
    assert m["speedup"] > 1 and m["simulator_seconds"] == pytest.approx(ensemble.wall_time[test].mean())
    assert m["simulator_dt"] == pytest.approx(ensemble.mean_dt)


@pytest.mark.parametrize("model", ["egcn", "gcn", "mlp", "cnn"])
def test_short_training_lowers_validation_error_and_beats_persistence(ensemble, model):
    trainer = make_trainer(model, ensemble, device="cpu", epochs=40, lr=5e-3, seed=0, **SMALL)
    before = trainer.validation_loss()
    control = Control(snapshot_every=None)
    result = trainer.fit(control)
    history = control.history()
    assert len(history) == 40 and result.epochs == 40
    assert history[-1]["loss_val"] < 0.6 * before
    assert trainer.best_val == min(h["loss_val"] for h in history)
    persistence = make_trainer("persistence", ensemble, device="cpu").fit(Control(snapshot_every=None)).metrics
    assert result.metrics["rmse_h"] < 0.6 * persistence["rmse_h"]


def test_best_validation_weights_are_kept(ensemble):
    trainer = make_trainer("mlp", ensemble, device="cpu", epochs=6, seed=1, **SMALL)
    control = Control(snapshot_every=None)
    trainer.fit(control)
    assert trainer.validation_loss() == pytest.approx(trainer.best_val, rel=1e-5)
    assert trainer.best_epoch == 1 + int(np.argmin([h["loss_val"] for h in control.history()]))


def test_the_moving_average_of_the_weights_is_validated_and_kept(ensemble):
    """With ``average`` the weights scored and kept are the exponential moving average of the trained ones,
    as computed here step by step, at the best validation epoch."""
    decay = 0.8
    trainer = make_trainer("mlp", ensemble, device="cpu", epochs=4, seed=1, average=decay, **SMALL)
    steps_per_epoch = -(-len(trainer.train_pairs) // SMALL["batch_size"])
    averages, mean = [], None
    step = trainer.optimizer.step

    def step_and_average(*args, **kwargs):
        nonlocal mean
        out = step(*args, **kwargs)
        weights = [p.detach().clone() for p in trainer.model.parameters()]
        mean = weights if mean is None else [decay * m + (1 - decay) * w for m, w in zip(mean, weights)]
        if trainer.step % steps_per_epoch == steps_per_epoch - 1:  # the last step of an epoch
            averages.append(mean)
        return out

    trainer.optimizer.step = step_and_average
    control = Control(snapshot_every=None)
    trainer.fit(control)
    assert len(averages) == 4
    kept = averages[trainer.best_epoch - 1]
    for p, m in zip(trainer.model.parameters(), kept):
        torch.testing.assert_close(p.detach(), m, rtol=1e-5, atol=1e-6)
    assert trainer.validation_loss() == pytest.approx(trainer.best_val, rel=1e-5)
    trained = make_trainer("mlp", ensemble, device="cpu", epochs=4, seed=1, **SMALL)
    trained.fit(Control(snapshot_every=None))
    assert trained.best_val != pytest.approx(trainer.best_val, rel=1e-3)  # the average is not the trained weights


def test_live_snapshots_score_a_subset_of_times_and_the_final_one_all(ensemble):
    trainer = make_trainer("mlp", ensemble, device="cpu", epochs=2, **SMALL)
    control = Control(snapshot_every=0.0)
    trainer.fit(control)
    final = control.latest()
    assert final.final and final.fields.sizes["time"] == len(ensemble.times)
    assert final.fields["h"].shape == (1, len(ensemble.times), ensemble.mesh.n_nodes)
    np.testing.assert_allclose(final.fields["h_error"], final.fields["h"] - final.fields["h_true"])
    rmse_t = final.fields["rmse_h_t"].values[0]
    assert rmse_t[0] == 0 and (rmse_t[1:] > 0).all()  # the initial state is exact by construction


def test_scaling_travels_with_the_checkpoint(ensemble, tmp_path):
    trainer = make_trainer("egcn", ensemble, device="cpu", epochs=2, **SMALL)
    trainer.fit(Control(snapshot_every=None))
    path = save_checkpoint(tmp_path / "egcn.safetensors", trainer, metrics={"rmse_h": 1.0})
    ck = load_checkpoint(path)
    assert ck.scales == trainer.scales and ck.config == trainer.config
    pairs = trainer.data.samples([int(ensemble.split["test"][0])])
    with torch.no_grad():
        np.testing.assert_allclose(ck.model(*trainer.data.inputs(pairs)).numpy(),  # the raw network
                                   trainer.model(*trainer.data.inputs(pairs)).numpy(), atol=1e-6)


def test_the_accumulated_forcing_input_is_forcing_times_time(ensemble):
    """The last K scalar inputs are the forcings times the scaled time, over the forcings' training RMS: zero at the
    start and for zero forcing, the same at every node, and equal for equal forcing × time."""
    trainer = make_trainer("mlp", ensemble, device="cpu", epochs=1, **SMALL)
    data, sc = trainer.data, trainer.scales
    k = len(sc.forcing_keys)
    train = ensemble.forcing[ensemble.split["train"]]
    np.testing.assert_allclose(sc.forcing_rms, np.sqrt(np.mean(train**2, axis=0)))
    pairs = data.samples(np.arange(ensemble.n_runs))
    scalars = data.inputs(pairs)[0].numpy()
    assert scalars.shape[-1] == sc.n_scalars
    accumulated = scalars[:, :, -k:]
    assert (accumulated == accumulated[:, :1]).all()
    t = (ensemble.times[pairs[:, 1]] - ensemble.times[0]) / (ensemble.times[-1] - ensemble.times[0])
    expected = ensemble.forcing[pairs[:, 0]] * t[:, None] / np.array(sc.forcing_rms)
    np.testing.assert_allclose(accumulated[:, 0], expected, rtol=1e-6, atol=1e-7)
    assert expected.max() > 0 and (accumulated[pairs[:, 1] == 0] == 0).all()


def _moved(problem, matrix: np.ndarray, shift: np.ndarray):
    """The ensemble with its mesh and velocities rotated or reflected by ``matrix`` and shifted."""
    velocity = np.stack([problem.fields["vx"], problem.fields["vy"]], axis=-1) @ matrix.T
    fields = dict(problem.fields, vx=velocity[..., 0], vy=velocity[..., 1])
    return replace(problem, mesh=replace(problem.mesh, points=problem.mesh.points @ matrix.T + shift), fields=fields)


def test_vector_inputs_turn_with_the_mesh_and_scalar_inputs_do_not(ensemble):
    """Rotating or reflecting and shifting the ensemble turns every vector input (velocity, surface and bed slope,
    the directions away from the boundaries) by the same matrix and leaves every scalar input as it was."""
    scales = EmulatorScales.from_problem(ensemble, ensemble.split["train"])
    assert scales.n_vectors == 3 + len(ensemble.mesh.boundary)
    pairs = np.array([[0, 0], [ensemble.n_runs - 1, len(ensemble.times) - 1]])
    scalars, vectors, _ = EmulatorData(ensemble, scales, torch.device("cpu")).inputs(pairs)
    assert vectors.shape[2] == scales.n_vectors
    c, s = np.cos(0.9), np.sin(0.9)
    for matrix in (np.array([[c, -s], [s, c]]), np.array([[c, s], [s, -c]])):
        moved = _moved(ensemble, matrix, np.array([3e5, -2e4]))
        scalars2, vectors2, _ = EmulatorData(moved, scales, torch.device("cpu")).inputs(pairs)
        torch.testing.assert_close(scalars2, scalars, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(vectors2, vectors @ torch.as_tensor(matrix.T, dtype=torch.float32),
                                   atol=1e-5, rtol=1e-5)


def test_snapshots_of_one_run_share_their_vector_inputs_when_asked(ensemble):
    """Evaluation batches of one run share one view of its vector inputs (the EGCN then computes what depends on
    them once); training batches, and batches that mix runs, get their own copies."""
    scales = EmulatorScales.from_problem(ensemble, ensemble.split["train"])
    data = EmulatorData(ensemble, scales, torch.device("cpu"))
    one_run, mixed = np.array([[1, 2], [1, 3], [1, 4]]), np.array([[1, 2], [2, 3]])
    shared = data.inputs(one_run, share=True)[1]
    assert shared.stride(0) == 0 and torch.equal(shared, data.inputs(one_run)[1])
    assert data.inputs(one_run)[1].stride(0) != 0 and data.inputs(mixed, share=True)[1].stride(0) != 0
    trainer = make_trainer("egcn", ensemble, device="cpu", seed=0, epochs=1, **SMALL)
    with torch.no_grad():
        torch.testing.assert_close(trainer.forward(one_run, share=True), trainer.forward(one_run),
                                   rtol=1e-5, atol=1e-6)


def test_the_away_from_boundary_inputs_point_away_from_their_boundary(ensemble):
    """Per boundary tag, the vector input is the gradient of the distance to that boundary: of unit length at most
    nodes, and a step along it takes a node further from the boundary."""
    scales = EmulatorScales.from_problem(ensemble, ensemble.split["train"])
    vectors = EmulatorData(ensemble, scales, torch.device("cpu")).vectors[0].numpy().astype(np.float64)
    mesh = ensemble.mesh
    step = 0.05 * np.median(np.linalg.norm(np.diff(mesh.points[mesh.edges], axis=1)[:, 0], axis=1))
    for k, tag in enumerate(scales.tags):
        away = vectors[:, 3 + k]
        boundary = cKDTree(mesh.points[mesh.boundary_nodes(tag)])
        assert np.median(np.linalg.norm(away, axis=1)) == pytest.approx(1.0, abs=0.02)
        distance = boundary.query(mesh.points)[0]
        further = boundary.query(mesh.points + step * away)[0] > distance
        assert further[distance > 0].mean() > 0.9, tag


def test_the_seed_layer_switch_builds_the_seed_egcn(ensemble):
    trainer = make_trainer("egcn", ensemble, device="cpu", epochs=1, layer="seed", **SMALL)
    assert trainer.config["architecture"] == "egcn-seed" and type(trainer.model).__name__ == "SeedEGCN"


def test_a_diverging_loss_fails_with_a_message(ensemble):
    trainer = make_trainer("mlp", ensemble, device="cpu", epochs=3, **SMALL)
    with torch.no_grad():
        trainer.model.net[0].weight.fill_(float("nan"))
    with pytest.raises(TrainingFailed, match="mlp on sim:.*loss became nan at step 0"):
        trainer.fit(Control(snapshot_every=None))


def test_wrong_problem_kinds_are_refused(ensemble):
    with pytest.raises(ValueError, match="egcn trains on 'ensemble' problems"):
        make_trainer("egcn", "synthetic:curve")
    with pytest.raises(ValueError, match="dfnn trains on 'flux' problems"):
        make_trainer("dfnn", ensemble)


def test_a_background_job_can_be_cancelled(jobs, small_ensemble):
    job = training_job("egcn", f"sim:{small_ensemble}", device="cpu", snapshot_every=0.1, epochs=100_000, **SMALL)
    jobs.append(job)
    job.start()
    assert wait_until(lambda: job.latest() is not None and job.latest().epoch >= 1, timeout=60)
    job.cancel()
    assert job.wait(10) is JobStatus.CANCELLED
