"""The Shallow Shelf Approximation: depth-integrated momentum balance on a P1 mesh (scikit-fem).

Weak form, for velocity u = (u, v) [m/a] and every test function φ:

    ∫ 2 μ h [ε(u):ε(φ) + tr ε(u) tr ε(φ)] + β u·φ dx + ∫_walls γ (u·n)(φ·n) ds
        = −∫ ρ g h ∇s·φ dx + ∫_front (½ ρ g h² − ½ ρ_w g d²) n·φ ds

with ε the strain rate, μ the effective viscosity [Pa·a] (so that μ ε is a
stress in Pa with u in m/a; ρ g h is one in SI), β the linearised
basal friction (grounded ice only), d the depth of the ice base below sea
level, and γ a penalty that makes the side walls free-slip (no normal flow,
no shear stress). The front term is the calving-front stress condition,
entering as a natural boundary condition; inflow sides take a Dirichlet
velocity.

Viscosity is either prescribed (a field μ(x, y): one linear solve) or
Glen's law, μ = ½ A^(−1/n) (ε_e² + ε_reg²)^((1−n)/(2n)), solved by Picard
iteration (warm start from a given velocity) until the relative change of
the velocity falls below ``tol``. Weertman friction τ_b = C |u|^(m−1) u acts
on the grounded fraction of each element, judged by flotation at the
quadrature points (a sub-element grounding line).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from scipy.sparse.linalg import spsolve
from skfem import Basis, BilinearForm, ElementTriP1, ElementVector, FacetBasis, LinearForm, MeshTri, asm, condense
from skfem.helpers import ddot, dot, sym_grad, trace

from iceviz.physics.units import GRAVITY, RHO_ICE, RHO_WATER
from iceviz.sim.mesh import IceMesh

GLEN_N = 3.0
"""Glen's flow-law exponent."""
STRAIN_REG = 1e-6
"""Strain-rate regularisation ε_reg [1/a], so that μ stays finite where ice does not deform."""
WEERTMAN_M = 1.0 / 3.0
"""Weertman sliding exponent m (τ_b = C |u|^(m−1) u)."""
SPEED_REG = 1.0
"""Speed regularisation [m/a] in the friction law, so that β stays finite at rest."""
WALL_PENALTY = 1e4
"""Free-slip walls: γ = WALL_PENALTY × max(μh) / (smallest wall edge), which leaves u·n ~ 1e-4 of u."""


class SimulationError(ValueError):
    """Bad simulator input (negative thickness, missing boundary, ...), with what was wrong."""


@dataclass
class Geometry:
    """Ice geometry at the mesh nodes [m]: thickness h and bed elevation (sea level at 0)."""

    thickness: np.ndarray
    bed: np.ndarray

    @property
    def floating(self) -> np.ndarray:
        """True where the ice floats: ρ h < −ρ_w bed."""
        return RHO_ICE * self.thickness < -RHO_WATER * self.bed

    @property
    def base(self) -> np.ndarray:
        """Elevation of the ice base: the bed where grounded, the flotation draft where floating."""
        return np.where(self.floating, -RHO_ICE / RHO_WATER * self.thickness, self.bed)

    @property
    def surface(self) -> np.ndarray:
        return self.base + self.thickness


@dataclass
class Rheology:
    """How stiff the ice is: Glen's law with rate factor A [Pa⁻ⁿ a⁻¹], or a prescribed viscosity [Pa·a]."""

    rate_factor: float = 4.6e-18
    n: float = GLEN_N
    viscosity: np.ndarray | None = None
    """Prescribed μ at the nodes [Pa·a]; when given, A and n are not used."""


@dataclass
class Friction:
    """Weertman friction on grounded ice: τ_b = C |u|^(m−1) u, C [Pa (a/m)^m]."""

    coefficient: float | np.ndarray = 1e6
    m: float = WEERTMAN_M


@dataclass
class SSAResult:
    """A solved velocity field and how the solver got there."""

    u: np.ndarray
    v: np.ndarray
    viscosity: np.ndarray
    """Effective viscosity per element [Pa·a] (constant on each P1 element)."""
    iterations: int
    changes: list[float] = field(default_factory=list)
    converged: bool = True


def skfem_mesh(mesh: IceMesh) -> MeshTri:
    return MeshTri(mesh.points.T.copy(), mesh.triangles.T.copy())


