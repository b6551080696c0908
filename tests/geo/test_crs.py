"""EPSG:3031 helpers: round trips, known points, true scale, densified box bounds."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from pyproj import CRS

from iceviz.geo import crs
from iceviz.geo.crs import (
    EPSG3031_WKT,
    bounds_from_lonlat_box,
    box_size_km,
    format_bounds,
    lonlat_box_outline,
    lonlat_to_xy,
    xy_to_lonlat,
)


def test_round_trip_arrays():
    rng = np.random.default_rng(0)
    lon = rng.uniform(-180, 180, 1000)
    lat = rng.uniform(-89.9, -50, 1000)
    x, y = lonlat_to_xy(lon, lat)
    assert x.shape == lon.shape and x.dtype == np.float64
    lon2, lat2 = xy_to_lonlat(x, y)
    np.testing.assert_allclose(lat2, lat, atol=1e-9)
    np.testing.assert_allclose(((lon2 - lon + 180) % 360) - 180, 0, atol=1e-8)


def test_scalars_give_floats():
    x, y = lonlat_to_xy(10, -80)
    assert isinstance(x, float) and isinstance(y, float)
    lon, lat = xy_to_lonlat(x, y)
    assert isinstance(lon, float) and lon == pytest.approx(10) and lat == pytest.approx(-80)


def test_south_pole_is_origin():
    x, y = lonlat_to_xy(0.0, -90.0)
    assert abs(x) < 1e-6 and abs(y) < 1e-6
    _, lat = xy_to_lonlat(0.0, 0.0)
    assert lat == pytest.approx(-90.0)


def test_orientation_lon0_up_lon90e_right():
    x, y = lonlat_to_xy(0.0, -71.0)
    assert abs(x) < 1e-6 and y > 0
    x, y = lonlat_to_xy(90.0, -71.0)
    assert x > 0 and abs(y) < 1e-6
    x, y = lonlat_to_xy(180.0, -71.0)
    assert abs(x) < 1e-6 and y < 0
    x, y = lonlat_to_xy(-90.0, -71.0)
    assert x < 0 and abs(y) < 1e-6


def test_true_scale_at_71s():
    # 1 km east-west at 71°S on the ellipsoid is 1 km in x (k = 1 at the standard parallel).
    from pyproj import Geod

    lon2, lat2, _ = Geod(ellps="WGS84").fwd(0.0, -71.0, 90.0, 1000.0)  # 1 km due east from (0°, 71°S)
    x1, y1 = lonlat_to_xy(0.0, -71.0)
    x2, y2 = lonlat_to_xy(lon2, lat2)
    assert np.hypot(x2 - x1, y2 - y1) == pytest.approx(1000.0, abs=0.01)
    assert x2 - x1 == pytest.approx(1000.0, abs=0.1)
    # ... and the scale factor away from 71°S is not 1 (it is ~0.97 at the pole)
    from pyproj import Proj

    proj = Proj(CRS.from_epsg(3031))
    assert proj.get_factors(0.0, -71.0).parallel_scale == pytest.approx(1.0, abs=1e-9)
    assert proj.get_factors(0.0, -90.0).parallel_scale == pytest.approx(0.9728, abs=1e-3)


def test_wkt_is_3031():
    assert CRS.from_wkt(EPSG3031_WKT).to_epsg() == 3031


def test_box_bounds_contain_densified_edges():
    for box in [(67, 75, -73.5, -69), (-65, -59.5, -69.5, -66.5), (155, -145, -85.5, -77.5), (-180, 180, -90, -60)]:
        b = bounds_from_lonlat_box(*box, n=64)
        lon, lat = lonlat_box_outline(*box, n=400)
        x, y = lonlat_to_xy(lon, lat)
        tol = 1.0  # metres
        assert x.min() >= b[0] - tol and x.max() <= b[1] + tol
        assert y.min() >= b[2] - tol and y.max() <= b[3] + tol
        # and the bounds are tight: the extremes are attained
        assert x.min() == pytest.approx(b[0], abs=50) and y.max() == pytest.approx(b[3], abs=50)


def test_box_bounds_beat_corners():
    # corners alone miss the bulge of the outer parallel (here across lon 180°, at -y)
    b = bounds_from_lonlat_box(155, -145, -85.5, -77.5)
    cx, cy = lonlat_to_xy(np.array([155, 155, 215, 215]), np.array([-85.5, -77.5, -85.5, -77.5]))
    assert b[2] < cy.min() - 10_000
    x180, y180 = lonlat_to_xy(180.0, -77.5)
    assert b[2] == pytest.approx(y180, abs=1.0)


def test_antimeridian_box_matches_unwrapped():
    assert bounds_from_lonlat_box(155, -145, -85.5, -77.5) == bounds_from_lonlat_box(155, 215, -85.5, -77.5)


def test_box_validation():
    with pytest.raises(ValueError):
        bounds_from_lonlat_box(0, 10, -60, -70)
    with pytest.raises(ValueError):
        bounds_from_lonlat_box(0, 10, -95, -70)
    with pytest.raises(ValueError):
        bounds_from_lonlat_box(10, 10, -80, -70)


def test_box_size_and_format():
    b = (400_000.0, 600_000.0, -950_000.0, -750_000.0)
    assert box_size_km(b) == (200.0, 200.0)
    text = format_bounds(b)
    assert "400" in text and "600" in text and "-950" in text and "-750" in text and "200 × 200 km" in text
    assert "66.7" in format_bounds((400_000.0, 466_667.0, 0.0, 1000.0))


def test_cartopy_crs_is_3031():
    pytest.importorskip("cartopy")
    c = crs.cartopy_crs()
    from pyproj import Transformer

    t = Transformer.from_crs("EPSG:4326", CRS.from_user_input(c), always_xy=True)
    xs, ys = t.transform([0.0, 100.0, -160.0], [-71.0, -75.0, -85.0])
    x3, y3 = lonlat_to_xy([0.0, 100.0, -160.0], [-71.0, -75.0, -85.0])
    np.testing.assert_allclose(xs, x3, atol=0.01)
    np.testing.assert_allclose(ys, y3, atol=0.01)


def test_geo_imports_no_heavy_stack():
    code = ("import sys, iceviz.geo, iceviz.geo.basemap, iceviz.geo.graticule, iceviz.geo.regions; "
            "bad = sorted({m.split('.')[0] for m in sys.modules} & "
            "{'torch', 'panel', 'holoviews', 'geoviews', 'bokeh', 'cartopy', 'matplotlib'}); print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
