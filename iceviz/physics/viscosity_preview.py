"""An instant viscosity PREVIEW: μ from gridded u, v, h by linear least squares.

The SSA momentum equations and the calving-front condition of
:mod:`iceviz.physics.ssa` are linear in the viscosity μ: once u, v, h and
their derivatives are known, every equation is a linear relation between μ,
μ_x and μ_y at a grid cell. Taking all derivatives by finite differences on the
velocity raster (:func:`grid_jets`), with μ's derivatives by the same stencils,
turns the two momentum equations at every cell (plus the two front equations
at the calving-front cells) into one sparse, overdetermined linear system for
μ at the valid cells, solved in the least-squares sense
(:func:`least_squares_viscosity`).

.. warning::
   This is a PREVIEW and a test reference, not an inversion method. It
   differentiates the data twice, so it is extremely noise-sensitive: with
   1 % Gaussian noise on u and v the viscosity error is of order 100 % (the
   recovered field is dominated by noise, and not even positive); smoothing
   the data first trades that for a bias of tens of per cent. On clean
   synthetic data (DIFFICE's ``SynData_exp1``, our ``shelf:`` shelves) it is
   accurate to about 1 % in about a second, which makes it a good check that a
   problem's units, axes and front normals are consistent, and a reference
   for the joint PINN fit of :mod:`iceviz.models.viscosity` -- never a
   replacement for it on real (noisy, gappy) data. μ is not constrained to be
   positive. The velocities of our own simulated shelves (``shelf:``) are
   piecewise linear on a 1 km mesh: their second differences on the 200 m
   raster are noise too (56 % error), so for them the solve runs on a 2 km
   subgrid (the problem's ``smooth_spacing``) and μ is interpolated back
   (1.1 % on ``shelf:analytic``).

Conventions: rasters have 1-D axes ``x`` (per column) and ``y`` (per row);
either may be descending; NaN marks cells off the shelf. Velocities of a
:class:`~iceviz.data.shelf.ShelfProblem` are in m/a and are converted to m/s
here, so that with μ in Pa·s and ``buoyancy`` = ρg' [Pa/m] the momentum
residuals are in Pa/m and the front residuals in Pa.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import sparse
from scipy.interpolate import RegularGridInterpolator
from scipy.spatial import cKDTree

from iceviz.data.shelf import ShelfProblem
from iceviz.physics.ssa import BUOYANCY, Jet, front_residual, momentum_residual
from iceviz.physics.units import SECONDS_PER_YEAR

MU_REFERENCE = 1e13
"""Viscosity scale [Pa·s] of the least-squares unknowns (μ / MU_REFERENCE is of order one)."""

# Finite-difference stencils as (offsets, weights), tried in this order at every cell:
# central, then one-sided forward, then one-sided backward; all second-order accurate.
_FIRST = (((-1, 1), (-0.5, 0.5)),
          ((0, 1, 2), (-1.5, 2.0, -0.5)),
          ((0, -1, -2), (1.5, -2.0, 0.5)))
_SECOND = (((-1, 0, 1), (1.0, -2.0, 1.0)),
           ((0, 1, 2, 3), (2.0, -5.0, 4.0, -1.0)),
           ((0, -1, -2, -3), (2.0, -5.0, 4.0, -1.0)))


class Derivative(NamedTuple):
    """A sparse finite-difference operator on a flattened (C-order) raster.

    ``matrix @ field.ravel()`` is the derivative at every cell where ``defined``
    (a flat boolean mask); elsewhere the product is meaningless (no feasible stencil).
    """

    matrix: sparse.csr_matrix
    defined: np.ndarray


class GridFields(NamedTuple):
    """A shelf's fields on its velocity raster, SI units: u, v [m/s], h [m] (NaN off the shelf)."""

    x: np.ndarray
    y: np.ndarray
    u: np.ndarray
    v: np.ndarray
    h: np.ndarray


def _step(axis: np.ndarray) -> float:
    """The signed spacing of a regular axis (negative when descending); 0 for fewer than two points."""
    axis = np.asarray(axis, dtype=np.float64)
    return float((axis[-1] - axis[0]) / (len(axis) - 1)) if len(axis) > 1 else 0.0


