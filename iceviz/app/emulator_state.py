"""The emulator view's state: which ensemble, building or loading it, and the emulator jobs (no Panel here).

An ensemble comes from one of four places: the default one (the marine glacier under eight melt
rates, run on first use and cached), the confined ice shelf under the same melt rates, the marine
glacier sized to the box picked on the map (run and cached likewise), or a directory the user made
with ``iceviz sim ensemble``. Building (or loading) is a job
(:class:`~iceviz.data.ensemble.EnsembleTask`, in a worker process in the app) with progress; training runs
every chosen model as a job, each with the same budget; all of them wait in the session's
:class:`~iceviz.runtime.queue.JobQueue`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import param

from iceviz.app.paths import allowed_roots, safe_folder
from iceviz.data.ensemble import BuildProgress, EnsembleTask
from iceviz.data.roots import data_roots
from iceviz.models.registry import EmulatorParams, model_names
from iceviz.sim.ensemble import (DEFAULT_GRID, DEFAULT_SCENARIO, DEFAULT_SETTINGS,
                                 cached_ensemble_dir)
from iceviz.sim.job import simulation_memory
from iceviz.sim.scenarios import box_overrides, get_scenario
from iceviz.sim.ssa import SimulationError
from iceviz.runtime.job import Job, JobStatus
from iceviz.runtime.executor import isolated_job_class
from iceviz.runtime.queue import JobQueue, QueueFull, SessionQueue
from iceviz.training.trainers import training_job

SOURCES = {
    "default": "Default: marine glacier, melt 0-70 m/a",
    "confined-shelf": "Confined ice shelf, melt 0-70 m/a",
    "region": "Marine glacier sized to the map's region",
    "directory": "An ensemble directory",
}
"""Where the ensemble comes from -> its label."""
EMULATORS = model_names("ensemble")
DEFAULT_MODELS = ["egcn", "gcn", "mlp", "persistence"]
RANKING_COLUMNS = ["model", "status", "epochs", "seconds", "rmse_h", "rmse_v", "r", "r_change_h", "gl_error_km",
                   "speedup"]


def ensemble_roots() -> list[Path]:
    """Where the app may load an ensemble directory from: the run folders, the server's data roots and the
    iceviz cache's simulations."""
    from iceviz.app.state import REPO_ROOT
    from iceviz.cache import cache_dir

    return list(dict.fromkeys([*allowed_roots(REPO_ROOT), *data_roots(), (cache_dir() / "sim").resolve()]))


