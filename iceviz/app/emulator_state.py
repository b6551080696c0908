"""The emulator view's state: which ensemble, building or loading it, and the emulator jobs (no Panel here).

An ensemble comes from one of four places: the default one (the marine glacier under eight melt
rates, run on first use and cached), the confined ice shelf under the same melt rates, the marine
glacier sized to the box picked on the map (run and cached likewise), or a directory the user made
with ``iceviz sim ensemble``. Building runs in
a background thread with progress; training runs every chosen model as a job, one after the other
(through a :class:`~iceviz.runtime.queue.JobQueue`), each with the same budget.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import param

from iceviz.app.paths import allowed_roots, safe_folder
from iceviz.data.ensemble import EnsembleProblem, load_ensemble
from iceviz.data.problem import DataError
from iceviz.data.roots import data_roots
from iceviz.models.registry import EmulatorParams, model_names
from iceviz.sim.ensemble import (DEFAULT_GRID, DEFAULT_SCENARIO, DEFAULT_SETTINGS, cached_ensemble,
                                 cached_ensemble_dir)
from iceviz.sim.scenarios import box_overrides
from iceviz.sim.ssa import SimulationError
from iceviz.runtime.job import Job, JobStatus
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


class EnsembleBuild:
    """Builds (or finds in the cache) an ensemble and loads it, in a daemon thread.

    Attributes: ``done`` / ``total`` runs so far, ``problem`` once loaded, ``error`` if it failed.
    """

    def __init__(self, label: str, make: Callable[["EnsembleBuild"], Path], spec: str | None = None):
        self.label = label
        self.done, self.total = 0, 0
        self.problem: EnsembleProblem | None = None
        self.error: str | None = None
        self._make, self._spec = make, spec
        self._thread = threading.Thread(target=self._run, name=f"iceviz-ensemble-{label}", daemon=True)

    def start(self) -> "EnsembleBuild":
        self._thread.start()
        return self

    @property
    def finished(self) -> bool:
        return not self._thread.is_alive() and (self.problem is not None or self.error is not None)

    def progress(self, done: int, total: int, record: dict) -> None:
        self.done, self.total = done, total

    def _run(self) -> None:
        try:
            directory = self._make(self)
            self.problem = load_ensemble(directory, spec=self._spec or f"sim:{directory}")
        except (DataError, SimulationError) as err:
            self.error = str(err)
        except Exception as err:  # noqa: BLE001 - the app must keep serving whatever happened
            self.error = f"{type(err).__name__}: {err}"


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
        self.build_job: EnsembleBuild | None = None
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

    def build(self) -> EnsembleBuild | None:
        """Start building or loading the chosen ensemble (None, with a message, when it cannot start)."""
        if self.build_job is not None and not self.build_job.finished:
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
            self.build_job = EnsembleBuild(text, lambda build: folder).start()
            return self.build_job
        try:
            scenario, overrides = self.recipe()
        except SimulationError as err:
            self.message = str(err)
            return None
        root = self.ensemble_root

        def make(build: EnsembleBuild) -> Path:
            return cached_ensemble(scenario, overrides, DEFAULT_GRID, DEFAULT_SETTINGS, progress=build.progress,
                                   root=root)

        spec = "sim:default" if self.source == "default" and root is None else None
        self.build_job = EnsembleBuild(SOURCES[self.source], make, spec=spec).start()
        return self.build_job

    def poll_build(self) -> bool:
        """Take a finished build's result (the problem, or its error as the message); True when it changed."""
        build = self.build_job
        if build is None or not build.finished or (build.problem is None and build.error is None):
            return False
        if build.problem is not None and build.problem is not self.problem:
            self.problem = build.problem
            return True
        if build.error is not None and self.message != build.error:
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

    def cancel(self) -> None:
        for _, job in self.jobs:
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