def _neighbour_valid(valid: np.ndarray, offset: int, axis: int) -> np.ndarray:
    """Mask of the cells whose neighbour ``offset`` cells along ``axis`` exists and is valid."""
    out = np.zeros_like(valid)
    n = valid.shape[axis]
    if abs(offset) >= n:
        return out
    src = [slice(None)] * 2
    dst = [slice(None)] * 2
    src[axis] = slice(max(offset, 0), n + min(offset, 0))
    dst[axis] = slice(max(-offset, 0), n - max(offset, 0))
    out[tuple(dst)] = valid[tuple(src)]
    return out


def axis_derivative(valid: np.ndarray, step: float, axis: int, order: int) -> Derivative:
    """The sparse first (``order`` 1) or second (``order`` 2) derivative along ``axis`` (1: x, 0: y).

    At each valid cell the central three-point stencil is used if its
    neighbours are valid, else a second-order one-sided stencil pointing into
    the valid cells (three points for a first derivative, four for a second),
    else the derivative is undefined there.

    Parameters
    ----------
    valid : (ny, nx) mask of the cells holding data.
    step : signed grid spacing along the axis [m] (negative for a descending axis).
    axis : 1 for ∂/∂x (along a row), 0 for ∂/∂y (along a column).
    order : 1 or 2.
    """
    if order not in (1, 2):
        raise ValueError(f"order must be 1 or 2, got {order}")
    valid = np.asarray(valid, dtype=bool)
    index = np.arange(valid.size).reshape(valid.shape)
    stride = valid.shape[1] if axis == 0 else 1
    rows, cols, vals = [], [], []
    done = ~valid if step != 0 else np.ones_like(valid)
    for offsets, weights in (_FIRST if order == 1 else _SECOND):
        feasible = ~done & np.logical_and.reduce([_neighbour_valid(valid, k, axis) for k in offsets])
        cells = index[feasible]
        for k, w in zip(offsets, weights):
            rows.append(cells)
            cols.append(cells + k * stride)
            vals.append(np.full(len(cells), w / step**order))
        done |= feasible
    matrix = sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                               shape=(valid.size, valid.size))
    return Derivative(matrix, (done & valid).ravel())


def derivative_operators(x: np.ndarray, y: np.ndarray, valid: np.ndarray, order: int = 1) -> dict[str, Derivative]:
    """Sparse derivative operators on a raster: ``x``, ``y`` and, for ``order`` 2, ``xx``, ``xy``, ``yy``.

    The mixed derivative is the y-derivative of the x-derivative (both by
    :func:`axis_derivative`); it is defined where every x-derivative its stencil
    reads is defined.
    """
    dx, dy = _step(x), _step(y)
    ops = {"x": axis_derivative(valid, dx, 1, 1), "y": axis_derivative(valid, dy, 0, 1)}
    if order >= 2:
        ops["xx"] = axis_derivative(valid, dx, 1, 2)
        ops["yy"] = axis_derivative(valid, dy, 0, 2)
        mixed = (ops["y"].matrix @ ops["x"].matrix).tocsr()
        reads_undefined = abs(ops["y"].matrix) @ (~ops["x"].defined).astype(np.float64) > 0
        ops["xy"] = Derivative(mixed, ops["y"].defined & ~reads_undefined)
    return ops


def _apply(op: Derivative, field: np.ndarray) -> np.ndarray:
    flat = np.where(np.isfinite(field), field, 0.0).ravel()
    return np.where(op.defined, op.matrix @ flat, np.nan).reshape(field.shape)


def grid_jets(x: np.ndarray, y: np.ndarray, field: np.ndarray, order: int = 1) -> Jet:
    """Finite-difference derivatives of a raster, as a :class:`~iceviz.physics.ssa.Jet` of 2-D arrays.

    Second-order central differences in the interior, second-order one-sided
    ones at the raster's edges and next to NaN cells, NaN where no stencil fits
    (and at NaN cells). Exact for quadratics.

    Parameters
    ----------
    x : (nx,) regular column coordinates [m], ascending or descending.
    y : (ny,) regular row coordinates [m], ascending or descending.
    field : (ny, nx) values, NaN off the shelf.
    order : 1 for (value, x, y); 2 adds (xx, xy, yy).
    """
    field = np.asarray(field, dtype=np.float64)
    if field.shape != (len(y), len(x)):
        raise ValueError(f"field has shape {field.shape} but the axes give {(len(y), len(x))}")
    ops = derivative_operators(x, y, np.isfinite(field), order)
    return Jet(field, **{name: _apply(op, field) for name, op in ops.items()})


