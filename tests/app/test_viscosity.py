"""The viscosity tab without a browser: presets, crops refused without a front, a short inversion polled
to its end (maps and losses move), the least-squares preview, the map's shelf presets, the export."""

from __future__ import annotations

import io

import holoviews as hv
import numpy as np
import pytest
import xarray as xr

from iceviz.app.shelf_presets import PRESETS, ViscosityState, missing_file_message, preset_for_region
from iceviz.app.viscosity import LABELS, LSQ_LABEL, ViscosityView, metrics_markdown, status_text
from iceviz.app.widgets import param_label
from iceviz.models.registry import ViscosityParams
from iceviz.runtime.job import JobStatus
from tests.app.conftest import poll_until

SMALL = dict(width=12, depth=2, mu_width=12, mu_depth=2, collocation=150, front_points=40, batch_size=150)
SYNTHETIC = "Synthetic: analytic (our SSA)"


@pytest.fixture(scope="module")
def view():
    hv.extension("bokeh")
    v = ViscosityView(preset=SYNTHETIC, isolate=False, nice=0)
    poll_until(v, lambda: v.state.problem is not None, timeout=60)
    v.state.hyper.param.update(**SMALL)
    yield v
    v.close()


def test_labels_carry_units_but_not_dimensionless_ones():
    assert param_label(ViscosityParams.param.batch_size) == "Batch size [points]"
    assert param_label(ViscosityParams.param.equation_weight) == "Equation weight"  # its doc says [1]


def test_shelf_presets_follow_the_map_regions():
    assert preset_for_region("amery") == "Amery"
    assert preset_for_region("larsen-c") == "Larsen C" and preset_for_region("ross") == "Ross"
    assert preset_for_region("byrd") is None and preset_for_region(None) is None


def test_a_preset_without_its_file_is_refused_with_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("ICEVIZ_DATA", str(tmp_path))
    monkeypatch.setenv("ICEVIZ_CACHE", str(tmp_path / "cache"))  # nothing fetched
    monkeypatch.chdir(tmp_path)  # no ../shared/data
    state = ViscosityState(preset="Larsen C")
    if PRESETS["Larsen C"].unavailable() is None:
        pytest.skip("a Larsen C file is installed here")
    assert state.load() is None
    assert "data_pinns_LarsenC.mat" in state.message and "iceviz data fetch larsen-c" in state.message
    assert state.missing_dataset() == "larsen-c"
    assert state.message == missing_file_message(PRESETS["Larsen C"])
    assert state.start() is None  # nothing to train on


def test_the_loaded_shelf_is_described_and_drawn(view):
    assert "true viscosity known" in view.info.object and "calving-front points" in view.info.object
    assert view.shelf_preview.source.data["image"][0].size > 0 and len(view.shelf_preview.front.data["x"]) > 0
    assert not view.start_button.disabled and view.whole_button.disabled


def test_a_box_without_calving_front_is_refused_and_the_whole_shelf_restores(view):
    xmin, xmax, ymin, ymax = view.state.whole.bounds
    assert view.set_box((xmin, xmin + 20e3, ymin, ymax)) is None  # the upstream end: no front
    assert view.message.visible and "calving-front" in view.message.object
    assert view.start_button.disabled and view.state.problem is None
    cropped = view.set_box((xmax - 30e3, xmax + 1e3, ymin, ymax))  # holds the front
    assert cropped is not None and not view.message.visible and len(cropped.front) > 0
    assert cropped.bounds[0] >= xmax - 30e3 - 1
    whole = view.use_whole_shelf()
    assert whole is not None and whole.bounds == view.state.whole.bounds


def test_the_least_squares_preview_recovers_the_clean_synthetic_viscosity(view):
    view._on_lsq()
    assert view.lsq_button.disabled
    poll_until(view, lambda: view._lsq is None)
    assert view.lsq_button.name == LSQ_LABEL
    assert view.preview_note.visible and "noise" in view.preview_note.object
    assert view.figures.mu_source == "preview" and "PREVIEW" in view.figures.mu.figure.title.text
    error = float(view.preview_note.object.split("Relative error vs the truth: ")[1].split(" %")[0])
    assert error < 2.0  # per cent: clean data, the preview is close


def test_an_inversion_streams_maps_and_losses_then_reports_and_exports(view):
    view.state.seconds = 6.0
    job = view._on_start()
    assert job is not None and view.start_button.disabled and view.preset_select.disabled
    assert not view.select("Amery")  # the map cannot switch shelves under a running inversion
    assert "cancel it first" in view.message.object
    seen = []

    def grab():
        data = view.figures.mu.source.data
        if "image" in data and len(data["image"]):
            img = np.asarray(data["image"][0])
            if not seen or not np.array_equal(seen[-1], img, equal_nan=True):
                seen.append(img.copy())
        return job.status.finished

    poll_until(view, grab, timeout=60)
    view.poll()
    # 6 s is far below the inversion's first useful result (2,000 steps): it ends cut short, and says so,
    # with its maps, scores and export all the same
    assert job.status is JobStatus.SHORT, job.error
    assert "The inversion was cut short." in view.message.object and "before its first useful result" in \
        view.message.object and view.message.visible
    assert len(seen) >= 2  # the viscosity map changed while it trained
    assert view.figures.mu_source == "pinn"
    assert view.metrics.visible and "viscosity μ: relative L2 error" in view.metrics.object
    assert not view.download.disabled and not view.start_button.disabled
    assert len(view.figures.loss.source.data["step"]) >= 2
    # cells were held out (val_fraction 0.1): their misfit beside the losses, the kept step marked, scored
    history = job.history()
    np.testing.assert_array_equal(view.figures.loss.source.data["val_misfit"], [h["val_misfit"] for h in history])
    assert view.figures.loss.kept.span.location == history[-1]["best_epoch"] == job.result.best_epoch > 0
    assert "on the held-out validation cells" in view.metrics.object
    ds = _read_netcdf(view._netcdf_bytes())
    assert ds["mu"].attrs["units"] == "Pa s" and 0 < ds.attrs["mu_rel_error"] < 10
    assert np.nanmin(ds["mu"].values) > 0


def _read_netcdf(buffer: io.BytesIO) -> xr.Dataset:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "out.nc"
        path.write_bytes(buffer.getvalue())
        return xr.open_dataset(path, engine="netcdf4").load()


def test_status_and_metrics_text():
    assert "No inversion yet" in status_text(None, None)
    table = metrics_markdown({"mu_rel_error": 0.0312, "residual": 0.05, "steps": 1200}, 61.0)
    assert "3.1 %" in table and "1,200" in table and "61 s" in table
    assert "validation" not in table  # a run without held-out cells


def test_the_metrics_show_the_misfits_on_the_held_out_cells():
    table = metrics_markdown({"u_rel_error": 0.011, "val_u_rel_error": 0.023, "val_v_rel_error": 0.041,
                              "val_h_rel_error": 0.005}, 10.0)
    rows = {row.split(" | ")[0].strip("| "): row.split(" | ")[1].strip(" |") for row in table.splitlines()[2:]}
    assert rows["u: relative L2 misfit to the observations (all cells)"] == "1.1 %"
    assert rows["u: relative L2 misfit on the held-out validation cells"] == "2.3 %"
    assert rows["v: relative L2 misfit on the held-out validation cells"] == "4.1 %"
    assert rows["h: relative L2 misfit on the held-out validation cells"] == "0.5 %"


def test_the_validation_fraction_has_a_label():
    assert param_label(ViscosityParams.param.val_fraction, LABELS) == "Validation fraction [fraction]"
