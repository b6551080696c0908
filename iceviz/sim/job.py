"""A simulation as a background job: the cached spin-up, then the forced run, with pause, resume and cancel.

:class:`SimulationJob` is a :class:`iceviz.runtime.job.Job` that runs a
:class:`SimulationTask` (plain values) in its thread, and
:class:`SimulationProcessJob` / :class:`SimulationDaskJob` one that runs it in a
worker process / on a Dask worker (what the app does, through
:func:`simulation_job_class`, so that nothing heavy runs in the server). The task builds the scenario's
:class:`~iceviz.sim.model.Simulator`, takes the spun-up state from the cache
(running the spin-up first when it is not there), then runs the forcing. After
every time step the job records the diagnostics and the cumulative mass budget,
and calls :meth:`Control.tick` (where a pause blocks and a cancel raises
:class:`~iceviz.runtime.job.JobCancelled`). It publishes a :class:`SimSnapshot`
(plain data, safe to read from any thread) at most every ``snapshot_every``
seconds, at every snapshot the run saves, before it pauses and at the end. A
finished job keeps the :class:`~iceviz.sim.model.SimRun` in :attr:`Job.result`.

Bad parameters, a mesh that cannot be built and a diverging solve (non-finite
velocity or thickness) end the job as ``failed`` with a message that says in
which phase and at which model year it happened. Nothing here touches a UI.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import param

from iceviz.sim.mesh import IceMesh, MeshError
from iceviz.sim.model import Forcing, RunSettings, SimRun, Simulator, State
from iceviz.sim.scenarios import Scenario, get_scenario
from iceviz.sim.spinup import spin_up_path, spun_up
from iceviz.sim.ssa import SimulationError, height_above_flotation
from iceviz.sim.transport import MassBudget
from iceviz.runtime.dask_job import DaskJob
from iceviz.runtime.executor import isolated_job_class
from iceviz.runtime.job import Control, Job, JobFailed
from iceviz.runtime.worker import ProcessJob

PHASES = ("spin-up", "run")
BUDGET_TERMS = tuple(MassBudget.__dataclass_fields__)
"""volume_change, smb, melt, inflow, outflow, floor, calved."""
HISTORY_KEYS = ("t", "volume", "grounding_line", *(f"budget_{k}" for k in BUDGET_TERMS))
"""Per step of the run (and its start): model year, volume [m³], centreline grounding line [m], and every
mass-budget term summed from the start of the run [m³]."""


class SimulationFailed(JobFailed):
    """A simulation that cannot go on; its message (shown as the job's error) says where and why."""


def _empty_history() -> dict[str, np.ndarray]:
    return {k: np.zeros(0) for k in HISTORY_KEYS}


@dataclass(frozen=True)
class SimSnapshot:
    """One moment of a simulation job, cheap to hand to another thread (its arrays are copies).

    Attributes
    ----------
    phase : "spin-up" or "run".
    time : model years since the phase began.
    years : the phase's length [a].
    progress : fraction of the phase done, 0..1.
    h, speed, haf : per-node thickness [m], speed [m/a], height above flotation [m] (negative: floating).
    grounding_line : centreline grounding-line position [m].
    history : the run's record so far (see :data:`HISTORY_KEYS`); empty during the spin-up.
    nodes : number of mesh nodes.
    seconds : wall time since the job started, pauses excluded [s].
    mesh, bed : the mesh and bed [m] (shared, never modified).
    final : True for the snapshot published when the run ended.
    spun_up_from_cache : whether the run's spun-up state came from the cache (None during the spin-up).
    """

    phase: str
    time: float
    years: float
    progress: float
    h: np.ndarray
    speed: np.ndarray
    haf: np.ndarray
    grounding_line: float
    history: dict[str, np.ndarray] = field(default_factory=_empty_history)
    nodes: int = 0
    seconds: float = 0.0
    mesh: IceMesh | None = None
    bed: np.ndarray | None = None
    final: bool = False
    spun_up_from_cache: bool | None = None

    @property
    def floating(self) -> np.ndarray:
        """1 where the ice floats, else 0, per node."""
        return (self.haf < 0).astype(float)

    @property
    def budget(self) -> MassBudget:
        """The mass budget of the run so far."""
        if len(self.history["t"]) == 0:
            return MassBudget()
        return MassBudget(**{k: float(self.history[f"budget_{k}"][-1]) for k in BUDGET_TERMS})


def _values(obj: Any) -> dict:
    """Parameter values of a Parameterized (copied now, so later widget edits cannot reach the job)."""
    if isinstance(obj, param.Parameterized):
        return {k: v for k, v in obj.param.values().items() if k != "name"}
    return dict(obj or {})


MEMORY_BASE_BYTES = 400 * 2**20
"""A simulation's worker process before its mesh: interpreter, numpy, scipy, the solver (measured ~65 MB; room
for the spin-up cache and a snapshot in flight)."""
MEMORY_NODE_BYTES = 100 * 2**10
"""Per mesh node, an upper figure: measured 19 KB (2,345 nodes), 29 KB (793) and 70 KB (13,903 nodes: the sparse
solver's fill-in grows faster than the mesh)."""


def estimated_nodes(scenario: Scenario) -> int:
    """An upper estimate of the mesh's node count, without building it: the outline's bounding box tiled with
    triangles of the refined side everywhere (two triangles a node); 1.5-1.6x the true count of the defaults."""
    outline, _ = scenario.outline()
    area = float(np.ptp(outline[:, 0]) * np.ptp(outline[:, 1]))
    return int(area / (np.sqrt(3) / 4 * min(scenario.refined_resolution, scenario.resolution) ** 2) / 2) + 1


def simulation_memory(scenario: Scenario) -> int:
    """Bytes a simulation of ``scenario`` may take at most (for admission: :attr:`Job.memory`)."""
    return MEMORY_BASE_BYTES + MEMORY_NODE_BYTES * estimated_nodes(scenario)


@dataclass(frozen=True)
class SimulationTask:
    """What a simulation job runs, as plain values: it pickles, so it can travel to a worker process.

    Calling it gives the :class:`SimulationRunner` that does the work (the job contract's ``make_trainer``).
    """

    scenario: str
    overrides: dict = field(default_factory=dict)
    forcing: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    cache_root: Any = None

    def __call__(self) -> "SimulationRunner":
        return SimulationRunner(self)


class SimulationRunner:
    """Spin-up (cached) and forced run of one :class:`SimulationTask`, wherever its job runs it.

    Attributes
    ----------
    simulator : the scenario's simulator, once built.
    spun_up_from_cache : whether the spin-up came from the cache (None until known).
    phase, t : where it is: "set-up", "spin-up" or "run", and the model year in that phase.
    """

    def __init__(self, task: SimulationTask):
        self.task = task
        self.simulator: Simulator | None = None
        self.spun_up_from_cache: bool | None = None
        self.phase = "set-up"
        self.t = 0.0

    def fit(self, control: Control) -> SimRun:
        """Run it, publishing :class:`SimSnapshot` s on ``control``; SimulationFailed says where it failed."""
        control.start_clock()
        try:
            return self._simulate(control)
        except (SimulationError, MeshError) as err:
            if self.phase == "set-up":
                raise SimulationFailed(f"Cannot set up the simulation: {err}") from err
            raise SimulationFailed(f"The {self.phase} failed at model year {self.t:.2f}: {err}") from err

    def _simulate(self, control: Control) -> SimRun:
        task = self.task
        try:
            forcing = Forcing(**task.forcing)
            settings = RunSettings(**task.settings)
        except (ValueError, TypeError) as err:
            raise SimulationError(str(err)) from None
        simulator = self.simulator = Simulator(get_scenario(task.scenario, **task.overrides))
        control.tick()

        # spin-up: from the cache, else run it (its starting state shown at once, then as it evolves)
        self.phase = "spin-up"
        spin = _Recorder(self, control, "spin-up", float(simulator.scenario.spin_up_years), None)
        if simulator.scenario.spin_up_years > 0 and not spin_up_path(simulator, task.cache_root).exists():
            spin.start(simulator.initial_state())
        state, self.spun_up_from_cache = spun_up(simulator, root=task.cache_root, on_step=spin.on_step)

        # the forced run
        self.phase, self.t = "run", 0.0
        rec = _Recorder(self, control, "run", float(settings.years), settings)
        rec.start(state)
        run = simulator.run(forcing, settings, state=state, on_step=rec.on_step)
        rec.finish(run)
        return run


class SimulationJob(Job):
    """Spin-up (cached) and forced run of one scenario, in a daemon thread of this process.

    Parameters
    ----------
    scenario : scenario name (see :data:`iceviz.sim.scenarios.SCENARIOS`).
    overrides : scenario parameter values (a dict, or the scenario object itself).
    forcing, settings : a :class:`Forcing` / :class:`RunSettings` or a dict of their values.
    snapshot_every : seconds between published snapshots (at most; saved snapshots are published too).
    cache_root : where spin-ups are cached (default: the iceviz cache, ``$ICEVIZ_CACHE``).
    nice, on_finish : as for :class:`~iceviz.runtime.job.Job`.

    Bad parameters refused by the scenario fail the job when it runs (with the scenario's words); its
    :attr:`Job.memory` is estimated from them (:func:`simulation_memory`) when they are valid.
    """

    def __init__(self, scenario: str, overrides: Any = None, forcing: Any = None, settings: Any = None,
                 snapshot_every: float = 0.5, cache_root=None, nice: int = 0,
                 on_finish: Callable[[Job], None] | None = None):
        task = SimulationTask(scenario, _values(overrides), _values(forcing), _values(settings), cache_root)
        super().__init__(name=scenario, make_trainer=task, snapshot_every=snapshot_every, num_threads=None,
                         on_finish=on_finish, nice=nice)
        try:
            self.memory = simulation_memory(get_scenario(scenario, **task.overrides))
        except (KeyError, ValueError, TypeError):  # the job fails with the scenario's message when it runs
            pass

    @property
    def run(self) -> SimRun | None:
        """The finished run (None until the job is done)."""
        return self.result if isinstance(self.result, SimRun) else None

    @property
    def spun_up_from_cache(self) -> bool | None:
        """Whether the spin-up came from the cache (None until the run began)."""
        snap = self.latest()
        return None if snap is None else snap.spun_up_from_cache


class SimulationProcessJob(SimulationJob, ProcessJob):
    """A :class:`SimulationJob` run in a worker process (:class:`~iceviz.runtime.worker.ProcessJob`): what a
    server wants, so that no simulation holds the lock its sessions are served under."""


class SimulationDaskJob(SimulationJob, DaskJob):
    """A :class:`SimulationJob` run on a worker of this process's Dask cluster
    (:class:`~iceviz.runtime.dask_job.DaskJob`)."""


def simulation_job_class(isolate: bool) -> type[SimulationJob]:
    """The simulation job class for where this process runs its jobs: with ``isolate``, off this process
    (the executor's way: :func:`iceviz.runtime.executor.isolated_job_class`), else in a thread here."""
    if not isolate:
        return SimulationJob
    return SimulationDaskJob if isolated_job_class() is DaskJob else SimulationProcessJob


class _Recorder:
    """Per-step bookkeeping of one phase: history, cumulative budget, when to publish."""

    def __init__(self, runner: SimulationRunner, control: Control, phase: str, years: float,
                 settings: RunSettings | None):
        self.runner, self.sim, self.phase, self.years = runner, runner.simulator, phase, years
        self.control = control
        self.every = settings.snapshot_every if settings is not None else None
        self.next_save = self.every if self.every is not None else np.inf
        self.t0 = 0.0
        self.track = phase == "run"
        self.cumulative = dict.fromkeys(BUDGET_TERMS, 0.0)
        self.rows: dict[str, list[float]] = {k: [] for k in HISTORY_KEYS}
        self.gl = float("nan")

    def start(self, state: State) -> None:
        """Record and publish the phase's starting state."""
        self.t0 = state.t
        diag = self.sim.diagnose(state.h)
        self.gl = diag["grounding_line"]
        if self.track:
            self._append(0.0, diag)
        self.publish(state, 0.0)

    def _append(self, t: float, diag: dict) -> None:
        self.rows["t"].append(t)
        self.rows["volume"].append(diag["volume"])
        self.rows["grounding_line"].append(diag["grounding_line"])
        for k in BUDGET_TERMS:
            self.rows[f"budget_{k}"].append(self.cumulative[k])

    def on_step(self, state: State, record: dict) -> None:
        control = self.control
        t = state.t - self.t0
        self.runner.t = t
        if self.track:
            for k in BUDGET_TERMS:
                self.cumulative[k] += float(record[k])
        diag = self.sim.diagnose(state.h)
        self.gl = diag["grounding_line"]
        if self.track:
            self._append(t, diag)
        progress = min(1.0, t / self.years) if self.years > 0 else 1.0
        control.record(dict(phase=self.phase, t=t, progress=progress, seconds=control.elapsed(),
                            dt=float(record["dt"]), iterations=int(record["iterations"]),
                            converged=bool(record["converged"])))
        saved = t >= self.next_save - 1e-9 * max(1.0, abs(t))
        if saved:
            while self.next_save <= t + 1e-9 * max(1.0, abs(t)):
                self.next_save += self.every
        pausing = not control.events[0].is_set()
        if saved or pausing or control.snapshot_due():
            self.publish(state, t)
        control.tick()

    def finish(self, run: SimRun) -> None:
        state = run.state()
        self.publish(state, state.t - self.t0, final=True)

    def publish(self, state: State, t: float, final: bool = False) -> None:
        sim = self.sim
        h = np.array(state.h, dtype=float)
        haf = height_above_flotation(h, sim.bed)
        history = {k: np.array(v, dtype=float) for k, v in self.rows.items()} if self.track else _empty_history()
        progress = 1.0 if final else (min(1.0, t / self.years) if self.years > 0 else 0.0)
        self.control.publish(SimSnapshot(
            phase=self.phase, time=float(t), years=self.years, progress=float(progress), h=h,
            speed=np.hypot(state.u, state.v), haf=haf, grounding_line=float(self.gl),
            history=history, nodes=sim.mesh.n_nodes, seconds=self.control.elapsed(), mesh=sim.mesh, bed=sim.bed,
            final=final, spun_up_from_cache=self.runner.spun_up_from_cache))


def wait_for_snapshot(job: Job, predicate: Callable[[SimSnapshot], bool], timeout: float = 30.0) -> SimSnapshot:
    """Poll ``job`` until its latest snapshot satisfies ``predicate`` (for tests and scripts)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        snap = job.latest()
        if snap is not None and predicate(snap):
            return snap
        if job.status.finished:
            snap = job.latest()
            if snap is not None and predicate(snap):
                return snap
            raise TimeoutError(f"the job ended ({job.status.value}) before the snapshot came: {job.error}")
        time.sleep(0.01)
    raise TimeoutError(f"no such snapshot within {timeout} s")
