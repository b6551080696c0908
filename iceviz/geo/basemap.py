"""An offline base map of Antarctica in EPSG:3031.

Source: the low-resolution Natural Earth I shaded-relief raster that ships
inside cartopy (``cartopy/data/raster/natural_earth/50-natural-earth-1-downsampled.png``,
720 x 360 px, equirectangular, lon -180..180, lat 90..-90, 0.5° per pixel;
Natural Earth data is public domain). No network is needed, ever.

The image is reprojected by inverse mapping: for every output pixel centre
(x, y) of an EPSG:3031 grid, pyproj gives (lon, lat) and the source image is
sampled bilinearly (periodic in longitude). 0.5° of latitude is about 55 km,
so the result is a soft picture of the continent and the Southern Ocean, fine
as a backdrop for regional overlays but not a coastline product.

The result is cached in memory and on disk (``$ICEVIZ_CACHE``, else
``$XDG_CACHE_HOME/iceviz``, else ``~/.cache/iceviz``) as an ``.npz`` written
atomically; an unwritable cache directory just means recomputing.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from pathlib import Path

import numpy as np

from iceviz.geo.crs import Bounds, xy_to_lonlat
from iceviz.cache import cache_dir, write_npz

__all__ = ["BaseMap", "basemap", "source_path", "cache_dir", "clear_memory_cache", "DEFAULT_EXTENT_M"]

DEFAULT_EXTENT_M = 3_400_000.0
"""Half-width of the default grid: x and y in ±3400 km (the continent plus the Southern Ocean)."""

_CACHE_VERSION = 1
_SOURCE_NAME = "50-natural-earth-1-downsampled.png"


@dataclasses.dataclass(frozen=True, eq=False)
class BaseMap:
    """A reprojected RGB base map on a regular EPSG:3031 grid.

    rgb : (ny, nx, 3) uint8, read-only. Row ``i`` is at ``y[i]`` and ``y``
        increases, so row 0 is the *southern-most in y* (bottom) row: pass
        ``(x, y, rgb)`` to a coordinate-aware plot, or use :attr:`image` for
        a top-down image with :attr:`bounds`.
    x : (nx,) pixel-centre x in metres, increasing.
    y : (ny,) pixel-centre y in metres, increasing.
    bounds : (xmin, xmax, ymin, ymax) of the outer pixel edges, metres.
    resolution_m : pixel size in metres.
    source : file the picture was made from.
    """

    rgb: np.ndarray
    x: np.ndarray
    y: np.ndarray
    bounds: Bounds
    resolution_m: float
    source: str

    @property
    def image(self) -> np.ndarray:
        """``rgb`` with the top (largest y) row first, for image-style APIs."""
        return self.rgb[::-1]

    @property
    def shape(self) -> tuple[int, int]:
        """(ny, nx)."""
        return self.rgb.shape[0], self.rgb.shape[1]


def source_path() -> Path:
    """Path of cartopy's bundled Natural Earth raster (found without importing cartopy)."""
    import importlib.util

    spec = importlib.util.find_spec("cartopy")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("cartopy is not installed: the offline base map needs its bundled raster")
    for loc in spec.submodule_search_locations:
        path = Path(loc) / "data" / "raster" / "natural_earth" / _SOURCE_NAME
        if path.is_file():
            return path
    raise FileNotFoundError(f"{_SOURCE_NAME} not found in the cartopy package")


def _grid(resolution_m: float, extent_m: float) -> tuple[np.ndarray, Bounds]:
    n = max(1, int(round(2.0 * extent_m / resolution_m)))
    half = n * resolution_m / 2.0
    centres = -half + resolution_m * (np.arange(n) + 0.5)
    return centres, (-half, half, -half, half)


