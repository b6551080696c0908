"""From a registered model name and a data spec to a trainer, and to a background job."""

from __future__ import annotations

from typing import Any, Callable

from iceviz.data.problem import FluxProblem
from iceviz.data.specs import load_problem
from iceviz.models.registry import ModelSpec, get_model
from iceviz.training.flux_trainer import FluxTrainer
from iceviz.training.job import Job

TRAINER_FAMILIES: dict[str, Callable[..., Any]] = {"flux": FluxTrainer}
"""Trainer class for each model family of the registry."""


def make_trainer(model: str | ModelSpec, data: str | FluxProblem, device: str = "auto",
                 grid_shape: tuple[int, int] | None = None, **overrides: Any) -> Any:
    """A trainer for ``model`` on ``data`` (a spec string or a loaded problem), hyper-parameters overridden."""
    spec = get_model(model) if isinstance(model, str) else model
    problem = load_problem(data) if isinstance(data, str) else data
    hints = {k: v for k, v in problem.hints.items() if k in spec.params.param}
    params = spec.make_params(**{**hints, **overrides})
    try:
        family = TRAINER_FAMILIES[spec.family]
    except KeyError:
        raise ValueError(f"{spec.name}: no trainer for family {spec.family!r}") from None
    return family(spec, problem, params, device=device, grid_shape=grid_shape)


def training_job(model: str, data: str | FluxProblem, device: str = "auto", snapshot_every: float | None = 0.5,
                 num_threads: int | None = 1, grid_shape: tuple[int, int] | None = None, nice: int = 0,
                 **overrides: Any) -> Job:
    """A (not yet started) job that loads the data, builds the trainer and trains, all in its thread."""
    get_model(model)  # fail fast, in the caller's thread, on an unknown name
    return Job(model, lambda: make_trainer(model, data, device=device, grid_shape=grid_shape, **overrides),
               snapshot_every=snapshot_every, num_threads=num_threads, nice=nice)
