"""Cropping a flux problem to a box in EPSG:3031 metres."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from iceviz.data.problem import DataError, DirectionGuidance, FluxProblem

Bounds = tuple[float, float, float, float]


def check_bounds(bounds: Bounds, what: str = "bounds") -> Bounds:
    """Validate (xmin, xmax, ymin, ymax): four finite numbers with xmin < xmax and ymin < ymax."""
    try:
        xmin, xmax, ymin, ymax = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise DataError(f"{what}: expected four numbers xmin,xmax,ymin,ymax in metres, got {bounds!r}") from None
    if not all(math.isfinite(b) for b in (xmin, xmax, ymin, ymax)):
        raise DataError(f"{what}: bounds must be finite, got {(xmin, xmax, ymin, ymax)}")
    if not (xmin < xmax and ymin < ymax):
        raise DataError(f"{what}: need xmin < xmax and ymin < ymax, got {(xmin, xmax, ymin, ymax)}")
    return xmin, xmax, ymin, ymax


def in_bounds(xy: np.ndarray, bounds: Bounds) -> np.ndarray:
    """Boolean mask of the points (N, 2) inside the closed box ``bounds``."""
    xmin, xmax, ymin, ymax = bounds
    x, y = xy[:, 0], xy[:, 1]
    return (x >= xmin) & (x <= xmax) & (y >= ymin) & (y <= ymax)


def points_extent(*xys: np.ndarray) -> Bounds | None:
    """(xmin, xmax, ymin, ymax) of all the given point sets, or None when they are empty."""
    xy = np.concatenate([p.reshape(-1, 2) for p in xys], axis=0) if xys else np.empty((0, 2))
    if xy.shape[0] == 0:
        return None
    return float(xy[:, 0].min()), float(xy[:, 0].max()), float(xy[:, 1].min()), float(xy[:, 1].max())


def intersect(a: Bounds, b: Bounds) -> Bounds | None:
    """The intersection of two boxes, or None when it has no area."""
    xmin, xmax = max(a[0], b[0]), min(a[1], b[1])
    ymin, ymax = max(a[2], b[2]), min(a[3], b[3])
    return (xmin, xmax, ymin, ymax) if xmin < xmax and ymin < ymax else None


def grid_shape_for(bounds: Bounds, n: int = 100, n_min: int = 10) -> tuple[int, int]:
    """(ny, nx) with ``n`` cells along the longer side and near-square cells."""
    xmin, xmax, ymin, ymax = bounds
    w, h = xmax - xmin, ymax - ymin
    if w >= h:
        return max(n_min, int(round(n * h / w))), n
    return n, max(n_min, int(round(n * w / h)))


def _fmt_bounds(b: Bounds | None) -> str:
    if b is None:
        return "no points"
    return f"x {b[0]:.0f} to {b[1]:.0f} m, y {b[2]:.0f} to {b[3]:.0f} m"


def crop(problem: FluxProblem, bounds: Bounds) -> FluxProblem:
    """The problem restricted to the box ``bounds`` = (xmin, xmax, ymin, ymax), metres.

    Train, test and direction points outside the box are dropped; the new
    domain is the box intersected with the old one, the scale is unchanged (so
    scaled metrics stay comparable with the uncropped data). Raises DataError
    when the box leaves no train or no test points, or misses the domain.
    """
    bounds = check_bounds(bounds, f"{problem.spec}: bbox")
    extent = points_extent(problem.train.xy, problem.test.xy)
    new_bounds = intersect(bounds, problem.bounds)
    m_train = in_bounds(problem.train.xy, bounds)
    m_test = in_bounds(problem.test.xy, bounds)
    n_train, n_test = int(m_train.sum()), int(m_test.sum())
    if new_bounds is None or n_train == 0 or n_test == 0:
        raise DataError(
            f"{problem.spec}: bbox {_fmt_bounds(bounds)} leaves {n_train} of {len(problem.train)} train "
            f"and {n_test} of {len(problem.test)} test points; the domain is {_fmt_bounds(problem.bounds)} "
            f"and the points cover {_fmt_bounds(extent)}"
        )
    direction = problem.direction
    notes = list(problem.notes) + [f"cropped to {_fmt_bounds(bounds)}"]
    if direction is not None:
        m_dir = in_bounds(direction.xy, bounds)
        if m_dir.any():
            direction = DirectionGuidance(xy=direction.xy[m_dir], unit=direction.unit[m_dir])
        else:
            direction = None
            notes.append("no direction-guidance points inside the box")
    ny, nx = problem.grid_shape
    return dataclasses.replace(
        problem,
        train=problem.train.subset(m_train),
        test=problem.test.subset(m_test),
        bounds=new_bounds,
        direction=direction,
        grid_shape=grid_shape_for(new_bounds, max(ny, nx)),
        notes=notes,
    )