class EmulatorSession(param.Parameterized):
    """One browser session's ensemble and emulator jobs."""

    source = param.Selector(default="default", objects=list(SOURCES), doc="Where the ensemble comes from.")
    directory = param.String("", doc="An ensemble directory made by 'iceviz sim ensemble' (source 'directory').")
    models = param.ListSelector(default=DEFAULT_MODELS, objects=EMULATORS, doc="Emulators to train, one after the other.")
    problem = param.Parameter(None, doc="The loaded ensemble (an EnsembleProblem).")
    message = param.String("", doc="What went wrong last, for the user.")

    def __init__(self, queue: JobQueue | SessionQueue | None = None,
                 region_bounds: Callable[[], tuple[float, float, float, float] | None] | None = None,
                 ensemble_root: Path | None = None, roots: list[Path] | None = None, **params: Any):
        super().__init__(**params)
        self.hyper = EmulatorParams(epochs=1000, seconds=60.0)
        """Shared by every emulator: the budget and seed always; the others only where the user changed them
        (left alone, each emulator keeps its own tuned default)."""
        self.queue = queue or JobQueue()
        self.region_bounds = region_bounds
        self.ensemble_root = ensemble_root
        """Where built ensembles are cached (default: the iceviz cache)."""
        self.roots = roots
        """The folders an ensemble directory may be named in (default: :func:`ensemble_roots`)."""
        self.build_job: Job | None = None
        """The job that builds or loads the ensemble (its result: the EnsembleProblem)."""
        self.jobs: list[tuple[str, Job]] = []

    # -- the ensemble ------------------------------------------------------------------------------
    def recipe(self) -> tuple[str, dict[str, Any]]:
        """(scenario, overrides) of the source: a scenario as it is, or the default one sized to the map's box."""
        if self.source == "confined-shelf":
            return "confined-shelf", {}
        if self.source == "region":
            bounds = self.region_bounds() if self.region_bounds is not None else None
            if bounds is None:
                raise SimulationError("pick a region on the map first: its box sizes the glacier")
            return DEFAULT_SCENARIO, box_overrides(DEFAULT_SCENARIO, bounds)
        return DEFAULT_SCENARIO, {}

    def cached(self) -> bool:
        """Whether the chosen ensemble is ready without running anything."""
        if self.source == "directory":
            return True
        try:
            scenario, overrides = self.recipe()
        except SimulationError:
            return False
        return (cached_ensemble_dir(scenario, overrides, DEFAULT_GRID, DEFAULT_SETTINGS, self.ensemble_root)
                / "manifest.json").is_file()

    def build(self, nice: int = 0, isolate: bool = False) -> Job | None:
        """Queue the job that builds or loads the chosen ensemble (None, with a message, when it cannot start);
        ``isolate`` runs it in a worker process (what a server wants), at niceness ``nice``."""
        if self.build_job is not None and not self.build_job.status.finished:
            return None
        self.message = ""
        if self.source == "directory":
            text = self.directory.strip()
            if not text:
                self.message = "Give the ensemble's directory (made by `iceviz sim ensemble`)."
                return None
            roots = self.roots if self.roots is not None else ensemble_roots()
            try:
                folder = safe_folder(text, roots, bases=[Path.cwd()])
            except ValueError as err:
                self.message = f"{err}: an ensemble directory must lie in one of this server's data or run folders."
                return None
            label, task, memory = text, EnsembleTask(directory=str(folder)), 0
        else:
            try:
                scenario, overrides = self.recipe()
                memory = simulation_memory(get_scenario(scenario, **overrides))
            except (SimulationError, ValueError) as err:
                self.message = str(err)
                return None
            root = self.ensemble_root
            spec = "sim:default" if self.source == "default" and root is None else None
            label = SOURCES[self.source]
            task = EnsembleTask(scenario=scenario, overrides=overrides, grid=DEFAULT_GRID, settings=DEFAULT_SETTINGS,
                                root=None if root is None else str(root), spec=spec)
        job = (isolated_job_class() if isolate else Job)(label, task, snapshot_every=None, num_threads=None, nice=nice)
        job.memory = memory
        try:
            self.build_job = self.queue.submit(job)
        except QueueFull as err:
            self.message = f"The ensemble was not built: {err}."
            return None
        return self.build_job

    def build_progress(self) -> BuildProgress | None:
        """How far the running build is (None before its first run or when only loading)."""
        progress = self.build_job.latest() if self.build_job is not None else None
        return progress if isinstance(progress, BuildProgress) else None

    def poll_build(self) -> bool:
        """Take a finished build's result (the problem, or its error as the message); True when it changed."""
        build = self.build_job
        if build is None or not build.status.finished:
            return False
        if build.status is JobStatus.DONE and build.result is not self.problem:
            self.problem = build.result
            return True
        if build.status is JobStatus.FAILED and self.message != build.error:
            self.message = build.error
            return True
        return False

    # -- emulator jobs -------------------------------------------------------------------------------
    def running(self) -> bool:
        return any(not job.status.finished for _, job in self.jobs)

    def start(self, snapshot_every: float = 1.0, nice: int = 0, isolate: bool = False) -> list[Job]:
        """Queue one job per chosen model on the loaded ensemble (none while others still run)."""
        if self.problem is None:
            self.message = "Build or load an ensemble first."
            return []
        if self.running():
            return []
        if not self.models:
            self.message = "Choose at least one emulator."
            return []
        self.message = ""
        overrides = self.overrides()
        data = f"sim:{self.problem.directory}" if isolate else self.problem
        self.jobs = []
        for name in self.models:
            job = training_job(name, data, device="auto", snapshot_every=snapshot_every, nice=nice, isolate=isolate,
                               **(dict(overrides, epochs=1) if name == "persistence" else overrides))
            try:
                self.jobs.append((name, self.queue.submit(job)))
            except QueueFull as err:
                self.message = f"Not every emulator was queued: {err}."
                break
        return [job for _, job in self.jobs]

    def overrides(self) -> dict[str, Any]:
        """The budget and seed, and every other hyper-parameter the user changed from the class default."""
        values = self.hyper.param.values()
        always = ("epochs", "seconds", "seed")
        return {k: v for k, v in values.items()
                if k != "name" and (k in always or v != EmulatorParams.param[k].default)}

    def building(self) -> bool:
        """Whether the ensemble is being built or loaded (or waits to be)."""
        return self.build_job is not None and not self.build_job.status.finished

    def cancel(self) -> None:
        """Cancel the build and every emulator job."""
        for job in [self.build_job, *(job for _, job in self.jobs)]:
            if job is not None:
                job.cancel()

    def active_job(self) -> Job | None:
        """The job now training (or paused), if any."""
        return next((job for _, job in self.jobs if job.status in (JobStatus.RUNNING, JobStatus.PAUSED)), None)

    def best_finished(self) -> str | None:
        """The emulator with the lowest thickness RMSE among those that finished with scores (None if none)."""
        done = [(job.latest().metrics.get("rmse_h", np.inf), name) for name, job in self.jobs
                if job.status.finished and job.latest() is not None and job.latest().metrics]
        done = [(r, n) for r, n in done if np.isfinite(r)]
        return min(done)[1] if done else None

    def ranking(self) -> pd.DataFrame:
        """One row per job, best thickness RMSE first (scores over the held-out runs)."""
        rows = []
        for name, job in self.jobs:
            snap = job.latest()
            m = snap.metrics if snap is not None else {}
            rows.append(dict(model=name, status=job.status.value, epochs=snap.epoch if snap else 0,
                             seconds=round(snap.seconds, 1) if snap else 0.0, rmse_h=m.get("rmse_h", np.nan),
                             rmse_v=m.get("rmse_v", np.nan), r=m.get("r", np.nan),
                             r_change_h=m.get("r_change_h", np.nan),
                             gl_error_km=m.get("gl_error_final", np.nan) / 1e3, speedup=m.get("speedup", np.nan)))
        frame = pd.DataFrame(rows, columns=RANKING_COLUMNS)
        return frame.sort_values("rmse_h", na_position="last").reset_index(drop=True)
