"""Offline base map: grid, colours in the right places, memory and disk caches."""

from __future__ import annotations

import numpy as np
import pytest

from iceviz.geo import basemap as bm
from iceviz.geo.crs import lonlat_to_xy

COARSE = 20_000.0  # 340 x 340 px: fast enough to build several times


@pytest.fixture
def cache(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("ICEVIZ_CACHE", str(d))
    bm.clear_memory_cache()
    yield d
    bm.clear_memory_cache()


def _pixel(b, x, y):
    i = int(np.searchsorted(b.y, y))
    j = int(np.searchsorted(b.x, x))
    return b.rgb[min(i, b.y.size - 1), min(j, b.x.size - 1)].astype(int)


def test_source_is_bundled_with_cartopy():
    p = bm.source_path()
    assert p.is_file() and p.name == "50-natural-earth-1-downsampled.png"


def test_default_grid(cache):
    b = bm.basemap()
    assert b.rgb.shape == (1360, 1360, 3) and b.rgb.dtype == np.uint8
    assert b.x.shape == (1360,) and b.y.shape == (1360,)
    assert np.all(np.diff(b.x) == pytest.approx(5000.0)) and np.all(np.diff(b.y) > 0)
    assert b.bounds == (-3.4e6, 3.4e6, -3.4e6, 3.4e6)
    assert b.x[0] == pytest.approx(-3.4e6 + 2500) and b.y[-1] == pytest.approx(3.4e6 - 2500)
    assert b.image.shape == b.rgb.shape and np.array_equal(b.image[0], b.rgb[-1])
    assert not b.rgb.flags.writeable


def test_colours_ice_and_ocean(cache):
    b = bm.basemap(COARSE)
    ice = [_pixel(b, 0, 0), _pixel(b, *lonlat_to_xy(90.0, -80.0)), _pixel(b, *lonlat_to_xy(-110.0, -80.0))]
    for px in ice:  # the pole, East and West Antarctic ice: near white
        assert px.min() > 200, px
    for lon in (0.0, 90.0, 180.0, -90.0):  # Southern Ocean at 60°S: blue
        r, g, bl = _pixel(b, *lonlat_to_xy(lon, -60.0))
        assert bl > r + 40, (lon, r, g, bl)
    # the Antarctic Peninsula (land, 64°S 60°W) is brighter than the sea west of it (64°S 75°W)
    assert _pixel(b, *lonlat_to_xy(-60.0, -64.0))[0] > _pixel(b, *lonlat_to_xy(-75.0, -64.0))[0] + 40


def test_disk_cache_reused_across_processes(cache, monkeypatch):
    first = bm.basemap(COARSE)
    files = list(cache.glob("*.npz"))
    assert len(files) == 1 and not list(cache.glob("*.tmp"))
    assert bm.basemap(COARSE) is first  # memory cache
    bm.clear_memory_cache()  # as in a fresh process: only the disk cache is left

    def boom(*a, **k):
        raise AssertionError("should have been read from the disk cache")

    monkeypatch.setattr(bm, "_reproject", boom)
    second = bm.basemap(COARSE)
    assert second is not first and np.array_equal(second.rgb, first.rgb)
    np.testing.assert_array_equal(second.x, first.x)


def test_corrupt_cache_is_rebuilt(cache):
    first = bm.basemap(COARSE)
    (path,) = cache.glob("*.npz")
    path.write_bytes(b"not an npz")
    bm.clear_memory_cache()
    again = bm.basemap(COARSE)
    assert np.array_equal(again.rgb, first.rgb)
    with np.load(path) as f:  # rewritten
        assert f["rgb"].shape == first.rgb.shape


def test_unwritable_cache_dir_just_computes(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("ICEVIZ_CACHE", str(blocker / "cache"))  # cannot mkdir under a file
    bm.clear_memory_cache()
    try:
        b = bm.basemap(40_000.0)
        assert b.rgb.shape == (170, 170, 3)
    finally:
        bm.clear_memory_cache()


def test_bad_arguments():
    with pytest.raises(ValueError):
        bm.basemap(0)
    with pytest.raises(ValueError):
        bm.basemap(100.0)  # 68000 px wide: refused
