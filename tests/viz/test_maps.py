"""Pure HoloViews builders: colour limits, binning, stable legends."""

import numpy as np
import pytest
import xarray as xr

from iceviz.viz import maps


def _fields(div):
    x = np.linspace(0, 1000, 4)
    y = np.linspace(0, 2000, 3)
    ones = np.ones((3, 4))
    return xr.Dataset({"divergence": (("y", "x"), div), "flux_magnitude": (("y", "x"), ones),
                       "qx": (("y", "x"), ones), "qy": (("y", "x"), 0 * ones)}, coords={"x": x, "y": y})


def test_symmetric_limit_is_robust_and_positive():
    a = np.r_[np.linspace(-1, 1, 999), 1e6]  # one spike
    assert maps.symmetric_limit([a], quantile=0.99) < 2
    assert maps.symmetric_limit([np.zeros(5)]) > 0
    assert maps.symmetric_limit([np.array([np.nan])]) == 1.0


def test_divergence_map_has_symmetric_limits_and_a_diverging_colour_map():
    img = maps.divergence_map(_fields(np.arange(12.0).reshape(3, 4)), limit=3.0)
    opts = img.opts.get().kwargs
    assert opts["clim"] == (-3.0, 3.0) and opts["cmap"] == maps.DIVERGING


def test_binned_mean_averages_the_points_in_each_bin():
    points = {"x": np.array([10.0, 20.0, 900.0]), "y": np.array([10.0, 20.0, 900.0]),
              "error": np.array([1.0, 3.0, 7.0])}
    _, _, values = maps.binned_mean(points, (0, 1000, 0, 1000), n=2)
    assert np.nanmax(values) == 7.0 and np.nanmin(values) == 2.0  # (1 + 3) / 2
    assert np.isnan(values).sum() == 2


def test_loss_series_keep_only_values_a_log_axis_can_show():
    history = [{"epoch": 1, "loss_data": 1.0}, {"epoch": 2, "loss_data": 0.0}, {"epoch": 3, "loss_data": 0.5},
               {"epoch": 4, "loss_data": float("nan"), "loss_div": 2.0}]
    epochs, values = maps.loss_series(history, "loss_data")
    assert epochs.tolist() == [1.0, 3.0] and values.tolist() == [1.0, 0.5]
    assert maps.loss_series(history, "loss_dir")[0].size == 0
    assert maps.loss_terms(history) == ["loss_data", "loss_div"]


def test_flux_arrows_are_thinned():
    x = np.linspace(0, 1, 100)
    ds = xr.Dataset({"qx": (("y", "x"), np.ones((100, 100))), "qy": (("y", "x"), np.zeros((100, 100)))},
                    coords={"x": x, "y": x})
    assert len(maps.flux_arrows(ds, max_arrows=10)) <= 100
    x0, y0, angle, length, spacing = maps.thinned_vectors(ds, max_arrows=10)
    assert len(x0) == 100 and np.allclose(angle, 0) and np.allclose(length, 1)
    assert spacing == pytest.approx(10 / 99)


def test_divergence_scale_has_a_physical_floor_and_says_when_a_field_is_zero():
    rounding = np.random.default_rng(0).normal(0.0, 3e-7, (20, 20))  # a dfNN's float round-off, m/yr
    limit = maps.divergence_limit([rounding])
    assert limit == maps.DIVERGENCE_FLOOR  # not ±1e-6: round-off must not fill the colour range
    assert maps.nil_divergence_note([rounding], limit) == "|∇·q| < 1e-05 m/yr everywhere"
    assert maps.divergence_limit([rounding], flux_limit=1e6, extent=1e5) == pytest.approx(1e-2)
    real = np.linspace(-0.5, 0.5, 400)  # a PINN's leftover divergence: drawn to scale, no note
    limit = maps.divergence_limit([real])
    assert 0.45 < limit < 0.5 and maps.nil_divergence_note([real], limit) == ""
    assert maps.nil_divergence_note([np.zeros(4)], 1e-3) == "∇·q = 0 everywhere"


def test_labels_of_neighbouring_boxes_are_placed_apart():
    """Pine Island and Thwaites (150 km boxes 170 km apart) at the continental scale: the second label moves."""
    boxes = [(-1678e3, -1528e3, -358e3, -208e3), (-1591e3, -1441e3, -531e3, -381e3)]
    names = ["Pine Island Glacier", "Thwaites Glacier"]
    mpp = 6.8e6 / 760
    anchors = maps.label_anchors(boxes, names, mpp)
    rects = [(x, x + len(t) * maps.CHAR_PX * mpp, y, y + maps.LINE_PX * mpp) for (x, y), t in zip(anchors, names)]
    a, b = rects
    assert not (a[0] < b[1] and b[0] < a[1] and a[2] < b[3] and b[2] < a[3])
    assert anchors[0] == (-1603e3 - len(names[0]) * maps.CHAR_PX * mpp / 2, -208e3 + 3 * mpp)  # the first: above
