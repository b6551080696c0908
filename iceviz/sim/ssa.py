"""The Shallow Shelf Approximation: depth-integrated momentum balance on a P1 mesh (scikit-fem).

Weak form, for velocity u = (u, v) [m/a] and every test function φ:

    ∫ 2 μ h [ε(u):ε(φ) + tr ε(u) tr ε(φ)] + β u·φ dx + ∫_walls γ (u·n)(φ·n) ds
        = −∫ ρ g h ∇s·φ dx + ∫_front (½ ρ g h² − ½ ρ_w g d²) n·φ ds

with ε the strain rate, μ the effective viscosity [Pa·a] (so that μ ε is a
stress in Pa with u in m/a; ρ g h is one in SI), β the linearised
basal friction (grounded ice only), d the depth of the ice base below sea
level, and γ a penalty that makes the side walls free-slip (no normal flow,
no shear stress; an ice divide is free-slip too). The front term is the
calving-front stress condition, entering as a natural boundary condition;
inflow sides (and any other sides named Dirichlet) take a prescribed velocity.

Viscosity is either prescribed (a field μ(x, y): one linear solve) or
Glen's law, μ = ½ A^(−1/n) (ε_e² + ε_reg²)^((1−n)/(2n)). Weertman friction
τ_b = C |u|^(m−1) u, linearised as β = C s^(m−1) with s² = |u|² + s_reg²,
acts on the grounded fraction of each element, judged by flotation at the
quadrature points (a sub-element grounding line).

With Glen's law the weak form is the stationarity condition of the convex energy

    J(u) = ∫ h Φ(ε_e²) + C s^(m+1) / (m+1) dx + ½ ∫_walls γ (u·n)² ds − (work of the right-hand side),

Φ(ε_e²) = 4n/(n+1) μ (ε_e² + ε_reg²) (so that Φ' = 2μ; note ε_e² = ½⟨ε, ε⟩ with
⟨a, b⟩ = a:b + tr a tr b), solved from a start velocity (zero, or ``warm_start``)
by one of two ``method``s, each stopping when the relative change of the
velocity in an undamped step falls below ``tol``; every linear solve counts
as an iteration:

picard
    μ and β from the last velocity, then one linear solve. Converges linearly,
    the change falling by roughly 1 − 1/n per iteration.
newton
    Newton steps (K + T) δu = f − K(u) u, δu = 0 on the Dirichlet sides, with
    K(u) the Picard matrix and the tangent T adding
    2h μ' ⟨ε(u), ε(δu)⟩ ⟨ε(u), ε(φ)⟩ + 2β' (u·δu)(u·φ), μ' = dμ/d(ε_e²) and
    β' = dβ/d(s²) (so from rest the first step is Picard's). K + T is the
    Hessian of J, so δu descends J; the step is shortened until J decreases
    enough (Armijo), which makes Newton converge from any start, and
    quadratically once it is close.

The wall penalty γ follows μ (see ``WALL_PENALTY``): it is taken from the
current velocity at each iteration and held fixed within a Newton step. The
discrete J is convex only with positive quadrature weights (``intorder``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.linalg import spsolve
from skfem import Basis, BilinearForm, DiscreteField, ElementTriP1, ElementVector, FacetBasis, LinearForm, MeshTri, \
    asm, condense
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
FREE_SLIP = ("wall", "divide")
"""Sides where the ice may slide along but not flow through (unless named Dirichlet)."""
WALL_PENALTY = 1e4
"""Free-slip walls: γ = WALL_PENALTY × max(μh) / (smallest wall edge), which leaves u·n ~ 1e-4 of u."""
METHODS = ("newton", "picard")
"""The iterations for Glen's law (see the module docstring)."""
ARMIJO = 0.4
"""Newton's line search accepts a step that decreases the energy by this fraction of the linear prediction
(below ½, so that near the solution, where a Newton step decreases J by ½ the prediction, it takes full steps)."""
MAX_BACKTRACKS = 10
"""Newton's line search shortens a step at most this often (then takes it anyway)."""


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


def height_above_flotation(h: np.ndarray, bed: np.ndarray) -> np.ndarray:
    """h − max(−ρ_w/ρ_i · bed, 0) [m]: positive where the ice is grounded, negative where it floats."""
    return np.asarray(h, dtype=float) - np.maximum(-RHO_WATER / RHO_ICE * np.asarray(bed, dtype=float), 0.0)


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


def _inner(a, b):
    """⟨a, b⟩ = a:b + tr a tr b of two strain rates (so that ε_e² = ½⟨ε, ε⟩)."""
    return ddot(a, b) + trace(a) * trace(b)


