"""Transient simulation: momentum and thickness transport stepped together, with forcings and snapshots.

Each step solves the SSA for the current thickness (warm-started from the
previous velocity), takes the largest time step the CFL condition allows
(capped by ``max_dt`` and by the next snapshot), transports the thickness,
applies the thickness floor and, for a retreating front, removes the ice
beyond the front. Every term of the mass budget is recorded per step.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import param

from iceviz.sim.mesh import IceMesh
from iceviz.sim.scenarios import Scenario
from iceviz.sim.ssa import Geometry, SimulationError, SSASolver, height_above_flotation
from iceviz.sim.transport import MassBudget, Transport

FIELDS = ("vx", "vy", "h", "surface", "base", "floating")
"""Per-node fields of every snapshot: velocity [m/a], thickness, surface, base [m], floating mask (0 / 1)."""
DIAGNOSTICS = ("volume", "volume_above_flotation", "grounded_area", "grounding_line", "front")
"""Per-snapshot scalars: volumes [m³], grounded area [m²], centreline grounding line and front positions [m]."""
STEP_KEYS = ("t", "dt", "iterations", "converged", *MassBudget.__dataclass_fields__)
"""Per-step records: time and step [a], momentum iterations, whether they converged, budget terms [m³]."""


class Forcing(param.Parameterized):
    """What varies between the runs of an ensemble: ocean melt, surface mass balance, calving."""

    melt = param.Number(0.0, bounds=(0.0, 500.0), doc="Basal melt rate under floating ice [m/a].")
    smb = param.Number(0.3, bounds=(-20.0, 20.0), doc="Surface mass balance [m/a of ice] (MISMIP+: 0.3).")
    calving = param.Selector(default="fixed", objects=["fixed", "retreat"],
                             doc="Calving front: fixed in place, or retreating at retreat_rate.")
    retreat_rate = param.Number(0.0, bounds=(0.0, 20000.0),
                                doc="Imposed front retreat [m/a] when calving is 'retreat'.")

    def key(self) -> dict:
        return {k: v for k, v in self.param.values().items() if k != "name"}


class RunSettings(param.Parameterized):
    """How long and how finely to simulate."""

    years = param.Number(20.0, bounds=(0.0, 5000.0), doc="Simulated time [a].")
    snapshot_every = param.Number(0.5, bounds=(0.01, 1000.0), doc="Time between saved snapshots [a].")
    max_dt = param.Number(0.5, bounds=(1e-4, 100.0), doc="Largest time step [a].")
    cfl = param.Number(0.5, bounds=(0.01, 1.0), doc="Courant number: |u| Δt ≤ cfl × element size.")
    tolerance = param.Number(1e-4, bounds=(1e-12, 1e-1),
                             doc="Relative velocity change that ends each momentum solve.")
    max_iter = param.Integer(100, bounds=(1, 1000), doc="Most momentum iterations per solve.")
    method = param.Selector(default="newton", objects=["newton", "picard"],
                            doc="Momentum iteration for Glen's law (see iceviz.sim.ssa).")

    def key(self) -> dict:
        return {k: v for k, v in self.param.values().items() if k != "name"}


@dataclass
class State:
    """Thickness [m] and velocity [m/a] at the nodes at time t [a]."""

    h: np.ndarray
    u: np.ndarray
    v: np.ndarray
    t: float = 0.0


@dataclass
class SimRun:
    """A finished (or stopped) run: snapshots of every field, diagnostics, budget and solver statistics."""

    mesh: IceMesh
    bed: np.ndarray
    times: np.ndarray
    fields: dict[str, np.ndarray]
    """name -> (S, N) per snapshot and node (see FIELDS)."""
    diagnostics: dict[str, np.ndarray]
    """name -> (S,) per snapshot (see DIAGNOSTICS)."""
    steps: dict[str, np.ndarray]
    """Per time step: t, dt, iterations, converged, and every MassBudget term [m³]."""
    params: dict = field(default_factory=dict)
    wall_time: float = 0.0

    @property
    def budget(self) -> MassBudget:
        """The whole run's mass budget (sum over steps)."""
        return MassBudget(**{k: float(np.sum(self.steps[k])) for k in MassBudget.__dataclass_fields__})

    def step_budgets(self) -> list[MassBudget]:
        """The mass budget of every step."""
        terms = MassBudget.__dataclass_fields__
        return [MassBudget(**{k: float(self.steps[k][i]) for k in terms}) for i in range(len(self.steps["t"]))]

    def state(self, index: int = -1) -> State:
        return State(h=self.fields["h"][index].copy(), u=self.fields["vx"][index].copy(),
                     v=self.fields["vy"][index].copy(), t=float(self.times[index]))


