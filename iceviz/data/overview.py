"""Ice speed from a velocity mosaic at the resolution a map needs, in bounded memory.

A continental mosaic is 12,445² cells: too many to send to a browser, and
too slow to read at every zoom. :class:`SpeedPyramid` keeps coarse levels
(mean speed over f × f blocks, NaN where a block has no valid cell), computed
once with dask block by block and cached on disk beside the other caches
(keyed by the file's path, size and modification time); the finest level is
the file itself, read lazily for the box in view. :meth:`SpeedPyramid.view`
picks the coarsest level that still resolves the requested pixel size.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from iceviz.cache import cache_dir, file_key, write_npz
from iceviz.data.grids import GRID_LAYOUTS, NETCDF_LOCK, GridFile, velocity_no_data
from iceviz.data.region import Bounds, intersect

FACTORS = (16, 4)
"""Coarse levels, coarsest first: about 7.2 km and 1.8 km cells for the 450 m mosaics."""
CACHE_VERSION = 1


def _cache_path(path: Path, factor: int) -> Path:
    return cache_dir() / "speed" / f"{path.stem}-{factor}-{file_key(path, factor, CACHE_VERSION)}.npz"


def coarse_speed(grid: GridFile, factor: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean valid speed over ``factor`` × ``factor`` blocks: (x, y increasing, speed (ny, nx) float32)."""
    import xarray as xr

    ds = grid.ds[["VX", "VY"]]
    vx, vy = ds["VX"], ds["VY"]
    speed = np.hypot(vx, vy).where(~velocity_no_data(vx, vy))
    coarse = speed.coarsen(y=factor, x=factor, boundary="trim").mean()
    with NETCDF_LOCK:  # the reads stay in this thread (see iceviz.data.grids.NETCDF_LOCK)
        values = coarse.astype(np.float32).compute(scheduler="synchronous").values
    xs = grid.x[: (len(grid.x) // factor) * factor].reshape(-1, factor).mean(axis=1)
    ys = grid.y[: (len(grid.y) // factor) * factor].reshape(-1, factor).mean(axis=1)
    out = xr.DataArray(values, dims=("y", "x"), coords={"x": xs, "y": ys}).sortby("y")
    return out["x"].values, out["y"].values, out.values


class SpeedPyramid:
    """Speed of one velocity file at several resolutions (see the module doc)."""

    def __init__(self, path: str | os.PathLike, product: str = "measures-insar"):
        self.path = Path(path)
        self.grid = GridFile(self.path, GRID_LAYOUTS[product])
        self.levels: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def close(self) -> None:
        self.grid.close()

    @property
    def footprint(self) -> Bounds:
        return self.grid.footprint

    def level(self, factor: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A coarse level (x, y, speed), from memory, the disk cache, or computed and cached."""
        if factor in self.levels:
            return self.levels[factor]
        cache = _cache_path(self.path, factor)
        try:
            with np.load(cache) as z:
                found = (z["x"], z["y"], z["speed"])
        except (OSError, ValueError, KeyError):
            found = coarse_speed(self.grid, factor)
            write_npz(cache, x=found[0], y=found[1], speed=found[2])  # unwritable: computed again next time
        self.levels[factor] = found
        return found

    @property
    def ready(self) -> bool:
        """True when every coarse level is in memory or in the disk cache (no long computation ahead)."""
        return all(f in self.levels or _cache_path(self.path, f).is_file() for f in FACTORS)

    def prepare(self) -> dict[str, float]:
        """Compute (or load) every coarse level; returns their sizes for the record."""
        return {f"level_{f}": float(self.level(f)[2].nbytes) for f in FACTORS}

    def view(self, bounds: Bounds, pixels: int = 800) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """(x, y, speed, factor) over ``bounds`` at the coarsest level whose cells are no larger than the
        box's longer side / ``pixels`` (factor 1 = the file's own cells, read lazily for the box)."""
        box = intersect(bounds, self.footprint)
        if box is None:
            return np.empty(0), np.empty(0), np.empty((0, 0), np.float32), FACTORS[0]
        want = max(box[1] - box[0], box[3] - box[2]) / pixels
        for factor in FACTORS:
            if factor * self.grid.spacing <= want * 1.5:
                x, y, speed = self.level(factor)
                cx = np.nonzero((x >= box[0]) & (x <= box[1]))[0]
                cy = np.nonzero((y >= box[2]) & (y <= box[3]))[0]
                if cx.size == 0 or cy.size == 0:
                    return np.empty(0), np.empty(0), np.empty((0, 0), np.float32), factor
                sl = (slice(cy[0], cy[-1] + 1), slice(cx[0], cx[-1] + 1))
                return x[sl[1]], y[sl[0]], speed[sl], factor
        ds = self.grid.read(box, ("VX", "VY"), pad=0)
        speed = np.hypot(ds["VX"].values, ds["VY"].values).astype(np.float32)
        return ds["x"].values, ds["y"].values, speed, 1
