"""Graticule polylines lie on their parallels / meridians; labels are placed and named right."""

from __future__ import annotations

import numpy as np
import pytest

from iceviz.geo.crs import lonlat_to_xy, xy_to_lonlat
from iceviz.geo.graticule import format_lat, format_lon, graticule, graticule_labels


def test_default_lines_and_labels():
    lines = graticule()
    labels = [line.label for line in lines]
    assert labels[:3] == ["60°S", "70°S", "80°S"]
    assert labels[3:] == ["180°", "150°W", "120°W", "90°W", "60°W", "30°W", "0°",
                          "30°E", "60°E", "90°E", "120°E", "150°E"]
    for x, y, label in lines:  # plain 3-tuples
        assert x.shape == y.shape == (200,) and isinstance(label, str)


def test_parallels_on_their_latitude_and_closed():
    for x, y, label in graticule(lats=(-60, -71.5, -85), lons=()):
        lat_expected = -float(label.rstrip("°S"))
        _, lat = xy_to_lonlat(x, y)
        np.testing.assert_allclose(lat, lat_expected, atol=1e-9)
        assert abs(x[0] - x[-1]) < 1e-6 and abs(y[0] - y[-1]) < 1e-6
        r = np.hypot(x, y)  # a circle about the pole
        assert r.std() < 1e-6 * r.mean()


def test_meridians_on_their_longitude():
    lines = graticule(lats=(), lons=(-150, 0, 45, 90), n=50)
    for (x, y, label), lon_expected in zip(lines, (-150, 0, 45, 90)):
        lon, lat = xy_to_lonlat(x[:-1], y[:-1])  # skip the pole, where lon is undefined
        np.testing.assert_allclose(((lon - lon_expected + 180) % 360) - 180, 0, atol=1e-9)
        assert lat[0] == pytest.approx(-60.0) and np.all(np.diff(lat) < 0)
        assert abs(x[-1]) < 1e-6 and abs(y[-1]) < 1e-6  # ends at the pole
    x, y, _ = lines[1]  # 0° runs along +y
    assert np.all(np.abs(x) < 1e-6) and np.all(y[:-1] > 0)


def test_labels():
    labels = graticule_labels()
    texts = [t for _, _, t in labels]
    assert texts[:3] == ["60°S", "70°S", "80°S"] and "90°E" in texts and "180°" in texts
    for x, y, text in labels:
        lon, lat = xy_to_lonlat(x, y)
        if text.endswith("S"):
            assert lat == pytest.approx(-float(text[:-2])) and lon == pytest.approx(15.0)
        else:
            assert lat == pytest.approx(-63.0)
            assert max(abs(x), abs(y)) < 3.4e6  # inside the default base map
    x90, y90, _ = next(lab for lab in labels if lab[2] == "90°E")
    assert (x90, y90) == pytest.approx(lonlat_to_xy(90.0, -63.0))


def test_formatting():
    assert format_lat(-70) == "70°S" and format_lat(-72.5) == "72.5°S" and format_lat(0) == "0°"
    assert format_lon(-180) == "180°" and format_lon(180) == "180°" and format_lon(0) == "0°"
    assert format_lon(90) == "90°E" and format_lon(-30) == "30°W" and format_lon(330) == "30°W"


def test_validation():
    with pytest.raises(ValueError):
        graticule(lats=(10,))
    with pytest.raises(ValueError):
        graticule(n=1)