def _ssa(u, w, p):
    """The membrane and friction terms of the weak form, with μh and β given."""
    return 2.0 * p.mu_h * _inner(sym_grad(u), sym_grad(w)) + p.beta * dot(u, w)


_picard = BilinearForm(_ssa)
_action = LinearForm(lambda w, p: _ssa(p.vel, w, p))
"""``_picard``'s matrix times the velocity p.vel it was made from."""


@BilinearForm
def _newton(du, w, p):
    """The Jacobian at the velocity p.vel: ``_picard`` and the derivatives of μ and β along du."""
    e = sym_grad(p.vel)
    return _ssa(du, w, p) + 2.0 * p.dmu_h * _inner(e, sym_grad(du)) * _inner(e, sym_grad(w)) \
        + 2.0 * p.dbeta * dot(p.vel, du) * dot(p.vel, w)


@BilinearForm
def _wall(u, w, p):
    return dot(u, p.n) * dot(w, p.n)


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
    mesh : the mesh, with ``inflow`` (Dirichlet), ``wall`` / ``divide`` (free slip) and ``front`` sides.
    intorder : quadrature order (2 resolves a linear μh; higher orders sharpen the sub-element
        grounded fraction). Its weights must be positive, or friction and the energy J lose their
        sign (and the iterations their convergence) where β varies in an element: not 3.
    dirichlet : the sides whose velocity is prescribed by the ``inflow`` callable of ``solve``
        (a confined shelf may name its walls here to impose an along-wall speed).
    """

    def __init__(self, mesh: IceMesh, intorder: int = 4, dirichlet: tuple[str, ...] = ("inflow",)):
        self.mesh = mesh
        self.m = skfem_mesh(mesh)
        element = ElementVector(ElementTriP1())
        self.basis = Basis(self.m, element, intorder=intorder)
        if (self.basis.W < 0).any():
            raise SimulationError(f"the triangle quadrature of order {intorder} has a negative weight: "
                                  "take an order of 2, or of 4 or more")
        self.scalar = self.basis.with_element(ElementTriP1())
        self.front = FacetBasis(self.m, element, facets=_facets_of(self.m, mesh.boundary.get("front", np.zeros((0, 2)))),
                                intorder=intorder)
        self.front_scalar = self.front.with_element(ElementTriP1())
        slip = [mesh.boundary[t] for t in FREE_SLIP if t in mesh.boundary and t not in dirichlet]
        walls = np.concatenate(slip) if slip else np.zeros((0, 2), dtype=int)
        # the wall penalty's matrix for γ = 1
        self.wall_matrix = asm(_wall, FacetBasis(self.m, element, facets=_facets_of(self.m, walls), intorder=2)) \
            if len(walls) else csr_matrix((self.basis.N, self.basis.N))
        self.wall_edge = float(np.linalg.norm(np.diff(mesh.points[walls], axis=1), axis=2).min()) if len(walls) else 1.0
        fixed = mesh.boundary_nodes(*dirichlet)
        if len(fixed) == 0 and not len(walls):
            raise SimulationError("the mesh has no inflow side and no free-slip wall or divide: the velocity would "
                                  "be undetermined up to a rigid motion; tag at least one side 'inflow'")
        self.inflow_nodes = fixed
        # vector P1 dofs are interleaved per node: (u0, v0, u1, v1, ...)
        self.inflow_dofs = self.basis.nodal_dofs[:, fixed].ravel()

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
        return _glen(self.strain_rates(u, v) ** 2 + STRAIN_REG**2, rheology)

    # -- the solve --------------------------------------------------------------------------------------
    def solve(self, geometry: Geometry, rheology: Rheology, inflow: Callable[[np.ndarray], np.ndarray] | None = None,
              friction: Friction | None = None, warm_start: tuple[np.ndarray, np.ndarray] | None = None,
              tol: float = 1e-8, max_iter: int = 200, method: str = "newton") -> SSAResult:
        """Velocity for ``geometry``; ``inflow`` maps (K, 2) Dirichlet node coordinates to (K, 2) velocities [m/a].

        ``method`` ("newton" or "picard", see the module docstring) matters for Glen's law only: a prescribed
        viscosity is one linear solve.
        """
        if method not in METHODS:
            raise SimulationError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
        h, bed = np.asarray(geometry.thickness, float), np.asarray(geometry.bed, float)
        N = self.mesh.n_nodes
        if h.shape != (N,) or bed.shape != (N,):
            raise SimulationError(f"thickness and bed need one value per node ({N}), got {h.shape} and {bed.shape}")
        if not (np.isfinite(h).all() and np.isfinite(bed).all()):
            raise SimulationError("thickness or bed has non-finite values")
        if (h <= 0).any():
            raise SimulationError(f"thickness must be positive everywhere (min {h.min():.3g} m); "
                                  "apply a thickness floor before solving")
        prescribed = rheology.viscosity is not None
        if prescribed:
            mu_nodes = np.asarray(rheology.viscosity, dtype=float)
            if mu_nodes.shape != (N,) or not np.isfinite(mu_nodes).all() or (mu_nodes <= 0).any():
                raise SimulationError(f"a prescribed viscosity needs one positive, finite value per node ({N})")
        friction = friction or Friction()
        surface = geometry.surface
        hq = np.asarray(self._interp(h))
        grad_s = self._interp(surface).grad
        # sub-element grounding: flotation judged at each quadrature point
        grounded_q = (RHO_ICE * hq + RHO_WATER * self._interp(bed)) > 0
        c = friction.coefficient
        depth = np.maximum(-self._interp(geometry.base, self.front_scalar), 0.0)
        h_front = self._interp(h, self.front_scalar)
        front_stress = 0.5 * RHO_ICE * GRAVITY * h_front**2 - 0.5 * RHO_WATER * GRAVITY * depth**2
        problem = _Problem(
            solver=self, h=hq, rheology=rheology, m=friction.m,
            friction=np.where(grounded_q, np.asarray(self._interp(c)) if np.ndim(c) else c, 0.0),
            f=asm(_driving, self.basis, h=hq, grad_s=grad_s) + asm(_front, self.front, front_stress=front_stress))

        x = np.zeros(self.basis.N)
        if len(self.inflow_nodes):
            if inflow is None:
                raise SimulationError("the mesh has Dirichlet sides: give the inflow velocity")
            vel_in = np.asarray(inflow(self.mesh.points[self.inflow_nodes]), dtype=float).reshape(-1, 2)
            x[self.basis.nodal_dofs[0, self.inflow_nodes]] = vel_in[:, 0]
            x[self.basis.nodal_dofs[1, self.inflow_nodes]] = vel_in[:, 1]
        if warm_start is not None:
            free = np.setdiff1d(np.arange(self.basis.N), self.inflow_dofs)
            guess = np.empty(self.basis.N)
            guess[self.basis.nodal_dofs[0]], guess[self.basis.nodal_dofs[1]] = warm_start
            x[free] = guess[free]

        newton = method == "newton" and not prescribed
        changes: list[float] = []
        converged = False
        for _ in range(max_iter):
            state = problem.at(x)
            if newton:
                residual = problem.residual(state)
                step = solve_condensed(problem.matrix(state, _newton), residual, np.zeros_like(x), self.inflow_dofs)
                alpha = problem.line_search(state, step, residual)
                new = x + alpha * step
            else:
                new, alpha = solve_condensed(problem.matrix(state, _picard), problem.f, x, self.inflow_dofs), 1.0
            change = float(np.linalg.norm(new - x) / max(np.linalg.norm(new), 1e-30))
            changes.append(change)
            x = new
            # a damped step's change says nothing about convergence
            converged = prescribed or (change < tol and alpha == 1.0)
            if converged:
                break
        final = problem.at(x)
        return SSAResult(u=final.u, v=final.v, viscosity=final.mu, iterations=len(changes), changes=changes,
                         converged=converged)


def _glen(eps2: np.ndarray, rheology: Rheology) -> np.ndarray:
    """Glen's μ [Pa·a] from the regularised ε_e² + ε_reg² [1/a²]."""
    n = rheology.n
    return 0.5 * rheology.rate_factor ** (-1.0 / n) * eps2 ** ((1.0 - n) / (2.0 * n))


