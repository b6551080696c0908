"""Synthetic ice shelves with a known viscosity, solved by our SSA and gridded in the DIFFICE layout.

A viscosity-inversion PINN reads a shelf as velocity and thickness rasters
plus calving-front points (the layout of DIFFICE_jax's ``SynData_exp1.mat``);
here we make such shelves ourselves, so that the true viscosity is known.
Every shelf is floating ice (the bed is deep) in the rectangle
0 ≤ x ≤ L = 80 km, 0 ≤ y ≤ W = 50 km, flowing in +x, with

* inflow at x = 0: u = 4 U₀ y (W − y) / W², v = 0 (a parabola peaking at
  U₀ = 1 km/a);
* side walls y = 0, W: Dirichlet, v = 0 and a prescribed along-wall speed u_w(x);
* the calving front x = L: the hydrostatic front stress condition
  2 μ h (2 u_x + v_y) = ½ ρ g (1 − ρ/ρ_w) h², μ h (u_y + v_x) = 0;
* a prescribed thickness, the same for every shelf: quartic across, thinning
  downstream,

      h(x, y) = (H₀ − (H₀ − H_w) (2y/W − 1)⁴) / (1 + c x / L),

  H₀ = 500 m on the centre line and H_w = 375 m at the walls at the inflow,
  c = 1.25, so that the front is 222 m thick in the middle and 167 m at the
  walls (close to DIFFICE's COMSOL shelf, whose thickness came from a steady
  mass balance instead: ours is not in mass balance with the velocity).

Since a Dirichlet side only needs values on itself, the boundary velocity of
a shelf is one closed form u_b(x, y) that is evaluated on the inflow and the
walls alike. The velocity is the SSA solution (one linear solve, the viscosity
being given) on a P1 mesh; see :mod:`iceviz.sim.ssa`.

Two shelves are built in (:data:`SHELVES`):

``analytic``
    The DIFFICE tutorial's pattern, μ(x, y) = μ₀ (1 − ½ cos(2π y / W)) (2/3 + x / (3L)),
    μ₀ = 5e13 Pa·s, with along-wall speed u_w = U_w (x / L)², U_w = 1440 m/a
    (what SynData_exp1's wall rows extrapolate to), so that
    u_b = 4 U₀ y (W − y) / W² + U_w (x / L)².
``margins``
    Weak shear margins: μ(x, y) = μ₀ (2/3 + x / (3L)) (1 − 0.9 (e^(−(y/δ)²) + e^(−((W−y)/δ)²))),
    δ = 3 km: a stiff centre (the analytic shelf's mean viscosity) and bands
    along the walls ten times softer. The boundary velocity is the analytic
    shelf's (walls moving at U_w (x / L)²), so that the two shelves differ in
    μ only: the soft margins couple the centre less to the slower walls, and
    the centre flows faster, with the shear concentrated in the bands.

Units: meshes and grids in metres; the solver works in m/a and Pa·a
(μ[Pa·a] = μ[Pa·s] / SECONDS_PER_YEAR); the DIFFICE layout is SI, velocities
in m/s and viscosity in Pa·s.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from scipy.io import savemat
from scipy.spatial import cKDTree

from iceviz.physics.units import SECONDS_PER_YEAR
from iceviz.sim.mesh import IceMesh, mesh_outline, rectangle
from iceviz.sim.ssa import Geometry, Rheology, SimulationError, SSASolver

LENGTH, WIDTH = 80e3, 50e3
"""The shelves' domain [m]: x from 0 to LENGTH (the calving front), y from 0 to WIDTH."""
MU0 = 5e13
"""Viscosity scale μ₀ [Pa·s]."""
INFLOW_SPEED = 1000.0
"""Peak inflow speed U₀ [m/a]."""
WALL_SPEED = 1440.0
"""The analytic shelf's along-wall speed at the front, U_w [m/a]."""
H_CENTRE, H_WALL, THINNING = 500.0, 375.0, 1.25
"""Thickness at the inflow on the centre line and at the walls [m], and the downstream thinning c."""
MARGIN_WIDTH = 3e3
"""The margins shelf's soft-band e-folding width δ [m]."""
DEEP_BED = -2000.0
"""Bed elevation [m]: deep enough for all ice up to H₀ to float."""
FRONT_BAND = 2.0
"""Grid points within this many grid spacings of the front are front points (two columns on a rectangle)."""
FIRST_CANDIDATES, CANDIDATES = 4, 32
"""Triangles (nearest centroids) searched for the one holding a grid point: a few first, then more for the
points not found among those."""


