"""The explorer's per-session state (no Panel): regions, data, compatibility, jobs."""

import pytest

from iceviz.app.state import CUSTOM, ExplorerState
from iceviz.data.splits import validation_mask
from iceviz.geo.regions import PRESET_REGIONS
from iceviz.models.registry import flux_size_defaults
from iceviz.runtime.job import JobStatus



def _state(source_spec: str) -> ExplorerState:
    state = ExplorerState()
    label = next(k for k, v in state._sources.items() if v == source_spec)
    state.source = label
    return state


def test_source_sets_the_box_and_loads_its_data():
    state = _state("synthetic:glacier")
    assert state.bounds == (400_000.0, 600_000.0, -950_000.0, -750_000.0)
    assert state.problem is not None and state.message == ""
    info = state.summary()
    assert info["width_km"] == pytest.approx(200) and info["train"] > 1000 and "s" in info["fields"]
    # the training points as a seed-0 run uses them: fitted, and held out for validation
    held, _ = validation_mask(state.problem.train, state.problem.bounds)
    assert (info["train"], info["validation"]) == (len(held) - held.sum(), held.sum()) and held.sum() > 100


def _size_defaults(state: ExplorerState) -> dict:
    """What flux_size_defaults gives for the points a seed-0 run fits on the state's problem."""
    held, _ = validation_mask(state.problem.train, state.problem.bounds)
    return flux_size_defaults(int((~held).sum()))


def _size_params(state: ExplorerState, name: str) -> dict:
    return {k: getattr(state.hyper[name], k) for k in ("batch_size", "planned_epochs", "patience", "collocation")}


def test_hyper_parameters_follow_the_size_of_the_source():
    state = _state("synthetic:curve")
    expected = _size_defaults(state)
    assert expected["planned_epochs"] != 300 and expected["batch_size"] != 1024  # not the registry's
    for name in ("dfnn", "pinn", "nn-dir"):
        assert _size_params(state, name) == expected
        assert state.hyper[name].epochs == 1_000_000  # a cap: the plan, patience or seconds end the run


def test_a_new_box_refreshes_the_size_defaults_and_keeps_the_users_other_choices():
    state = _state("synthetic:curve")
    whole = _size_defaults(state)
    state.hyper["dfnn"].lr = 1e-4  # the registry's is 7e-3
    state.set_bounds((-50_000, 0, 300_000, 400_000))  # half the points
    half = _size_defaults(state)
    assert half["planned_epochs"] > whole["planned_epochs"]  # fewer points: more epochs for the same steps
    assert _size_params(state, "dfnn") == _size_params(state, "pinn") == half
    assert state.hyper["dfnn"].lr == 1e-4
    state.hyper["pinn"].planned_epochs = 77
    state.source = next(k for k, v in state._sources.items() if v == "synthetic:glacier")  # a new source
    assert _size_params(state, "dfnn") == _size_defaults(state)  # what the user left alone follows the source
    assert state.hyper["dfnn"].lr == 1e-4 and state.hyper["pinn"].planned_epochs == 77  # edits are kept
    assert state.edits()["dfnn"] == {"lr": 1e-4} and state.edits()["pinn"] == {"planned_epochs": 77}
    state.reset_hyper()
    assert state.hyper["dfnn"].lr == 7e-3 and not any(state.edits().values())


def test_a_box_without_data_is_refused_with_a_message_not_an_exception():
    state = _state("synthetic:curve")
    state.region = "amery"  # far from the synthetic box
    assert state.bounds == PRESET_REGIONS["amery"].bounds
    assert state.problem is None
    assert "No usable data" in state.message and "Amery Ice Shelf lies outside the chosen data set" in state.message
    assert "covers x" in state.message and "Use this folder" in state.message  # what covers what, what to do
    assert state.start() == []
    state.region = "custom"
    state.set_bounds((-49_990, -49_000, 399_000, 399_990))  # a corner of the field: the loader's own reason
    assert "No usable data" in state.message and "outside the chosen" not in state.message


def test_drawn_box_crops_the_data():
    state = _state("synthetic:glacier")
    state.set_bounds((450_000, 550_000, -900_000, -800_000))
    assert state.region == CUSTOM
    assert "bbox=450000,550000,-900000,-800000" in state.spec
    assert state.problem.bounds == (450_000, 550_000, -900_000, -800_000)
    state.set_bounds((5, 1, 0, 1))
    assert "xmin < xmax" in state.message


def test_incompatible_models_are_skipped_with_a_reason_and_jobs_run():
    state = _state("synthetic:curve")
    state.models = ["dfnn", "dfnn-aux"]
    state.seconds = 1.0
    state.hyper["dfnn"].epochs = 5
    jobs = state.start(snapshot_every=None)
    assert [j.name for j in jobs] == ["dfnn"]
    assert "dfnn-aux" in state.message and "surface elevation" in state.message
    assert jobs[0].wait(30) is JobStatus.DONE
    assert jobs[0].result.epochs == 5