def regrid(x: np.ndarray, y: np.ndarray, field: np.ndarray, x_to: np.ndarray, y_to: np.ndarray) -> np.ndarray:
    """Bilinear interpolation of a raster onto another raster's axes; NaN outside it and next to NaN cells."""
    x, y, field = np.asarray(x, float), np.asarray(y, float), np.asarray(field, float)
    if _step(x) < 0:
        x, field = x[::-1], field[:, ::-1]
    if _step(y) < 0:
        y, field = y[::-1], field[::-1]
    interpolate = RegularGridInterpolator((y, x), field, method="linear", bounds_error=False, fill_value=np.nan)
    yy, xx = np.meshgrid(y_to, x_to, indexing="ij")
    return interpolate(np.column_stack([yy.ravel(), xx.ravel()])).reshape(yy.shape)


def grid_fields(problem: ShelfProblem) -> GridFields:
    """A problem's u, v [m/s] and h [m] on its velocity raster (h interpolated if it has its own raster)."""
    vel, thk = problem.velocity, problem.thickness
    same = vel.shape == thk.shape and np.allclose(vel.x, thk.x) and np.allclose(vel.y, thk.y)
    h = thk.fields["h"] if same else regrid(thk.x, thk.y, thk.fields["h"], vel.x, vel.y)
    return GridFields(vel.x, vel.y, vel.fields["u"] / SECONDS_PER_YEAR, vel.fields["v"] / SECONDS_PER_YEAR,
                      np.asarray(h, dtype=np.float64))


def _as_fields(data: ShelfProblem | GridFields) -> GridFields:
    return grid_fields(data) if isinstance(data, ShelfProblem) else data


def grid_residual(data: ShelfProblem | GridFields, mu: np.ndarray,
                  buoyancy: float = BUOYANCY) -> tuple[np.ndarray, np.ndarray]:
    """The SSA momentum residuals (f₁, f₂) [Pa/m] on the velocity raster, all derivatives by finite differences.

    Parameters
    ----------
    data : a shelf problem (velocities in m/a, converted here) or :class:`GridFields` (SI).
    mu : (ny, nx) viscosity [Pa·s] on the velocity raster.
    buoyancy : ρ g' [Pa/m].

    Returns
    -------
    f1, f2 : (ny, nx), NaN where a derivative is undefined.
    """
    f = _as_fields(data)
    u, v = grid_jets(f.x, f.y, f.u, order=2), grid_jets(f.x, f.y, f.v, order=2)
    h, m = grid_jets(f.x, f.y, f.h, order=1), grid_jets(f.x, f.y, np.asarray(mu, dtype=np.float64), order=1)
    return momentum_residual(u, v, h, m, buoyancy=buoyancy)


def _momentum_coefficients(u: Jet, v: Jet, h: Jet, buoyancy: float) -> list[tuple[np.ndarray, ...]]:
    """Per equation, the coefficients (of μ, μ_x, μ_y) and the right side: f = c₀μ + c_xμ_x + c_yμ_y − rhs.

    Read off :func:`~iceviz.physics.ssa.momentum_residual` itself, which is affine in the μ jet: the
    coefficients are its value for a unit μ jet without the driving stress (``buoyancy`` 0), the right side
    its value for μ = 0. (Subtracting the two residuals instead would cancel catastrophically: in SI units
    the driving stress is some 10¹⁵ times the viscous coefficients.)
    """
    zeros, ones = np.zeros_like(u.value), np.ones_like(u.value)
    basis = [Jet(ones, zeros, zeros), Jet(zeros, ones, zeros), Jet(zeros, zeros, ones)]
    free = momentum_residual(u, v, h, Jet(zeros, zeros, zeros), buoyancy=buoyancy)
    parts = [momentum_residual(u, v, h, b, buoyancy=0.0) for b in basis]
    return [(*(p[k] for p in parts), -free[k]) for k in range(2)]


def _front_cells(x: np.ndarray, y: np.ndarray, valid: np.ndarray, front: np.ndarray) -> np.ndarray:
    """Flat index of the valid cell nearest to each front point."""
    xx, yy = np.meshgrid(x, y)
    cells = np.flatnonzero(valid.ravel())
    _, nearest = cKDTree(np.column_stack([xx.ravel()[cells], yy.ravel()[cells]])).query(front)
    return cells[nearest]


