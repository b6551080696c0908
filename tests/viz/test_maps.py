"""Pure HoloViews builders: colour limits, binning, stable legends."""

import numpy as np
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


def test_binned_errors_average_the_points_in_each_bin():
    points = {"x": np.array([10.0, 20.0, 900.0]), "y": np.array([10.0, 20.0, 900.0]),
              "error": np.array([1.0, 3.0, 7.0])}
    img = maps.binned_errors(points, (0, 1000, 0, 1000), n=2)
    values = img.dimension_values("error", flat=False)
    assert np.nanmax(values) == 7.0 and np.nanmin(values) == 2.0  # (1 + 3) / 2
    assert np.isnan(values).sum() == 2


def test_loss_curves_keep_every_key_even_before_it_has_values():
    history = [{"epoch": 1, "loss_data": 1.0}, {"epoch": 2, "loss_data": 0.5}]
    overlay = maps.loss_curves(history, ["loss_data", "loss_div"])
    assert [c.label for c in overlay] == ["data", "div"]
    assert len(overlay.get(1)) == 0 and len(overlay.get(0)) == 2
    assert maps.loss_terms(history) == ["loss_data"]


def test_flux_arrows_are_thinned():
    x = np.linspace(0, 1, 100)
    ds = xr.Dataset({"qx": (("y", "x"), np.ones((100, 100))), "qy": (("y", "x"), np.zeros((100, 100)))},
                    coords={"x": x, "y": x})
    assert len(maps.flux_arrows(ds, max_arrows=10)) <= 100
