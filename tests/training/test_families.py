"""Model families as one contract: every registered model's family is registered once, everything that differs
between families is looked up there, an unknown family fails loudly, and a new family is one registration."""

from __future__ import annotations

import dataclasses

import param
import pytest
import xarray as xr

from iceviz.models import registry
from iceviz.runtime.job import Control
from iceviz.training import families
from iceviz.training.base import FitResult, Trainer
from iceviz.training.checkpoint import VISCOSITY_CHECKPOINT, config_bytes
from iceviz.training.memory import WORKER_BASE_BYTES, job_memory
from iceviz.training.trainers import make_trainer


def test_every_registered_model_belongs_to_a_registered_family():
    assert {spec.family for spec in registry.REGISTRY.values()} == set(families.TRAINED)
    assert set(families.FAMILIES) - set(families.TRAINED) == {"simulator"}


def test_the_simulator_is_a_family_whose_runner_runs_a_scenario_and_reports_with_units(tmp_path):
    """Its runner is what the simulation job runs; its report says what every number means, its output keeps
    the outcome beside the run's own fields."""
    from iceviz.sim.ugrid import read_run, write_run

    sim = families.get_family("simulator")
    assert sim.checkpoint is None and sim.memory is None
    task = sim.trainer("confined-shelf", dict(resolution=8e3, refined_resolution=4e3, spin_up_years=0),
                       {}, dict(years=0.5, snapshot_every=0.5), tmp_path)
    run = task().fit(Control())
    keys, line = sim.report(None, run)
    assert set(keys) - {"units"} == set(keys["units"]) and keys["nodes"] == run.mesh.n_nodes
    assert keys["steps"] > 0 and keys["snapshots"] == 2 and keys["budget_residual"] < 1e-8
    assert f"{keys['steps']} steps" in line
    path = write_run(families.simulator_output(run), tmp_path / "run.nc")
    again = read_run(path)
    assert again.mesh.n_nodes == run.mesh.n_nodes
    with xr.open_dataset(path) as ds:
        assert ds.attrs["summary_volume_change"] == pytest.approx(keys["volume_change"])


def test_an_unknown_family_fails_loudly_wherever_it_is_looked_up():
    registered = "registered: flux, viscosity, emulator, simulator"
    with pytest.raises(ValueError, match=rf"unknown model family 'mesh'; {registered}"):
        families.get_family("mesh")
    stray = dataclasses.replace(registry.get_model("dfnn"), family="mesh")
    with pytest.raises(ValueError, match="unknown model family 'mesh'"):
        make_trainer(stray, "synthetic:curve")


class ToyParams(param.Parameterized):
    epochs = param.Integer(3, bounds=(1, 100), doc="Epochs [epochs].")
    seconds = param.Number(None, allow_None=True, doc="Time budget [s].")
    seed = param.Integer(0, doc="Seed.")
    lr = param.Number(0.1, doc="Learning rate [1/step].")
    width = param.Integer(8, bounds=(1, 64), doc="Width [units].")


class ToyTrainer(Trainer):
    """Counts epochs; its 'score' is the epoch count: the smallest trainer the contract allows."""

    headline = ("score",)

    def __init__(self, spec, problem, params, device="auto", grid_shape=None):
        self.spec, self.problem, self.params, self.epoch = spec, problem, params, 0
        self.model = _Model()

    def fit(self, control: Control | None = None) -> FitResult:
        control = control or Control(snapshot_every=None)
        control.start_clock()
        while self.budget_progress(control, self.epoch / self.params.epochs) < 1.0:
            control.tick()
            self.epoch += 1
        final, short = self.finish(control, f"after {self.epoch} epochs", None, f"{self.epoch} epochs", useful=True)
        return FitResult(epochs=self.epoch, steps=self.epoch, seconds=control.elapsed(), best_epoch=self.epoch,
                         metrics=dict(final.metrics), shortfall=short)

    def snapshot(self, control: Control, final: bool = False):
        return dataclasses.make_dataclass("S", ["metrics"])({"score": float(self.epoch)})


class _Model:
    def eval(self) -> None:
        pass


def test_a_new_family_is_one_registration(monkeypatch):
    toy = families.Family("toy", ToyTrainer, report=lambda t, r: ({"score": r.metrics["score"]}, "score"),
                          prediction=lambda fields, summary: fields, checkpoint=VISCOSITY_CHECKPOINT,
                          memory=lambda p: (p.width, 10 * p.width))
    spec = registry.ModelSpec(name="toy", family="toy", problem_kind="flux", params=ToyParams, defaults={},
                              doc="a toy")
    monkeypatch.setitem(families.FAMILIES, "toy", toy)
    monkeypatch.setitem(registry.REGISTRY, "toy", spec)
    result = make_trainer("toy", "synthetic:curve", epochs=5).fit()
    assert result.epochs == 5 and result.metrics == {"score": 5.0} and not result.shortfall
    assert job_memory("toy", {"width": 10}) == WORKER_BASE_BYTES + 4 * (4 * 10 + 100)
    assert families.get_family("toy").report(None, result) == ({"score": 5.0}, "score")
    assert config_bytes("toy", {"width": 4, "depth": 2, "mu_width": 4, "mu_depth": 2}) > 0


def test_a_trainer_is_as_far_as_its_work_or_its_time_budget_whichever_is_further():
    trainer = ToyTrainer(None, None, ToyParams(seconds=10.0))

    class Clock:
        def elapsed(self) -> float:
            return 4.0

    assert trainer.budget_progress(Clock(), 0.25) == pytest.approx(0.4)
    assert trainer.budget_progress(Clock(), 0.6) == pytest.approx(0.6)
    assert trainer.budget_progress(Clock(), 1.7) == 1.0
    trainer.params.seconds = None
    assert trainer.budget_progress(Clock(), 0.25) == pytest.approx(0.25)