@dataclass
class _State:
    """The SSA coefficients at one velocity x: per element (mu) or at the quadrature points (the rest)."""

    x: np.ndarray
    u: np.ndarray
    v: np.ndarray
    vel: DiscreteField
    mu: np.ndarray
    """μ per element [Pa·a]."""
    mu_h: np.ndarray
    dmu_h: np.ndarray
    """h dμ/d(ε_e²)."""
    beta: np.ndarray
    dbeta: np.ndarray
    """dβ/d(s²)."""
    energy_density: np.ndarray
    """h Φ(ε_e²) + C s^(m+1) / (m+1)."""
    gamma: float
    """The wall penalty."""


@dataclass
class _Problem:
    """One solve's data at the quadrature points, and the SSA operator and energy at any velocity."""

    solver: SSASolver
    h: np.ndarray
    rheology: Rheology
    friction: np.ndarray
    """C on grounded ice, 0 where floating."""
    m: float
    f: np.ndarray
    """The right-hand side (driving stress and front)."""

    def at(self, x: np.ndarray) -> _State:
        solver = self.solver
        u, v = x[solver.basis.nodal_dofs[0]], x[solver.basis.nodal_dofs[1]]
        eps2 = solver.strain_rates(u, v) ** 2 + STRAIN_REG**2
        if self.rheology.viscosity is None:
            n, mu = self.rheology.n, _glen(eps2, self.rheology)
            mu_h = mu[:, None] * self.h
        else:  # a prescribed viscosity is Glen's law with n = 1
            mu_nodes = np.asarray(self.rheology.viscosity, dtype=float)
            n, mu = 1.0, mu_nodes[solver.mesh.triangles].mean(axis=1)
            mu_h = np.asarray(solver._interp(mu_nodes)) * self.h
        vel = solver.basis.interpolate(x)
        s2 = dot(vel, vel) + SPEED_REG**2
        beta = self.friction * s2 ** ((self.m - 1.0) / 2.0)
        return _State(x=x, u=u, v=v, vel=vel, mu=mu, mu_h=mu_h,
                      dmu_h=(1.0 - n) / (2.0 * n) * mu_h / eps2[:, None],
                      beta=beta, dbeta=(self.m - 1.0) / 2.0 * beta / s2,
                      energy_density=4.0 * n / (n + 1.0) * mu_h * eps2[:, None] + beta * s2 / (self.m + 1.0),
                      gamma=WALL_PENALTY * float(mu_h.max()) / solver.wall_edge)

    def matrix(self, state: _State, form: BilinearForm):
        """``_picard``'s or ``_newton``'s matrix at ``state``, with the wall penalty."""
        return asm(form, self.solver.basis, vel=state.vel, mu_h=state.mu_h, dmu_h=state.dmu_h, beta=state.beta,
                   dbeta=state.dbeta) + state.gamma * self.solver.wall_matrix

    def residual(self, state: _State) -> np.ndarray:
        """f − K(x) x = −J'(x), K the Picard matrix at x."""
        return self.f - asm(_action, self.solver.basis, vel=state.vel, mu_h=state.mu_h, beta=state.beta) \
            - state.gamma * (self.solver.wall_matrix @ state.x)

    def energy(self, state: _State, gamma: float) -> float:
        """J at ``state`` with the wall penalty γ: the SSA is its minimum (for a fixed γ)."""
        x = state.x
        return float(np.sum(state.energy_density * self.solver.basis.dx)
                     + 0.5 * gamma * x @ (self.solver.wall_matrix @ x) - self.f @ x)

    def line_search(self, state: _State, step: np.ndarray, residual: np.ndarray) -> float:
        """Backtracking from α = 1 until J(x + α step) − J(x) ≤ ARMIJO α J'(x)·step (the Armijo condition).

        Each shorter α minimises the parabola through J(x), J'(x)·step and J(x + α step), kept within
        [α/10, α/2]. ``residual`` is −J'(x); γ stays that of ``state``. Once J'(x)·step is at J's round-off
        (|J| + |f·x| bounds the size of its terms), the step is taken whole: a Newton step near the solution.
        """
        j0 = self.energy(state, state.gamma)
        slope = -float(residual @ step)
        if abs(slope) <= 1e-12 * (abs(j0) + abs(self.f @ state.x)):
            return 1.0
        alpha = 1.0
        for _ in range(MAX_BACKTRACKS):
            decrease = self.energy(self.at(state.x + alpha * step), state.gamma) - j0
            if decrease <= ARMIJO * alpha * slope:
                break
            alpha = float(np.clip(0.5 * slope * alpha**2 / (slope * alpha - decrease), alpha / 10, alpha / 2))
        return alpha


def solve_condensed(K, f: np.ndarray, x: np.ndarray, dirichlet: np.ndarray) -> np.ndarray:
    """Solve K x = f with x fixed on the ``dirichlet`` dofs (SciPy's SuperLU, its default ordering)."""
    out = x.copy()
    if len(dirichlet) == 0:
        out[:] = spsolve(K.tocsc(), f)
        return out
    A, b, xc, interior = condense(K, f, x=x, D=dirichlet)
    out[interior] = spsolve(A.tocsc(), b)
    return out
