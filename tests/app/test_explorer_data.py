"""The explorer's Map tab with product files: listing, the speed map prepared in the background, failures."""

from __future__ import annotations

import time

from iceviz.data import overview


def test_files_are_listed_and_the_speed_map_comes_when_ready(glacier_products, data_home, monkeypatch):
    from iceviz.app import explorer as ex

    ex.speed_pyramid.cache_clear()
    app = ex.Explorer()
    assert "No product files yet" in app.data_files.object and app.speed is None
    app.data_path.value = str(glacier_products["bedmap"].parent)
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


def test_a_speed_map_that_cannot_be_prepared_says_so(glacier_products, data_home, monkeypatch):
    from iceviz.app import explorer as ex

    ex.speed_pyramid.cache_clear()
    monkeypatch.setattr(overview.SpeedPyramid, "prepare", lambda self: (_ for _ in ()).throw(OSError("disk error")))
    app = ex.Explorer()
    app.data_path.value = str(glacier_products["bedmap"].parent)
    app._on_add_data()
    assert app.speed_note.visible and "Preparing" in app.speed_note.object
    for _ in range(100):
        if app.speed_failed:
            break
        time.sleep(0.05)
    app._poll()
    assert "could not be prepared" in app.speed_note.object and "disk error" in app.speed_note.object
    ex.speed_pyramid.cache_clear()


def test_saved_runs_are_listed_and_every_family_loads(data_home, tmp_path, monkeypatch):
    """The tab lists the runs under ./runs; an empty Load says what to do; a flux run draws its maps, a
    viscosity run its scores (no uncaught error for a family without flux maps)."""
    from iceviz.app import explorer as ex
    from iceviz.cli import main

    monkeypatch.chdir(tmp_path)
    flux, visc = tmp_path / "runs" / "curve-dfnn", tmp_path / "runs" / "shelf" / "visc"
    assert main(["train", "dfnn", "--data", "synthetic:curve", "--epochs", "3", "--quiet", "--out", str(flux)]) == 0
    assert main(["train", "viscosity-pinn", "--data", "shelf:analytic", "--epochs", "3", "--quiet",
                 "--out", str(visc)]) == 0
    app = ex.Explorer()
    assert list(app.run_list.options.values())[1:3] == [str(visc / "model.safetensors"),  # newest first
                                                        str(flux / "model.safetensors")]
    assert "runs/curve-dfnn" in app.run_list.options
    app._on_load_run()
    assert "No run chosen" in app.state.message
    app.run_list.value = str(visc / "model.safetensors")
    app._on_load_run()
    assert app.state.message == "" and "a viscosity run, loaded" in app.run_view[0].object
    app.run_path.value = "runs/curve-dfnn"
    app._on_load_run()
    assert app.state.message == "" and "HoloViews" in type(app.run_view[0]).__name__
    app.run_path.value = "runs/nothing-here"
    app._on_load_run()
    assert "Could not load the run" in app.state.message and app.state.message.count("runs") < 6
