"""Simulation ensembles as a learning problem: (initial state, forcing, time) -> state, on one mesh.

An ensemble directory (``iceviz sim ensemble`` writes one; see :mod:`iceviz.sim.ensemble`) holds
runs of one scenario on one mesh that differ only by their forcing. :func:`load_ensemble` reads
every finished run, checks that they share the mesh, the bed and the snapshot times, and splits
the runs by forcing value: held-out values for the test set (interpolation between trained
values, as the seed holds out melt rates), one more for validation, the rest for training.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from iceviz.data.problem import DataError
from iceviz.runtime.job import Control, JobFailed

if TYPE_CHECKING:  # the simulator is heavy to import: only where an ensemble is loaded
    from iceviz.sim.mesh import IceMesh

TARGETS = ("vx", "vy", "h")
"""What an emulator predicts at every node: velocity [m/a] and thickness [m]."""
SPLITS = ("train", "val", "test")
MIN_RUNS = 3
"""An ensemble needs at least one finished run for each split."""


@dataclass(frozen=True)
class EnsembleProblem:
    """Every finished run of an ensemble, on its shared mesh, and the split of the runs.

    Attributes
    ----------
    spec : the data spec it was loaded from.
    directory : the ensemble directory.
    scenario, overrides : the scenario the runs simulate (as the manifest records it).
    mesh : the shared mesh; its edges are the emulators' graph.
    bed : (N,) bed elevation at the nodes [m].
    times : (S,) snapshot times [a], the first being the initial state.
    forcing_keys : the forcing parameters that vary between runs (the emulators' global inputs).
    forcing : (R, K) their values per run.
    fields : ``vx``, ``vy`` [m/a], ``h`` [m] -> (R, S, N) per run, snapshot and node.
    diagnostics : ``grounding_line`` [m], ``volume_above_flotation`` [m³] -> (R, S), from the simulator.
    wall_time : (R,) simulator seconds per run (as recorded when the ensemble ran).
    mean_dt : the simulator's mean time step over all runs [a].
    settings : the run settings (``max_dt``, ``cfl``, ``years``...).
    split : ``train``, ``val``, ``test`` -> run indices.
    files : run file per run (relative to ``directory``).
    notes : what loading skipped (failed runs).
    """

    spec: str
    directory: Path
    scenario: str
    overrides: dict
    mesh: "IceMesh"
    bed: np.ndarray
    times: np.ndarray
    forcing_keys: tuple[str, ...]
    forcing: np.ndarray
    fields: dict[str, np.ndarray]
    diagnostics: dict[str, np.ndarray]
    wall_time: np.ndarray
    mean_dt: float
    settings: dict
    split: dict[str, np.ndarray]
    files: tuple[str, ...]
    notes: tuple[str, ...] = ()
    hints: dict = field(default_factory=dict)
    kind: str = "ensemble"

    @property
    def n_runs(self) -> int:
        return len(self.forcing)

    def label(self, run: int) -> str:
        """The run's forcing as text, e.g. ``melt=20``."""
        return ", ".join(f"{k}={v:g}" for k, v in zip(self.forcing_keys, self.forcing[run]))

    def initial(self, run: int) -> dict[str, np.ndarray]:
        """The run's first snapshot: ``vx``, ``vy``, ``h`` -> (N,)."""
        return {k: self.fields[k][run, 0] for k in TARGETS}


def _middle(values: np.ndarray, exclude: np.ndarray) -> list[float]:
    """The value nearest the middle of sorted ``values`` that is not excluded, interior values first."""
    free = [i for i in range(len(values)) if not np.isclose(exclude, values[i]).any()]
    interior = [i for i in free if 0 < i < len(values) - 1] or free
    if not interior:
        return []
    middle = (len(values) - 1) / 2
    return [float(values[min(interior, key=lambda i: (abs(i - middle), i))])]


def split_runs(forcing: np.ndarray, test: list[float] | None = None, val: list[float] | None = None
               ) -> dict[str, np.ndarray]:
    """Run indices per split, by the value of the first varying forcing (every run with a held-out value
    is held out).

    ``test`` / ``val`` name the held-out values. By default test takes a quarter (at least one) of the
    distinct values, evenly spread over the interior (so the test asks for interpolation, as the seed's
    held-out melt rates do), validation the remaining interior value nearest the middle, training the rest.
    """
    key_values = forcing[:, 0]
    distinct = np.unique(key_values)
    if len(distinct) < MIN_RUNS:
        raise ValueError(f"{len(distinct)} distinct values; a split needs at least {MIN_RUNS}")
    for name, given in (("test", test), ("val", val)):
        missing = [g for g in (given or []) if not np.isclose(distinct, g).any()]
        if missing:
            raise ValueError(f"{name} value(s) {', '.join(f'{g:g}' for g in missing)} are not among the "
                             f"ensemble's {', '.join(f'{v:g}' for v in distinct)}")
    if test is None:
        spots = np.linspace(0, len(distinct) - 1, max(1, round(len(distinct) / 4)) + 2)[1:-1]
        test = sorted({float(distinct[min(len(distinct) - 2, max(1, round(i)))]) for i in spots})
    if val is None:
        val = _middle(distinct, np.asarray(test, float))
    chosen = dict(test=np.asarray(test, float), val=np.asarray(val, float))
    if any(np.isclose(chosen["test"], v).any() for v in chosen["val"]):
        raise ValueError("a value cannot be both test and val")
    held = np.concatenate([chosen["test"], chosen["val"]])
    chosen["train"] = np.array([v for v in distinct if not np.isclose(held, v).any()])
    split = {name: np.nonzero(np.isclose(key_values[:, None], chosen[name][None, :]).any(axis=1))[0]
             for name in SPLITS}
    empty = [name for name in SPLITS if len(split[name]) == 0]
    if empty:
        raise ValueError(f"the split leaves no runs for {', '.join(empty)}")
    return split


def load_ensemble(directory: str | os.PathLike, spec: str | None = None, test: list[float] | None = None,
                  val: list[float] | None = None) -> EnsembleProblem:
    """Every finished run of the ensemble in ``directory``; DataError naming what is missing or inconsistent."""
    from iceviz.sim.ensemble import FORCING_KEYS, read_manifest
    from iceviz.sim.ssa import SimulationError
    from iceviz.sim.ugrid import read_run

    d = Path(directory).expanduser()
    spec = spec or f"sim:{d}"
    try:
        manifest = read_manifest(d)
    except SimulationError as err:
        raise DataError(f"{spec}: {err}") from None
    done = [r for r in manifest["runs"] if r["status"] == "done"]
    failed = [r for r in manifest["runs"] if r["status"] != "done"]
    notes = tuple(f"run {r['index']} ({r.get('forcing')}) skipped: {r.get('error', r['status'])}" for r in failed)
    if len(done) < MIN_RUNS:
        raise DataError(f"{spec}: {len(done)} finished run(s); an emulator needs at least {MIN_RUNS} "
                        f"(train, validation, test){'; ' + '; '.join(notes) if notes else ''}")
    varied = [k for k in manifest["grid"] if k in FORCING_KEYS and len(manifest["grid"][k]) > 1]
    if not varied:
        raise DataError(f"{spec}: the runs do not differ in any forcing ({', '.join(FORCING_KEYS)}); "
                        "an emulator learns how the state depends on the forcing")
    runs = []
    for record in done:
        try:
            runs.append(read_run(d / record["file"]))
        except SimulationError as err:
            raise DataError(f"{spec}: {err}") from None
    first = runs[0]
    if len(first.times) < 2:
        raise DataError(f"{spec}: the runs have {len(first.times)} snapshot(s); an emulator needs the initial state "
                        "and at least one later one")
    for record, run in zip(done[1:], runs[1:]):
        where = f"{spec}: {record['file']} and {done[0]['file']}"
        if run.mesh.points.shape != first.mesh.points.shape or not (
                np.array_equal(run.mesh.points, first.mesh.points)
                and np.array_equal(run.mesh.triangles, first.mesh.triangles)):
            raise DataError(f"{where} are on different meshes; an ensemble's runs must share one")
        if not np.array_equal(run.bed, first.bed):
            raise DataError(f"{where} have different beds")
        if run.times.shape != first.times.shape or not np.allclose(run.times, first.times):
            raise DataError(f"{where} have different snapshot times ({len(run.times)} vs {len(first.times)})")
    forcing = np.array([[float(r["forcing"][k]) for k in varied] for r in done])
    fields = {k: np.stack([run.fields[k] for run in runs]) for k in TARGETS}
    bad = [k for k, v in fields.items() if not np.isfinite(v).all()]
    if bad:
        raise DataError(f"{spec}: non-finite values in {', '.join(bad)}")
    try:
        split = split_runs(forcing, test=test, val=val)
    except ValueError as err:
        raise DataError(f"{spec}: cannot split the runs by {varied[0]}: {err}") from None
    dts = np.concatenate([run.steps["dt"] for run in runs])
    return EnsembleProblem(
        spec=spec, directory=d, scenario=str(manifest["scenario"]), overrides=dict(manifest["overrides"]),
        mesh=first.mesh, bed=first.bed, times=first.times, forcing_keys=tuple(varied), forcing=forcing,
        fields=fields,
        diagnostics={k: np.stack([run.diagnostics[k] for run in runs])
                     for k in ("grounding_line", "volume_above_flotation")},
        wall_time=np.array([run.wall_time for run in runs]), mean_dt=float(dts.mean()) if len(dts) else 0.0,
        settings=dict(manifest["settings"]), split=split, files=tuple(r["file"] for r in done), notes=notes)


class EnsembleFailed(JobFailed):
    """An ensemble that could not be built or loaded; the message (the job's error) says why."""


@dataclass(frozen=True)
class BuildProgress:
    """How far an ensemble build is: ``done`` of ``total`` runs (both 0 while only loading)."""

    done: int
    total: int


@dataclass(frozen=True)
class EnsembleTask:
    """Build an ensemble (or find it in the cache) and load it: a job's task, as plain values (it pickles, so
    it can run in a worker process). With ``directory`` it only loads that ensemble directory.

    Calling it gives the runner whose ``fit(control)`` returns the :class:`EnsembleProblem` (the job contract's
    ``make_trainer``). The runs go one after the other in the task's own process: the job holds one slot of
    the queue it waits in. A cancel takes effect between runs (a stopped build leaves nothing in the cache).
    """

    directory: str | None = None
    scenario: str = ""
    overrides: dict = field(default_factory=dict)
    grid: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    root: str | None = None
    spec: str | None = None

    def __call__(self) -> "EnsembleBuilder":
        return EnsembleBuilder(self)


class EnsembleBuilder:
    """Runs one :class:`EnsembleTask` (see there)."""

    def __init__(self, task: EnsembleTask):
        self.task = task

    def fit(self, control: Control) -> EnsembleProblem:
        from iceviz.sim.ensemble import cached_ensemble, grid_points
        from iceviz.sim.ssa import SimulationError

        task = self.task
        control.start_clock()
        try:
            if task.directory is not None:
                folder = Path(task.directory)
            else:
                total = len(grid_points(task.grid))
                control.publish(BuildProgress(0, total))

                def progress(done: int, total: int, record: dict) -> None:
                    control.record(dict(done=done, total=total, progress=done / total, seconds=control.elapsed()))
                    control.publish(BuildProgress(done, total))
                    control.tick()

                folder = cached_ensemble(task.scenario, task.overrides, task.grid, task.settings, progress=progress,
                                         root=None if task.root is None else Path(task.root), workers=1)
            return load_ensemble(folder, spec=task.spec or f"sim:{folder}")
        except (DataError, SimulationError) as err:
            raise EnsembleFailed(str(err)) from None