def _front_rows(f: GridFields, u: Jet, v: Jet, valid: np.ndarray, front: np.ndarray, normals: np.ndarray,
                buoyancy: float) -> tuple[sparse.csr_matrix, np.ndarray]:
    """The front condition at each front point's nearest valid cell: rows (g₁ of every point, then g₂), right sides.

    Each is c μ = rhs at one cell; points where u's or v's derivatives are undefined are left out.
    """
    cell = _front_cells(f.x, f.y, valid, front)
    ux, uy, vx, vy, h = (a.ravel()[cell] for a in (u.x, u.y, v.x, v.y, f.h))
    jet_u, jet_v = Jet(None, ux, uy), Jet(None, vx, vy)
    nx, ny = normals[:, 0], normals[:, 1]
    free = front_residual(jet_u, jet_v, h, 0.0, nx, ny, buoyancy=buoyancy)
    coef = front_residual(jet_u, jet_v, h, 1.0, nx, ny, buoyancy=0.0)  # not unit - free: see above
    keep = np.logical_and.reduce([np.isfinite(a) for a in (*coef, *free)])
    n, cell = int(keep.sum()), cell[keep]
    matrix = sparse.csr_matrix((np.concatenate([c[keep] for c in coef]), (np.arange(2 * n), np.concatenate([cell, cell]))),
                               shape=(2 * n, valid.size))
    return matrix, -np.concatenate([g[keep] for g in free])


def _momentum_rows(f: GridFields, u: Jet, v: Jet, valid: np.ndarray,
                   buoyancy: float) -> tuple[sparse.csr_matrix, np.ndarray]:
    """The momentum equations as sparse rows in μ: f₁ at every cell where all derivatives are defined, then f₂."""
    h = grid_jets(f.x, f.y, f.h, order=1)
    ops = derivative_operators(f.x, f.y, valid, order=1)
    equations = [[a.ravel() for a in eq] for eq in _momentum_coefficients(u, v, h, buoyancy)]
    keep = valid.ravel() & ops["x"].defined & ops["y"].defined
    keep &= np.logical_and.reduce([np.isfinite(a) for eq in equations for a in eq])
    cells = np.flatnonzero(keep)
    blocks = [(sparse.diags(c0[cells]) @ sparse.identity(valid.size, format="csr")[cells]
               + sparse.diags(cx[cells]) @ ops["x"].matrix[cells] + sparse.diags(cy[cells]) @ ops["y"].matrix[cells])
              for c0, cx, cy, _ in equations]
    return sparse.vstack(blocks).tocsr(), np.concatenate([b[cells] for *_, b in equations])


def _normalise_pairs(matrix: sparse.csr_matrix, rhs: np.ndarray) -> tuple[sparse.csr_matrix, np.ndarray]:
    """Scale rows i and i + n (the two components of one vector equation) by their joint 2-norm; drop empty pairs.

    A joint scale keeps a component whose coefficients are small (e.g. the
    shear-free condition μ(u_y + v_x) = 0 at a front with normal (1, 0)) weak;
    scaling it alone to unit norm would turn it into a strong, false μ = 0.
    """
    n = matrix.shape[0] // 2
    squares = np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel()
    norm = np.sqrt(squares[:n] + squares[n:])
    keep = np.flatnonzero(np.tile(norm > 0, 2))
    scale = 1.0 / np.tile(np.where(norm > 0, norm, 1.0), 2)
    return (sparse.diags(scale[keep]) @ matrix[keep]).tocsr(), (rhs * scale)[keep]


