"""The explorer's Map tab with product files: listing, the speed map prepared in the background, failures."""

from __future__ import annotations

import time

import holoviews as hv
import numpy as np
import xarray as xr

from iceviz.data import overview

hv.extension("bokeh")  # what the served app loads first


def offered(app) -> dict[str, str]:
    """The data folders the Map tab offers, once the walk (in a thread) is done."""
    for _ in range(200):
        app._poll()
        if "(looking …)" not in app.data_choice.options:
            return app.data_choice.options
        time.sleep(0.05)
    raise AssertionError("the data folders were never offered")


def test_files_are_listed_and_the_speed_map_comes_when_ready(glacier_products, data_home, monkeypatch):
    from iceviz.app import explorer as ex
    from iceviz.app.state import REAL_LABEL

    ex.speed_pyramid.cache_clear()
    folder = glacier_products["bedmap"].parent
    monkeypatch.setenv("ICEVIZ_DATA_ROOTS", str(folder.parent))
    app = ex.Explorer()
    assert "No product files yet" in app.data_files.object and app.speed is None
    options = offered(app)
    # offered by name under the root, never as the server's path; the folders holding .nc / .csv files
    assert list(options)[1:] == [f"{folder.parent.name}/{folder.name}", f"{folder.parent.name}/{folder.name}/bedmap"]
    app._on_add_data()
    assert "Pick one of this server's data folders first" in app.state.message
    app.data_choice.value = options[f"{folder.parent.name}/{folder.name}"]
    app._on_add_data()
    listed = app.data_files.object
    assert "measures-insar" in listed and "2 files in `bedmap/`" in listed and "BedMachineAntarctica-v3.nc" in listed
    assert app.speed is not None
    for _ in range(200):  # the coarse levels are prepared in a thread; the periodic poll shows the map
        if app.speed.ready:
            break
        time.sleep(0.05)
    app._poll()
    assert not app.speed_note.visible
    assert "DynamicMap" in repr(app.overview_pane.object)
    assert REAL_LABEL not in ex.Explorer().state.param.source.objects  # another session: not shared


def test_a_speed_map_that_cannot_be_prepared_says_so(glacier_products, data_home, monkeypatch):
    from iceviz.app import explorer as ex

    ex.speed_pyramid.cache_clear()
    monkeypatch.setattr(overview.SpeedPyramid, "prepare", lambda self: (_ for _ in ()).throw(OSError("disk error")))
    monkeypatch.setenv("ICEVIZ_DATA_ROOTS", str(glacier_products["bedmap"].parent))
    app = ex.Explorer()
    app.data_choice.value = offered(app)[glacier_products["bedmap"].parent.name]
    app._on_add_data()
    assert app.speed_note.visible and "Preparing" in app.speed_note.object
    for _ in range(100):
        if app.speed_failed:
            break
        time.sleep(0.05)
    app._poll()
    assert "could not be prepared" in app.speed_note.object and "disk error" in app.speed_note.object
    ex.speed_pyramid.cache_clear()


def test_saved_runs_are_listed_and_every_family_draws_its_maps(data_home, tmp_path, monkeypatch, small_ensemble):
    """The tab lists the runs under ./runs; an empty Load says what to do; a flux run draws its maps from the
    model, a viscosity and an emulator run theirs from their prediction.nc (with the truth they were scored
    on); a run folder without its prediction.nc still shows its scores and says why there are no maps."""
    from iceviz.app import explorer as ex
    from iceviz.cli import main

    monkeypatch.chdir(tmp_path)
    runs = tmp_path / "runs"
    flux, visc, emu = runs / "curve-dfnn", runs / "shelf" / "visc", runs / "emu"
    assert main(["train", "dfnn", "--data", "synthetic:curve", "--epochs", "3", "--quiet", "--out", str(flux)]) == 0
    assert main(["train", "viscosity-pinn", "--data", "shelf:analytic", "--epochs", "3", "--quiet",
                 "--out", str(visc)]) == 0
    assert main(["train", "mlp", "--data", f"sim:{small_ensemble}", "--epochs", "1", "--quiet", "--out", str(emu)]) == 0
    app = ex.Explorer()
    saved = app.saved
    assert list(saved.run_list.options.values())[1:4] == [str(p / "model.safetensors") for p in (emu, visc, flux)]
    assert "runs/curve-dfnn" in saved.run_list.options  # newest first, named relative to the working directory
    saved.load()
    assert "No run chosen" in app.state.message

    saved.run_list.value = str(visc / "model.safetensors")
    assert app.state.message == "" and "a viscosity run" in saved.run_view[0].object
    assert len([pane for row in saved.run_view[1:-1] for pane in row]) == 8  # μ, truth, error; residual,
    with xr.open_dataset(visc / "prediction.nc") as ds:                     # strain rate; three misfits
        # the inferred viscosity as saved (not recomputed), and the calving front it was fitted with
        np.testing.assert_allclose(saved.shelf.mu.source.data["image"][0], ds["mu"].values)
        assert len(saved.shelf.front.data["x"]) == ds.sizes["front"] > 0
    assert "mu_rel_error" in saved.run_view[-1].object

    saved.run_list.value = str(emu / "model.safetensors")
    view = saved.emulator
    assert view is not None and view.run.options and all(r.startswith("melt=") for r in view.run.options)
    with xr.open_dataset(emu / "prediction.nc") as ds:
        last = ds.isel(run=0, time=-1)
        np.testing.assert_allclose(view.maps.layers()[1][1], last["h"].values)
        np.testing.assert_allclose(view.maps.layers()[2][1], last["h"].values - last["h_true"].values)
        view.year.value = float(ds["time"][0])
        np.testing.assert_allclose(view.maps.layers()[0][1], ds["h_true"].isel(run=0, time=0).values)
    assert view.maps.emulated.source.data["image"][0].size > 0

    (flux / "prediction.nc").unlink()  # a flux run draws from the model alone
    (visc / "prediction.nc").write_text("not a NetCDF file")
    saved.run_path.value = "runs/curve-dfnn"
    saved.load()
    assert app.state.message == "" and "HoloViews" in type(saved.run_view[1]).__name__
    saved.run_path.value = "runs/shelf/visc"
    saved.load()
    head = saved.run_view[0].object
    assert "cannot be drawn" in head and "prediction.nc: cannot read as NetCDF" in head and "engine" not in head
    assert "mu_rel_error" in saved.run_view[-1].object and saved.emulator is None
    saved.run_path.value = "runs/nothing-here"
    saved.load()
    assert "Could not load the run" in app.state.message and app.state.message.count("runs") < 6
    assert list(saved.run_view) == []  # the previous run's maps do not stay under the message
    saved.run_path.value = "runs/curve-dfnn"
    monkeypatch.setattr("iceviz.app.saved_runs.load_checkpoint", lambda path: 1 / 0)  # any failure at all
    saved.load()
    assert "Could not load the run: ZeroDivisionError" in app.state.message and list(saved.run_view) == []
