"""The simulator view without a browser: widgets, a tiny run polled to the end, layouts, failures, download."""


import numpy as np
import panel as pn
import pytest
import xarray as xr

from iceviz.app.simulator import LABELS, SimulatorView, status_text, widgets_of
from iceviz.app.widgets import param_label
from iceviz.sim.job import SimSnapshot
from iceviz.sim.ssa import height_above_flotation
from iceviz.sim.model import Forcing, RunSettings
from iceviz.sim.scenarios import get_scenario
from iceviz.runtime.job import JobStatus
from tests.app.conftest import poll_until

TINY = dict(resolution=8e3, refined_resolution=4e3, spin_up_years=2.0)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ICEVIZ_CACHE", str(tmp_path / "cache"))


def tiny_view(years: float = 3.0) -> SimulatorView:
    view = SimulatorView(scenario="confined-shelf")
    view.scenarios["confined-shelf"].param.update(**TINY)
    view.settings.years = years
    return view


def test_param_labels_carry_the_units_from_the_docs():
    scenario = get_scenario("marine-glacier")
    assert param_label(scenario.param.refined_resolution, LABELS) == "Refined resolution [m]"
    assert param_label(Forcing.param.melt, LABELS) == "Basal melt [m/a]"
    assert param_label(Forcing.param.calving, LABELS) == "Calving"


def test_param_widgets_are_number_boxes_and_selects_linked_to_the_parameters():
    forcing, settings = Forcing(), RunSettings()
    widgets = {w.name: w for w in widgets_of(forcing) + widgets_of(settings)}
    assert isinstance(widgets["Basal melt [m/a]"], pn.widgets.FloatInput)
    assert isinstance(widgets["Calving"], pn.widgets.Select)
    assert isinstance(widgets["Most momentum iterations"], pn.widgets.IntInput)
    assert widgets["Basal melt [m/a]"].end == 500.0 and widgets["Basal melt [m/a]"].description
    widgets["Basal melt [m/a]"].value = 42.0
    assert forcing.melt == 42.0
    settings.years = 3.0
    assert widgets["Years [a]"].value == 3.0
    assert "name" not in {w.name.lower() for w in widgets.values()}
    assert RunSettings().years == 20.0


def test_a_tiny_run_fills_the_maps_and_the_charts_and_ends_done(tmp_path):
    view = tiny_view()
    assert "press **Run**" in view.status.object
    job = view._on_run()
    assert view.run_button.disabled and not view.controls.cancel_disabled
    images = []

    def record():
        if view.maps is not None:
            images.append(view.maps.thickness.source.data["image"][0].copy())
        return job.status.finished and view._last_snapshot is job.latest()

    poll_until(view, record)
    assert job.status is JobStatus.DONE, job.error
    assert "**done**" in view.status.object and "year 3.0 of 3" in view.status.object
    assert "km³" in view.status.object
    assert view.progress.value == 1000
    assert not view.run_button.disabled and view.controls.pause_disabled and view.controls.cancel_disabled
    # the confined shelf (80 × 50 km) has its three maps side by side, the charts below
    maps_layout = view.map_area.objects[0]
    assert isinstance(maps_layout, pn.Row) and len(maps_layout) == 3
    assert [o.css_classes[0] for o in maps_layout] == ["sim-thickness-map", "sim-speed-map", "sim-floating-map"]
    assert len(view.chart_area) == 2
    assert not np.array_equal(images[0], images[-1], equal_nan=True)  # the thickness evolved on the map
    budget = view.maps.budget.source.data
    assert len(budget["t"]) > 3 and budget["t"][-1] == pytest.approx(3.0)
    assert np.allclose(budget["volume_change"], budget["explained"], atol=1e-6 * np.abs(budget["smb"]).max())
    # the finished run downloads as UGRID NetCDF
    assert not view.download.disabled
    path = tmp_path / "run.nc"
    path.write_bytes(view._netcdf_bytes().getvalue())
    with xr.open_dataset(path) as ds:
        assert ds["h"].shape == (7, job.latest().nodes)  # every 0.5 a and ds.attrs["Conventions"] == "CF-1.8 UGRID-1.0"