def test_footprints_of_every_source_grouped_when_they_coincide():
    state = ExplorerState()
    footprints = state.footprints()
    boxes = list(footprints.values())
    assert (-50_000.0, 50_000.0, 300_000.0, 400_000.0) in boxes  # the five benchmark fields, one box
    assert any("+ 4 more" in label for label in footprints)
    assert len(boxes) == len(set(boxes))


def test_real_data_source_builds_the_box_from_the_products(glacier_products, data_home, monkeypatch):
    from iceviz.app.state import REAL_LABEL
    from iceviz.data.products import Catalog

    assert REAL_LABEL not in ExplorerState().param.source.objects  # nothing configured: not offered
    folder = glacier_products["bedmap"].parent
    monkeypatch.setenv("ICEVIZ_DATA_ROOTS", str(folder.parent))  # what whoever serves the app allows
    state = ExplorerState()
    lines = state.use_data(folder)
    assert len(lines) == 5 and state.message == "" and REAL_LABEL in state.param.source.objects
    assert all(line.split(": ")[1].startswith(f"{folder.parent.name}/{folder.name}/") for line in lines)
    assert state.source_bounds(REAL_LABEL)[0] < 400_000 < 600_000 < state.source_bounds(REAL_LABEL)[1]
    state.source = REAL_LABEL
    assert state.is_real and state.problem is not None
    assert state.spec == f"region:box?bbox=400000,600000,-950000,-750000&data={folder}"  # to the workers
    assert state.shown(state.spec).endswith(f"data={folder.parent.name}/{folder.name}")  # to the page
    n = len(state.problem.train)
    state.recipe.spacing = 4000.0  # a recipe change rebuilds the box
    assert state.spec.endswith(f"&spacing=4000&data={folder}") and len(state.problem.train) < n
    state.region = "byrd-lower"
    assert state.spec == f"region:byrd-lower?spacing=4000&data={folder}" and state.problem.bounds[1] == 466_667.0
    state.region = "amery"  # no product covers it: a message, no exception
    assert state.problem is None and "no velocity (MEaSUREs) file covers the box" in state.message
    state.region = "byrd"
    csv = state.points_csv()
    assert csv.startswith("x,y,qx,qy,s,vx,vy,split,thickness,source,line")
    assert csv.count("\n") - 1 == len(state.problem.train) + len(state.problem.test)
    state.models, state.seconds = ["dfnn"], 1.0
    state.hyper["dfnn"].epochs = 2
    [job] = state.start(snapshot_every=None)
    assert job.wait(60).name == "DONE" and job.result.epochs == 2
    bad = ExplorerState(catalog=Catalog.discover())
    for outside in ("/no/such/folder", "/etc", "/proc/self", str(folder.parent / ".." / ".."), "relative/path"):
        assert bad.use_data(outside) == [] and bad.message.startswith("Only the data folders this server offers")
        assert "/etc" not in bad.message and "proc" not in bad.message
    assert bad.session_paths == [] and REAL_LABEL not in bad.param.source.objects
    assert bad.use_data(folder / "bedmap" / "..") and bad.session_paths == [folder]  # resolved once


@pytest.mark.parametrize("isolate", [False, True])
def test_a_background_build_applies_only_the_newest_box(glacier_products, data_home, monkeypatch, isolate):
    """Built as a job (a thread, or a worker process as in the app): the newest box only, its refusal in words."""
    import time

    from iceviz.app.state import REAL_LABEL

    monkeypatch.setenv("ICEVIZ_DATA_ROOTS", str(glacier_products["bedmap"].parent))
    state = ExplorerState(build_in_background=True, isolate=isolate)
    state.use_data(glacier_products["bedmap"].parent)
    state.source = REAL_LABEL
    assert state.problem is None and state.message.startswith("Building the box from the product files")
    state.set_bounds((450_000.0, 550_000.0, -900_000.0, -800_000.0))  # a second request before the first ends
    deadline = time.monotonic() + 60
    while not state.finish_build():
        assert time.monotonic() < deadline, "the background build did not finish"
        time.sleep(0.05)
    assert state.message == "" and state.problem.bounds == (450_000.0, 550_000.0, -900_000.0, -800_000.0)
    assert _size_params(state, "dfnn") == _size_defaults(state)  # the widgets follow the box built in a thread
    time.sleep(1.0)
    assert not state.finish_build()  # the first request's result, if it came late, is dropped
    assert state.problem.bounds == (450_000.0, 550_000.0, -900_000.0, -800_000.0)
    state.region = "amery"
    while not state.finish_build():
        time.sleep(0.05)
    assert state.problem is None and "no velocity (MEaSUREs) file covers the box" in state.message
