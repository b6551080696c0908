"""The speed pyramid: block means that skip no-data, level choice by zoom, the disk cache; the rendered image."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from iceviz.data import overview
from iceviz.data.overview import FACTORS, SpeedPyramid, coarse_speed
from iceviz.data.product_files import measures_axes, write_measures


@pytest.fixture
def mosaic(tmp_path, data_home):
    """A 640 x 640 mosaic at 450 m: speed = hypot(3, 4) = 5 m/yr times 1 + x / 288 km, a no-data corner."""
    x, y = measures_axes((0.0, 639 * 450.0, 0.0, 639 * 450.0))
    xx, yy = np.meshgrid(x, y)
    factor = 1 + xx / 288_000.0
    vx, vy = 3.0 * factor, 4.0 * factor
    vx[:40, :40] = vy[:40, :40] = np.nan  # top-left 40 x 40 cells: no data (written as 0, 0)
    path = write_measures(tmp_path / "v.nc", x, y, vx, vy, latlon=False, chunk=128)
    return path, x, y, np.hypot(vx, vy)


def test_coarse_levels_are_block_means_of_valid_cells(mosaic):
    path, x, y, speed = mosaic
    pyramid = SpeedPyramid(path)
    cx, cy, coarse = coarse_speed(pyramid.grid, 16)
    assert coarse.shape == (40, 40) and np.all(np.diff(cy) > 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the all-no-data blocks
        expected = np.nanmean(speed[::-1].reshape(40, 16, 40, 16), axis=(1, 3))  # y increasing, as returned
    blocks_nan = np.isnan(speed[::-1]).reshape(40, 16, 40, 16).all(axis=(1, 3))
    assert np.array_equal(np.isnan(coarse), blocks_nan) and blocks_nan.sum() == 4  # 40 x 40 no-data cells: 2 x 2 whole blocks
    np.testing.assert_allclose(coarse[~blocks_nan], expected[~blocks_nan], rtol=1e-5)
    np.testing.assert_allclose(cx, x.reshape(40, 16).mean(axis=1))
    pyramid.close()


def test_the_view_picks_the_level_for_the_zoom_and_the_cache_is_reused(mosaic, monkeypatch):
    path, x, y, speed = mosaic
    pyramid = SpeedPyramid(path)
    assert not pyramid.ready
    *_, factor = pyramid.view(pyramid.footprint, pixels=40)
    assert factor == 16
    *_, factor = pyramid.view((0.0, 72_000.0, 0.0, 72_000.0), pixels=40)
    assert factor == 4
    vx_, vy_, near, factor = pyramid.view((100_000.0, 110_000.0, 100_000.0, 110_000.0), pixels=40)
    assert factor == 1  # the file itself, read for the box
    col = np.nonzero(np.isin(x, vx_))[0]
    row = np.nonzero(np.isin(y, vy_))[0]
    np.testing.assert_allclose(near, speed[np.ix_(row, col)][::-1], rtol=1e-5)
    assert pyramid.ready
    pyramid.close()
    monkeypatch.setattr(overview, "coarse_speed", lambda *a: pytest.fail("recomputed a cached level"))
    again = SpeedPyramid(path)
    assert again.ready and set(again.prepare()) == {f"level_{f}" for f in FACTORS}
    again.close()


def test_speed_image_fills_the_screen_box_with_log_colours(mosaic):
    from iceviz.viz.velocity_map import speed_image

    path, *_ = mosaic
    pyramid = SpeedPyramid(path)
    img = speed_image(pyramid, (50_000.0, 150_000.0, 50_000.0, 100_000.0), pixels=100)
    values = img.dimension_values(2, flat=False)
    assert values.shape == (50, 100)  # 222 x 111 cells aggregated to 100 px across a box twice as wide as tall
    xs = img.dimension_values(0, expanded=False)
    np.testing.assert_allclose(values[25], 5.0 * (1 + xs / 288_000.0), rtol=0.02)
    opts = img.opts.get().kwargs
    assert opts["logz"] is True and opts["cmap"] == "inferno"
    zoomed = speed_image(pyramid, (100_000.0, 110_000.0, 100_000.0, 105_000.0), pixels=100)
    assert zoomed.dimension_values(2, flat=False).shape == (13, 24)  # fewer cells than pixels: the cells
    outside = speed_image(pyramid, (1e7, 1.1e7, 1e7, 1.1e7))
    assert np.isnan(outside.dimension_values(2)).all()
    pyramid.close()
