"""The simulator's scenarios: a domain, its bed, its ice at the start, and what flows in.

Two are built in:

``marine-glacier``
    A MISMIP+-like channel (Asay-Davis et al. 2016): an ice divide at x = 0,
    free-slip side walls, a calving front at x = L, and the MISMIP+ bed,
    deepening seaward with a retrograde stretch and raised side ridges that
    hold the ice shelf, scaled to the channel's length and width (so it can be
    sized to a region picked on the map).
``confined-shelf``
    A floating ice shelf in a bay: ice enters from the grounding line at
    x = 0 with a parabolic speed profile, the side walls hold it (no slip),
    the calving front is at x = L.

A scenario is a ``param.Parameterized``: its parameters (with bounds and
units) are what an ensemble varies and what the spin-up cache hashes.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import param

from iceviz.physics.units import RHO_ICE, RHO_WATER
from iceviz.sim.mesh import IceMesh, mesh_outline
from iceviz.sim.ssa import Friction, Rheology, SimulationError

MISMIP_LENGTH, MISMIP_WIDTH = 640e3, 80e3
"""The MISMIP+ domain [m] that the marine glacier's bed is defined on (then scaled)."""


class Scenario(param.Parameterized):
    """A domain to simulate. Subclasses give the outline, the bed and the initial / inflow ice."""

    scenario_name = "scenario"
    dirichlet: tuple[str, ...] = ("inflow",)
    """Sides whose velocity :meth:`boundary_velocity` prescribes."""

    length = param.Number(100e3, bounds=(10e3, 2000e3), doc="Extent along flow [m], from the upstream side to "
                                                            "the calving front.")
    width = param.Number(40e3, bounds=(5e3, 500e3), doc="Extent across flow [m], between the side walls.")
    resolution = param.Number(5e3, bounds=(200.0, 50e3), doc="Largest triangle side away from refined areas [m].")
    refined_resolution = param.Number(2e3, bounds=(100.0, 50e3),
                                      doc="Triangle side where the ice is fast or near the grounding line [m].")
    rate_factor = param.Number(1e-17, bounds=(1e-20, 1e-15),
                               doc="Glen's flow-law rate factor A [Pa⁻³ a⁻¹] (n = 3).")
    spin_up_years = param.Number(100.0, bounds=(0.0, 5000.0),
                                 doc="Years run without melt before a run starts (cached on disk).")

    # -- geometry ------------------------------------------------------------------------------------
    def outline(self) -> tuple[np.ndarray, list[str]]:
        """The counter-clockwise outline and its side tags (flow along +x, front at x = length)."""
        L, W = self.length, self.width
        return np.array([[0.0, 0.0], [L, 0.0], [L, W], [0.0, W]]), ["wall", "front", "wall", self.upstream]

    upstream = "inflow"

    def refine(self, centres: np.ndarray) -> np.ndarray:
        """Target triangle side [m] at the given points (the refined size where it matters)."""
        return np.full(len(centres), self.refined_resolution)

    def mesh(self) -> IceMesh:
        if self.refined_resolution > self.resolution:
            raise SimulationError(f"refined_resolution ({self.refined_resolution:g} m) must not exceed "
                                  f"resolution ({self.resolution:g} m)")
        vertices, tags = self.outline()
        return mesh_outline(vertices, tags, max_area=np.sqrt(3) / 4 * self.resolution**2, size=self.refine)

    def centreline(self, n: int = 1000) -> np.ndarray:
        """(n, 2) points along the middle of the channel, upstream to front (for the grounding line)."""
        return np.column_stack([np.linspace(0.0, self.length, n), np.full(n, 0.5 * self.width)])

    # -- physics ---------------------------------------------------------------------------------------
    def bed(self, points: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def initial_thickness(self, points: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def boundary_velocity(self, points: np.ndarray) -> np.ndarray:
        """(K, 2) velocity [m/a] on the Dirichlet sides."""
        return np.zeros((len(points), 2))

    def inflow_thickness(self, points: np.ndarray) -> np.ndarray:
        """Thickness [m] of the ice entering through the inflow side."""
        return self.initial_thickness(points)

    def rheology(self) -> Rheology:
        return Rheology(rate_factor=self.rate_factor)

    def friction(self) -> Friction:
        return Friction()

    def key(self) -> dict:
        """Every parameter value, for hashing and for the record of a run."""
        return dict(scenario=self.scenario_name, **{k: v for k, v in self.param.values().items() if k != "name"})


class MarineGlacier(Scenario):
    """A MISMIP+-like marine glacier in a channel with side ridges, scalable in length and width."""

    scenario_name = "marine-glacier"
    upstream = "divide"

    length = param.Number(MISMIP_LENGTH, bounds=(50e3, 2000e3), doc="Channel length [m], divide to calving front.")
    width = param.Number(MISMIP_WIDTH, bounds=(10e3, 500e3), doc="Channel width [m], wall to wall.")
    resolution = param.Number(10e3, bounds=(500.0, 50e3), doc="Largest triangle side away from the grounding "
                                                              "line [m].")
    refined_resolution = param.Number(4e3, bounds=(100.0, 50e3),
                                      doc="Triangle side near the grounding line [m].")
    friction_coefficient = param.Number(1e4, bounds=(1e2, 1e7),
                                        doc="Weertman coefficient C [Pa (a/m)^⅓] (MISMIP+: 1e4).")
    divide_thickness = param.Number(1500.0, bounds=(100.0, 5000.0), doc="Initial thickness at the divide [m].")
    grounding_line = param.Number(0.625, bounds=(0.2, 0.9),
                                  doc="Initial grounding-line position as a fraction of the length.")

    def _scaled(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = np.asarray(points, dtype=float)
        return p[:, 0] * MISMIP_LENGTH / self.length, p[:, 1] * MISMIP_WIDTH / self.width

    def bed(self, points: np.ndarray) -> np.ndarray:
        """The MISMIP+ bed [m] on the scaled channel: B = max(B_x(x) + B_y(y), −720)."""
        x, y = self._scaled(points)
        return np.maximum(_mismip_bx(x) + _mismip_by(y), -720.0)

    def _centre_flotation(self, x: np.ndarray) -> np.ndarray:
        """Flotation thickness [m] on the centreline at along-flow positions x [m]."""
        xs = np.asarray(x) * MISMIP_LENGTH / self.length
        return np.maximum(-RHO_WATER / RHO_ICE * (_mismip_bx(xs) + _mismip_by(np.full_like(xs, MISMIP_WIDTH / 2))),
                          0.0)

    def initial_thickness(self, points: np.ndarray) -> np.ndarray:
        """A grounded profile h_gl + (h_div − h_gl) √(1 − x/x_gl) then a shelf thinning to the front."""
        x = np.asarray(points, dtype=float)[:, 0]
        x_gl = self.grounding_line * self.length
        h_float = float(self._centre_flotation(np.array([x_gl]))[0])
        h_gl = 1.15 * h_float
        grounded = h_gl + (self.divide_thickness - h_gl) * np.sqrt(np.clip(1.0 - x / x_gl, 0.0, 1.0))
        front = min(200.0, 0.5 * h_float)
        shelf = 0.9 * h_float - (0.9 * h_float - front) * (x - x_gl) / (self.length - x_gl)
        return np.where(x < x_gl, grounded, shelf)

    def refine(self, centres: np.ndarray) -> np.ndarray:
        x_gl = self.grounding_line * self.length
        near = np.abs(centres[:, 0] - x_gl) < 0.125 * self.length
        return np.where(near, self.refined_resolution, self.resolution)

    def friction(self) -> Friction:
        return Friction(coefficient=self.friction_coefficient)


class ConfinedShelf(Scenario):
    """A floating shelf fed at its grounding line (x = 0), held by no-slip walls, calving at x = L."""

    scenario_name = "confined-shelf"
    dirichlet = ("inflow", "wall")

    length = param.Number(80e3, bounds=(10e3, 1000e3), doc="Shelf length [m], grounding line to calving front.")
    width = param.Number(50e3, bounds=(5e3, 500e3), doc="Shelf width [m], wall to wall.")
    resolution = param.Number(4e3, bounds=(200.0, 50e3), doc="Largest triangle side [m].")
    refined_resolution = param.Number(2e3, bounds=(100.0, 50e3), doc="Triangle side near the grounding line [m].")
    inflow_speed = param.Number(500.0, bounds=(1.0, 10000.0), doc="Peak inflow speed at the grounding line [m/a].")
    inflow_thickness_max = param.Number(500.0, bounds=(20.0, 3000.0),
                                        doc="Thickness entering at the grounding line [m].")
    front_thickness = param.Number(250.0, bounds=(10.0, 3000.0), doc="Initial thickness at the calving front [m].")
    depth = param.Number(2000.0, bounds=(100.0, 5000.0), doc="Sea-floor depth below sea level [m] (the shelf "
                                                             "must float).")

    def bed(self, points: np.ndarray) -> np.ndarray:
        return np.full(len(points), -self.depth)

    def initial_thickness(self, points: np.ndarray) -> np.ndarray:
        x = np.asarray(points, dtype=float)[:, 0]
        h0, h1 = self.inflow_thickness_max, self.front_thickness
        return h0 - (h0 - h1) * x / self.length

    def boundary_velocity(self, points: np.ndarray) -> np.ndarray:
        """A parabolic profile across the inflow side, zero on the walls (which also take Dirichlet)."""
        p = np.asarray(points, dtype=float)
        s = p[:, 1] / self.width
        on_inflow = np.isclose(p[:, 0], 0.0, atol=1e-6 * self.length)
        u = np.where(on_inflow, 4.0 * self.inflow_speed * s * (1.0 - s), 0.0)
        return np.column_stack([u, np.zeros(len(p))])

    def refine(self, centres: np.ndarray) -> np.ndarray:
        near = centres[:, 0] < 0.2 * self.length
        return np.where(near, self.refined_resolution, self.resolution)


def _mismip_bx(x: np.ndarray) -> np.ndarray:
    """MISMIP+ along-flow bed B_x(x) [m], x [m] on the 640 km channel."""
    xt = np.asarray(x) / 750e3
    return -150.0 - 728.8 * xt**2 + 343.91 * xt**4 - 50.57 * xt**6


def _mismip_by(y: np.ndarray) -> np.ndarray:
    """MISMIP+ across-flow ridges B_y(y) [m], y [m] on the 80 km channel."""
    fc, dc, wc = 4e3, 500.0, 24e3
    yc = np.asarray(y) - MISMIP_WIDTH / 2
    return dc / (1.0 + np.exp(-2.0 * (yc - wc) / fc)) + dc / (1.0 + np.exp(2.0 * (yc + wc) / fc))


SCENARIOS: dict[str, Callable[..., Scenario]] = {"marine-glacier": MarineGlacier, "confined-shelf": ConfinedShelf}
"""Scenario name -> class (called with parameter overrides)."""


def get_scenario(name: str, **overrides) -> Scenario:
    """The named scenario with parameter overrides; SimulationError for unknown names or values."""
    if name not in SCENARIOS:
        raise SimulationError(f"unknown scenario {name!r}; choose one of: {', '.join(SCENARIOS)}")
    cls = SCENARIOS[name]
    unknown = sorted((set(overrides) - set(cls.param)) | ({"name"} & set(overrides)))
    if unknown:
        raise SimulationError(f"scenario {name!r} has no parameter(s) {unknown}; it has: "
                              f"{', '.join(p for p in cls.param if p != 'name')}")
    try:
        return cls(**overrides)
    except ValueError as err:
        raise SimulationError(f"scenario {name!r}: {err}") from None


def box_overrides(name: str, bounds: tuple[float, float, float, float]) -> dict[str, float]:
    """Parameters that size a scenario to a map box (xmin, xmax, ymin, ymax) [m].

    The longer side of the box becomes the length (along flow), the shorter the width; both
    resolutions scale with the square root of the area ratio, so the mesh keeps about the default
    number of nodes. Values are clipped to the parameters' bounds.
    """
    if name not in SCENARIOS:
        get_scenario(name)  # raises the unknown-scenario error
    xmin, xmax, ymin, ymax = (float(b) for b in bounds)
    if not (xmax > xmin and ymax > ymin):
        raise SimulationError(f"a region box needs xmin < xmax and ymin < ymax, got {bounds}")
    sides = sorted((xmax - xmin, ymax - ymin), reverse=True)
    default = SCENARIOS[name]()
    values = dict(length=sides[0], width=sides[1])
    scale = np.sqrt(sides[0] * sides[1] / (default.length * default.width))
    values.update(resolution=default.resolution * scale, refined_resolution=default.refined_resolution * scale)
    out = {}
    for key, value in values.items():
        low, high = SCENARIOS[name].param[key].bounds
        out[key] = float(np.clip(value, low, high))
    out["refined_resolution"] = min(out["refined_resolution"], out["resolution"])
    return out
