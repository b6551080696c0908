"""The explorer's per-session state (no Panel): regions, data, compatibility, jobs."""

import pytest

from iceviz.app.state import CUSTOM, ExplorerState
from iceviz.geo.regions import PRESET_REGIONS
from iceviz.training.job import JobStatus



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
    # the source's size hints reach the hyper-parameter widgets
    assert state.hyper["dfnn"].batch_size == 128


def test_a_box_without_data_is_refused_with_a_message_not_an_exception():
    state = _state("synthetic:curve")
    state.region = "amery"  # far from the synthetic box
    assert state.bounds == PRESET_REGIONS["amery"].bounds
    assert state.problem is None
    assert "No usable data" in state.message and "bbox" in state.message
    assert state.start() == []


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