def test_bad_input_shows_a_message_and_the_view_keeps_working():
    view = tiny_view()
    view.scenarios["confined-shelf"].refined_resolution = 9e3
    job = view._on_run()
    job.wait(30)
    view.poll()
    assert view.message.visible
    assert "refined_resolution (9000 m) must not exceed resolution (8000 m)" in view.message.object
    assert "**failed**" in view.status.object and not view.run_button.disabled
    view.scenarios["confined-shelf"].refined_resolution = 4e3
    job = view._on_run()
    assert not view.message.visible
    poll_until(view, lambda: job.status.finished)
    assert job.status is JobStatus.DONE


def test_pause_resume_and_cancel_from_the_buttons():
    view = tiny_view(years=500.0)
    job = view._on_run()
    poll_until(view, lambda: view.maps is not None and view._last_snapshot.phase == "run")
    view.controls._handle_msg("pause")  # as the browser sends a click on Pause
    assert job.status is JobStatus.PAUSED and view.controls.pause_label == "Resume"
    assert "**paused**" in view.status.object
    view.controls._handle_msg("pause")
    assert job.status is JobStatus.RUNNING and view.controls.pause_label == "Pause"
    view.controls._handle_msg("cancel")
    assert job.wait(5) is JobStatus.CANCELLED
    view.poll()
    assert "**cancelled**" in view.status.object and view.download.disabled and not view.run_button.disabled


def test_switching_scenarios_swaps_their_widgets():
    view = SimulatorView(scenario="confined-shelf")
    names = lambda: {w.name for w in view.scenario_params.objects[0]}  # noqa: E731
    assert "Depth [m]" in names()
    view.scenario.value = "marine-glacier"
    assert "Friction [Pa (a/m)^⅓]" in names() and "Depth [m]" not in names()


def test_a_long_narrow_domain_gets_its_maps_stacked():
    scenario = get_scenario("marine-glacier", resolution=40e3, refined_resolution=40e3)
    mesh = scenario.mesh()
    h = scenario.initial_thickness(mesh.points)
    bed = scenario.bed(mesh.points)
    snap = SimSnapshot(phase="spin-up", time=0.0, years=1.0, progress=0.0, h=h, speed=np.zeros_like(h),
                       haf=height_above_flotation(h, bed), grounding_line=0.0,
                       nodes=mesh.n_nodes, mesh=mesh, bed=bed)
    view = SimulatorView()
    view._build_maps(snap)
    layout = view.map_area.objects[0]
    assert isinstance(layout, pn.Column) and len(layout) == 3
    assert view.maps.thickness.frame[0] > 3 * view.maps.thickness.frame[1]
    view.maps.update(snap.h, snap.speed, snap.haf, snap.history)
    assert len(view.maps.thickness.grounding_line.data["xs"][0]) > 3  # the initial grounding line is drawn


def test_status_text_before_any_run():
    assert "No simulation yet" in status_text(None, None)


def test_the_explorer_builds_the_tab_on_first_visit_and_cancels_the_run_when_the_session_ends():
    from iceviz.app.explorer import SIMULATOR_TAB, Explorer

    explorer = Explorer()
    assert explorer.simulator is None and len(explorer.tabs[SIMULATOR_TAB]) == 0
    explorer.tabs.active = SIMULATOR_TAB
    view = explorer.simulator
    assert view is not None and list(explorer.tabs[SIMULATOR_TAB]) == [view.view]
    explorer.tabs.active = 0
    explorer.tabs.active = SIMULATOR_TAB
    assert explorer.simulator is view  # built once
    view.scenario.value = "confined-shelf"
    view.scenarios["confined-shelf"].param.update(**TINY)
    view.settings.years = 500.0
    job = view._on_run()
    poll_until(view, lambda: view._last_snapshot is not None and view._last_snapshot.phase == "run")
    explorer.close()  # what the session-destroyed callback calls
    assert job.wait(5) is JobStatus.CANCELLED


def test_the_scenario_can_be_sized_to_the_map_region():
    box = [None]
    view = SimulatorView(region_bounds=lambda: box[0])
    view.size_to_region()
    assert view.message.visible and "Pick a region" in view.message.object
    box[0] = (400e3, 600e3, -950e3, -650e3)  # 200 x 300 km
    view.size_to_region()
    glacier = view.scenarios["marine-glacier"]
    assert (glacier.length, glacier.width) == (300e3, 200e3) and not view.message.visible
    assert glacier.resolution > 10e3  # a box larger than 640 x 80 km: coarser cells, about as many nodes
    assert SimulatorView().size_button.visible is False
