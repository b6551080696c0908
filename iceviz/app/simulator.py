"""The simulator view: run a scenario in the background and watch it evolve on its mesh.

Pick a scenario, set its parameters, the forcing and the run settings, press
Run: a simulation job off the server (:func:`~iceviz.sim.job.simulation_job_class`) spins the scenario up
(cached on disk) and runs the forcing in a worker process, queued with the
server's other jobs. A periodic callback copies the job's
latest snapshot into Bokeh figures made once per mesh (see
:mod:`iceviz.viz.mesh_figures`): thickness, speed and the grounded / floating
mask side by side (stacked for long, narrow domains), zooming together, each
with the exact grounding line; below them the mass budget and the grounding-line
position over time. Pause, resume and cancel act on the job between time steps;
a finished run can be downloaded as UGRID NetCDF.
"""

from __future__ import annotations

import io
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable

import numpy as np
import panel as pn
import param

from iceviz.app.live import JOB_NICE, STATUS_COLOURS, fixed_pane, format_seconds, run_buttons, toggle_pause
from iceviz.app.widgets import param_widgets
from iceviz.sim.job import SimSnapshot, SimulationJob, simulation_job_class
from iceviz.sim.model import Forcing, RunSettings
from iceviz.sim.scenarios import SCENARIOS, box_overrides
from iceviz.sim.ssa import SimulationError
from iceviz.sim.ugrid import write_run
from iceviz.training.families import simulator_output
from iceviz.runtime.job import JobStatus
from iceviz.runtime.queue import JobQueue, QueueFull, SessionQueue
from iceviz.viz import mesh_figures
from iceviz.viz.mesh_figures import SimulationMaps


POLL_MS = 1000
"""How often the view copies the job's latest snapshot into its figures."""
DEFAULT_SCENARIO = "marine-glacier"
WIDE_ASPECT = 0.4
"""Domains narrower than this (height / width) get their maps stacked, each as wide as the view."""
SIDE_BY_SIDE_FRAME = 220
STACKED_FRAME = 860
WIDGET_WIDTH = 185
HIDDEN = {"name"}
LABELS = {"melt": "Basal melt", "smb": "Surface mass balance", "cfl": "CFL number", "max_dt": "Largest time step",
          "max_iter": "Most momentum iterations", "tolerance": "Momentum tolerance", "spin_up_years": "Spin-up years",
          "friction_coefficient": "Friction"}
"""Widget labels where the parameter's own label says too little (units are added from the doc)."""
INTRO = ("Pick a scenario and press **Run**: it is spun up without melt (once; the result is cached), then "
         "run with the forcing. The maps show thickness, speed and where the ice floats, with the grounding "
         "line in white; drag or scroll on any map to zoom all three. Below: the mass budget (the volume change "
         "and the sum of the fluxes must agree) and the grounding line's position along the centreline.")


def widgets_of(obj: param.Parameterized) -> list[pn.widgets.Widget]:
    """The simulator's widgets for one parameter class (labels with units, number boxes, selects)."""
    return param_widgets(obj, WIDGET_WIDTH, HIDDEN, LABELS)


def _grid(widgets: list[pn.widgets.Widget], ncols: int = 4) -> pn.GridBox:
    return pn.GridBox(*widgets, ncols=ncols, sizing_mode="fixed", width=ncols * (WIDGET_WIDTH + 12))


def _start_warm_up() -> None:
    """Compile the rasteriser in the background while the user sets up a run (seconds, once per process)."""
    threading.Thread(target=mesh_figures.warm_up, name="iceviz-datashader-warm-up", daemon=True).start()


def status_text(job: SimulationJob | None, snap: SimSnapshot | None) -> str:
    """One line: status, phase, model year, wall time, mesh size; the budget once done."""
    if job is None:
        return "No simulation yet: set it up and press **Run**."
    status = job.status
    parts = [f"**{status.value}**", f"scenario {job.name}"]
    if snap is not None:
        if snap.phase == "spin-up":
            parts.append(f"spinning up: year {snap.time:.1f} of {snap.years:g}")
        else:
            parts.append(f"year {snap.time:.1f} of {snap.years:g}")
        parts.append(f"{format_seconds(snap.seconds)} wall")
        parts.append(f"{snap.nodes} nodes")
        if job.worker:
            parts.append(f"on {job.worker}")
        if snap.phase == "run" and job.spun_up_from_cache:
            parts.append("spin-up from the cache")
        if snap.final:
            b = snap.budget
            parts.append(f"ΔV {b.volume_change / 1e9:.3f} km³, fluxes {(b.volume_change - b.residual) / 1e9:.3f} km³")
    elif status is JobStatus.RUNNING:
        parts.append("building the mesh and the solvers")
    return " · ".join(parts)


