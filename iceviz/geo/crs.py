"""Antarctic Polar Stereographic (EPSG:3031) helpers, built on pyproj only.

EPSG:3031 is a polar stereographic projection on the WGS84 ellipsoid, centred
on the South Pole, with true scale at 71°S, in metres. Lon 0° points along +y
and lon 90°E along +x (so x = ρ·sin λ, y = ρ·cos λ).

Cartopy's ``SouthPolarStereo()`` default is *not* EPSG:3031 (it has true scale
at the pole, off by a few per cent); :func:`cartopy_crs` returns the right one
if a cartopy CRS is ever needed.

Bounds everywhere in iceviz are ``(xmin, xmax, ymin, ymax)`` in metres.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
from pyproj import CRS, Transformer

__all__ = [
    "EPSG3031",
    "EPSG3031_WKT",
    "Bounds",
    "lonlat_to_xy",
    "xy_to_lonlat",
    "bounds_from_lonlat_box",
    "box_size_km",
    "format_bounds",
    "cartopy_crs",
]

Bounds = tuple[float, float, float, float]

EPSG3031 = "EPSG:3031"
"""The Antarctic Polar Stereographic authority code."""

EPSG3031_WKT: str = CRS.from_epsg(3031).to_wkt()
"""WKT2 of EPSG:3031 (for NetCDF ``crs_wkt`` / ``spatial_ref`` attributes and GIS exports)."""


@functools.cache
def _to_3031() -> Transformer:
    # pyproj >= 3.1 Transformers are thread-safe, so one shared instance is fine.
    return Transformer.from_crs("EPSG:4326", EPSG3031, always_xy=True)


@functools.cache
def _from_3031() -> Transformer:
    return Transformer.from_crs(EPSG3031, "EPSG:4326", always_xy=True)


def lonlat_to_xy(lon: Any, lat: Any) -> tuple[Any, Any]:
    """Longitude / latitude in degrees (WGS84) -> EPSG:3031 ``(x, y)`` in metres.

    Scalars give floats, arrays give float64 arrays of the broadcast shape.
    """
    lon_a, lat_a = np.broadcast_arrays(np.asarray(lon, dtype=float), np.asarray(lat, dtype=float))
    x, y = _to_3031().transform(lon_a, lat_a)
    if np.ndim(x) == 0:
        return float(x), float(y)
    return np.asarray(x, dtype=float), np.asarray(y, dtype=float)


def xy_to_lonlat(x: Any, y: Any) -> tuple[Any, Any]:
    """EPSG:3031 ``(x, y)`` in metres -> ``(lon, lat)`` in degrees, lon in [-180, 180]."""
    x_a, y_a = np.broadcast_arrays(np.asarray(x, dtype=float), np.asarray(y, dtype=float))
    lon, lat = _from_3031().transform(x_a, y_a)
    if np.ndim(lon) == 0:
        return float(lon), float(lat)
    return np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)


def lonlat_box_outline(lon_min: float, lon_max: float, lat_min: float, lat_max: float,
                       n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Closed outline of a lon/lat box as densified lon, lat arrays (degrees).

    ``lon_max < lon_min`` means the box crosses the antimeridian (e.g. 155°E to
    145°W is ``lon_min=155, lon_max=-145``). The returned longitudes are then
    unwrapped (may exceed 180), which pyproj accepts. Each edge gets ``n``
    points; meridian crossings at 0°, ±90°, 180° are added to the parallels so
    that the x / y extremes of the arcs are hit exactly.
    """
    lon_min, lon_max, lat_min, lat_max = (float(v) for v in (lon_min, lon_max, lat_min, lat_max))
    if not all(math.isfinite(v) for v in (lon_min, lon_max, lat_min, lat_max)):
        raise ValueError("lon/lat box must be finite")
    if not (-90.0 <= lat_min < lat_max <= 90.0):
        raise ValueError(f"need -90 <= lat_min < lat_max <= 90, got lat {lat_min}..{lat_max}")
    if n < 2:
        raise ValueError("n must be at least 2")
    if lon_max == lon_min:
        raise ValueError(f"empty longitude range {lon_min}..{lon_max} (use -180, 180 for a full ring)")
    if lon_max < lon_min:
        lon_max += 360.0
    if lon_max - lon_min > 360.0:
        raise ValueError(f"longitude span {lon_max - lon_min}° exceeds 360°")
    lons = np.linspace(lon_min, lon_max, n)
    cardinal = np.arange(math.ceil(lon_min / 90.0), math.floor(lon_max / 90.0) + 1) * 90.0
    lons = np.union1d(lons, cardinal)
    lats = np.linspace(lat_min, lat_max, n)
    edge_lon = np.concatenate([lons, np.full(n, lon_max), lons[::-1], np.full(n, lon_min)])
    edge_lat = np.concatenate([np.full(lons.size, lat_min), lats, np.full(lons.size, lat_max), lats[::-1]])
    return edge_lon, edge_lat


def bounds_from_lonlat_box(lon_min: float, lon_max: float, lat_min: float, lat_max: float,
                           n: int = 64) -> Bounds:
    """EPSG:3031 bounds ``(xmin, xmax, ymin, ymax)`` enclosing a lon/lat box.

    A lon/lat box is an annular sector in polar stereographic, so its corners
    alone are not enough: the edges are densified (``n`` points each, plus the
    cardinal meridians) and all of them are projected. ``lon_max < lon_min``
    means the box crosses the antimeridian.
    """
    lon, lat = lonlat_box_outline(lon_min, lon_max, lat_min, lat_max, n=n)
    x, y = lonlat_to_xy(lon, lat)
    return float(x.min()), float(x.max()), float(y.min()), float(y.max())


def box_size_km(bounds: Bounds) -> tuple[float, float]:
    """``(width_km, height_km)`` of ``(xmin, xmax, ymin, ymax)`` in metres."""
    xmin, xmax, ymin, ymax = (float(b) for b in bounds)
    return (xmax - xmin) / 1000.0, (ymax - ymin) / 1000.0


def _km(v: float) -> str:
    text = f"{v / 1000.0:.1f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def format_bounds(bounds: Bounds) -> str:
    """Human-readable bounds, e.g. ``'x 400 to 600 km, y -950 to -750 km (200 × 200 km)'``."""
    xmin, xmax, ymin, ymax = (float(b) for b in bounds)
    w, h = box_size_km(bounds)
    return (f"x {_km(xmin)} to {_km(xmax)} km, y {_km(ymin)} to {_km(ymax)} km "
            f"({_km(w * 1000)} × {_km(h * 1000)} km)")


def cartopy_crs():
    """A cartopy CRS equal to EPSG:3031 (imports cartopy lazily).

    ``ccrs.SouthPolarStereo(true_scale_latitude=-71)`` on the default WGS84
    globe. Only for plotting libraries that insist on a cartopy CRS; iceviz
    itself works in EPSG:3031 metres through pyproj.
    """
    import cartopy.crs as ccrs  # lazy: cartopy is heavy and optional here

    return ccrs.SouthPolarStereo(true_scale_latitude=-71)
