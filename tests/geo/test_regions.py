"""Preset regions: bounds recomputed from their documented lon/lat with pyproj."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from iceviz.geo.crs import bounds_from_lonlat_box, lonlat_to_xy, xy_to_lonlat
from iceviz.geo.regions import KINDS, PRESET_REGIONS, Region, get_region, region_keys, subregions


def _outward_km(b):
    return (math.floor(b[0] / 1e3) * 1e3, math.ceil(b[1] / 1e3) * 1e3,
            math.floor(b[2] / 1e3) * 1e3, math.ceil(b[3] / 1e3) * 1e3)


def test_presets_sane():
    assert {"byrd", "byrd-upper", "byrd-mid", "byrd-lower", "pine-island", "thwaites", "amery", "larsen-c",
            "ross"} <= set(PRESET_REGIONS)
    for key, r in PRESET_REGIONS.items():
        assert r.key == key and r.kind in KINDS and r.name and r.description and r.source
        xmin, xmax, ymin, ymax = r.bounds
        assert xmin < xmax and ymin < ymax
        w, h = r.size_km
        assert 50 <= w <= 1500 and 50 <= h <= 1500, (key, w, h)
        # well inside the Antarctic projection domain
        assert max(abs(v) for v in r.bounds) < 3.4e6
        if r.parent is not None:
            assert r.parent in PRESET_REGIONS


def test_byrd_is_the_mcor_box():
    r = get_region("byrd")
    assert r.bounds == (400_000.0, 600_000.0, -950_000.0, -750_000.0)
    assert r.kind == "grounded" and r.size_km == (200.0, 200.0)
    lon, lat = r.centre_lonlat
    assert lon == pytest.approx(149.53, abs=0.05) and lat == pytest.approx(-80.94, abs=0.05)


def test_byrd_subregions_tile_the_box_along_flow():
    byrd = get_region("byrd")
    subs = subregions("byrd")
    assert [s.key for s in subs] == ["byrd-upper", "byrd-mid", "byrd-lower"]
    for s in subs:
        assert s.parent == "byrd" and s.kind == "grounded"
        xmin, xmax, ymin, ymax = s.bounds
        assert byrd.bounds[0] <= xmin < xmax <= byrd.bounds[1]
        assert (ymin, ymax) == byrd.bounds[2:]
        w, h = s.size_km
        assert w == pytest.approx(200 / 3, abs=0.01) and h == 200.0
    # tiling: sorted strips touch edge to edge and cover x 400-600 km, areas add up
    strips = sorted(s.bounds for s in subs)
    assert strips[0][0] == byrd.bounds[0] and strips[-1][1] == byrd.bounds[1]
    for a, b in zip(strips, strips[1:]):
        assert a[1] == b[0]
    assert sum(s.size_km[0] * s.size_km[1] for s in subs) == pytest.approx(200 * 200)
    # upper = high x (plateau side), lower = low x (towards the Ross Ice Shelf, flow is to -x)
    assert get_region("byrd-upper").bounds[1] == 600_000.0
    assert get_region("byrd-lower").bounds[0] == 400_000.0
    # a point is in exactly one strip
    rng = np.random.default_rng(1)
    x = rng.uniform(400_000, 600_000, 500)
    y = rng.uniform(-950_000, -750_000, 500)
    counts = sum(s.contains(x, y).astype(int) for s in subs)
    assert np.all(counts >= 1) and np.mean(counts == 1) > 0.99


@pytest.mark.parametrize("key,lon,lat", [("pine-island", -100.0, -75.1), ("thwaites", -106.75, -75.5)])
def test_glacier_squares_centred_on_feature(key, lon, lat):
    r = get_region(key)
    x, y = lonlat_to_xy(lon, lat)
    cx, cy = r.centre
    assert abs(cx - x) <= 1000 and abs(cy - y) <= 1000  # centre rounded to the km
    assert r.size_km == (150.0, 150.0)
    clon, clat = r.centre_lonlat
    assert clon == pytest.approx(lon, abs=0.05) and clat == pytest.approx(lat, abs=0.02)
    assert r.kind == "mixed"


def test_pine_island_roughly_where_expected():
    cx, cy = get_region("pine-island").centre
    assert cx == pytest.approx(-1.6e6, abs=0.1e6) and cy == pytest.approx(-0.3e6, abs=0.1e6)


@pytest.mark.parametrize("key,box", [
    ("amery", (67.0, 75.0, -73.5, -69.0)),
    ("larsen-c", (-65.0, -59.5, -69.5, -66.5)),
    ("ross", (155.0, -145.0, -85.5, -77.5)),
])
def test_shelf_boxes_from_lonlat(key, box):
    r = get_region(key)
    assert r.kind == "shelf"
    assert r.bounds == _outward_km(bounds_from_lonlat_box(*box))
    # the box centre maps back inside the lon/lat box, near its middle
    lon, lat = r.centre_lonlat
    lon_min, lon_max, lat_min, lat_max = box
    if lon_max < lon_min:
        lon_max += 360.0
        lon = lon % 360.0
    assert lon_min < lon < lon_max and lat_min < lat < lat_max
    assert abs(lon - (lon_min + lon_max) / 2) < 0.25 * (lon_max - lon_min)
    assert abs(lat - (lat_min + lat_max) / 2) < 0.25 * (lat_max - lat_min)


def test_amery_roughly_where_expected():
    cx, cy = get_region("amery").centre
    assert cx == pytest.approx(2.0e6, abs=0.15e6) and cy == pytest.approx(0.7e6, abs=0.15e6)


def test_ross_crosses_antimeridian():
    r = get_region("ross")
    # lon 180° is the -y axis: the box straddles x = 0 below the pole
    assert r.bounds[0] < 0 < r.bounds[1] and r.bounds[3] < 0
    assert r.contains(*lonlat_to_xy(180.0, -81.0))
    assert r.contains(*lonlat_to_xy(-170.0, -81.0)) and r.contains(*lonlat_to_xy(170.0, -81.0))


def test_get_region_errors_list_keys():
    assert get_region("Pine_Island") is PRESET_REGIONS["pine-island"]
    with pytest.raises(ValueError) as info:
        get_region("atlantis")
    for key in region_keys():
        assert key in str(info.value)


def test_region_frozen_and_validated():
    r = get_region("byrd")
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.name = "x"  # type: ignore[misc]
    with pytest.raises(ValueError):
        Region("a", "a", (1, 0, 0, 1), "shelf", "d")
    with pytest.raises(ValueError):
        Region("a", "a", (0, 1, 0, 1), "floating", "d")
    assert xy_to_lonlat(*r.centre) == r.centre_lonlat
