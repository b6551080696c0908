"""Thickness transport ∂h/∂t + ∇·(h u) = a on a P1 mesh, with a mass budget per step.

The apparent mass balance a = smb − melt [m/a of ice] takes the basal melt
only where the ice floats (judged at quadrature points, like the SSA's
grounded fraction). One step of length Δt is backward Euler in conservative
(integrated by parts) form, stabilised by SUPG, with a lumped mass matrix
(m_i = ∫ φ_i) for the time derivative so that a jump in the melt (at the
grounding line) cannot make the thickness overshoot:

    m_i (h_i − hⁿ_i)/Δt − ∫ h u·∇φ_i + ∮ ĥ (u·n) φ_i
      + Σ_e ∫_e τ (u·∇φ_i) [(h − hⁿ)/Δt + ∇·(h u) − a] = ∫ a φ_i,

where ĥ is the boundary thickness: the prescribed inflow thickness on inflow
sides, the ice's own thickness elsewhere (so ice leaves freely through the
calving front). τ = ((2/Δt)² + (2|u|/h_e)²)^(−½) per element.

Because the P1 test functions sum to one and their gradients to zero, adding
every equation gives the discrete budget exactly (Σ m_i h_i = ∫ h dx for P1):

    V^{n+1} − Vⁿ = Δt (∫ smb − ∫ melt − ∮ ĥ u·n),    V = ∫ h dx,

to the precision of the linear solve. The thickness floor then adds the
volume it creates, and a calving front that retreats removes what lies
beyond it; both are booked as their own terms, so the residual of the
reported budget measures the scheme's conservation alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.sparse import diags
from scipy.sparse.linalg import spsolve
from skfem import Basis, BilinearForm, ElementTriP1, FacetBasis, LinearForm, asm
from skfem.helpers import dot, grad

from iceviz.physics.units import RHO_ICE, RHO_WATER
from iceviz.sim.mesh import IceMesh
from iceviz.sim.ssa import SimulationError, _facets_of, skfem_mesh

QUADRATURE_ORDER = 4
"""Triangle quadrature order: the lowest above 2 whose weights are all positive (order 3 has a negative
weight, which turns a melt rate that jumps inside an element into local growth)."""
THICKNESS_FLOOR = 1.0
"""Smallest thickness kept anywhere [m]: melt and thinning stop there (the floor's volume is booked)."""


@dataclass
class MassBudget:
    """Volumes [m³] over one step (or summed over many): how the ice volume changed and why.

    ``inflow`` is the net volume that entered through the inflow sides, ``outflow`` the net volume
    that left through every other side (through a fixed calving front: the calving flux); ``floor`` the
    volume the thickness floor created; ``calved`` the volume removed by a retreating front.
    """

    volume_change: float = 0.0
    smb: float = 0.0
    melt: float = 0.0
    inflow: float = 0.0
    outflow: float = 0.0
    floor: float = 0.0
    calved: float = 0.0

    @property
    def residual(self) -> float:
        """Volume change not explained by the fluxes [m³] (zero for an exactly conservative step)."""
        explained = self.smb - self.melt + self.inflow - self.outflow + self.floor - self.calved
        return self.volume_change - explained

    @property
    def relative_residual(self) -> float:
        """|residual| over the largest term of the budget."""
        scale = max(abs(self.volume_change), self.smb, self.melt, self.inflow, self.outflow,
                    self.floor, self.calved, 1e-300)
        return abs(self.residual) / scale

    def __add__(self, other: "MassBudget") -> "MassBudget":
        return MassBudget(**{k: getattr(self, k) + getattr(other, k) for k in asdict(self)})

    def as_dict(self) -> dict:
        return dict(asdict(self), residual=self.residual)


@BilinearForm
def _implicit(h, phi, w):
    vel = w.vel
    stream = dot(vel, grad(phi))
    div_flux = dot(vel, grad(h)) + h * w.div
    return -h * stream + w.tau * stream * (h / w.dt + div_flux)


@LinearForm
def _explicit(phi, w):
    stream = dot(w.vel, grad(phi))
    return w.a * phi + w.tau * stream * (w.h_old / w.dt + w.a)


@BilinearForm
def _outflux(h, phi, w):
    return h * dot(w.vel, w.n) * phi


@LinearForm
def _influx(phi, w):
    return -w.h_in * dot(w.vel, w.n) * phi


@LinearForm
def _boundary_flux(phi, w):
    return w.h_hat * dot(w.vel, w.n) * phi


@LinearForm
def _source(phi, w):
    return w.a * phi


class Transport:
    """Advances thickness on one mesh; reuse across steps (the bases and element sizes are built once).

    Parameters
    ----------
    mesh : the mesh; ``inflow`` sides take the prescribed inflow thickness.
    bed : bed elevation at the nodes [m] (sea level 0), for the floating fraction.
    floor : thickness floor [m].
    """

    def __init__(self, mesh: IceMesh, bed: np.ndarray, floor: float = THICKNESS_FLOOR):
        if not floor > 0:
            raise SimulationError(f"the thickness floor must be positive, got {floor}")
        self.mesh, self.floor = mesh, float(floor)
        self.bed = np.asarray(bed, dtype=float)
        if self.bed.shape != (mesh.n_nodes,):
            raise SimulationError(f"bed needs one value per node ({mesh.n_nodes}), got {self.bed.shape}")
        m = skfem_mesh(mesh)
        self.basis = Basis(m, ElementTriP1(), intorder=QUADRATURE_ORDER)
        p = mesh.points[mesh.triangles]
        sides = np.linalg.norm(p - np.roll(p, 1, axis=1), axis=2)
        self.size = sides.max(axis=1)
        """Element diameter h_e [m] (longest side)."""
        inflow = mesh.boundary.get("inflow", np.zeros((0, 2), dtype=int))
        others = [e for t, e in mesh.boundary.items() if t != "inflow"]
        rest = np.concatenate(others) if others else np.zeros((0, 2), dtype=int)
        self.inflow = FacetBasis(m, ElementTriP1(), facets=_facets_of(m, inflow), intorder=3) if len(inflow) else None
        self.rest = FacetBasis(m, ElementTriP1(), facets=_facets_of(m, rest), intorder=3) if len(rest) else None
        self.node_area = asm(_source, self.basis, a=1.0)
        """∫ φ_i dx [m²]: the volume of a P1 thickness field is node_area · h."""
        self._bed_q = self.basis.interpolate(self.bed)

    def volume(self, h: np.ndarray) -> float:
        """∫ h dx [m³] (exact for P1)."""
        return float(self.node_area @ h)

    def max_step(self, u: np.ndarray, v: np.ndarray, cfl: float = 0.5) -> float:
        """Largest Δt [a] with |u| Δt ≤ cfl · h_e on every element (inf where the ice is still)."""
        speed = np.hypot(u, v)[self.mesh.triangles].max(axis=1)
        ratio = np.where(speed > 0, self.size / np.maximum(speed, 1e-300), np.inf)
        return float(cfl * ratio.min())

    def source(self, h: np.ndarray, smb: float | np.ndarray, melt: float | np.ndarray):
        """(smb, melt) rates at the quadrature points [m/a]; the melt only where the ice floats."""
        hq = np.asarray(self.basis.interpolate(h))
        floating = (RHO_ICE * hq < -RHO_WATER * np.asarray(self._bed_q)).astype(float)
        smb_q = np.asarray(self.basis.interpolate(np.broadcast_to(np.asarray(smb, float), h.shape).copy()))
        melt_q = np.asarray(self.basis.interpolate(np.broadcast_to(np.asarray(melt, float), h.shape).copy()))
        return smb_q, melt_q * floating

    def step(self, h: np.ndarray, u: np.ndarray, v: np.ndarray, dt: float, smb: float | np.ndarray = 0.0,
             melt: float | np.ndarray = 0.0, h_in: float | np.ndarray | None = None) -> tuple[np.ndarray, MassBudget]:
        """Thickness after Δt [a] with velocity (u, v) [m/a] held fixed, and the step's mass budget.

        ``smb`` and ``melt`` are rates [m/a] (scalars or per node); ``h_in`` the inflow thickness
        (per node or scalar; default: the current thickness there).
        """
        h = np.asarray(h, dtype=float)
        if h.shape != (self.mesh.n_nodes,) or not np.isfinite(h).all():
            raise SimulationError("thickness needs one finite value per node")
        if (h < 0).any():
            raise SimulationError(f"negative thickness ({h.min():.3g} m) cannot be transported")
        if not (np.isfinite(dt) and dt > 0):
            raise SimulationError(f"the time step must be positive and finite, got {dt}")
        ib = self.basis
        vel = np.stack([np.asarray(ib.interpolate(u)), np.asarray(ib.interpolate(v))])
        du, dv = ib.interpolate(u).grad, ib.interpolate(v).grad
        div = np.asarray(du[0] + dv[1])
        speed = np.sqrt((vel**2).sum(axis=0)).mean(axis=1)
        tau = ((2.0 / dt) ** 2 + (2.0 * speed / self.size) ** 2) ** -0.5
        tau_q = np.repeat(tau[:, None], vel.shape[2], axis=1)
        smb_q, melt_q = self.source(h, smb, melt)
        a = smb_q - melt_q
        h_old = np.asarray(ib.interpolate(h))
        K = asm(_implicit, ib, vel=vel, div=div, tau=tau_q, dt=dt) + diags(self.node_area / dt)
        f = asm(_explicit, ib, vel=vel, tau=tau_q, dt=dt, h_old=h_old, a=a) + self.node_area * h / dt
        h_in_nodes = h if h_in is None else np.broadcast_to(np.asarray(h_in, float), h.shape).copy()
        if self.rest is not None:
            K = K + asm(_outflux, self.rest, vel=self._vel(self.rest, u, v))
        if self.inflow is not None:
            f = f + asm(_influx, self.inflow, vel=self._vel(self.inflow, u, v),
                        h_in=self.inflow.interpolate(h_in_nodes))
        h_new = spsolve(K.tocsc(), f)

        budget = MassBudget(volume_change=self.volume(h_new) - self.volume(h))
        budget.smb = dt * float(asm(_source, ib, a=smb_q).sum())
        budget.melt = dt * float(asm(_source, ib, a=melt_q).sum())
        if self.inflow is not None:
            budget.inflow = -dt * self._flux(self.inflow, h_in_nodes, u, v)
        if self.rest is not None:
            budget.outflow = dt * self._flux(self.rest, h_new, u, v)
        floored = np.maximum(h_new, self.floor)
        budget.floor = self.volume(floored) - self.volume(h_new)
        budget.volume_change += budget.floor
        return floored, budget

    def _flux(self, facets: FacetBasis, h_hat: np.ndarray, u: np.ndarray, v: np.ndarray) -> float:
        """∮ ĥ u·n ds over ``facets`` [m³/a] (outwards positive)."""
        return float(asm(_boundary_flux, facets, vel=self._vel(facets, u, v), h_hat=facets.interpolate(h_hat)).sum())

    @staticmethod
    def _vel(facets: FacetBasis, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return np.stack([np.asarray(facets.interpolate(u)), np.asarray(facets.interpolate(v))])
