"""Model selection on validation data: the kept weights, patience, budgets as caps, a test set never looked at."""

import dataclasses

import numpy as np
import pytest

from iceviz.data.problem import FluxObservations, FluxProblem, FluxScale
from iceviz.data.specs import load_problem
from iceviz.runtime.job import Control
from iceviz.training.trainers import make_trainer


def _recording_fit(trainer):
    control = Control(snapshot_every=None)
    result = trainer.fit(control)
    return result, control.history()


def noise_problem(n_lines=12, per_line=40, seed=0) -> FluxProblem:
    """Flux that is pure noise on straight lines: fitting the training lines can only hurt the held-out ones."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 1.0, per_line)
    xy = np.concatenate([np.column_stack([np.full(per_line, (k + 0.5) / n_lines), t]) for k in range(n_lines)])
    line = np.repeat(np.arange(n_lines), per_line)
    q = rng.normal(size=(len(xy), 2))
    test = rng.uniform(0, 1, size=(200, 2))
    return FluxProblem(spec="noise", train=FluxObservations(xy=xy, q=q, line=line),
                       test=FluxObservations(xy=test, q=rng.normal(size=(200, 2))),
                       scale=FluxScale(0.0, 0.0, 1.0, 1.0), bounds=(0.0, 1.0, 0.0, 1.0), grid_shape=(10, 10))


def test_early_stopping_restores_the_best_validation_weights_while_training_still_improves():
    trainer = make_trainer("nn", noise_problem(), device="cpu", seed=0, width=128, depth=3, lr=1e-2,
                           planned_epochs=400, patience=40, weight_decay=0.0, refit=False)
    result, history = _recording_fit(trainer)
    assert not result.refit and all("phase" not in h for h in history)
    val = np.array([h["val_rmse"] for h in history])
    train = np.array([h["epoch_data_loss"] for h in history])
    # patience counts from half-way through the schedule on
    assert result.stop_reason == "patience" and result.epochs == max(result.best_epoch + 40, 200)
    assert train[-1] < train[result.best_epoch - 1]  # training kept improving past the kept epoch ...
    assert val[-1] > val.min()  # ... while validation got worse
    assert val[result.best_epoch - 1] == val.min()
    assert trainer.validation_rmse() == pytest.approx(val.min(), rel=1e-6)  # the kept weights are those
    assert result.metrics["val_rmse"] == pytest.approx(val.min(), rel=1e-6)
    assert all(h["best_epoch"] <= h["epoch"] for h in history)


def test_the_refit_fits_every_point_for_as_many_epochs_as_validation_chose_and_ends_cold():
    problem = noise_problem()
    kwargs = dict(device="cpu", seed=0, width=32, depth=2, lr=1e-2, planned_epochs=60, patience=20)
    plain = make_trainer("nn", problem, **kwargs, refit=False)
    kept, _ = _recording_fit(plain)
    trainer = make_trainer("nn", problem, **kwargs)
    result, history = _recording_fit(trainer)
    first = [h for h in history if "phase" not in h]
    refit = [h for h in history if h.get("phase") == "refit"]
    assert result.refit and (result.best_epoch, result.epochs) == (kept.best_epoch, kept.epochs)
    assert [h["epoch"] for h in refit] == list(range(1, result.best_epoch + 1))
    assert len(first) == result.epochs and all("val_rmse" not in h for h in refit)
    # every point is fitted: each refit epoch takes more steps than a first-phase epoch
    n_all, n_fit, batch = len(problem.train), len(plain.q_train), plain.params.batch_size
    assert refit[1]["step"] - refit[0]["step"] == -(-n_all // batch) > -(-n_fit // batch)
    # the same cosine schedule compressed to the kept epoch's length: it ends on a cold learning rate
    steps = -(-n_all // batch)
    for h in refit:
        progress = (h["epoch"] - 1 + (steps - 1) / steps) / result.best_epoch
        assert h["lr"] == pytest.approx(trainer.params.lr * trainer._lr_factor(progress), rel=1e-9)
    assert refit[-1]["lr"] < 0.01 * trainer.params.lr < first[result.best_epoch - 1]["lr"]
    # the reported validation RMSE is the held-out one of the kept epoch, not one on points since fitted
    assert result.metrics["val_rmse"] == kept.metrics["val_rmse"]
    assert trainer.validation_rmse() < result.metrics["val_rmse"]
    assert result.metrics["rmse"] != kept.metrics["rmse"]


def test_no_refit_when_the_time_budget_leaves_no_room():
    trainer = make_trainer("nn", noise_problem(), device="cpu", seed=0, width=32, depth=2, planned_epochs=10_000,
                           patience=1_000_000, seconds=1.0)
    result, history = _recording_fit(trainer)
    assert result.stop_reason == "seconds" and not result.refit
    assert all("phase" not in h for h in history)
    assert trainer.validation_rmse() == pytest.approx(result.metrics["val_rmse"], rel=1e-6)


def test_the_test_set_is_never_looked_at_before_the_final_score():
    p = load_problem("synthetic:curve")
    kwargs = dict(device="cpu", seed=2, planned_epochs=60)
    a = make_trainer("dfnn", p, **kwargs).fit()
    scrambled = dataclasses.replace(p, test=FluxObservations(xy=p.test.xy, q=-3 * p.test.q))
    b = make_trainer("dfnn", scrambled, **kwargs).fit()
    assert (a.best_epoch, a.epochs, a.stop_reason) == (b.best_epoch, b.epochs, b.stop_reason)
    assert a.metrics["val_rmse"] == b.metrics["val_rmse"] and a.metrics["rmse"] != b.metrics["rmse"]


def test_budgets_beyond_the_plan_change_nothing():
    p = load_problem("synthetic:ridges")
    kwargs = dict(device="cpu", seed=1, planned_epochs=80)
    base = make_trainer("dfnn", p, **kwargs).fit()
    for budget in (dict(epochs=320), dict(seconds=3600.0)):
        other = make_trainer("dfnn", p, **kwargs, **budget).fit()
        assert other.metrics["rmse"] == base.metrics["rmse"] and other.best_epoch == base.best_epoch, budget
    assert base.stop_reason in ("schedule", "patience")


SMALL = (
    "synthetic:curve",
    # Known failure (issue 21, open): with the 4 x 64 defaults, seed 2 holds out a line on which validation keeps
    # improving while the test grid, far from every line, gets worse (0.159 at the quarter cap, 0.289 at the plan).
    pytest.param("synthetic:branching", marks=pytest.mark.xfail(reason="validation on one held-out line does not "
                                                                       "see the test grid's far field", strict=False)),
    "synthetic:glacier?bbox=400000,500000,-950000,-850000",
)


@pytest.mark.parametrize("spec", SMALL)
def test_a_larger_budget_is_never_worse(spec):
    """4x the epoch cap: the mean test RMSE of 3 seeds is not above the 1x mean beyond 10 %, no seed beyond 30 %.

    The caps are a quarter of the default plan and the plan itself, so the larger run is the smaller one
    continued (the same weights up to the smaller cap), and it keeps the best validation epoch of the whole."""
    p = load_problem(spec)
    assert len(p.train) < 1000  # small problems: a few hundred points
    small, large = [], []
    for seed in range(3):
        plan = make_trainer("dfnn", p, device="cpu", seed=seed).params.planned_epochs
        small.append(make_trainer("dfnn", p, device="cpu", seed=seed, epochs=plan // 4).fit())
        large.append(make_trainer("dfnn", p, device="cpu", seed=seed, epochs=plan).fit())
    assert all(r.epochs <= plan // 4 for r in small)
    assert all(b.metrics["val_rmse"] <= a.metrics["val_rmse"] for a, b in zip(small, large))
    rmse_small = np.array([r.metrics["rmse"] for r in small])
    rmse_large = np.array([r.metrics["rmse"] for r in large])
    assert rmse_large.mean() <= 1.10 * rmse_small.mean(), (rmse_small, rmse_large)
    assert (rmse_large <= 1.30 * rmse_small).all(), (rmse_small, rmse_large)