def flotation_diagnostics(h: np.ndarray, bed: np.ndarray, node_area: np.ndarray, probe, line: np.ndarray
                          ) -> dict[str, float]:
    """Volume [m³], volume above flotation [m³], grounded area [m²] and the grounding line [m] of thickness ``h``.

    Parameters
    ----------
    h, bed : thickness and bed elevation at the nodes [m].
    node_area : ∫ φ_i dx per node [m²] (P1 lumped areas).
    probe : sparse (K, N) matrix interpolating node values at the ``line`` points.
    line : (K, 2) points along the centreline, upstream to front [m]; the grounding line is the
        distance along it to the first sign change of the height above flotation, linearly interpolated.
    """
    haf = height_above_flotation(h, bed)
    grounded = haf >= 0
    along = probe @ haf
    distance = np.linalg.norm(line - line[0], axis=1)
    afloat = np.nonzero(along < 0)[0]
    if len(afloat) == 0:
        gl = float(distance[-1])
    elif afloat[0] == 0:
        gl = 0.0
    else:  # linear interpolation of the first sign change from upstream
        i = afloat[0]
        gl = float(distance[i - 1] + (distance[i] - distance[i - 1]) * along[i - 1] / (along[i - 1] - along[i]))
    return dict(volume=float(node_area @ h), volume_above_flotation=float(node_area @ np.where(grounded, haf, 0.0)),
                grounded_area=float(node_area @ grounded), grounding_line=gl)


