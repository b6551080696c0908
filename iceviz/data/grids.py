"""Lazy reading of the gridded products: MEaSUREs velocity mosaics and BedMachine Antarctica.

Both are NetCDF files on (y, x) EPSG:3031 grids with y decreasing. A
:class:`GridFile` opens one with xarray on dask chunks, so opening reads only
the coordinate vectors; :meth:`GridFile.read` loads just the cells of a box
(plus a margin for interpolation), :meth:`GridFile.sample` interpolates
bilinearly at points. No-data becomes NaN: MEaSUREs writes 0 for VX, VY where
there is no measurement (and errors 0), BedMachine writes -9999 and zero
thickness outside the ice.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import xarray as xr

from iceviz.data.problem import DataError
from iceviz.files import backend_failure
from iceviz.geo.crs import format_bounds
from iceviz.data.region import Bounds, intersect


@dataclass(frozen=True)
class GridLayout:
    """What a gridded product's file must hold."""

    product: str
    name: str
    required: tuple[str, ...]
    spacing_m: float


MEASURES_INSAR = GridLayout("measures-insar", "MEaSUREs InSAR-based velocity (NSIDC-0484 v2)",
                            ("VX", "VY", "ERRX", "ERRY", "CNT"), 450.0)
MEASURES_PHASE = GridLayout("measures-phase", "MEaSUREs phase-based velocity (NSIDC-0754)", ("VX", "VY"), 450.0)
BEDMACHINE = GridLayout("bedmachine", "BedMachine Antarctica (NSIDC-0756)",
                        ("thickness", "surface", "bed", "mask", "firn", "errbed", "source"), 500.0)
GRID_LAYOUTS = {g.product: g for g in (MEASURES_INSAR, MEASURES_PHASE, BEDMACHINE)}
NO_DATA = -9999.0


NETCDF_LOCK = threading.RLock()
"""Every NetCDF open, read and close of the products goes through this lock, and dask runs the reads in the
holding thread: the netCDF-C / HDF5 libraries are not thread-safe, and the app reads from several threads
(a box built in the background while the speed map is prepared) — two opens at once crashed the process."""

DASK_BLOCK = 2048
"""Dask block side for files stored contiguously (the distributed mosaics are not chunked on disk)."""


def _dask_chunks(ds: xr.Dataset) -> dict[str, int] | None:
    """The on-disk chunks of the first 2-D variable, or ``DASK_BLOCK`` blocks when the file is contiguous."""
    for var in ds.data_vars.values():
        if var.dims == ("y", "x"):
            sizes = var.encoding.get("chunksizes")
            return dict(zip(("y", "x"), sizes)) if sizes else {"y": DASK_BLOCK, "x": DASK_BLOCK}
    return None


def velocity_no_data(vx, vy):
    """Where a MEaSUREs mosaic has no measurement: VX = VY = 0 (numpy or xarray arrays)."""
    return (vx == 0) & (vy == 0)


