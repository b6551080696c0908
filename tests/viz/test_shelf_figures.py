"""Shelf figures: colour limits, log scales without non-positive values, truth maps only with a truth,
in-place updates from a snapshot's fields, the preview, the loss columns."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from iceviz.viz.shelf_figures import ShelfFigures, ShelfPreview, log_limits, loss_columns, padded, symmetric_limit


def fields(nx: int = 8, ny: int = 5, descending: bool = False) -> xr.Dataset:
    x = np.arange(nx) * 1000.0 + 500
    y = np.arange(ny) * 1000.0 + 500
    if descending:
        y = y[::-1]
    mu = np.full((ny, nx), 2e13) * (1 + np.arange(nx) / nx)
    mu[0, 0] = np.nan
    zero = np.zeros((ny, nx))
    grid = {k: (("y", "x"), v) for k, v in dict(
        mu=mu, mu_true=mu * 1.1, mu_error=np.full((ny, nx), -0.09), residual=zero + 0.2, strain_rate=zero + 1e-3,
        u_misfit=zero + 3.0, v_misfit=zero - 1.0).items()}
    grid["h_misfit"] = (("y_h", "x_h"), np.ones((ny, nx)))
    return xr.Dataset(grid, coords=dict(x=x, y=y, x_h=x, y_h=y))


def test_log_limits_use_positive_values_and_never_degenerate():
    assert log_limits([np.array([np.nan, -1.0, 0.0])]) == (1e13, 1e15)  # nothing positive: the default
    low, high = log_limits([np.full(10, 3e13)])
    assert low < 3e13 < high
    low, high = log_limits([np.geomspace(1e12, 1e14, 101)], quantiles=(0.0, 1.0))
    assert (low, high) == (1e12, 1e14)


def test_symmetric_limit_and_padding():
    assert symmetric_limit([np.array([-3.0, 1.0, 2.0])], quantile=1.0) == 3.0
    assert padded((0.0, 100.0, 0.0, 50.0), 0.1) == (-10.0, 110.0, -5.0, 55.0)


def test_truth_maps_exist_only_with_a_truth():
    with_truth = ShelfFigures((0, 8000, 0, 5000), np.array([[8000.0, 2500.0]]), truth=True)
    without = ShelfFigures((0, 8000, 0, 5000), np.array([[8000.0, 2500.0]]), truth=False)
    assert with_truth.mu_true is not None and without.mu_true is None
    assert len(with_truth.maps) == 8 and len(without.maps) == 6
    assert len(with_truth.front.data["x"]) == 1


def test_update_writes_every_map_and_fixes_mu_limits_to_the_truth():
    figs = ShelfFigures((0, 8000, 0, 5000), np.zeros((0, 2)), truth=True)
    ds = fields(descending=True)
    figs.update(ds)
    image = figs.mu.source.data["image"][0]
    assert image.shape == (5, 8)
    # rows flipped to ascending y: the NaN at the first (northernmost) row is now in the last row
    assert np.isnan(image[-1, 0]) and np.isfinite(image[0, 0])
    true = ds["mu_true"].values
    assert (figs.mu.mapper.low, figs.mu.mapper.high) == log_limits([true], quantiles=(0.0, 1.0))
    assert figs.mu_error.mapper.low == -figs.mu_error.mapper.high == -0.09
    assert figs.u_misfit.mapper.high == 3.0 and len(figs.h_misfit.source.data["image"]) == 1
    assert figs.mu_source == "pinn"


def test_the_preview_is_labelled_and_blanks_non_positive_viscosity():
    figs = ShelfFigures((0, 8000, 0, 5000), np.zeros((0, 2)), truth=False)
    ds = fields()
    mu = ds["mu"].values.copy()
    mu[2, 3] = -1e13
    figs.show_preview(ds["x"].values, ds["y"].values, mu)
    assert "PREVIEW" in figs.mu.figure.title.text and figs.mu_source == "preview"
    assert np.isnan(figs.mu.source.data["image"][0][2, 3])


def test_loss_columns_blank_what_a_log_axis_cannot_show():
    cols = loss_columns([{"step": 50, "loss_u": 0.1}, {"step": 100, "loss_u": 0.0}], ["loss_u", "loss_v"])
    np.testing.assert_array_equal(cols["step"], [50, 100])
    assert cols["loss_u"][0] == 0.1 and np.isnan(cols["loss_u"][1]) and np.isnan(cols["loss_v"]).all()


def test_the_preview_is_one_figure_updated_in_place_and_reports_the_dragged_box():
    from bokeh.events import SelectionGeometry

    boxes = []
    preview = ShelfPreview(560, 280, on_box=boxes.append, max_cells=100)
    figure = preview.figure
    x, y = np.arange(1000.0) * 100, (np.arange(600.0) * 100)[::-1]  # rows north to south, as DIFFICE files
    u = np.tile(np.linspace(1.0, 500.0, 1000), (600, 1))
    u[:, :10] = np.nan  # off the shelf
    preview.show(x, y, u, 0 * u, np.array([[99_900.0, 0.0], [99_900.0, 59_900.0]]), (0.0, 99_900.0, 0.0, 59_900.0))
    image = preview.source.data["image"][0]
    assert image.shape == (60, 100) and preview.source.data["y"][0] == 400.0  # thinned, from the south edge
    assert np.isnan(image[:, 0]).all() and np.nanmax(image) <= 500.0
    assert 1.0 <= preview.map.mapper.low < preview.map.mapper.high <= 500.0
    assert len(preview.front.data["x"]) == 2
    x_range, y_range = preview.ranges
    assert x_range.start < 0 < 99_900 < x_range.end and y_range.start < 0 < 59_900 < y_range.end
    size = (figure.width, figure.height)
    preview.show(x[:300], y, u[:, :300], 0 * u[:, :300], np.zeros((0, 2)), (0.0, 29_900.0, 0.0, 59_900.0))
    assert preview.figure is figure and (figure.width, figure.height) == size  # another shelf, the same figure
    # its ranges widened to the frame's shape: a metre is as long across as up
    assert (y_range.end - y_range.start) / (x_range.end - x_range.start) == pytest.approx(280 / 560)
    assert y_range.start < 0 and y_range.end > 59_900
    event = SelectionGeometry(figure, geometry={"type": "rect", "x0": 5e3, "x1": 1e3, "y0": 2e3, "y1": 4e3},
                              final=True)
    preview._on_selection(event)
    assert boxes == [(1e3, 5e3, 2e3, 4e3)]
    preview.set_box(boxes[0])
    assert preview.box.data["left"] == [1e3] and preview.box.data["top"] == [4e3]
    preview.clear("Larsen C cannot be loaded")
    assert preview.source.data["image"] == [] and figure.title.text == "Larsen C cannot be loaded"
    assert preview.box.data["left"] == []


def test_the_interface_loss_shows_only_for_runs_with_subdomains():
    figs = ShelfFigures((0, 8000, 0, 5000), np.zeros((0, 2)), truth=True)
    chart = figs.loss
    assert not chart.items["loss_interface"].visible and chart.items["mu_rel_error"].visible
    figs.update_losses([{"step": 50, "loss_total": 0.5, "mu_rel_error": 0.3}])
    assert not chart.items["loss_interface"].visible and chart.source.data["mu_rel_error"][0] == 0.3
    figs.update_losses([{"step": 50, "loss_total": 0.5, "loss_interface": 0.01}])
    assert chart.items["loss_interface"].visible


def test_the_validation_misfit_and_the_kept_step_show_for_runs_holding_out_cells():
    figs = ShelfFigures((0, 8000, 0, 5000), np.zeros((0, 2)), truth=False)
    chart = figs.loss
    assert not chart.items["val_misfit"].visible and not chart.kept.span.visible
    history = [{"step": 50, "loss_total": 1.0, "val_misfit": 0.4, "best_epoch": 50},
               {"step": 100, "loss_total": 0.5, "val_misfit": 0.2, "best_epoch": 100},
               {"step": 150, "loss_total": 0.3, "val_misfit": 0.3, "best_epoch": 100}]
    figs.update_losses(history)
    np.testing.assert_array_equal(chart.source.data["val_misfit"], [0.4, 0.2, 0.3])
    assert chart.items["val_misfit"].visible
    assert chart.kept.span.visible and chart.kept.span.location == 100
    assert chart.kept.label.x == 100 and chart.kept.label.text == "kept: step 100"
    assert chart.kept.label.text_align == "left"  # the room is right of the line
    figs.update_losses([*history, {"step": 200, "loss_total": 0.2, "val_misfit": 0.1, "best_epoch": 200}])
    assert chart.kept.span.location == 200 and chart.kept.label.text_align == "right"  # the last step: left of it
    # the same shelf's figures, a later run without a validation set: no curve, no marker
    figs.update_losses([{"step": 50, "loss_total": 1.0}])
    assert not chart.items["val_misfit"].visible and not chart.kept.span.visible and not chart.kept.label.visible
