"""Ice-shelf problems for the viscosity inversion: velocity and thickness rasters plus a calving front.

A :class:`ShelfProblem` is what the viscosity PINN trains on. It is read from
the DIFFICE layout (``diffice:FILE.mat``, the format of DIFFICE_jax's data) or
made by the project's own simulator (``shelf:NAME``, see
:mod:`iceviz.sim.shelves`). The DIFFICE layout, SI units:

``xd``, ``yd``, ``ud``, ``vd``
    the velocity raster: coordinates [m] and velocity [m/s], all the same 2-D shape,
    NaN outside the shelf;
``xd_h``, ``yd_h``, ``hd``
    the thickness raster [m], its own shape and spacing;
``xct``, ``yct`` (n×1), ``nnct`` (n×2)
    calving-front points [m] and their outward unit normals;
``mud`` (optional)
    the true viscosity [Pa·s] on the velocity raster (synthetic shelves).

Here velocities are kept in m/a, thickness in m, viscosity in Pa·s. Each raster
is reduced to 1-D axes (``x`` per column, ``y`` per row, either order) and the
2-D values; a raster whose coordinates are not a regular, axis-aligned grid is
refused, as is a file without calving front: the front condition is what makes
the viscosity identifiable.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from iceviz.data.locations import data_dirs
from iceviz.data.problem import DataError
from iceviz.data.public import DATASET_FOR_FILE, fetch_hint
from iceviz.data.region import Bounds, check_bounds, in_bounds
from iceviz.data.splits import MIN_VALIDATION_GROUPS, split_lines, tile_labels
from iceviz.physics.units import SECONDS_PER_YEAR

REQUIRED = ("xd", "yd", "ud", "vd", "xd_h", "yd_h", "hd", "xct", "yct", "nnct")
"""The variables every DIFFICE file must hold."""
MIN_POINTS = 50
"""Fewest valid velocity (and thickness) points a shelf problem may have."""
NORMAL_TOLERANCE = 1e-2
"""Front normals must have unit length to within this."""


@dataclass(frozen=True)
class Raster:
    """Fields on a regular, axis-aligned grid; NaN outside the shelf.

    Attributes
    ----------
    x : (nx,) column coordinates [m], monotonic.
    y : (ny,) row coordinates [m], monotonic (DIFFICE's real files run north to south).
    fields : name -> (ny, nx) array.
    """

    x: np.ndarray
    y: np.ndarray
    fields: dict[str, np.ndarray]

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.y), len(self.x)

    @property
    def spacing(self) -> float:
        """Mean grid spacing [m] (the larger of the two axes')."""
        return float(max(_step(self.x), _step(self.y)))

    def valid(self, name: str) -> np.ndarray:
        """(ny, nx) mask of the finite values of ``name``."""
        return np.isfinite(self.fields[name])

    def points(self, *names: str) -> tuple[np.ndarray, np.ndarray]:
        """(xy (N, 2), values (N, len(names))) at the cells where every named field is finite."""
        mask = np.logical_and.reduce([self.valid(n) for n in names])
        xx, yy = np.meshgrid(self.x, self.y)
        xy = np.column_stack([xx[mask], yy[mask]])
        return xy, np.column_stack([self.fields[n][mask] for n in names])

    def crop(self, bounds: Bounds) -> "Raster":
        """The rows and columns inside ``bounds``."""
        xmin, xmax, ymin, ymax = bounds
        cols = (self.x >= xmin) & (self.x <= xmax)
        rows = (self.y >= ymin) & (self.y <= ymax)
        return Raster(self.x[cols], self.y[rows], {k: v[np.ix_(rows, cols)] for k, v in self.fields.items()})


def _step(axis: np.ndarray) -> float:
    return float(np.abs(np.diff(axis)).mean()) if len(axis) > 1 else 0.0


@dataclass(frozen=True)
class ShelfProblem:
    """Everything the viscosity inversion needs, in physical units.

    Attributes
    ----------
    spec : the data spec that produced it.
    velocity : raster with ``u``, ``v`` [m/a] (and ``mu`` [Pa·s] where the truth is known).
    thickness : raster with ``h`` [m].
    front : (n, 2) calving-front points [m].
    normals : (n, 2) outward unit normals at the front points.
    description : one line for humans.
    notes : caveats (e.g. an undocumented coordinate offset).
    hints : hyper-parameters that suit this source (override registry defaults).
    smooth_spacing : the shortest distance [m] over which finite differences of the data mean something
        (a simulated shelf's mesh size: its velocities are piecewise linear); 0 for the raster's own spacing.
    """

    spec: str
    velocity: Raster
    thickness: Raster
    front: np.ndarray
    normals: np.ndarray
    description: str = ""
    notes: list[str] = field(default_factory=list)
    hints: dict[str, Any] = field(default_factory=dict)
    smooth_spacing: float = 0.0
    kind: str = "shelf"

    @property
    def has_truth(self) -> bool:
        """True where the true viscosity is known."""
        return "mu" in self.velocity.fields

    @property
    def bounds(self) -> Bounds:
        """(xmin, xmax, ymin, ymax) [m] of the valid velocity and thickness points."""
        xy = np.concatenate([self.velocity.points("u", "v")[0], self.thickness.points("h")[0]])
        return float(xy[:, 0].min()), float(xy[:, 0].max()), float(xy[:, 1].min()), float(xy[:, 1].max())

    def velocity_points(self) -> tuple[np.ndarray, np.ndarray]:
        """(xy (N, 2) [m], uv (N, 2) [m/a]) at the valid velocity cells."""
        return self.velocity.points("u", "v")

    def thickness_points(self) -> tuple[np.ndarray, np.ndarray]:
        """(xy (N, 2) [m], h (N,) [m]) at the valid thickness cells."""
        xy, h = self.thickness.points("h")
        return xy, h[:, 0]


def validation_split(problem: ShelfProblem, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Which observation cells to hold out for validation: masks over the points of
    :meth:`ShelfProblem.velocity_points` and of :meth:`ShelfProblem.thickness_points`.

    Whole square tiles of the shelf (:func:`~iceviz.data.splits.tile_labels` of its bounds), the same
    tiles for both rasters whatever their grids, taken in a seeded random order until about ``fraction``
    of all the velocity and thickness cells (:func:`~iceviz.data.splits.split_lines`). No cell at all
    when ``fraction`` is 0, when the cells fill fewer than :data:`~iceviz.data.splits.MIN_VALIDATION_GROUPS`
    tiles, or when a raster would be left with no validation cell or no training cell. The same ``seed``
    gives the same split.
    """
    xy_v, xy_h = problem.velocity_points()[0], problem.thickness_points()[0]
    n = len(xy_v)
    none = np.zeros(n, dtype=bool), np.zeros(len(xy_h), dtype=bool)
    tiles = tile_labels(np.concatenate([xy_v, xy_h]), problem.bounds)
    if fraction <= 0 or len(np.unique(tiles)) < MIN_VALIDATION_GROUPS:
        return none
    held = split_lines(tiles, fraction, seed)
    held_v, held_h = held[:n], held[n:]
    if not all(0 < m.sum() < len(m) for m in (held_v, held_h)):
        return none
    return held_v, held_h


def _axis(coords: np.ndarray, along: int, name: str, source: str) -> np.ndarray:
    """The 1-D axis of a meshgrid-like coordinate array (NaN allowed outside the shelf)."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows and columns outside the shelf
        axis = np.nanmean(coords, axis=1 - along)
        spread = np.nanmax(coords, axis=1 - along) - np.nanmin(coords, axis=1 - along)
    ok = np.isfinite(axis)
    if ok.sum() < 2:
        raise DataError(f"{source}: {name} has fewer than two finite coordinates")
    steps = np.diff(axis[ok]) / np.diff(np.flatnonzero(ok))
    step = float(np.median(steps))
    if step == 0 or not np.allclose(steps, step, rtol=1e-3, atol=1e-6 * abs(step)):
        raise DataError(f"{source}: {name} is not a regular grid (spacing varies from {steps.min():g} to {steps.max():g} m)")
    if np.nanmax(spread) > 1e-3 * abs(step):
        raise DataError(f"{source}: {name} is not an axis-aligned grid (coordinates vary along the other axis)")
    first = int(np.flatnonzero(ok)[0])
    return axis[first] + step * (np.arange(len(axis)) - first)


def _raster(data: Mapping[str, np.ndarray], xname: str, yname: str, fields: dict[str, str], source: str) -> Raster:
    x2, y2 = (np.asarray(data[n], dtype=np.float64) for n in (xname, yname))
    if x2.ndim != 2 or x2.shape != y2.shape:
        raise DataError(f"{source}: {xname} and {yname} must be 2-D arrays of one shape, got {x2.shape} and {y2.shape}")
    values = {}
    for out, name in fields.items():
        a = np.asarray(data[name], dtype=np.float64)
        if a.shape != x2.shape:
            raise DataError(f"{source}: {name} has shape {a.shape} but its grid {xname}/{yname} has {x2.shape} "
                            "(misaligned fields)")
        values[out] = a
    return Raster(_axis(x2, 1, xname, source), _axis(y2, 0, yname, source), values)


def from_diffice(data: Mapping[str, Any], spec: str, description: str = "") -> ShelfProblem:
    """A :class:`ShelfProblem` from DIFFICE-layout arrays (SI units); DataError naming what is wrong."""
    missing = [n for n in REQUIRED if n not in data]
    if missing:
        raise DataError(f"{spec}: missing variable(s) {', '.join(missing)}; a DIFFICE file needs {', '.join(REQUIRED)}")
    fields = {"u": "ud", "v": "vd"} | ({"mu": "mud"} if "mud" in data else {})
    velocity = _raster(data, "xd", "yd", fields, spec)
    velocity = dataclasses.replace(velocity, fields={k: v * SECONDS_PER_YEAR if k in "uv" else v
                                                     for k, v in velocity.fields.items()})
    thickness = _raster(data, "xd_h", "yd_h", {"h": "hd"}, spec)
    front = np.column_stack([np.asarray(data[n], dtype=np.float64).reshape(-1) for n in ("xct", "yct")]) \
        if np.size(data["xct"]) == np.size(data["yct"]) else None
    if front is None:
        raise DataError(f"{spec}: xct and yct have different lengths ({np.size(data['xct'])} and {np.size(data['yct'])})")
    normals = np.asarray(data["nnct"], dtype=np.float64)
    if normals.ndim == 1 and normals.size == 2 * len(front):
        normals = normals.reshape(-1, 2)
    if normals.shape != front.shape:
        raise DataError(f"{spec}: nnct must be n×2 for the {len(front)} front points, got shape {normals.shape}")
    problem = ShelfProblem(spec, velocity, thickness, front, normals, description=description)
    return check_shelf(problem)


def check_shelf(problem: ShelfProblem) -> ShelfProblem:
    """Validate a shelf problem: enough data, finite unit normals, a calving front, thickness > 0."""
    spec = problem.spec
    if len(problem.front) == 0:
        raise DataError(f"{spec}: no calving-front points. The front condition is what makes the viscosity "
                        "identifiable: choose a region that contains a stretch of calving front")
    if not (np.isfinite(problem.front).all() and np.isfinite(problem.normals).all()):
        raise DataError(f"{spec}: calving-front points or normals contain NaN or infinite values")
    lengths = np.hypot(*problem.normals.T)
    if np.abs(lengths - 1).max() > NORMAL_TOLERANCE:
        raise DataError(f"{spec}: calving-front normals must be unit vectors (lengths {lengths.min():.3g} to "
                        f"{lengths.max():.3g})")
    n_vel = int(np.logical_and(problem.velocity.valid("u"), problem.velocity.valid("v")).sum())
    n_h = int(problem.thickness.valid("h").sum())
    if n_vel < MIN_POINTS or n_h < MIN_POINTS:
        raise DataError(f"{spec}: too little shelf data ({n_vel} velocity and {n_h} thickness points; "
                        f"need at least {MIN_POINTS} of each)")
    h = problem.thickness.fields["h"]
    if np.nanmin(h) <= 0:
        raise DataError(f"{spec}: thickness must be positive where given (minimum {np.nanmin(h):g} m)")
    return problem


def crop_shelf(problem: ShelfProblem, bounds: Bounds) -> ShelfProblem:
    """The part of a shelf inside ``bounds``, keeping only the front points inside it (DataError if none)."""
    bounds = check_bounds(bounds, f"{problem.spec}: bbox")
    keep = in_bounds(problem.front, bounds)
    cropped = dataclasses.replace(problem, velocity=problem.velocity.crop(bounds),
                                  thickness=problem.thickness.crop(bounds),
                                  front=problem.front[keep], normals=problem.normals[keep])
    return check_shelf(cropped)


def find_diffice(path: str | Path) -> Path:
    """``path`` if it is a file; a bare file name is also looked for in the ``diffice`` data directories
    (``$ICEVIZ_DATA/diffice``, ``../shared/data/diffice``). DataError naming every place tried."""
    path = Path(path).expanduser()
    tried = [path] + ([d / path.name for d in data_dirs("diffice")] if path.parent == Path(".") else [])
    for candidate in tried:
        if candidate.is_file():
            return candidate
    name = DATASET_FOR_FILE.get(path.name) if path.parent == Path(".") else None
    hint = f"; {fetch_hint(name)}" if name else ""
    raise DataError(f"diffice: no such file {path}{hint}. Looked in {', '.join(str(p) for p in tried)}")


def load_diffice(path: str | Path, spec: str | None = None) -> ShelfProblem:
    """Read a DIFFICE ``.mat`` file (MAT v5, ``scipy.io.loadmat``); DataError on a missing or foreign file."""
    from scipy.io import loadmat

    spec = spec or f"diffice:{path}"
    path = find_diffice(path)
    try:
        data = loadmat(path)
    except Exception as exc:  # scipy raises ValueError, TypeError, MatReadError... for foreign files
        raise DataError(f"{spec}: not a readable MATLAB .mat file ({type(exc).__name__}: {exc})") from None
    truth = "with true viscosity" if "mud" in data else "no true viscosity"
    problem = from_diffice(data, spec, description=f"DIFFICE shelf {path.name} ({truth})")
    if np.nanmax(np.abs(problem.front)) > 1e6:
        problem.notes.append("coordinates carry the DIFFICE files' undocumented constant offset from EPSG:3031 "
                             "(roughly +2.5e6 m in x, +2.1e6 m in y); maps are drawn in the file's own coordinates")
    return problem


def load_synthetic_shelf(name: str, spec: str | None = None, resolution: float = 1000.0,
                         spacing: float = 200.0) -> ShelfProblem:
    """A synthetic shelf of :mod:`iceviz.sim.shelves`, solved by our SSA, with its true viscosity."""
    from iceviz.sim.shelves import SHELVES, make_shelf, to_grids

    spec = spec or f"shelf:{name}"
    if name not in SHELVES:
        raise DataError(f"{spec}: unknown shelf {name!r}; valid: {', '.join(SHELVES)}")
    grids = to_grids(make_shelf(name, resolution=resolution), spacing=spacing)
    problem = from_diffice(grids, spec, description=f"synthetic shelf '{name}' (our SSA, known viscosity)")
    # P1 velocities: second differences are meaningful only across a couple of elements
    return dataclasses.replace(problem, smooth_spacing=2.0 * resolution)
