"""Verification of the simulator against closed-form solutions (``iceviz sim verify``).

The analytic case is the unconfined ice-shelf ramp: a floating shelf of
width W between free-slip walls, thinning linearly from h₀ at the inflow
(x = 0, speed u₀) to h₁ at the calving front (x = L). Integrating the
x-momentum balance from the front, where the front condition fixes the
stress, gives the longitudinal stress everywhere, hence with Glen's law

    u_x = A (ρ g' h / 4)ⁿ,   g' = g (1 − ρ/ρ_w),

and, for h linear in x and n = 3,

    u(x) = u₀ + A (ρ g' / 4)³ · L (h₀⁴ − h(x)⁴) / (4 (h₀ − h₁)),   v = 0.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from iceviz.physics.units import GRAVITY, RHO_ICE, RHO_WATER
from iceviz.sim.mesh import mesh_outline, rectangle
from iceviz.sim.ssa import Geometry, Rheology, SSASolver


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
    """Glen's law by Picard iteration on the ramp: velocity against the closed form."""
    t0 = time.perf_counter()
    ramp = Ramp()
    mesh, result, exact = ramp.solve(max_area, prescribed=False)
    error = relative_error(result.u, exact)
    return Case("ssa-ramp-glen", error, 1e-4, seconds=time.perf_counter() - t0,
                detail=f"{mesh.n_nodes} nodes, {result.iterations} Picard iterations "
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
    rate = float(np.polyfit(np.log(sizes), np.log(errors), 1)[0])
    # the case's error is the finest mesh's; it passes only if the rate is right too
    error = errors[-1] if rate >= 1.7 else float("inf")
    return Case("ssa-ramp-convergence", error, 1e-5, rate=rate, seconds=time.perf_counter() - t0,
                detail="rms relative errors " + ", ".join(f"{e:.2e}" for e in errors)
                       + f" at max areas {', '.join(f'{a:g}' for a in areas)} m²; observed rate {rate:.2f} "
                         "(expected 2)")


CASES = (ramp_glen, ramp_convergence)


def run_all() -> list[Case]:
    return [case() for case in CASES]