class SimulatorView:
    """The simulator tab of one browser session: controls, status, live maps and time series."""

    def __init__(self, scenario: str = DEFAULT_SCENARIO, poll_ms: int = POLL_MS,
                 region_bounds: Callable[[], tuple[float, float, float, float] | None] | None = None,
                 queue: JobQueue | SessionQueue | None = None, isolate: bool = True, nice: int = JOB_NICE):
        self.poll_ms, self.isolate, self.nice = poll_ms, isolate, nice
        """Run in a worker process (what a server wants; a test may run in a thread), at this niceness."""
        self.queue = queue or JobQueue()
        """Where its runs wait for a slot (the server's queue in the app; by default its own)."""
        self.region_bounds = region_bounds
        """Gives the map's selected box (xmin, xmax, ymin, ymax) [m], to size a scenario to it."""
        self.scenarios = {name: cls() for name, cls in SCENARIOS.items()}
        self.forcing = Forcing()
        self.settings = RunSettings()
        self.job: SimulationJob | None = None
        self.maps: SimulationMaps | None = None
        self._maps_mesh: Any = None
        self._last_snapshot: SimSnapshot | None = None
        self._last_status: JobStatus | None = None
        self._callback = None
        _start_warm_up()
        self._build(scenario)

    # -- layout ------------------------------------------------------------------------------------
    def _build(self, scenario: str) -> None:
        self.scenario = pn.widgets.Select(name="Scenario", options=list(SCENARIOS), value=scenario, width=260)
        self.scenario.param.watch(self._on_scenario, "value")
        self.run_button, self.controls = run_buttons("Run", 80, self._on_pause, self.cancel)
        self.run_button.on_click(self._on_run)
        self.size_button = pn.widgets.Button(name="Size to the map's region", button_type="light", width=260,
                                             visible=self.region_bounds is not None)
        self.size_button.on_click(lambda event: self.size_to_region())
        self.mesh_toggle = pn.widgets.Checkbox(name="Show the mesh edges", value=False, width=260,
                                              css_classes=["sim-mesh-toggle"])
        self.mesh_toggle.param.watch(self._on_mesh_toggle, "value")
        self.download = pn.widgets.FileDownload(callback=self._netcdf_bytes, filename="iceviz_simulation.nc",
                                                label="Download the run (UGRID NetCDF)", button_type="success",
                                                disabled=True, width=260)
        self.scenario_params = pn.Column(_grid(widgets_of(self.scenarios[scenario])), sizing_mode="fixed")
        self.params = pn.Tabs(("Scenario", self.scenario_params), ("Forcing", _grid(widgets_of(self.forcing))),
                              ("Run settings", _grid(widgets_of(self.settings))), dynamic=False,
                              sizing_mode="fixed", width=4 * (WIDGET_WIDTH + 12) + 10)
        controls = pn.Row(pn.Column(self.scenario, pn.Row(self.run_button, self.controls),
                                    self.size_button, self.mesh_toggle, self.download, width=300,
                                    sizing_mode="fixed"),
                          self.params, sizing_mode="stretch_width")
        self.progress = pn.indicators.Progress(value=0, max=1000, height=10, bar_color="secondary",
                                               sizing_mode="stretch_width")
        self.status = pn.pane.Markdown(status_text(None, None), css_classes=["sim-status"],
                                       sizing_mode="stretch_width", margin=(0, 10), styles={"font-size": "1.05em"})
        self.message = pn.pane.Alert("", alert_type="danger", visible=False, sizing_mode="stretch_width",
                                     css_classes=["sim-message"])
        self.map_area = pn.Column(sizing_mode="stretch_width")
        self.chart_area = pn.Row(sizing_mode="stretch_width")
        self.view = pn.Column(pn.pane.Markdown(INTRO, sizing_mode="stretch_width"), controls,
                              pn.Column(self.progress, self.status, sizing_mode="stretch_width"), self.message,
                              self.map_area, self.chart_area, sizing_mode="stretch_width", css_classes=["simulator"])

    def attach(self) -> None:
        """Start polling (inside a served session; a view built elsewhere is polled by hand)."""
        if self._callback is None and pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
            self._callback = pn.state.add_periodic_callback(self.poll, period=self.poll_ms)

    # -- callbacks -----------------------------------------------------------------------------------
    def _on_scenario(self, event: Any) -> None:
        self.scenario_params.objects = [_grid(widgets_of(self.scenarios[event.new]))]

    def size_to_region(self) -> None:
        """Set the scenario's length, width and resolutions from the box picked on the map."""
        bounds = self.region_bounds() if self.region_bounds is not None else None
        if bounds is None:
            self._show_message("Pick a region on the map first: its box sizes the scenario.")
            return
        name = self.scenario.value
        try:
            sized = box_overrides(name, bounds)
        except SimulationError as err:
            self._show_message(str(err))
            return
        self.scenarios[name].param.update(**sized)
        self.message.visible = False

    def _show_message(self, text: str) -> None:
        self.message.object = text
        self.message.visible = True

    def _on_mesh_toggle(self, event: Any) -> None:
        if self.maps is not None:
            self.maps.show_mesh(event.new)

    def _on_run(self, event: Any = None) -> SimulationJob | None:
        if self.job is not None and not self.job.status.finished:
            return None
        name = self.scenario.value
        kind = simulation_job_class(self.isolate)
        job = kind(name, self.scenarios[name], self.forcing, self.settings, nice=self.nice)
        try:
            self.job = self.queue.submit(job)
        except QueueFull as err:
            self._show_message(f"The run did not start: {err}.")
            return None
        self.message.visible = False
        self.download.disabled = True
        self.download.filename = f"iceviz_{name}.nc"
        self._last_snapshot, self._last_status = None, None
        self._update_status()
        return self.job

    def _on_pause(self) -> None:
        toggle_pause(self.job)
        self._update_status()

    def cancel(self) -> None:
        """Stop the running simulation (a button, or the session closing)."""
        if self.job is not None:
            self.job.cancel()
            self._update_status()

    # -- periodic ------------------------------------------------------------------------------------
    def poll(self) -> None:
        """Copy the job's latest snapshot into the figures (and re-rasterise after a zoom); never blocks."""
        job = self.job
        if job is None:
            return
        snap = job.latest()
        status = job.status
        new_maps = snap is not None and not self._same_mesh(snap)
        if snap is self._last_snapshot and status is self._last_status and not new_maps:
            if self.maps is not None:
                self.maps.refresh()
            return
        with pn.io.hold(freeze=new_maps):
            if new_maps:
                self._build_maps(snap)
            if snap is not None and snap is not self._last_snapshot:
                self.maps.update(snap.h, snap.speed, snap.haf, snap.history)  # empty while spinning up
            elif self.maps is not None:
                self.maps.refresh()
            self._last_snapshot = snap
            self._update_status()

    def _same_mesh(self, snap: SimSnapshot) -> bool:
        mesh = self._maps_mesh
        if mesh is None or snap.mesh is None:
            return mesh is snap.mesh
        return mesh is snap.mesh or (mesh.points.shape == snap.mesh.points.shape
                                     and mesh.triangles.shape == snap.mesh.triangles.shape
                                     and np.array_equal(mesh.points, snap.mesh.points)
                                     and np.array_equal(mesh.triangles, snap.mesh.triangles))

    def _build_maps(self, snap: SimSnapshot) -> None:
        mesh = snap.mesh
        x, y = mesh.points[:, 0], mesh.points[:, 1]
        aspect = float(np.ptp(y)) / max(float(np.ptp(x)), 1e-9)
        wide = aspect >= WIDE_ASPECT
        maps = SimulationMaps(mesh.points, mesh.triangles, mesh.edges,
                              frame_width=SIDE_BY_SIDE_FRAME if wide else STACKED_FRAME)
        maps.show_mesh(self.mesh_toggle.value)
        panes = [fixed_pane(m.figure, css) for m, css in ((maps.thickness, "sim-thickness-map"),
                                                     (maps.speed, "sim-speed-map"),
                                                     (maps.floating, "sim-floating-map"))]
        layout = pn.Row if wide else pn.Column
        self.map_area.objects = [layout(*panes, sizing_mode="fixed", css_classes=["sim-maps"])]
        self.chart_area.objects = [fixed_pane(maps.budget.figure, "sim-budget"), fixed_pane(maps.gl.figure, "sim-grounding-line")]
        self.maps, self._maps_mesh = maps, mesh

    def _update_status(self) -> None:
        job = self.job
        snap = job.latest() if job is not None else None
        status = job.status if job is not None else None
        self._last_status = status
        self.status.object = status_text(job, snap)
        if job is None:
            return
        progress = snap.progress if snap is not None else 0.0
        if status is JobStatus.DONE:
            progress = 1.0
        self.progress.value = int(1000 * progress)
        self.progress.bar_color = "info" if snap is not None and snap.phase == "spin-up" and not status.finished \
            else STATUS_COLOURS[status]
        active = status in (JobStatus.RUNNING, JobStatus.PAUSED)
        self.run_button.disabled = not status.finished
        self.controls.param.update(pause_label="Resume" if status is JobStatus.PAUSED else "Pause",
                                   pause_disabled=not active, cancel_disabled=not active)
        self.download.disabled = not (status is JobStatus.DONE and job.run is not None)
        if status is JobStatus.FAILED:
            self.message.object = f"**The simulation failed.** {job.error}"
            self.message.visible = True

    # -- export --------------------------------------------------------------------------------------
    def _netcdf_bytes(self) -> io.BytesIO:
        job = self.job
        if job is None or job.run is None:
            return io.BytesIO(b"")
        with tempfile.TemporaryDirectory() as tmp:
            path = write_run(simulator_output(job.run), Path(tmp) / "run.nc")
            return io.BytesIO(path.read_bytes())
