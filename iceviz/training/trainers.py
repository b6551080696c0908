"""From a registered model name and a data spec to a trainer, and to a background job."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from iceviz.data.problem import FluxProblem
from iceviz.data.specs import Problem, load_problem
from iceviz.models.registry import ModelSpec, get_model
from iceviz.runtime.executor import isolated_job_class
from iceviz.runtime.job import Job
from iceviz.training.families import get_family
from iceviz.training.memory import job_memory


def make_trainer(model: str | ModelSpec, data: str | Problem, device: str = "auto",
                 grid_shape: tuple[int, int] | None = None, **overrides: Any) -> Any:
    """A trainer for ``model`` on ``data`` (a spec string or a loaded problem), hyper-parameters overridden."""
    spec = get_model(model) if isinstance(model, str) else model
    problem = load_problem(data) if isinstance(data, str) else data
    if problem.kind != spec.problem_kind:
        raise ValueError(f"{spec.name} trains on {spec.problem_kind!r} problems, but {problem.spec} is "
                         f"{problem.kind!r}; `iceviz data list` shows which data specs give which")
    params = spec.make_params(**{**problem_defaults(spec, problem), **overrides})
    return get_family(spec.family).trainer(spec, problem, params, device=device, grid_shape=grid_shape)


def problem_defaults(spec: ModelSpec, problem: Problem) -> dict[str, Any]:
    """Hyper-parameters that ``problem`` sets for ``spec`` over the registry's defaults: those its family makes
    follow the problem (for the flux family, the number of points it fits), then the source's own hints."""
    out = dict(get_family(spec.family).problem_defaults(spec, problem))
    out.update({k: v for k, v in problem.hints.items() if k in spec.params.param})
    return out


@dataclass(frozen=True)
class TrainerRecipe:
    """The arguments of :func:`make_trainer`, kept for later: calling it builds the trainer.

    Picklable (data specs and problems are), so a worker process can build the trainer itself.
    """

    model: str
    data: str | FluxProblem
    device: str = "auto"
    grid_shape: tuple[int, int] | None = None
    overrides: dict[str, Any] = field(default_factory=dict)

    def __call__(self) -> Any:
        return make_trainer(self.model, self.data, device=self.device, grid_shape=self.grid_shape, **self.overrides)


def training_job(model: str, data: str | FluxProblem, device: str = "auto", snapshot_every: float | None = 0.5,
                 num_threads: int | None = 1, grid_shape: tuple[int, int] | None = None, nice: int = 0,
                 isolate: bool = False, client: Any = None, **overrides: Any) -> Job:
    """A (not yet started) job that loads the data, builds the trainer and trains.

    All of it happens in the job's thread, or with ``isolate`` off this process, where its executor says
    (:mod:`iceviz.runtime.executor`: a worker of a Dask cluster, or a worker process; the trainer then holds no
    lock the caller needs, which is what a server wants, and the job has no ``trainer`` to inspect), or, given
    a ``distributed.Client`` as ``client``, on a worker of that Dask cluster
    (:class:`~iceviz.runtime.dask_job.DaskJob`), the trained trainer coming back (to save its model).
    """
    get_model(model)  # fail fast, in the caller's thread, on an unknown name
    recipe = TrainerRecipe(model, data, device=device, grid_shape=grid_shape, overrides=overrides)
    if client is not None:
        from iceviz.runtime.dask_job import DaskJob

        job: Job = DaskJob(model, recipe, snapshot_every=snapshot_every, num_threads=num_threads, client=client,
                           keep_trainer=True)
    else:
        kind = isolated_job_class() if isolate else Job
        job = kind(model, recipe, snapshot_every=snapshot_every, num_threads=num_threads, nice=nice)
    job.memory = job_memory(model, overrides)
    return job
