"""The emulator view without a browser: load an ensemble, refuse bad sources, train, rank, compare on the mesh."""

from __future__ import annotations

import numpy as np
import pytest

from iceviz.app.emulator import EmulatorView, nearest
from iceviz.app.emulator_state import EmulatorSession
from iceviz.runtime.job import JobStatus
from tests.app.conftest import poll_until

FAST = dict(epochs=3, seconds=None, width=8, layers=2, channels=2, batch_size=6)


def loaded_view(small_ensemble) -> EmulatorView:
    view = EmulatorView(session=EmulatorSession(source="directory", directory=str(small_ensemble),
                                                roots=[small_ensemble.parent]))
    view.build()
    poll_until(view, lambda: view.session.problem is not None)
    return view


def test_nearest_snapshot():
    assert nearest(np.array([0.0, 0.5, 1.0]), 0.7) == 1 and nearest(np.array([0.0, 0.5, 1.0]), 9.0) == 2


def test_a_directory_ensemble_loads_and_describes_its_split(small_ensemble):
    view = loaded_view(small_ensemble)
    p = view.session.problem
    assert p.n_runs == 5 and view.pick_run.options == ["melt=40"]
    assert "held out: melt=40" in view.ensemble_info.object and "144 nodes" in view.ensemble_info.object
    assert view.year.end == pytest.approx(4.0) and not view.train_button.disabled


def test_bad_sources_give_messages_and_keep_the_view_alive(tmp_path):
    view = EmulatorView(session=EmulatorSession(source="directory", directory="", roots=[tmp_path]))
    view.build()
    assert "Give the ensemble's directory" in view.message.object and view.message.visible
    for outside in ("/etc", str(tmp_path / ".." / ".."), "../../etc"):  # the server's other folders: refused
        view.session.directory = outside
        view.build()
        assert "not a folder inside the allowed folders" in view.message.object and view.session.build_job is None
        assert "/etc" not in view.message.object.split(":", 1)[1]  # named by the user, never listed by the server
    view.session.directory = str(tmp_path)
    view.build()
    poll_until(view, lambda: view.session.build_job.status.finished)
    view.poll()
    assert "no manifest.json" in view.message.object and view.session.problem is None
    view.session.source = "region"  # no map box to size the glacier to
    view.build()
    assert "pick a region on the map first" in view.message.object
    view.train()
    assert "Build or load an ensemble first" in view.message.object


def test_training_ranks_the_emulators_and_draws_the_comparison(small_ensemble):
    view = loaded_view(small_ensemble)
    view.session.models = ["persistence", "mlp"]  # the floor first: the view must still open on the best
    view.session.hyper.param.update(**FAST)
    view.session.start(snapshot_every=0.0)  # threads, not worker processes: quick to start in a test
    jobs = [job for _, job in view.session.jobs]
    poll_until(view, lambda: all(job.status.finished for job in jobs), timeout=120)
    view.poll()
    assert all(job.status is JobStatus.DONE for job in jobs)
    table = view.table.value
    assert list(table["model"]) == ["mlp", "persistence"]  # trained beats the floor
    assert table["rmse_h"].iloc[0] < table["rmse_h"].iloc[1]
    assert view.pick_model.options == ["persistence", "mlp"] and view.pick_model.value == "mlp"
    # the maps: simulator, emulator, error; the error image is emulator minus simulator
    view.pick_model.value = "persistence"
    view.year.value = 0.0
    h_error = view.maps.h_error.source.data["image"][0]
    assert np.nanmax(np.abs(h_error)) == 0  # persistence is exact at year 0
    view.year.value = 4.0
    assert np.nanmax(np.abs(view.maps.h_error.source.data["image"][0])) > 1.0
    assert "RMSE" in view.maps.h_error.figure.title.text
    rmse = view.rmse.sources["persistence"].data
    assert rmse["rmse"][0] == 0 and rmse["rmse"][-1] > 0 and len(rmse["t"]) == 9


def test_cancel_stops_every_queued_emulator(small_ensemble):
    view = loaded_view(small_ensemble)
    view.session.models = ["egcn", "gcn"]
    view.session.hyper.param.update(epochs=100_000, seconds=None, width=8, layers=2, channels=2)
    view.session.start(snapshot_every=0.1)
    first = view.session.jobs[0][1]
    poll_until(view, lambda: first.latest() is not None, timeout=60)
    view.cancel()
    poll_until(view, lambda: all(job.status.finished for _, job in view.session.jobs), timeout=30)
    assert [job.status for _, job in view.session.jobs] == [JobStatus.CANCELLED, JobStatus.CANCELLED]
    assert view.controls.cancel_disabled and not view.train_button.disabled


def test_a_region_sizes_the_glacier_and_names_its_own_cache(tmp_path):
    session = EmulatorSession(source="region", region_bounds=lambda: (0.0, 200e3, -50e3, 50e3),
                              ensemble_root=tmp_path)
    scenario, overrides = session.recipe()
    assert scenario == "marine-glacier" and overrides["length"] == 200e3 and overrides["width"] == 100e3
    assert not session.cached()  # nothing built under tmp_path yet
    session.source = "default"
    assert session.recipe() == ("marine-glacier", {})
    session.source = "confined-shelf"
    assert session.recipe() == ("confined-shelf", {})


def test_untouched_hyper_parameters_keep_each_emulators_default():
    session = EmulatorSession()
    assert session.overrides() == {"epochs": 1000, "seconds": 60.0, "seed": 0}
    session.hyper.width = 48
    assert session.overrides()["width"] == 48