def open_netcdf(path: str | os.PathLike) -> xr.Dataset:
    """Open lazily on dask blocks that follow the file's own chunks (DataError naming the file for a missing,
    truncated or foreign file)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"{p}: no such file")
    try:
        with NETCDF_LOCK:
            ds = xr.open_dataset(p, decode_times=False)
            chunks = _dask_chunks(ds)
            if chunks is None:
                return ds
            lazy = ds.chunk(chunks)  # dask over the same open file: opened once
            lazy.set_close(ds.close)
            return lazy
    except Exception as exc:  # noqa: BLE001 - every backend raises its own type for a bad file
        raise DataError(f"{p}: cannot read as NetCDF (truncated or not a NetCDF file?): "
                        f"{backend_failure(exc)}") from None


def _axis(ds: xr.Dataset, name: str, path: Path) -> np.ndarray:
    if name not in ds.coords and name not in ds.variables:
        raise DataError(f"{path}: no {name} coordinate; expected 1-D x and y in EPSG:3031 metres")
    values = np.asarray(ds[name].values, dtype=np.float64)
    if values.ndim != 1 or values.size < 2:
        raise DataError(f"{path}: coordinate {name} has shape {values.shape}, expected a 1-D vector of 2 or more")
    step = np.diff(values)
    if not (np.all(step > 0) or np.all(step < 0)) or not np.allclose(step, step[0], rtol=1e-6, atol=1e-3):
        raise DataError(f"{path}: coordinate {name} is not evenly spaced and monotonic")
    return values


class GridFile:
    """One gridded product file, opened lazily."""

    def __init__(self, path: str | os.PathLike, layout: GridLayout):
        self.path = Path(path).expanduser()
        self.layout = layout
        self.ds = open_netcdf(self.path)
        missing = [v for v in layout.required if v not in self.ds.data_vars]
        if missing:
            found = ", ".join(map(str, self.ds.data_vars)) or "(none)"
            self.close()
            raise DataError(f"{self.path}: not a {layout.name} file: missing variable(s) {', '.join(missing)}; "
                            f"found: {found}")
        for name in layout.required:
            if self.ds[name].dims != ("y", "x"):
                self.close()
                raise DataError(f"{self.path}: variable {name} has dimensions {self.ds[name].dims}, expected (y, x)")
        with NETCDF_LOCK:
            self.x = _axis(self.ds, "x", self.path)
            self.y = _axis(self.ds, "y", self.path)
        self.spacing = float(abs(self.x[1] - self.x[0]))

    def close(self) -> None:
        with NETCDF_LOCK:
            self.ds.close()

    def __enter__(self) -> "GridFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.y), len(self.x)

    @property
    def footprint(self) -> Bounds:
        """Outer cell edges (xmin, xmax, ymin, ymax), metres."""
        h = self.spacing / 2
        return (float(self.x.min()) - h, float(self.x.max()) + h, float(self.y.min()) - h, float(self.y.max()) + h)

    def window(self, bounds: Bounds, pad: int = 2) -> tuple[slice, slice]:
        """Index slices (rows, columns) of the cells covering ``bounds`` plus ``pad`` cells (DataError outside)."""
        if intersect(bounds, self.footprint) is None:
            raise DataError(f"{self.path}: the box {format_bounds(bounds)} lies outside the file's grid "
                            f"({format_bounds(self.footprint)})")

        def span(axis: np.ndarray, lo: float, hi: float) -> slice:
            idx = np.nonzero((axis >= lo - self.spacing) & (axis <= hi + self.spacing))[0]
            return slice(max(int(idx.min()) - pad, 0), min(int(idx.max()) + pad + 1, axis.size))

        return span(self.y, bounds[2], bounds[3]), span(self.x, bounds[0], bounds[1])

    def read(self, bounds: Bounds, names: tuple[str, ...], pad: int = 2) -> xr.Dataset:
        """The variables ``names`` over the box (+ ``pad`` cells), loaded as float64 with y increasing, no-data NaN."""
        rows, cols = self.window(bounds, pad)
        missing = [n for n in names if n not in self.ds.data_vars]
        if missing:
            raise DataError(f"{self.path}: no variable(s) {', '.join(missing)}")
        box = self.ds[list(names)].isel(y=rows, x=cols)
        with NETCDF_LOCK:
            box = box.load(scheduler="synchronous")
        out = {}
        for n in names:
            a = box[n].values.astype(np.float64)
            a[a == NO_DATA] = np.nan
            out[n] = (("y", "x"), a)
        ds = xr.Dataset(out, coords={"x": self.x[cols], "y": self.y[rows]})
        if self.layout.product in (MEASURES_INSAR.product, MEASURES_PHASE.product) and {"VX", "VY"} <= set(names):
            ds = ds.where(~velocity_no_data(ds["VX"], ds["VY"]))
        return ds.sortby("y")

    def sampler(self, bounds: Bounds, names: tuple[str, ...]) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
        """Read ``names`` over the box once; the returned function interpolates them bilinearly at points
        (N, 2) inside it, NaN where any neighbour is no-data or the point is off the grid."""
        from scipy.interpolate import RegularGridInterpolator

        ds = self.read(bounds, names)
        grids = {n: RegularGridInterpolator((ds["y"].values, ds["x"].values), ds[n].values, method="linear",
                                            bounds_error=False, fill_value=np.nan) for n in names}

        def at(xy: np.ndarray) -> dict[str, np.ndarray]:
            yx = np.column_stack([xy[:, 1], xy[:, 0]])
            return {n: f(yx) if len(xy) else np.empty(0) for n, f in grids.items()}

        return at

    def sample(self, xy: np.ndarray, names: tuple[str, ...]) -> dict[str, np.ndarray]:
        """Bilinear values of ``names`` at points ``xy`` (N, 2), metres (see :meth:`sampler`)."""
        if len(xy) == 0:
            return {n: np.empty(0) for n in names}
        bounds = (float(xy[:, 0].min()), float(xy[:, 0].max()), float(xy[:, 1].min()), float(xy[:, 1].max()))
        return self.sampler(bounds, names)(xy)