def _facets_of(m: MeshTri, pairs: np.ndarray) -> np.ndarray:
    """skfem facet indices of the node pairs ``pairs`` (K, 2)."""
    if len(pairs) == 0:
        return np.array([], dtype=np.int64)
    lookup = {tuple(f): i for i, f in enumerate(np.sort(m.facets.T, axis=1))}
    return np.array([lookup[tuple(p)] for p in np.sort(pairs, axis=1)], dtype=np.int64)


@BilinearForm
def _membrane(u, w, p):
    return 2.0 * p.mu_h * (ddot(sym_grad(u), sym_grad(w)) + trace(sym_grad(u)) * trace(sym_grad(w))) \
        + p.beta * dot(u, w)


@BilinearForm
def _wall(u, w, p):
    return p.gamma * dot(u, p.n) * dot(w, p.n)


@LinearForm
def _driving(w, p):
    return -RHO_ICE * GRAVITY * p.h * dot(p.grad_s, w)


@LinearForm
def _front(w, p):
    return p.front_stress * dot(p.n, w)


class SSASolver:
    """Assembles and solves the SSA on one mesh; reuse it across time steps (the bases are built once).

    Parameters
    ----------
    mesh : the mesh, with ``inflow`` (Dirichlet), ``wall`` (free slip) and ``front`` sides.
    intorder : quadrature order (2 resolves a linear μh; higher orders sharpen the sub-element
        grounded fraction).
    """

    def __init__(self, mesh: IceMesh, intorder: int = 3):
        self.mesh = mesh
        self.m = skfem_mesh(mesh)
        element = ElementVector(ElementTriP1())
        self.basis = Basis(self.m, element, intorder=intorder)
        self.scalar = self.basis.with_element(ElementTriP1())
        self.front = FacetBasis(self.m, element, facets=_facets_of(self.m, mesh.boundary.get("front", np.zeros((0, 2)))),
                                intorder=intorder)
        self.front_scalar = self.front.with_element(ElementTriP1())
        walls = mesh.boundary.get("wall", np.zeros((0, 2), dtype=int))
        self.walls = FacetBasis(self.m, element, facets=_facets_of(self.m, walls), intorder=2) if len(walls) else None
        self.wall_edge = float(np.linalg.norm(np.diff(mesh.points[walls], axis=1), axis=2).min()) if len(walls) else 1.0
        inflow = mesh.boundary_nodes("inflow")
        if len(inflow) == 0:
            raise SimulationError("the mesh has no inflow side: the velocity would be undetermined up to a "
                                  "rigid motion; tag at least one side 'inflow'")
        self.inflow_nodes = inflow
        # vector P1 dofs are interleaved per node: (u0, v0, u1, v1, ...)
        self.inflow_dofs = self.basis.nodal_dofs[:, inflow].ravel()

    # -- fields at quadrature points --------------------------------------------------------------
    def _interp(self, nodal: np.ndarray, basis: Basis | None = None):
        return (basis or self.scalar).interpolate(np.asarray(nodal, dtype=float))

    def strain_rates(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Effective strain rate ε_e [1/a] per element (P1: constant on each)."""
        grads = self.scalar.interpolate(u).grad, self.scalar.interpolate(v).grad
        ux, uy = grads[0][0].mean(axis=1), grads[0][1].mean(axis=1)
        vx, vy = grads[1][0].mean(axis=1), grads[1][1].mean(axis=1)
        return np.sqrt(ux**2 + vy**2 + ux * vy + 0.25 * (uy + vx) ** 2)

    def glen_viscosity(self, u: np.ndarray, v: np.ndarray, rheology: Rheology) -> np.ndarray:
        """μ per element from Glen's law [Pa·a]."""
        n = rheology.n
        eps = self.strain_rates(u, v)
        return 0.5 * rheology.rate_factor ** (-1.0 / n) * (eps**2 + STRAIN_REG**2) ** ((1.0 - n) / (2.0 * n))

    # -- the solve --------------------------------------------------------------------------------------
    def solve(self, geometry: Geometry, rheology: Rheology, inflow: Callable[[np.ndarray], np.ndarray],
              friction: Friction | None = None, warm_start: tuple[np.ndarray, np.ndarray] | None = None,
              tol: float = 1e-8, max_iter: int = 200) -> SSAResult:
        """Velocity for ``geometry``; ``inflow`` maps (K, 2) inflow node coordinates to (K, 2) velocities [m/a]."""
        h, bed = np.asarray(geometry.thickness, float), np.asarray(geometry.bed, float)
        N = self.mesh.n_nodes
        if h.shape != (N,) or bed.shape != (N,):
            raise SimulationError(f"thickness and bed need one value per node ({N}), got {h.shape} and {bed.shape}")
        if not (np.isfinite(h).all() and np.isfinite(bed).all()):
            raise SimulationError("thickness or bed has non-finite values")
        if (h <= 0).any():
            raise SimulationError(f"thickness must be positive everywhere (min {h.min():.3g} m); "
                                  "apply a thickness floor before solving")
        friction = friction or Friction()
        surface = geometry.surface
        hq = self._interp(h)
        grad_s = self._interp(surface).grad
        # sub-element grounding: flotation judged at each quadrature point
        grounded_q = (RHO_ICE * hq + RHO_WATER * self._interp(bed)) > 0
        depth = np.maximum(-self._interp(geometry.base, self.front_scalar), 0.0)
        h_front = self._interp(h, self.front_scalar)
        front_stress = 0.5 * RHO_ICE * GRAVITY * h_front**2 - 0.5 * RHO_WATER * GRAVITY * depth**2
        f = asm(_driving, self.basis, h=hq, grad_s=grad_s) + asm(_front, self.front, front_stress=front_stress)

        x = np.zeros(self.basis.N)
        xy_in = self.mesh.points[self.inflow_nodes]
        vel_in = np.asarray(inflow(xy_in), dtype=float).reshape(-1, 2)
        x[self.basis.nodal_dofs[0, self.inflow_nodes]] = vel_in[:, 0]
        x[self.basis.nodal_dofs[1, self.inflow_nodes]] = vel_in[:, 1]
        if warm_start is not None:
            free = np.setdiff1d(np.arange(self.basis.N), self.inflow_dofs)
            guess = np.empty(self.basis.N)
            guess[self.basis.nodal_dofs[0]], guess[self.basis.nodal_dofs[1]] = warm_start
            x[free] = guess[free]

        prescribed = rheology.viscosity is not None
        if prescribed:
            mu_nodes = np.asarray(rheology.viscosity, dtype=float)
            if mu_nodes.shape != (N,) or not np.isfinite(mu_nodes).all() or (mu_nodes <= 0).any():
                raise SimulationError(f"a prescribed viscosity needs one positive, finite value per node ({N})")
            mu_h_q = np.asarray(self._interp(mu_nodes)) * np.asarray(hq)
            mu_elem = mu_nodes[self.mesh.triangles].mean(axis=1)
        c = friction.coefficient
        c_q = np.asarray(self._interp(c)) if np.ndim(c) else c
        changes: list[float] = []
        for _ in range(max_iter):
            u, v = x[self.basis.nodal_dofs[0]], x[self.basis.nodal_dofs[1]]
            if not prescribed:
                mu_elem = self.glen_viscosity(u, v, rheology)
                mu_h_q = mu_elem[:, None] * np.asarray(hq)
            speed = np.sqrt(np.asarray(self._interp(u)) ** 2 + np.asarray(self._interp(v)) ** 2 + SPEED_REG**2)
            beta = np.where(grounded_q, c_q * speed ** (friction.m - 1.0), 0.0)
            K = asm(_membrane, self.basis, mu_h=mu_h_q, beta=beta)
            if self.walls is not None:
                gamma = WALL_PENALTY * float(mu_h_q.max()) / self.wall_edge
                K = K + asm(_wall, self.walls, gamma=gamma)
            new = solve_condensed(K, f, x, self.inflow_dofs)
            change = float(np.linalg.norm(new - x) / max(np.linalg.norm(new), 1e-30))
            changes.append(change)
            x = new
            if prescribed or change < tol:
                break
        u, v = x[self.basis.nodal_dofs[0]], x[self.basis.nodal_dofs[1]]
        if not prescribed:
            mu_elem = self.glen_viscosity(u, v, rheology)
        converged = prescribed or changes[-1] < tol
        return SSAResult(u=u, v=v, viscosity=mu_elem, iterations=len(changes), changes=changes, converged=converged)


def solve_condensed(K, f: np.ndarray, x: np.ndarray, dirichlet: np.ndarray) -> np.ndarray:
    """Solve K x = f with x fixed on the ``dirichlet`` dofs (SciPy's SuperLU, its default ordering)."""
    A, b, xc, interior = condense(K, f, x=x, D=dirichlet)
    out = x.copy()
    out[interior] = spsolve(A.tocsc(), b)
    return out
