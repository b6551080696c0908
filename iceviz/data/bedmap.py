"""Bedmap 1-3 standardised survey CSVs: thickness (and surface) points along flight lines.

The UK Polar Data Centre distributes one file per campaign
(``PROVIDER_YEAR_CAMPAIGN_TYPE_BMn.csv``): ``#key: value`` metadata lines, then
the columns ``trajectory_id, trace_number, longitude (degree_east),
latitude (degree_north), date, time_UTC, surface_altitude (m),
land_ice_thickness (m), bedrock_altitude (m), two_way_travel_time (m),
aircraft_altitude (m), along_track_distance (m)``; missing values are -9999
(Bedmap1 also has +9999). Coordinates are WGS84 lon/lat; a file that gives
EPSG:3031 ``x``, ``y`` columns instead is read too. Thickness is the
provider's radar thickness (physical, with the provider's own firn
correction, recorded in ``#firn_correction``).

A campaign file can hold millions of points and a user has a few gigabytes of
them, so each file is read once, in chunks, into a columnar index in the cache
directory (x, y, thickness, surface, line as ``.npy``, keyed by the file's
path, size and modification time); a box query memory-maps the index and
touches only the blocks of rows whose bounding box meets it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from iceviz.cache import cache_dir, file_key
from iceviz.data.problem import DataError
from iceviz.data.region import Bounds

LINE = "trajectory_id"
LON, LAT = "longitude (degree_east)", "latitude (degree_north)"
X, Y = "x", "y"
THICKNESS = "land_ice_thickness (m)"
SURFACE = "surface_altitude (m)"
REQUIRED_LONLAT = (LINE, LON, LAT, THICKNESS)
REQUIRED_XY = (LINE, X, Y, THICKNESS)
SENTINEL = 9999.0
INDEX_VERSION = 2
CHUNK_ROWS = 500_000
BLOCK_ROWS = 65_536
"""Rows per block of the index; each block's bounding box is kept, and a box query reads only the blocks
that meet it (survey rows follow flight lines, so a block covers a short stretch of line)."""


@dataclass(frozen=True)
class BedmapHeader:
    """The ``#key: value`` metadata and the column names of one file."""

    path: Path
    metadata: dict[str, str]
    columns: list[str]
    skip: int  # metadata lines before the column line

    @property
    def firn_correction(self) -> str:
        return self.metadata.get("firn_correction", "not stated")


@dataclass
class SurveyPoints:
    """Survey points in EPSG:3031: xy (N, 2) m, thickness (N,) m, surface (N,) m (NaN where missing), line (N,)
    integer codes into ``line_names`` (``file-stem/trajectory_id``: millions of points share a few hundred
    lines), file (N,) index into ``files``."""

    xy: np.ndarray
    thickness: np.ndarray
    surface: np.ndarray
    line: np.ndarray
    file: np.ndarray
    files: list[Path]
    line_names: list[str]

    def __len__(self) -> int:
        return int(self.xy.shape[0])

    def labels(self, index: np.ndarray | slice = slice(None)) -> np.ndarray:
        """The line names of the points ``index`` (all by default), as an object array."""
        return np.asarray(self.line_names, dtype=object)[self.line[index]] if self.line_names else \
            np.empty(0, dtype=object)