@dataclass(frozen=True)
class ShelfSpec:
    """A synthetic shelf on the standard domain: closed forms of its fields (x, y in m)."""

    description: str
    viscosity: Callable[[np.ndarray, np.ndarray], np.ndarray]
    """μ [Pa·s]."""
    boundary_velocity: Callable[[np.ndarray, np.ndarray], np.ndarray]
    """u_b [m/a] along x on the Dirichlet sides (inflow and walls); v is zero there."""


def thickness(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """h(x, y) = (H₀ − (H₀ − H_w) (2y/W − 1)⁴) / (1 + c x / L) [m]."""
    across = H_CENTRE - (H_CENTRE - H_WALL) * (2.0 * np.asarray(y) / WIDTH - 1.0) ** 4
    return across / (1.0 + THINNING * np.asarray(x) / LENGTH)


def _inflow_parabola(y: np.ndarray) -> np.ndarray:
    """4 U₀ y (W − y) / W² [m/a]: zero at the walls."""
    return 4.0 * INFLOW_SPEED * y * (WIDTH - y) / WIDTH**2


def _downstream_stiffening(x: np.ndarray) -> np.ndarray:
    return 2.0 / 3.0 + x / (3.0 * LENGTH)


def _margin_softening(y: np.ndarray) -> np.ndarray:
    return 1.0 - 0.9 * (np.exp(-(y / MARGIN_WIDTH) ** 2) + np.exp(-((WIDTH - y) / MARGIN_WIDTH) ** 2))


SHELVES: dict[str, ShelfSpec] = {
    "analytic": ShelfSpec(
        "DIFFICE's tutorial viscosity μ₀ (1 − ½ cos 2πy/W)(2/3 + x/3L); walls moving at 1440 m/a (x/L)²",
        viscosity=lambda x, y: MU0 * (1.0 - 0.5 * np.cos(2.0 * np.pi * y / WIDTH)) * _downstream_stiffening(x),
        boundary_velocity=lambda x, y: _inflow_parabola(y) + WALL_SPEED * (x / LENGTH) ** 2),
    "margins": ShelfSpec(
        "a stiff centre μ₀ (2/3 + x/3L) with ten-times softer 3 km shear margins; the analytic shelf's walls",
        viscosity=lambda x, y: MU0 * _downstream_stiffening(x) * _margin_softening(y),
        boundary_velocity=lambda x, y: _inflow_parabola(y) + WALL_SPEED * (x / LENGTH) ** 2),
}
"""The built-in synthetic shelves, by name."""


@dataclass
class Shelf:
    """A solved synthetic shelf: the mesh, its outline, and the fields at the nodes."""

    name: str
    mesh: IceMesh
    outline: np.ndarray
    """(V, 2) counter-clockwise outline [m]."""
    tags: list[str]
    """Boundary tag of each outline side (side i runs from vertex i to i + 1)."""
    u: np.ndarray
    v: np.ndarray
    """Velocity [m/a]."""
    thickness: np.ndarray
    """[m]."""
    viscosity: np.ndarray
    """The prescribed μ [Pa·s]."""

    @property
    def spec(self) -> ShelfSpec:
        return SHELVES[self.name]


def shelf_spec(name: str) -> ShelfSpec:
    """The named shelf's spec; SimulationError listing the valid names for an unknown one."""
    if name not in SHELVES:
        raise SimulationError(f"unknown shelf {name!r}; valid names: {', '.join(SHELVES)}")
    return SHELVES[name]


def make_shelf(name: str, resolution: float = 1000.0) -> Shelf:
    """Solve the SSA for the named shelf on a mesh of triangle sides about ``resolution`` metres."""
    spec = shelf_spec(name)
    if not (np.isfinite(resolution) and resolution > 0):
        raise SimulationError(f"resolution must be a positive length in metres, got {resolution}")
    outline, tags = rectangle(0.0, LENGTH, 0.0, WIDTH)
    mesh = mesh_outline(outline, tags, max_area=np.sqrt(3) / 4 * resolution**2)
    h = thickness(*mesh.points.T)
    u, v = solve_velocity(spec, mesh, h)
    return Shelf(name=name, mesh=mesh, outline=outline, tags=tags, u=u, v=v, thickness=h,
                 viscosity=spec.viscosity(*mesh.points.T))


def solve_velocity(spec: ShelfSpec, mesh: IceMesh, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The floating SSA velocity (u, v) [m/a] at the nodes for the spec's μ and boundary velocity and thickness ``h``.

    Dirichlet on the inflow and the walls, the calving-front stress condition on the front.
    """
    def boundary(points: np.ndarray) -> np.ndarray:
        return np.column_stack([spec.boundary_velocity(points[:, 0], points[:, 1]), np.zeros(len(points))])

    result = SSASolver(mesh, dirichlet=("inflow", "wall")).solve(
        Geometry(thickness=h, bed=np.full(mesh.n_nodes, DEEP_BED)),
        Rheology(viscosity=spec.viscosity(*mesh.points.T) / SECONDS_PER_YEAR), inflow=boundary)
    return result.u, result.v


def interpolate(mesh: IceMesh, fields: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The P1 interpolant of nodal ``fields`` (N,) or (N, F) at ``points`` (P, 2); NaN outside the mesh.

    A point p lies in the triangle (p₀, p₁, p₂) when its barycentric coordinates
    λ = T⁻¹ (p − p₀), T = [p₁ − p₀, p₂ − p₀], and 1 − λ₁ − λ₂ are all ≥ 0; the value
    there is Σ λᵢ fᵢ. The triangle is sought among the ``CANDIDATES`` with the
    nearest centroids (ample on a mesh of well-shaped triangles); points with no centroid
    within a triangle's reach are outside at once.
    """
    p, t = mesh.points, mesh.triangles
    corners = p[t]
    centroids = corners.mean(axis=1)
    T = np.stack([corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]], axis=2)
    Tinv = np.linalg.inv(T)
    # a point inside a triangle is no farther from its centroid than the triangle's farthest corner
    reach = float(np.linalg.norm(corners - centroids[:, None], axis=2).max()) * (1 + 1e-9)
    tree = cKDTree(centroids)
    cell = np.full(len(points), -1)
    lam = np.zeros((len(points), 3))
    tol = 1e-10
    for k in (FIRST_CANDIDATES, CANDIDATES):  # most points lie in one of their few nearest triangles
        todo = np.flatnonzero(cell < 0)
        if not todo.size:
            break
        _, nearest = tree.query(points[todo], k=min(k, len(t)), distance_upper_bound=reach)
        for candidate in nearest.reshape(len(todo), -1).T:
            open_ = (cell[todo] < 0) & (candidate < len(t))  # len(t): no centroid within reach (outside)
            if not open_.any():
                continue
            c, rows = candidate[open_], todo[open_]
            l12 = np.einsum("kij,kj->ki", Tinv[c], points[rows] - corners[c, 0])
            l3 = np.column_stack([1.0 - l12.sum(axis=1), l12])
            inside = (l3 >= -tol).all(axis=1)
            cell[rows[inside]], lam[rows[inside]] = c[inside], l3[inside]
    values = np.einsum("pk,pk...->p...", lam, np.asarray(fields, dtype=float)[t[np.maximum(cell, 0)]])
    values[cell < 0] = np.nan
    return values


def front_points(x: np.ndarray, y: np.ndarray, outline: np.ndarray, tags: list[str],
                 within: float) -> tuple[np.ndarray, np.ndarray]:
    """The points (x, y) within ``within`` metres of a ``front`` side of the outline, and their normals.

    Each point takes the outward unit normal of its nearest front side: for a
    side from a to b of a counter-clockwise outline that is (b_y − a_y, −(b_x − a_x)) / |b − a|
    (the opposite for a clockwise one, told by the sign of the shoelace area).

    Returns
    -------
    (n, 2) front points and (n, 2) outward unit normals. SimulationError when no
    point is near a front, or a front side has no length (no normal).
    """
    pts = np.column_stack([np.ravel(x), np.ravel(y)])
    starts = np.asarray(outline, float)
    ends = np.roll(starts, -1, axis=0)
    front = [i for i, tag in enumerate(tags) if tag == "front"]
    if not front:
        raise SimulationError("the outline has no side tagged 'front'")
    a, d = starts[front], ends[front] - starts[front]
    lengths = np.linalg.norm(d, axis=1)
    if (lengths <= 0).any():
        raise SimulationError("a front side has zero length: its outward normal is undefined")
    # distance of every point to every front segment
    s = np.clip(np.einsum("pkj,kj->pk", pts[:, None] - a[None], d) / lengths**2, 0.0, 1.0)
    distance = np.linalg.norm(pts[:, None] - (a[None] + s[..., None] * d[None]), axis=2)
    nearest = distance.argmin(axis=1)
    near = distance[np.arange(len(pts)), nearest] < within
    if not near.any():
        raise SimulationError(f"no grid points lie within {within:g} m of the calving front")
    orientation = np.sign(np.sum(starts[:, 0] * ends[:, 1] - ends[:, 0] * starts[:, 1]))
    normals = orientation * np.column_stack([d[:, 1], -d[:, 0]]) / lengths[:, None]
    return pts[near], normals[nearest[near]]


def to_grids(shelf: Shelf, spacing: float = 200.0) -> dict[str, np.ndarray]:
    """The shelf in the DIFFICE layout (that of SynData_exp1.mat), SI units.

    A cell-centre grid x = spacing/2, 3 spacing/2, … < L (columns), y likewise
    (rows, growing with the row index); velocity ``ud``, ``vd`` [m/s] is the
    mesh solution's P1 interpolant, thickness ``hd`` [m] and the true viscosity
    ``mud`` [Pa·s] are the closed forms at the grid points; the thickness grid
    ``xd_h``, ``yd_h`` is the velocity grid; points outside the outline are NaN.
    The calving front is the grid points within ``FRONT_BAND`` spacings of a front
    side (the last two columns here) as ``xct``, ``yct`` (n×1) with outward unit
    normals ``nnct`` (n×2). All arrays are float64 (DIFFICE's own files store the
    front points as int32 and the normals as uint8 or float64: read them as floats).
    """
    if not (np.isfinite(spacing) and spacing > 0):
        raise SimulationError(f"spacing must be a positive length in metres, got {spacing}")
    (xmin, ymin), (xmax, ymax) = shelf.outline.min(axis=0), shelf.outline.max(axis=0)
    # cell centres as (k + ½) spacing: exact multiples, no accumulated round-off
    xd, yd = np.meshgrid(*(lo + (np.arange(np.ceil((hi - lo) / spacing - 0.5)) + 0.5) * spacing
                           for lo, hi in ((xmin, xmax), (ymin, ymax))))
    points = np.column_stack([xd.ravel(), yd.ravel()])
    fields = interpolate(shelf.mesh, np.column_stack([shelf.u, shelf.v, shelf.thickness]), points)
    outside = np.isnan(fields[:, 0]).reshape(xd.shape)
    ud, vd = (fields[:, k].reshape(xd.shape) / SECONDS_PER_YEAR for k in (0, 1))
    hd = np.where(outside, np.nan, thickness(xd, yd))
    mud = np.where(outside, np.nan, shelf.spec.viscosity(xd, yd))
    xd, yd = np.where(outside, np.nan, xd), np.where(outside, np.nan, yd)
    valid = ~outside.ravel()
    front, normals = front_points(xd.ravel()[valid], yd.ravel()[valid], shelf.outline, shelf.tags,
                                  within=FRONT_BAND * spacing)
    return dict(xd=xd, yd=yd, ud=ud, vd=vd, xd_h=xd.copy(), yd_h=yd.copy(), hd=hd, mud=mud,
                xct=front[:, :1], yct=front[:, 1:], nnct=normals)


def write_shelf(name: str, path: str | Path, resolution: float = 1000.0, spacing: float = 200.0) -> Path:
    """Solve the named shelf and write it in the DIFFICE layout as a MAT v5 file (``scipy.io.loadmat`` reads it)."""
    grids = to_grids(make_shelf(name, resolution=resolution), spacing=spacing)
    path = Path(path)
    savemat(path, grids, format="5", do_compression=True, oned_as="column")
    return path
