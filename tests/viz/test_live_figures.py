"""Live Bokeh figures: image placement, arrow geometry, in-place updates that keep their models."""

import numpy as np
import pytest
import xarray as xr

from iceviz.viz.live_figures import FRAME_WIDTH, TITLE_SPACE, FieldFigure, LossFigure, arrow_columns, image_columns, shared_ranges


def test_image_columns_put_the_lowest_y_row_first_and_cover_the_cells():
    x = np.array([10.0, 20.0, 30.0])
    y = np.array([200.0, 100.0])  # descending, as some grids come
    values = np.array([[1, 2, 3], [4, 5, 6]], dtype=float)  # row 0 is y = 200
    cols = image_columns(x, y, values)
    assert cols["image"][0].tolist() == [[4, 5, 6], [1, 2, 3]]
    assert cols["x"] == [5.0] and cols["dw"] == [30.0]
    assert cols["y"] == [50.0] and cols["dh"] == [200.0]


def test_arrows_point_along_the_flux_and_scale_with_sqrt_magnitude():
    x = np.linspace(0, 1000, 11)
    qx = np.ones((11, 11))
    qx[:, :5] = 0.25  # slower on the left
    ds = xr.Dataset({"qx": (("y", "x"), qx), "qy": (("y", "x"), np.zeros((11, 11)))}, coords={"x": x, "y": x})
    cols = arrow_columns(ds, max_arrows=11)
    length = cols["x1"] - cols["x0"]
    assert np.allclose(cols["y1"], cols["y0"])  # flux along +x
    assert length.max() == pytest.approx(0.9 * 100)  # the longest covers 90 % of the spacing
    assert length.min() == pytest.approx(0.5 * length.max())  # sqrt(0.25)


def test_arrow_columns_drop_cells_without_flux():
    x = np.linspace(0, 1, 4)
    ds = xr.Dataset({"qx": (("y", "x"), np.full((4, 4), np.nan)), "qy": (("y", "x"), np.zeros((4, 4)))},
                    coords={"x": x, "y": x})
    assert arrow_columns(ds)["x0"].size == 0


def test_updates_replace_data_and_limits_without_new_models():
    ranges = shared_ranges((0, 100, 0, 50))
    fig = FieldFigure("t", "viridis", "|q|", ranges, arrows=True)
    assert fig.figure.x_range is ranges[0]
    assert fig.figure.height - TITLE_SPACE == FRAME_WIDTH // 2  # the frame keeps the region's aspect
    before = {m.id for m in fig.figure.references()}
    fig.update(image_columns([0, 100], [0, 50], np.ones((2, 2))), 0.0, 7.0,
               arrows=dict(x0=[1.0], y0=[1.0], x1=[2.0], y1=[1.0]))
    assert (fig.mapper.low, fig.mapper.high) == (0.0, 7.0)
    assert fig.arrows.data["x1"] == [2.0]
    assert {m.id for m in fig.figure.references()} == before  # no new models: a patch, not a re-render


def test_loss_figure_keeps_every_term_in_its_legend():
    fig = LossFigure("losses", ["loss_data", "loss_div"])
    fig.update([{"epoch": 1, "loss_data": 0.5}, {"epoch": 2, "loss_data": 0.25}])
    assert list(fig.sources["loss_data"].data["loss"]) == [0.5, 0.25]
    assert len(fig.sources["loss_div"].data["loss"]) == 0
    labels = [item.label["value"] for item in fig.figure.legend[0].items]
    assert labels == ["data", "div"]


def _history(val_rmse: list[float], best: list[int]) -> list[dict]:
    return [{"epoch": e + 1, "loss_data": 0.5 / (e + 1), "val_rmse": v, "best_epoch": b}
            for e, (v, b) in enumerate(zip(val_rmse, best))]


def test_loss_figure_draws_the_validation_error_beside_the_loss_and_marks_the_kept_epoch():
    fig = LossFigure("losses", ["loss_data"], validation=True)
    assert not fig.kept.span.visible  # nothing kept before the first epoch
    fig.update(_history([0.4, 0.2, 0.3, 0.35], best=[1, 2, 2, 2]))
    assert list(fig.validation.data["epoch"]) == [1, 2, 3, 4]
    assert np.allclose(fig.validation.data["loss"], [0.16, 0.04, 0.09, 0.1225])  # RMSE²: a mean square, as the loss
    assert fig.kept.span.visible and fig.kept.span.location == 2 and fig.kept.span.dimension == "height"
    assert fig.kept.label.x == 2 and "kept" in fig.kept.label.text
    labels = [item.label["value"] for item in fig.figure.legend[0].items]
    assert labels == ["data", "validation (RMSE²)"] and fig.legend in fig.figure.below  # not over the curves
    fig.update(_history([0.4, 0.2, 0.3, 0.35, 0.1], best=[1, 2, 2, 2, 5]))
    assert fig.kept.span.location == 5 and fig.kept.label.x == 5


def test_loss_figure_without_a_validation_set_draws_no_validation_curve():
    fig = LossFigure("losses", ["loss_data"])
    fig.update([{"epoch": 1, "loss_data": 0.5, "best_epoch": 1}])
    assert fig.validation is None and fig.kept.span.location == 1
    assert [item.label["value"] for item in fig.figure.legend[0].items] == ["data"]
