"""Verification of the simulator against closed-form solutions (``iceviz sim verify``).

Momentum:

The analytic case is the unconfined ice-shelf ramp: a floating shelf of
width W between free-slip walls, thinning linearly from h₀ at the inflow
(x = 0, speed u₀) to h₁ at the calving front (x = L). Integrating the
x-momentum balance from the front, where the front condition fixes the
stress, gives the longitudinal stress everywhere, hence with Glen's law

    u_x = A (ρ g' h / 4)ⁿ,   g' = g (1 − ρ/ρ_w),

and, for h linear in x and n = 3,

    u(x) = u₀ + A (ρ g' / 4)³ · L (h₀⁴ − h(x)⁴) / (4 (h₀ − h₁)),   v = 0.

Transport: in a steady velocity u = u₀ + k x (v = 0) with inflow thickness
h_in and surface mass balance a, the steady thickness solves ∂(h u)/∂x = a:

    h(x) = (h_in u₀ + a x) / (u₀ + k x),

reached in one backward-Euler step of (practically) infinite length.

Mass conservation: a short confined-shelf run with every budget term active
(surface mass balance, melt strong enough to reach the thickness floor, a
retreating calving front) must close its budget to round-off.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from iceviz.physics.units import GRAVITY, RHO_ICE, RHO_WATER
from iceviz.sim.mesh import mesh_outline, rectangle
from iceviz.sim.ssa import Geometry, Rheology, SSASolver
from iceviz.sim.transport import Transport


@dataclass(frozen=True)
class Ramp:
    """The analytic ice-shelf ramp (lengths m, speeds m/a, A in Pa⁻³ a⁻¹)."""

    length: float = 100e3
    width: float = 20e3
    h0: float = 500.0
    h1: float = 300.0
    u0: float = 100.0
    rate_factor: float = 4.6e-18

    def thickness(self, x: np.ndarray) -> np.ndarray:
        return self.h0 - (self.h0 - self.h1) * np.asarray(x) / self.length

    def strain_rate(self, x: np.ndarray) -> np.ndarray:
        """u_x [1/a]."""
        g_reduced = RHO_ICE * GRAVITY * (1.0 - RHO_ICE / RHO_WATER)
        return self.rate_factor * (g_reduced * self.thickness(x) / 4.0) ** 3

    def speed(self, x: np.ndarray) -> np.ndarray:
        """Exact u(x) [m/a]."""
        g_reduced = RHO_ICE * GRAVITY * (1.0 - RHO_ICE / RHO_WATER)
        return self.u0 + self.rate_factor * (g_reduced / 4.0) ** 3 * self.length * (
            self.h0**4 - self.thickness(x) ** 4) / (4.0 * (self.h0 - self.h1))

    def viscosity(self, x: np.ndarray) -> np.ndarray:
        """Exact Glen viscosity μ = ½ A^(−1/3) u_x^(−2/3) [Pa·a] (v = 0, so ε_e = u_x)."""
        return 0.5 * self.rate_factor ** (-1.0 / 3.0) * self.strain_rate(x) ** (-2.0 / 3.0)

    def solve(self, max_area: float, prescribed: bool, tol: float = 1e-9):
        """(mesh, SSA result, exact u at the nodes) on a mesh of triangles up to ``max_area`` m²."""
        mesh = mesh_outline(*rectangle(0.0, self.length, 0.0, self.width), max_area=max_area)
        x = mesh.points[:, 0]
        geometry = Geometry(thickness=self.thickness(x), bed=np.full(mesh.n_nodes, -5.0 * self.h0))
        rheology = Rheology(viscosity=self.viscosity(x)) if prescribed else Rheology(rate_factor=self.rate_factor)
        result = SSASolver(mesh).solve(geometry, rheology, inflow=lambda p: np.column_stack(
            [np.full(len(p), self.u0), np.zeros(len(p))]), tol=tol)
        return mesh, result, self.speed(x)


@dataclass
class Case:
    """One verification case: its error against the reference, the tolerance, and detail for humans."""

    name: str
    error: float
    tolerance: float
    detail: str = ""
    rate: float | None = None
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return bool(math.isfinite(self.error) and self.error <= self.tolerance)

    def as_dict(self) -> dict:
        out = dict(name=self.name, error=self.error, tolerance=self.tolerance, passed=self.passed)
        if self.rate is not None:
            out["rate"] = self.rate
        return out


def relative_error(u: np.ndarray, exact: np.ndarray) -> float:
    """max |u − exact| / max |exact|."""
    return float(np.abs(u - exact).max() / np.abs(exact).max())


def ramp_glen(max_area: float = 5e5) -> Case:
    """Glen's law (Newton, the default) on the ramp: velocity against the closed form."""
    t0 = time.perf_counter()
    ramp = Ramp()
    mesh, result, exact = ramp.solve(max_area, prescribed=False)
    error = relative_error(result.u, exact)
    return Case("ssa-ramp-glen", error, 1e-4, seconds=time.perf_counter() - t0,
                detail=f"{mesh.n_nodes} nodes, {result.iterations} Newton iterations "
                       f"(converged: {result.converged}), max |v| {np.abs(result.v).max():.2e} m/a")