def least_squares_viscosity(problem: ShelfProblem | GridFields, front: bool = True, *,
                            front_points: np.ndarray | None = None, front_normals: np.ndarray | None = None,
                            front_weight: float = 1.0, buoyancy: float = BUOYANCY,
                            spacing: float | None = None) -> np.ndarray:
    """PREVIEW: the viscosity μ [Pa·s] that best satisfies the SSA equations for the given u, v, h.

    Every valid velocity cell carries an unknown μ. Each cell where the
    finite-difference derivatives are defined contributes the two momentum
    equations, linear in (μ, μ_x, μ_y), with μ's derivatives by the same
    stencils as the data's (:func:`derivative_operators`), so that they are
    sparse rows acting on the μ vector; with ``front`` the two calving-front
    equations at the valid cell nearest each front point are added. The two
    components of each vector equation (momentum at a cell, traction at a
    front point) are scaled together to unit joint norm (front rows then
    multiplied by ``front_weight``), the unknowns are μ / :data:`MU_REFERENCE`,
    and the normal equations are solved by a sparse direct solver.

    .. warning::
       Noise-sensitive instant preview, not an inversion: measured on
       DIFFICE's clean ``SynData_exp1`` it is accurate to about 1 % (relative
       L2), but 1 % noise on u, v gives an error of order 100 %, and smoothing
       biases it by tens of per cent. Use it as a test reference on clean
       synthetic data; the joint PINN fit is the method for real data. μ is not
       constrained to be positive.

    Parameters
    ----------
    problem : a shelf problem (velocities m/a, its front and normals), or :class:`GridFields` (SI) with
        ``front_points`` and ``front_normals``.
    front : include the calving-front condition (without it μ is much less well determined).
    front_points, front_normals : (n, 2) override the problem's front points [m] and outward unit normals.
    front_weight : weight of the (unit-norm) front equations relative to the momentum rows.
    buoyancy : ρ g' [Pa/m].
    spacing : solve on every k-th cell, k = round(spacing / raster spacing), and interpolate μ back: for
        data that are smooth only over longer distances (default: the problem's ``smooth_spacing``; the
        velocities of a simulated shelf are piecewise linear, and second differences across single
        elements are meaningless).

    Returns
    -------
    (ny, nx) μ [Pa·s] on the velocity raster; NaN off the shelf and at cells no equation reaches.
    """
    f = _as_fields(problem)
    if isinstance(problem, ShelfProblem):
        front_points = problem.front if front_points is None else front_points
        front_normals = problem.normals if front_normals is None else front_normals
        spacing = problem.smooth_spacing if spacing is None else spacing
    stride = max(1, round((spacing or 0.0) / max(abs(_step(f.x)), abs(_step(f.y)))))
    if stride > 1:
        coarse = GridFields(*(a[::stride] for a in (f.x, f.y)), *(a[::stride, ::stride] for a in (f.u, f.v, f.h)))
        mu = least_squares_viscosity(coarse, front, front_points=front_points, front_normals=front_normals,
                                     front_weight=front_weight, buoyancy=buoyancy, spacing=0.0)
        return _back_to(coarse, mu, f)
    valid = np.isfinite(f.u) & np.isfinite(f.v)
    u, v = grid_jets(f.x, f.y, f.u, order=2), grid_jets(f.x, f.y, f.v, order=2)
    matrix, rhs = _normalise_pairs(*_momentum_rows(f, u, v, valid, buoyancy))
    if front and front_points is not None and len(front_points):
        fm, fr = _normalise_pairs(*_front_rows(f, u, v, valid, np.asarray(front_points, float),
                                              np.asarray(front_normals, float), buoyancy))
        matrix, rhs = sparse.vstack([matrix, front_weight * fm]).tocsr(), np.concatenate([rhs, front_weight * fr])
    return _solve(matrix, rhs, valid)


def _back_to(coarse: GridFields, mu: np.ndarray, fine: GridFields) -> np.ndarray:
    """μ solved on a coarse raster, on the fine one: bilinear where four coarse cells surround a cell, else the
    nearest solved coarse cell; NaN off the shelf."""
    out = regrid(coarse.x, coarse.y, mu, fine.x, fine.y)
    valid = np.isfinite(fine.u) & np.isfinite(fine.v)
    missing = valid & ~np.isfinite(out)
    solved = np.isfinite(mu)
    if missing.any() and solved.any():
        cx, cy = np.meshgrid(coarse.x, coarse.y)
        fx, fy = np.meshgrid(fine.x, fine.y)
        _, nearest = cKDTree(np.column_stack([cx[solved], cy[solved]])).query(np.column_stack([fx[missing], fy[missing]]))
        out[missing] = mu[solved][nearest]
    out[~valid] = np.nan
    return out


def _solve(matrix: sparse.csr_matrix, rhs: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Least-squares μ [Pa·s] on the raster from rows in the flat raster's μ; NaN where no row reaches."""
    from scipy.sparse.linalg import spsolve

    reached = np.asarray(abs(matrix).sum(axis=0)).ravel() > 0
    cols = np.flatnonzero(reached & valid.ravel())
    a = matrix[:, cols].tocsc()
    solution = spsolve((a.T @ a).tocsc(), a.T @ (rhs / MU_REFERENCE))
    mu = np.full(valid.size, np.nan)
    mu[cols] = solution * MU_REFERENCE
    return mu.reshape(valid.shape)
