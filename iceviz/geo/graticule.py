"""Parallels and meridians as EPSG:3031 polylines, with label positions.

Pure numpy / pyproj: the viz layer turns the arrays into paths and text.
In EPSG:3031 parallels are (nearly) circles around the pole at the origin and
meridians are straight rays from it; lon 0° points up (+y), 90°E right (+x).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import numpy as np

from iceviz.geo.crs import lonlat_to_xy

__all__ = ["GraticuleLine", "graticule", "graticule_labels", "format_lat", "format_lon",
           "DEFAULT_LATS", "DEFAULT_LONS"]

DEFAULT_LATS = (-60.0, -70.0, -80.0)
DEFAULT_LONS = tuple(range(-180, 180, 30))


class GraticuleLine(NamedTuple):
    """One polyline: x and y in metres (same length) and its label, e.g. '70°S' or '90°E'."""

    x: np.ndarray
    y: np.ndarray
    label: str


def _num(v: float) -> str:
    return f"{v:.0f}" if float(v).is_integer() else f"{v:g}"


def format_lat(lat: float) -> str:
    """'70°S', '0°', '10°N'."""
    lat = float(lat)
    if lat == 0:
        return "0°"
    return f"{_num(abs(lat))}°{'S' if lat < 0 else 'N'}"


def format_lon(lon: float) -> str:
    """'90°E', '30°W', '0°', '180°' (input wrapped to (-180, 180])."""
    lon = ((float(lon) + 180.0) % 360.0) - 180.0
    if lon == -180.0:
        lon = 180.0
    if lon in (0.0, 180.0):
        return f"{_num(lon)}°"
    return f"{_num(abs(lon))}°{'E' if lon > 0 else 'W'}"


def _check_lats(lats: Iterable[float]) -> list[float]:
    out = [float(v) for v in lats]
    for v in out:
        if not (-90.0 < v < 0.0):
            raise ValueError(f"parallels must lie in (-90, 0) degrees, got {v}")
    return out


def graticule(lats: Iterable[float] = DEFAULT_LATS, lons: Iterable[float] = DEFAULT_LONS, n: int = 200,
              meridian_lats: tuple[float, float] = (-90.0, -60.0)) -> list[GraticuleLine]:
    """Parallels (closed circles, ``n`` points) then meridians (``n`` points from
    ``meridian_lats[1]`` down to ``meridian_lats[0]``) as EPSG:3031 polylines.

    Each item is a :class:`GraticuleLine` ``(x, y, label)``, unpackable as a
    3-tuple.
    """
    if n < 2:
        raise ValueError("n must be at least 2")
    lat_lo, lat_hi = (float(v) for v in meridian_lats)
    if not (-90.0 <= lat_lo < lat_hi < 0.0):
        raise ValueError(f"meridian_lats must satisfy -90 <= lo < hi < 0, got {meridian_lats}")
    lines: list[GraticuleLine] = []
    ring = np.linspace(-180.0, 180.0, n)  # first == last point: closed
    for lat in _check_lats(lats):
        x, y = lonlat_to_xy(ring, np.full(n, lat))
        lines.append(GraticuleLine(x, y, format_lat(lat)))
    along = np.linspace(lat_hi, lat_lo, n)
    for lon in lons:
        x, y = lonlat_to_xy(np.full(n, float(lon)), along)
        lines.append(GraticuleLine(x, y, format_lon(lon)))
    return lines


def graticule_labels(lats: Iterable[float] = DEFAULT_LATS, lons: Iterable[float] = DEFAULT_LONS,
                     parallel_label_lon: float = 15.0, meridian_label_lat: float | None = None,
                     ) -> list[tuple[float, float, str]]:
    """Label anchors ``(x, y, text)`` in metres.

    Parallel labels ("70°S") sit on their parallel at ``parallel_label_lon``
    (default 15°E, between the 0° and 30°E meridians, so text does not sit on
    a line). Meridian labels ("90°E") sit on their meridian at
    ``meridian_label_lat`` (default 3° poleward of the outermost parallel,
    i.e. 63°S, inside the default ±3400 km base map).
    """
    lats = _check_lats(lats)
    lons = [float(v) for v in lons]
    if meridian_label_lat is None:
        meridian_label_lat = (max(lats) if lats else -60.0) - 3.0
    out: list[tuple[float, float, str]] = []
    if lats:
        x, y = lonlat_to_xy(np.full(len(lats), float(parallel_label_lon)), np.asarray(lats))
        out += [(float(a), float(b), format_lat(lat)) for a, b, lat in zip(x, y, lats)]
    if lons:
        x, y = lonlat_to_xy(np.asarray(lons), np.full(len(lons), float(meridian_label_lat)))
        out += [(float(a), float(b), format_lon(lon)) for a, b, lon in zip(x, y, lons)]
    return out