def read_header(path: str | os.PathLike) -> BedmapHeader:
    """Metadata and columns of a Bedmap CSV (DataError for a missing file or one with other columns)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"{p}: no such file")
    metadata: dict[str, str] = {}
    skip = 0
    try:
        with open(p, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("#"):
                    key, _, value = line[1:].partition(":")
                    metadata[key.strip()] = value.strip()
                    skip += 1
                    continue
                columns = [c.strip() for c in line.rstrip("\r\n").split(",")]
                break
            else:
                raise DataError(f"{p}: no column line after {skip} metadata line(s); expected a Bedmap CSV")
    except OSError as exc:
        raise DataError(f"{p}: cannot read: {exc}") from None
    if not (set(REQUIRED_LONLAT) <= set(columns) or set(REQUIRED_XY) <= set(columns)):
        need = set(REQUIRED_LONLAT) - set(columns)
        raise DataError(f"{p}: not a Bedmap standardised CSV: missing column(s) {', '.join(sorted(need))}; "
                        f"found: {', '.join(columns) or '(none)'}")
    return BedmapHeader(p, metadata, columns, skip)


def _clean(values: pd.Series) -> np.ndarray:
    a = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, copy=True)
    a[np.abs(a) == SENTINEL] = np.nan
    return a


def _index_dir(p: Path) -> Path:
    return cache_dir() / "bedmap" / f"{p.stem}-{file_key(p, INDEX_VERSION)}"


def build_index(path: str | os.PathLike) -> Path:
    """Read a Bedmap CSV once, in chunks, into its columnar index (reused while the file is unchanged)."""
    from iceviz.geo.crs import lonlat_to_xy

    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"{p}: no such file")
    target = _index_dir(p)
    if (target / "meta.json").is_file():
        return target
    header = read_header(p)
    lonlat = set(REQUIRED_LONLAT) <= set(header.columns)
    wanted = [LINE, THICKNESS] + ([LON, LAT] if lonlat else [X, Y]) + ([SURFACE] if SURFACE in header.columns else [])
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("x", "y", "thickness", "surface", "line")}
    names: dict[str, int] = {}
    rows = 0
    try:
        reader = pd.read_csv(p, skiprows=header.skip, usecols=wanted, dtype={LINE: str}, chunksize=CHUNK_ROWS,
                             skipinitialspace=True)
        for chunk in reader:
            if lonlat:
                x, y = lonlat_to_xy(_clean(chunk[LON]), _clean(chunk[LAT]))
            else:
                x, y = _clean(chunk[X]), _clean(chunk[Y])
            codes = np.array([names.setdefault(str(t), len(names)) for t in chunk[LINE].to_numpy()], dtype=np.int32)
            parts["x"].append(np.asarray(x, dtype=np.float64))
            parts["y"].append(np.asarray(y, dtype=np.float64))
            parts["thickness"].append(_clean(chunk[THICKNESS]).astype(np.float32))
            surface = _clean(chunk[SURFACE]) if SURFACE in chunk else np.full(len(chunk), np.nan)
            parts["surface"].append(surface.astype(np.float32))
            parts["line"].append(codes)
            rows += len(chunk)
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{p}: cannot parse as a Bedmap CSV: {str(exc).strip()}") from None
    if rows == 0:
        raise DataError(f"{p}: a Bedmap CSV with no data rows")
    ok = np.isfinite(np.concatenate(parts["x"])) & np.isfinite(np.concatenate(parts["y"]))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        for k, chunks in parts.items():
            np.save(tmp / f"{k}.npy", np.concatenate(chunks)[ok])
        x, y = np.load(tmp / "x.npy", mmap_mode="r"), np.load(tmp / "y.npy", mmap_mode="r")
        footprint = [float(x.min()), float(x.max()), float(y.min()), float(y.max())] if ok.any() else None
        blocks = [[x[i:i + BLOCK_ROWS].min(), x[i:i + BLOCK_ROWS].max(), y[i:i + BLOCK_ROWS].min(),
                   y[i:i + BLOCK_ROWS].max()] for i in range(0, len(x), BLOCK_ROWS)]
        np.save(tmp / "blocks.npy", np.asarray(blocks, dtype=np.float64).reshape(-1, 4))
        (tmp / "lines.json").write_text(json.dumps(sorted(names, key=names.get)))
        (tmp / "meta.json").write_text(json.dumps({
            "source": str(p), "rows": rows, "points": int(ok.sum()), "footprint": footprint,
            "firn_correction": header.firn_correction, "project": header.metadata.get("project", "")}))
        os.replace(tmp, target)
    except OSError:
        if not (target / "meta.json").is_file():  # another process may have built it meanwhile
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def index_meta(path: str | os.PathLike) -> dict:
    """The index summary of a Bedmap file (built on first use): rows, points, footprint, firn correction."""
    return json.loads((build_index(path) / "meta.json").read_text())


def read_box(paths: list[Path], bounds: Bounds) -> SurveyPoints:
    """Every survey point of ``paths`` inside ``bounds`` (files whose footprint misses the box are not opened)."""
    xmin, xmax, ymin, ymax = bounds
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("x", "y", "thickness", "surface", "line", "file")}
    used: list[Path] = []
    names: list[str] = []
    for path in paths:
        target = build_index(path)
        meta = json.loads((target / "meta.json").read_text())
        fp = meta["footprint"]
        if fp is None or fp[0] > xmax or fp[1] < xmin or fp[2] > ymax or fp[3] < ymin:
            continue
        cols = {k: np.load(target / f"{k}.npy", mmap_mode="r") for k in ("x", "y", "thickness", "surface", "line")}
        file_lines = [f"{Path(path).stem}/{t}" for t in json.loads((target / "lines.json").read_text())]
        blocks = np.load(target / "blocks.npy")
        meets = np.nonzero((blocks[:, 0] <= xmax) & (blocks[:, 1] >= xmin) & (blocks[:, 2] <= ymax)
                           & (blocks[:, 3] >= ymin))[0]
        hits = 0
        for b in meets:
            sl = slice(int(b) * BLOCK_ROWS, (int(b) + 1) * BLOCK_ROWS)
            x, y = cols["x"][sl], cols["y"][sl]
            idx = np.nonzero((x >= xmin) & (x <= xmax) & (y >= ymin) & (y <= ymax))[0] + sl.start
            if idx.size:
                for k in ("x", "y", "thickness", "surface"):
                    parts[k].append(np.asarray(cols[k][idx], dtype=np.float64))
                parts["line"].append(np.asarray(cols["line"][idx], dtype=np.int64) + len(names))
                hits += idx.size
        if hits:
            parts["file"].append(np.full(hits, len(used), dtype=np.int32))
            used.append(Path(path))
            names += file_lines
    if not used:
        return empty_survey()
    cat = {k: np.concatenate(v) for k, v in parts.items()}
    return SurveyPoints(np.column_stack([cat["x"], cat["y"]]), cat["thickness"], cat["surface"], cat["line"],
                        cat["file"], used, names)


def empty_survey() -> SurveyPoints:
    return SurveyPoints(np.empty((0, 2)), np.empty(0), np.empty(0), np.empty(0, dtype=np.int64),
                        np.empty(0, dtype=np.int32), [], [])