def ramp_convergence(areas: tuple[float, ...] = (8e6, 2e6, 5e5, 1.25e5)) -> Case:
    """Prescribed exact viscosity on refined meshes: the error must fall as h² (P1), rate ≥ 1.7."""
    t0 = time.perf_counter()
    ramp = Ramp()
    sizes, errors = [], []
    for area in areas:
        mesh, result, exact = ramp.solve(area, prescribed=True)
        sizes.append(math.sqrt(area))
        errors.append(float(np.sqrt(np.mean((result.u - exact) ** 2)) / np.abs(exact).max()))
    rate = convergence_rate(sizes, errors)
    # the case's error is the finest mesh's; it passes only if the rate is right too
    error = errors[-1] if rate >= 1.7 else float("inf")
    return Case("ssa-ramp-convergence", error, 1e-5, rate=rate, seconds=time.perf_counter() - t0,
                detail="rms relative errors " + ", ".join(f"{e:.2e}" for e in errors)
                       + f" at max areas {', '.join(f'{a:g}' for a in areas)} m²; observed rate {rate:.2f} "
                         "(expected 2)")


def convergence_rate(sizes: list[float], errors: list[float]) -> float:
    """Slope of log(error) against log(mesh size)."""
    return float(np.polyfit(np.log(sizes), np.log(errors), 1)[0])


def transport_convergence(areas: tuple[float, ...] = (4e6, 1e6, 2.5e5)) -> Case:
    """Steady thickness in a stretching flow with accumulation: rms error falling as h² (rate ≥ 1.7)."""
    t0 = time.perf_counter()
    length, width, u0, k, h_in, a = 100e3, 20e3, 100.0, 5e-3, 500.0, 0.5
    sizes, errors = [], []
    for area in areas:
        mesh = mesh_outline(*rectangle(0.0, length, 0.0, width), max_area=area)
        x = mesh.points[:, 0]
        transport = Transport(mesh, bed=np.full(mesh.n_nodes, 100.0))
        h, _ = transport.step(np.full_like(x, 300.0), u0 + k * x, np.zeros_like(x), dt=1e7, smb=a, h_in=h_in)
        exact = (h_in * u0 + a * x) / (u0 + k * x)
        sizes.append(math.sqrt(area))
        errors.append(float(np.sqrt(np.mean((h - exact) ** 2)) / exact.max()))
    rate = convergence_rate(sizes, errors)
    return Case("transport-steady-convergence", errors[-1] if rate >= 1.7 else float("inf"), 1e-4, rate=rate,
                seconds=time.perf_counter() - t0,
                detail="rms relative errors " + ", ".join(f"{e:.2e}" for e in errors)
                       + f" at max areas {', '.join(f'{a:g}' for a in areas)} m²; observed rate {rate:.2f} "
                         "(expected 2)")


def mass_conservation() -> Case:
    """Volume change against smb − melt + inflow − outflow + floor − calved over a run, relative to its terms."""
    from iceviz.sim.model import Forcing, RunSettings, Simulator
    from iceviz.sim.scenarios import get_scenario

    t0 = time.perf_counter()
    simulator = Simulator(get_scenario("confined-shelf", resolution=6e3, refined_resolution=3e3))
    run = simulator.run(Forcing(melt=80.0, smb=0.5, calving="retreat", retreat_rate=2000.0),
                        RunSettings(years=5.0, snapshot_every=1.0))
    budget = run.budget
    worst = max(step.relative_residual for step in run.step_budgets())
    terms = ", ".join(f"{k} {v / 1e9:.3g}" for k, v in budget.as_dict().items() if k != "residual")
    return Case("mass-conservation", budget.relative_residual, 1e-9, seconds=time.perf_counter() - t0,
                detail=f"{len(run.steps['t'])} steps, {simulator.mesh.n_nodes} nodes; km³: {terms}; "
                       f"residual {budget.residual:.3g} m³, worst step {worst:.2e}",
                extra=dict(budget=budget.as_dict(), worst_step=worst))


CASES = (ramp_glen, ramp_convergence, transport_convergence, mass_conservation)


def run_all() -> list[Case]:
    return [case() for case in CASES]