def _load_source(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def _reproject(src: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Sample the equirectangular ``src`` (lat 90..-90 rows, lon -180..180 cols) at the EPSG:3031 grid."""
    h, w, _ = src.shape
    xx, yy = np.meshgrid(x, y)
    lon, lat = xy_to_lonlat(xx.ravel(), yy.ravel())
    # fractional source pixel coordinates, pixel centres at integers
    col = (lon + 180.0) / 360.0 * w - 0.5
    row = (90.0 - lat) / 180.0 * h - 0.5
    row = np.clip(row, 0.0, h - 1.0)
    c0 = np.floor(col)
    r0 = np.floor(row)
    fc = (col - c0)[:, None].astype(np.float32)
    fr = (row - r0)[:, None].astype(np.float32)
    c0 = c0.astype(np.int64) % w
    c1 = (c0 + 1) % w
    r0 = r0.astype(np.int64)
    r1 = np.minimum(r0 + 1, h - 1)
    s = src.astype(np.float32)
    top = s[r0, c0] * (1 - fc) + s[r0, c1] * fc
    bot = s[r1, c0] * (1 - fc) + s[r1, c1] * fc
    out = top * (1 - fr) + bot * fr
    return np.clip(np.rint(out), 0, 255).astype(np.uint8).reshape(y.size, x.size, 3)


def _cache_file(src: Path, resolution_m: float, extent_m: float) -> Path:
    st = src.stat()
    key = f"v{_CACHE_VERSION}|{src.name}|{st.st_size}|{resolution_m:.6g}|{extent_m:.6g}"
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    return cache_dir() / f"basemap-3031-{int(round(resolution_m))}m-{digest}.npz"


def _read_cache(path: Path, nx: int) -> np.ndarray | None:
    try:
        with np.load(path, allow_pickle=False) as f:
            rgb = f["rgb"]
    except Exception:  # missing, truncated or foreign file: recompute
        return None
    if rgb.dtype != np.uint8 or rgb.shape != (nx, nx, 3):
        return None
    return rgb


def _write_cache(path: Path, rgb: np.ndarray) -> bool:
    return write_npz(path, rgb=rgb)


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


@functools.lru_cache(maxsize=8)
def _basemap_cached(resolution_m: float, extent_m: float, cache_root: str) -> BaseMap:
    del cache_root  # part of the memory-cache key only, so a changed $ICEVIZ_CACHE is honoured
    src_path = source_path()
    x, bounds = _grid(resolution_m, extent_m)
    path = _cache_file(src_path, resolution_m, extent_m)
    rgb = _read_cache(path, x.size)
    if rgb is None:
        rgb = _reproject(_load_source(src_path), x, x)
        _write_cache(path, rgb)
    return BaseMap(rgb=_readonly(rgb), x=_readonly(x.copy()), y=_readonly(x.copy()), bounds=bounds,
                   resolution_m=resolution_m, source=str(src_path))


def basemap(resolution_m: float = 5000, extent_m: float = DEFAULT_EXTENT_M) -> BaseMap:
    """Natural Earth shaded relief on an EPSG:3031 grid of ``resolution_m`` pixels over ±``extent_m``.

    The default (5 km, ±3400 km) is 1360 x 1360 px. Cached in memory and on
    disk; the returned arrays are read-only (copy before editing).
    """
    resolution_m = float(resolution_m)
    extent_m = float(extent_m)
    if not (np.isfinite(resolution_m) and resolution_m > 0):
        raise ValueError(f"resolution_m must be positive, got {resolution_m}")
    if not (np.isfinite(extent_m) and extent_m > 0):
        raise ValueError(f"extent_m must be positive, got {extent_m}")
    n = 2.0 * extent_m / resolution_m
    if n > 8000:
        raise ValueError(f"{n:.0f} x {n:.0f} px is too large; the source is only 0.5° per pixel")
    return _basemap_cached(resolution_m, extent_m, str(cache_dir()))


def clear_memory_cache() -> None:
    """Forget the in-memory base maps (the disk cache stays)."""
    _basemap_cached.cache_clear()
