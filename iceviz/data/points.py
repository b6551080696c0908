"""Flux observations from a points file (spec ``points:FILE``, ``.csv`` or ``.nc``).

Columns (CSV) or 1-D variables along one dimension (NetCDF), names case-insensitive:

=========  ==========  ==========================================================
``x, y``   m           EPSG:3031 coordinates (required)
``qx, qy`` m²/yr       ice flux (required)
``s``      m           surface elevation (optional)
``vx, vy`` m/yr        surface velocity (optional, both or neither); unit vectors
                       where the speed is > 0 become direction guidance
``split``  text        ``train`` / ``test`` (optional, case-insensitive)
``line``   text        flight line of each point (optional); validation holds out
                       whole lines (empty: on no line, never held out)
=========  ==========  ==========================================================

Without ``split`` the points are split by a checkerboard of square tiles of
``tile`` metres anchored at the minimum x, y: tiles with (i + j) even are test,
odd are train. Every numeric value must be finite and physically sensible
(:mod:`iceviz.data.sanity`: x, y within EPSG:3031 Antarctica unless
``extent=any``, bounded flux, speed and surface elevation). See
``sample_data/README.md``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from iceviz.data.problem import DataError, DirectionGuidance, FluxObservations, FluxProblem, FluxScale
from iceviz.data.region import grid_shape_for
from iceviz.data.sanity import DEFAULT_EXTENT, EXTENTS, first_violation

REQUIRED = ("x", "y", "qx", "qy")
OPTIONAL = ("s", "vx", "vy", "split", "line")
NUMERIC = ("x", "y", "qx", "qy", "s", "vx", "vy")
SUFFIXES = (".csv", ".nc")
DEFAULT_TILE = 15_000.0
MIN_POINTS = 5
SURFACE_SCALE = 1000.0
MAX_LISTED = 5


@dataclass
class PointsTable:
    """Raw columns of a points file.

    columns : lower-case name -> 1-D array (object/str for text, numeric otherwise).
    found : the column names as written in the file.
    where : 'row' (CSV: 1-based data row, header excluded) or 'index' (NetCDF: 0-based).
    """

    path: Path
    columns: dict[str, np.ndarray]
    found: list[str]
    where: str

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0

    def locate(self, positions: np.ndarray) -> str:
        """'rows 3, 9, 12, …' for the first few of the 0-based positions."""
        pos = np.asarray(positions)[:MAX_LISTED]
        labels = [str(int(p) + 1) if self.where == "row" else str(int(p)) for p in pos]
        more = ", …" if len(positions) > MAX_LISTED else ""
        word = self.where if len(positions) == 1 else {"row": "rows", "index": "indices"}[self.where]
        return f"{word} {', '.join(labels)}{more}"


def _normalise_names(path: Path, names: list[str]) -> list[str]:
    lower = [str(n).strip().lower() for n in names]
    dup = sorted({n for n in lower if lower.count(n) > 1})
    if dup:
        raise DataError(f"{path}: duplicate columns {dup} (names are case-insensitive)")
    return lower


def read_csv_table(path: Path) -> PointsTable:
    """All columns of a CSV file as text (numbers are parsed later, with row numbers)."""
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty (expected a header line with columns x, y, qx, qy)") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{path}: cannot parse as CSV: {str(exc).strip()}") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc}") from None
    found = [str(c) for c in df.columns]
    names = _normalise_names(path, found)
    cols = {n: df[c].to_numpy(dtype=object) for n, c in zip(names, df.columns)}
    return PointsTable(path, cols, found, "row")


def read_netcdf_table(path: Path) -> PointsTable:
    """The 1-D variables of a NetCDF file that share the dimension of ``x``."""
    from iceviz.data.netcdf import read_netcdf

    ds = read_netcdf(path)
    found = [str(v) for v in list(ds.variables)]
    names = _normalise_names(path, found)
    by_name = dict(zip(names, found))
    missing = [c for c in REQUIRED if c not in by_name]
    if missing:
        _missing(path, missing, found)
    xvar = ds[by_name["x"]]
    if xvar.ndim != 1:
        raise DataError(f"{path}: variable {by_name['x']} has dimensions {xvar.dims}, expected 1-D points")
    dim = xvar.dims[0]
    cols: dict[str, np.ndarray] = {}
    for name in REQUIRED + OPTIONAL:
        if name not in by_name:
            continue
        var = ds[by_name[name]]
        if var.dims != (dim,):
            raise DataError(
                f"{path}: variable {by_name[name]} has dimensions {var.dims}; "
                f"every column must be 1-D along {dim!r} like x"
            )
        cols[name] = var.values
    return PointsTable(path, cols, found, "index")


def read_table(path: str | os.PathLike) -> PointsTable:
    """Read a ``.csv`` or ``.nc`` points file (DataError for missing files or other suffixes)."""
    p = Path(path).expanduser()
    suffix = p.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(f"{p}: unsupported file type {p.suffix or '(none)'!r}; supported: {', '.join(SUFFIXES)}")
    if not p.exists():
        raise DataError(f"{p}: no such file")
    if not p.is_file():
        raise DataError(f"{p}: not a regular file")
    return read_csv_table(p) if suffix == ".csv" else read_netcdf_table(p)


def _missing(path: Path, missing: list[str], found: list[str]) -> None:
    raise DataError(
        f"{path}: missing required column(s) {', '.join(missing)}; required: {', '.join(REQUIRED)}; "
        f"found: {', '.join(found) if found else '(none)'}"
    )


def numeric_column(table: PointsTable, name: str) -> np.ndarray:
    """Column ``name`` as finite float64 (DataError for text, NaN or infinite values)."""
    raw = table.columns[name]
    if raw.dtype.kind in "fiub":
        values = raw.astype(np.float64)
    else:
        text = pd.Series(raw, dtype=object).map(lambda v: v.decode() if isinstance(v, bytes) else v)
        text = text.astype(str).str.strip()
        values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
        written_nan = text.str.lower().isin(["nan", "+nan", "-nan"]).to_numpy()
        bad = np.nonzero(np.isnan(values) & (text != "").to_numpy() & ~written_nan)[0]
        if bad.size:
            examples = ", ".join(repr(v) for v in text.iloc[bad[:3]])
            raise DataError(f"{table.path}: column {name} has {bad.size} non-numeric value(s) at {table.locate(bad)} "
                            f"(e.g. {examples})")
    nonfinite = np.nonzero(~np.isfinite(values))[0]
    if nonfinite.size:
        raise DataError(
            f"{table.path}: column {name} has {nonfinite.size} NaN, missing or infinite value(s) at "
            f"{table.locate(nonfinite)} (e.g. {table.locate(nonfinite[:1])}: {values[nonfinite[0]]:g}); every numeric "
            "value must be a finite number: fill in or remove these rows"
        )
    return values


def split_column(table: PointsTable) -> np.ndarray:
    """The ``split`` column as a boolean 'is test' mask (DataError for values other than train/test)."""
    raw = table.columns["split"]
    if raw.dtype.kind not in "OUS":
        raise DataError(f"{table.path}: column split must hold the words train / test, found {raw.dtype} values")
    text = np.array([(v.decode() if isinstance(v, bytes) else str(v)).strip().lower() for v in raw], dtype=object)
    bad = np.nonzero((text != "train") & (text != "test"))[0]
    if bad.size:
        values = sorted({repr(str(raw[i])) for i in bad[:20]})[:3]
        raise DataError(
            f"{table.path}: column split has {bad.size} value(s) other than train/test at {table.locate(bad)} "
            f"(e.g. {', '.join(values)})"
        )
    return text == "test"


def line_column(table: PointsTable) -> np.ndarray:
    """The ``line`` column as text labels (numbers and words alike; blank: on no line)."""
    raw = table.columns["line"]
    if raw.dtype.kind in "f":
        return np.array(["" if not np.isfinite(v) else f"{v:g}" for v in raw], dtype=object)
    return np.array([(v.decode() if isinstance(v, bytes) else str(v)).strip() for v in raw], dtype=object)


def checkerboard_split(xy: np.ndarray, tile: float) -> np.ndarray:
    """'Is test' mask of a checkerboard of ``tile``-metre squares anchored at the minimum x, y.

    i = floor((x − xmin)/tile), j = floor((y − ymin)/tile); (i + j) even -> test.
    """
    origin = xy.min(axis=0)
    ij = np.floor((xy - origin) / tile).astype(np.int64)
    return (ij[:, 0] + ij[:, 1]) % 2 == 0


def suggest_tile(xy: np.ndarray) -> float:
    """A tile size giving about 6 tiles along the longer side of the data, rounded to 1-2-5 steps."""
    extent = float(np.max(xy.max(axis=0) - xy.min(axis=0)))
    target = max(extent / 6.0, 1.0)
    p = 10.0 ** math.floor(math.log10(target))
    return min((m * p for m in (1.0, 2.0, 5.0, 10.0)), key=lambda t: abs(t - target))


def load_points(path: str | os.PathLike, tile: float = DEFAULT_TILE, spec: str | None = None,
                extent: str = DEFAULT_EXTENT) -> FluxProblem:
    """A :class:`FluxProblem` from a points file.

    Scale: x0, y0 = minimum coordinates, length = max(x extent, y extent),
    flux = RMS of the training |q|, surface = 1000 m. ``extent`` names the
    allowed |x|, |y| (a key of :data:`iceviz.data.sanity.EXTENTS`: ``antarctica``
    or ``any``); values outside the bounds of :mod:`iceviz.data.sanity` are a
    DataError naming the file, the column and the rows.
    """
    table = read_table(path)
    p = table.path
    spec = spec or f"points:{path}"
    missing = [c for c in REQUIRED if c not in table.columns]
    if missing:
        _missing(p, missing, table.found)
    n = len(table)
    if n < MIN_POINTS:
        raise DataError(f"{p}: only {n} point(s); need at least {MIN_POINTS}")
    if not (math.isfinite(tile) and tile > 0):
        raise DataError(f"{spec}: tile must be a positive number of metres, got {tile}")
    if extent not in EXTENTS:
        raise DataError(f"{spec}: extent must be one of {', '.join(EXTENTS)}, got {extent!r}")
    cols = {c: numeric_column(table, c) for c in NUMERIC if c in table.columns}
    if ("vx" in cols) != ("vy" in cols):
        raise DataError(f"{p}: velocity needs both vx and vy, found only {'vx' if 'vx' in cols else 'vy'}")
    bad = first_violation(cols, extent, override=f"{spec.split('?')[0]}?extent=any")
    if bad:
        raise DataError(f"{p}: {bad.describe(table.locate)}")
    xy = np.column_stack([cols["x"], cols["y"]])
    q = np.column_stack([cols["qx"], cols["qy"]])
    s = cols.get("s")
    line = line_column(table) if "line" in table.columns else None
    notes: list[str] = []
    if "split" in table.columns:
        is_test = split_column(table)
        how = "split column"
        notes.append("train/test split from the file's split column")
    else:
        is_test = checkerboard_split(xy, tile)
        how = f"checkerboard of {tile:g} m tiles"
        notes.append(f"checkerboard split: {tile:g} m tiles from the minimum x, y; (i + j) even -> test, odd -> train")
    n_test = int(is_test.sum())
    if n_test == 0 or n_test == n:
        hint = ("" if "split" in table.columns
                else f"; try a smaller tile, e.g. {spec.split('?')[0]}?tile={suggest_tile(xy):g}")
        raise DataError(f"{p}: the {how} leaves {n - n_test} train and {n_test} test points{hint}")
    length = float((xy.max(axis=0) - xy.min(axis=0)).max())
    if not length > 0:
        raise DataError(f"{p}: all points are at the same location; cannot define a length scale")
    train = ~is_test
    flux = float(np.sqrt(np.mean(np.sum(q[train] ** 2, axis=1))))
    if not flux > 0:
        raise DataError(f"{p}: every training flux is zero; cannot define a flux scale")
    direction = None
    if "vx" in cols:
        v = np.column_stack([cols["vx"], cols["vy"]])
        speed = np.hypot(v[:, 0], v[:, 1])
        keep = speed > 0
        if keep.any():
            direction = DirectionGuidance(xy=xy[keep], unit=v[keep] / speed[keep, None])
            notes.append(
                f"direction guidance from the file's velocities at {int(keep.sum())} points, test points included, "
                "so +dir models see the test directions"
            )
        else:
            notes.append("velocity columns present but every speed is zero: no direction guidance")
    bounds = (float(xy[:, 0].min()), float(xy[:, 0].max()), float(xy[:, 1].min()), float(xy[:, 1].max()))
    if bounds[0] == bounds[1] or bounds[2] == bounds[3]:
        raise DataError(f"{p}: the points lie on a line of constant x or y; need a 2-D spread")
    return FluxProblem(
        spec=spec,
        train=FluxObservations(xy=xy[train], q=q[train], s=None if s is None else s[train],
                               line=None if line is None else line[train]),
        test=FluxObservations(xy=xy[is_test], q=q[is_test], s=None if s is None else s[is_test],
                              line=None if line is None else line[is_test]),
        scale=FluxScale(x0=bounds[0], y0=bounds[2], length=length, flux=flux, surface=SURFACE_SCALE),
        bounds=bounds,
        direction=direction,
        grid_shape=grid_shape_for(bounds, 100),
        description=f"flux points from {p.name}: {n - n_test} train / {n_test} test ({how})",
        notes=notes,
    )


def glacier_points_frame(step: int = 2, noise: float = 0.02, seed: int = 0) -> pd.DataFrame:
    """synthetic:glacier in the points-file format (the source of ``sample_data/glacier_points.csv``).

    Every ``step``-th survey point of synthetic:glacier, coordinates rounded to
    0.1 m first so the file's values are exact at its own coordinates: test
    rows carry the exact flux, train rows the flux plus Gaussian noise of std
    ``noise × mean |q|`` over the test rows. s is the analytic surface, vx, vy
    the flux divided by the design's thickness (m/yr).
    """
    from iceviz.data import synthetic as syn

    xy, line = syn.glacier_flight_lines()
    xy, line = np.round(xy[::step], 1), line[::step]
    is_test = syn.checkerboard_is_test(xy, syn.GLACIER_TILE, (syn.GLACIER_BOUNDS[0], syn.GLACIER_BOUNDS[2]))
    q = syn.glacier_flux(xy)
    mean_q = float(np.mean(np.hypot(q[is_test, 0], q[is_test, 1])))
    q[~is_test] = syn.add_noise(q[~is_test], noise * mean_q, seed)
    v = syn.glacier_velocity(xy)
    return pd.DataFrame(
        {
            "x": xy[:, 0],
            "y": xy[:, 1],
            "qx": np.round(q[:, 0], 1),
            "qy": np.round(q[:, 1], 1),
            "s": np.round(syn.glacier_surface(xy), 2),
            "vx": np.round(v[:, 0], 3),
            "vy": np.round(v[:, 1], 3),
            "split": np.where(is_test, "test", "train"),
            "line": line,
        }
    )


def write_points_csv(frame: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a points table as CSV (parent directories created)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(p, index=False)
    return p
