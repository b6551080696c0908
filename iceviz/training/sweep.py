"""Sweeps: every combination of models, data specs, seeds and hyper-parameter values, trained on Dask.

:func:`sweep_runs` lists the runs (the product of the choices, in a fixed
order); :func:`run_sweep` trains them as :class:`~iceviz.runtime.dask_job.DaskJob`
tasks on a cluster, at most as many at once as it has workers (the runtime's
:class:`~iceviz.runtime.queue.JobQueue` admits them), and returns one row per
run: its settings, how it ended and its scores. A run that fails or diverges is
a row with its error, never the end of the sweep.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Sequence

from iceviz.models.registry import get_model
from iceviz.runtime.job import Job
from iceviz.runtime.queue import JobQueue
from iceviz.training.trainers import training_job

SCORES = ("rmse", "mae", "mad", "rmse_phys", "mae_phys", "mad_phys", "val_rmse", "val_rmse_phys",
          "mu_rel_error", "u_rel_error", "v_rel_error", "h_rel_error", "residual",
          "rmse_h", "rmse_v", "r", "speedup")
"""The scores a row carries when its family reports them (flux, viscosity, emulator)."""


def sweep_runs(models: Sequence[str], datas: Sequence[str], seeds: Sequence[int],
               grid: dict[str, Sequence[Any]] | None = None) -> list[dict[str, Any]]:
    """Every (data, model, grid values, seed) combination as ``{"model", "data", "seed", KEY: value, ...}``,
    data outermost and seed innermost; ValueError for an unknown model or a value a model refuses."""
    grid = dict(grid or {})
    keys = list(grid)
    runs = []
    for data, model, values, seed in itertools.product(datas, models, itertools.product(*grid.values()), seeds):
        settings = dict(zip(keys, values))
        get_model(model).make_params(**{k: v for k, v in settings.items()}, seed=seed)  # refuse before training
        runs.append({"model": model, "data": data, "seed": seed, **settings})
    return runs


def run_row(run: dict[str, Any], job: Job) -> dict[str, Any]:
    """The row of one run of a sweep: its settings, then how its job stands.

    Parameters
    ----------
    run : the run's settings, as :func:`sweep_runs` lists them.
    job : the job that trains it, in any state.

    Returns
    -------
    dict
        ``run`` with ``status`` (the job's: ``done``, ``cut short``, ``failed``, ``running``...), ``error``
        (its failure text, or why it was cut short, else ""), ``epochs`` and ``seconds`` (None until it has
        ended with a result) and the :data:`SCORES` its family reports (likewise).
    """
    status = job.status
    result = job.result if status.completed else None
    metrics = getattr(result, "metrics", None) or {}
    return {**run, "status": status.value, "error": job.error or job.shortfall,
            "epochs": getattr(result, "epochs", None), "seconds": getattr(result, "seconds", None),
            **{k: metrics[k] for k in SCORES if k in metrics}}


def run_sweep(runs: list[dict[str, Any]], client: Any, slots: int, budget: dict[str, Any],
              progress: Callable[[int, int], None] | None = None) -> list[dict[str, Any]]:
    """Train every run on the cluster of ``client``, ``slots`` at a time, each with ``budget`` (epochs and / or
    seconds); returns one row per run (its settings, ``status``, ``error``, ``epochs``, ``seconds`` and its
    family's scores). ``progress(done, total)`` after each run ends."""
    queue = JobQueue(slots=slots, per_session=len(runs))
    jobs: list[Job] = []
    for run in runs:
        settings = {k: v for k, v in run.items() if k not in ("model", "data")}
        jobs.append(queue.submit(training_job(run["model"], run["data"], snapshot_every=None, client=client,
                                              **{**budget, **settings})))
    rows = []
    try:
        for done, (run, job) in enumerate(zip(runs, jobs), start=1):
            job.wait()
            rows.append(run_row(run, job))
            if progress is not None:
                progress(done, len(runs))
    finally:
        queue.cancel_all()  # an interrupted sweep leaves nothing running
    return rows