class Simulator:
    """One scenario on its mesh: the solvers are built once and reused for every run.

    Call :meth:`run` with a forcing and run settings, from :meth:`initial_state` or a given state
    (a spin-up's end: see :mod:`iceviz.sim.spinup`).
    """

    def __init__(self, scenario: Scenario, mesh: IceMesh | None = None):
        self.scenario = scenario
        self.mesh = mesh or scenario.mesh()
        self.bed = scenario.bed(self.mesh.points)
        self.momentum = SSASolver(self.mesh, dirichlet=scenario.dirichlet)
        self.transport = Transport(self.mesh, self.bed)
        inflow = self.mesh.boundary_nodes("inflow")
        self.h_in = np.zeros(self.mesh.n_nodes)
        self.h_in[inflow] = scenario.inflow_thickness(self.mesh.points[inflow])
        self._probe = self.transport.basis.probes(scenario.centreline().T)

    def initial_state(self) -> State:
        h = np.maximum(self.scenario.initial_thickness(self.mesh.points), self.transport.floor)
        return State(h=h, u=np.zeros_like(h), v=np.zeros_like(h))

    def solve_velocity(self, h: np.ndarray, warm: tuple[np.ndarray, np.ndarray] | None,
                       settings: RunSettings):
        result = self.momentum.solve(Geometry(h, self.bed), self.scenario.rheology(),
                                     inflow=self.scenario.boundary_velocity, friction=self.scenario.friction(),
                                     warm_start=warm, tol=settings.tolerance, max_iter=settings.max_iter,
                                     method=settings.method)
        if not (np.isfinite(result.u).all() and np.isfinite(result.v).all()):
            raise SimulationError("the momentum solve produced non-finite velocities")
        return result

    def diagnose(self, h: np.ndarray) -> dict[str, float]:
        """Volume, volume above flotation, grounded area and the centreline grounding line [m]."""
        return flotation_diagnostics(h, self.bed, self.transport.node_area, self._probe, self.scenario.centreline())

    def fields(self, state: State) -> dict[str, np.ndarray]:
        g = Geometry(state.h, self.bed)
        return dict(vx=state.u, vy=state.v, h=state.h, surface=g.surface, base=g.base,
                    floating=g.floating.astype(np.float64))

    def run(self, forcing: Forcing, settings: RunSettings, state: State | None = None,
            on_step: Callable[[State, dict], None] | None = None) -> SimRun:
        """Simulate ``settings.years`` from ``state`` (default: the scenario's initial state).

        ``on_step(state, record)`` is called after every step (to report progress, to publish, or to
        stop the run by raising).
        """
        t_wall = time.perf_counter()
        state = state or self.initial_state()
        if (state.h < 0).any():
            raise SimulationError(f"negative thickness in the starting state ({state.h.min():.3g} m)")
        h = np.maximum(state.h, self.transport.floor)
        x = self.mesh.points[:, 0]
        front0 = float(x.max())
        retreat = forcing.retreat_rate if forcing.calving == "retreat" else 0.0
        t0 = state.t
        warm = (state.u, state.v) if np.any(state.u) or np.any(state.v) else None
        result = self.solve_velocity(h, warm, settings)
        u, v = result.u, result.v
        snaps = [self.fields(State(h, u, v, t0))]
        diags = [dict(self.diagnose(h), front=front0)]
        times = [t0]
        steps: list[dict] = []
        # the last interval may be shorter, so that the run always ends at years
        n_snap = math.ceil(settings.years / settings.snapshot_every - 1e-9) if settings.years > 0 else 0
        t = t0
        for k in range(1, n_snap + 1):
            t_next = t0 + min(k * settings.snapshot_every, settings.years)
            while t < t_next - 1e-9:
                dt = min(settings.max_dt, self.transport.max_step(u, v, settings.cfl), t_next - t)
                h, budget = self.transport.step(h, u, v, dt, smb=forcing.smb, melt=forcing.melt, h_in=self.h_in)
                t += dt
                front = front0 - retreat * (t - t0)
                if retreat > 0:
                    h, budget.calved = self._calve(h, front)
                    budget.volume_change -= budget.calved
                result = self.solve_velocity(h, (u, v), settings)
                u, v = result.u, result.v
                record = dict(t=t, dt=dt, iterations=result.iterations, converged=result.converged,
                              **asdict(budget))
                steps.append(record)
                if on_step is not None:
                    on_step(State(h, u, v, t), record)
            times.append(t)
            snaps.append(self.fields(State(h, u, v, t)))
            diags.append(dict(self.diagnose(h), front=front0 - retreat * (t - t0)))
        return SimRun(mesh=self.mesh, bed=self.bed, times=np.array(times),
                      fields={f: np.stack([s[f] for s in snaps]) for f in FIELDS},
                      diagnostics={d: np.array([s[d] for s in diags]) for d in DIAGNOSTICS},
                      steps={k: np.array([r[k] for r in steps], dtype=float) for k in STEP_KEYS},
                      params=dict(scenario=self.scenario.key(), forcing=forcing.key(), settings=settings.key()),
                      wall_time=time.perf_counter() - t_wall)

    def _calve(self, h: np.ndarray, front: float) -> tuple[np.ndarray, float]:
        """Ice beyond the front position (x > front) thinned to the floor; the volume removed [m³]."""
        beyond = self.mesh.points[:, 0] > front
        calved = np.where(beyond, self.transport.floor, h)
        return calved, self.transport.volume(h) - self.transport.volume(calved)

