"""The emulator view: build or load a simulation ensemble, train EGCN and its baselines, compare them live.

The state lives in :class:`~iceviz.app.emulator_state.EmulatorSession`; this module lays it out and
polls it. A periodic callback copies each job's latest snapshot into Bokeh figures made once per
ensemble: a ranking table, the thickness RMSE over model years per emulator, and four maps on the
mesh at the chosen snapshot (simulator thickness, emulator thickness, their difference and the
velocity error), for the chosen emulator and held-out run, with a time slider.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import panel as pn

from iceviz.app.emulator_state import SOURCES, EmulatorSession
from iceviz.app.live import (JOB_NICE, STATUS_COLOURS, fixed_pane, format_seconds, run_buttons, toggle_pause,
                             where_text)
from iceviz.app.paths import for_browser
from iceviz.app.widgets import param_widgets
from iceviz.models.registry import short_budget
from iceviz.runtime.job import JobStatus
from iceviz.training.snapshot import Snapshot
from iceviz.viz.emulator_figures import ComparisonMaps, RmseFigure

POLL_MS = 1000
SNAPSHOT_EVERY_S = 1.0
WIDGET_WIDTH = 170
MAP_FRAME = 860
"""Width of each comparison map for long domains (stacked); wide ones get half of it, two maps a row."""
WIDE_ASPECT = 0.4
"""Domains at least this tall for their length (height / width) get their maps two by two."""
INTRO = ("An **emulator** learns the simulator: from the initial state, the melt rate and the time to the ice "
         "thickness and velocity at every mesh node. **Build** the ensemble (the simulator run under several "
         "melt rates; the default one takes about two minutes once, then comes from the cache), choose emulators "
         "and press **Train**: they train one after the other on the runs whose melt rates are not held out, and "
         "are scored on those that are. The maps compare emulator and simulator at any model year.")
TABLE_TITLES = {"model": "emulator", "seconds": "seconds (s)", "rmse_h": "thickness RMSE (m)",
                "rmse_v": "speed RMSE (m/a)", "r": "R", "r_change_h": "R of the thickness change",
                "gl_error_km": "grounding-line error (km)", "speedup": "speed-up (×)"}
"""Column titles of the ranking table, with units (scores over the held-out runs)."""
TABLE_DECIMALS = {"seconds": 1, "rmse_h": 1, "rmse_v": 1, "r": 4, "r_change_h": 3, "gl_error_km": 2, "speedup": 0}
"""Decimals shown in the ranking table."""


def nearest(times: np.ndarray, year: float) -> int:
    """Index of the snapshot time nearest ``year``."""
    return int(np.argmin(np.abs(np.asarray(times) - year)))


class EmulatorView:
    """The emulator tab of one browser session."""

    def __init__(self, poll_ms: int = POLL_MS,
                 region_bounds: Callable[[], tuple[float, float, float, float] | None] | None = None,
                 session: EmulatorSession | None = None, isolate: bool = True):
        self.poll_ms, self.isolate = poll_ms, isolate
        """Build ensembles and train in worker processes (what a server wants; a test may use threads)."""
        self.session = session or EmulatorSession(region_bounds=region_bounds)
        self.maps: ComparisonMaps | None = None
        self.rmse: RmseFigure | None = None
        self._pick_best = False
        self._batch: tuple[int, ...] = ()
        self._shown: tuple[Any, ...] | None = None
        self._callback = None
        self._build()

    # -- layout ------------------------------------------------------------------------------------
    def _build(self) -> None:
        s = self.session
        self.source = pn.widgets.Select.from_param(s.param.source, name="Ensemble", options={v: k for k, v in SOURCES.items()},
                                                   width=300)
        self.directory = pn.widgets.TextInput.from_param(s.param.directory, name="Ensemble directory", width=300,
                                                         placeholder="runs/my-ensemble", visible=False)
        self.build_button = pn.widgets.Button(name="Build / load the ensemble", button_type="primary", width=300)
        self.build_button.on_click(lambda event: self.build())
        s.param.watch(lambda e: setattr(self.directory, "visible", e.new == "directory"), "source")
        self.build_progress = pn.indicators.Progress(value=0, max=100, height=10, width=300, bar_color="info",
                                                     visible=False)
        self.ensemble_info = pn.pane.Markdown("No ensemble loaded.", width=300, css_classes=["emu-ensemble"])
        self.models = pn.widgets.MultiChoice.from_param(s.param.models, name="Emulators", width=300)
        self.train_button, self.controls = run_buttons("Train", 95, self._on_pause, self.cancel)
        self.train_button.on_click(lambda event: self.train())
        hyper = pn.GridBox(*param_widgets(s.hyper, WIDGET_WIDTH), ncols=4, sizing_mode="fixed",
                           width=4 * (WIDGET_WIDTH + 12))
        controls = pn.Row(
            pn.Column(self.source, self.directory, self.build_button, self.build_progress, self.ensemble_info,
                      width=320, sizing_mode="fixed"),
            pn.Column(self.models, pn.Row(self.train_button, self.controls),
                      pn.pane.Markdown("**Hyper-parameters** of every emulator (the budget is per emulator; "
                                       "left unchanged, each emulator keeps its own tuned value)"),
                      hyper, width=4 * (WIDGET_WIDTH + 12) + 10, sizing_mode="fixed"),
            sizing_mode="stretch_width")
        self.budget_note = pn.pane.Markdown("", css_classes=["budget-note"], sizing_mode="stretch_width",
                                            styles={"color": "#8a4b00", "font-size": "0.85em"})
        s.param.watch(lambda e: self._note_budget(), "models")
        s.hyper.param.watch(lambda e: self._note_budget(), "seconds")
        self.status = pn.pane.Markdown("", css_classes=["emu-status"], sizing_mode="stretch_width")
        self.message = pn.pane.Alert("", alert_type="danger", visible=False, sizing_mode="stretch_width",
                                     css_classes=["emu-message"])
        self.table = pn.widgets.Tabulator(self._ranking(), show_index=False, disabled=True, layout="fit_data_fill",
                                          titles=TABLE_TITLES, sizing_mode="stretch_width",
                                          css_classes=["emu-ranking"], height=190)
        self.pick_model = pn.widgets.Select(name="Emulator shown", options=[], width=200)
        self.pick_run = pn.widgets.Select(name="Held-out run", options=[], width=200)
        self.year = pn.widgets.FloatSlider(name="Model year", start=0.0, end=1.0, step=0.5, value=1.0, width=400,
                                           css_classes=["emu-year"])
        for widget in (self.pick_model, self.pick_run, self.year):
            widget.param.watch(lambda e: self._draw_maps(), "value")
        self.chart_area = pn.Row(sizing_mode="stretch_width")
        self.map_area = pn.Column(sizing_mode="stretch_width")
        self._note_budget()
        self.view = pn.Column(pn.pane.Markdown(INTRO, sizing_mode="stretch_width"), controls, self.budget_note,
                              self.status,
                              self.message, self.table, self.chart_area,
                              pn.pane.Markdown("**Emulator against simulator** on a held-out run, at any model "
                                               "year (drag or scroll on a map to zoom all four)"),
                              pn.Row(self.pick_model, self.pick_run, self.year), self.map_area,
                              sizing_mode="stretch_width", css_classes=["emulator"])
        self._update_status()

    def attach(self) -> None:
        """Start polling (inside a served session; a view built elsewhere is polled by hand)."""
        if self._callback is None and pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
            self._callback = pn.state.add_periodic_callback(self.poll, period=self.poll_ms)

    # -- actions -------------------------------------------------------------------------------------
    def build(self) -> None:
        build = self.session.build(nice=JOB_NICE, isolate=self.isolate)
        if build is not None:
            self.build_progress.visible = not self.session.cached() or self.session.source == "directory"
            self.build_progress.value = 0
        self._update_status()

    def _note_budget(self) -> None:
        self.budget_note.object = short_budget(self.session.models, self.session.hyper.seconds)

    def train(self) -> None:
        self.session.start(snapshot_every=SNAPSHOT_EVERY_S, nice=JOB_NICE, isolate=self.isolate)
        self._shown = None
        self._update_status()

    def _on_pause(self) -> None:
        toggle_pause(self.session.active_job())
        self._update_status()

    def cancel(self) -> None:
        """Cancel every emulator job (a button, or the session closing)."""
        self.session.cancel()
        self._update_status()

    # -- periodic ------------------------------------------------------------------------------------
    def poll(self) -> None:
        """Take a finished build; copy the jobs' latest snapshots into the table, the curves and the maps."""
        s = self.session
        if s.poll_build() and s.problem is not None:
            self._new_ensemble()
        progress = s.build_progress()
        if s.building() and progress is not None and progress.total:
            self.build_progress.value = int(100 * progress.done / progress.total)
        if s.jobs:
            with pn.io.hold():
                self.table.value = self._ranking()
                for name, job in s.jobs:
                    snap = job.latest()
                    if snap is not None and snap.fields is not None and self.rmse is not None:
                        fields = snap.fields
                        self.rmse.update(name, fields["time"].values, fields["rmse_h_t"].values.mean(axis=0))
                names = [name for name, job in s.jobs if job.latest() is not None]
                if names != list(self.pick_model.options):
                    self.pick_model.options = names
                    if self.pick_model.value not in names:
                        self.pick_model.value = names[0] if names else None
                batch = tuple(job.id for _, job in s.jobs)
                if batch != self._batch:  # new emulators: show the best once they have all finished
                    self._batch, self._pick_best = batch, True
                best = s.best_finished()
                if self._pick_best and best is not None and all(job.status.finished for _, job in s.jobs):
                    self._pick_best = False  # the user may choose another after
                    self.pick_model.value = best
                self._draw_maps()
        elif self.maps is not None:
            self.maps.refresh()
        self._update_status()

    def _ranking(self):
        return self.session.ranking().round(TABLE_DECIMALS)

    def _new_ensemble(self) -> None:
        p = self.session.problem
        self.build_progress.visible = False
        labels = [p.label(r) for r in p.split["test"]]
        self.pick_run.options = labels
        self.pick_run.value = labels[0]
        self.year.param.update(start=float(p.times[0]), end=float(p.times[-1]),
                               step=float(np.min(np.diff(p.times))) if len(p.times) > 1 else 1.0,
                               value=float(p.times[-1]))
        span = np.ptp(p.mesh.points, axis=0)
        wide = span[1] / max(span[0], 1e-9) >= WIDE_ASPECT
        self.maps = ComparisonMaps(p.mesh.points, p.mesh.triangles, p.bed,
                                   frame_width=MAP_FRAME // 2 if wide else MAP_FRAME)
        self.rmse = RmseFigure(list(self.session.param.models.objects))
        panes = [fixed_pane(m.figure, css) for m, css in zip(
            self.maps.maps, ("emu-truth", "emu-emulated", "emu-h-error", "emu-v-error"))]
        rows = [pn.Row(*panes[:2]), pn.Row(*panes[2:])] if wide else panes
        self.map_area.objects = [pn.Column(*rows, sizing_mode="fixed")]
        self.chart_area.objects = [fixed_pane(self.rmse.figure, "emu-rmse")]
        self.ensemble_info.object = self._ensemble_text()
        self._shown = None

    def _ensemble_text(self) -> str:
        p = self.session.problem
        split = {k: ", ".join(p.label(r) for r in v) for k, v in p.split.items()}
        return (f"**{p.n_runs} runs**, {p.mesh.n_nodes:,} nodes, {len(p.times)} snapshots over "
                f"{p.times[-1] - p.times[0]:g} years (simulator Δt ≈ {p.mean_dt:.2g} a, "
                f"{np.mean(p.wall_time):.1f} s per run)  \n"
                f"train: {split['train']}  \nvalidation: {split['val']}  \n**held out: {split['test']}**")

    def _snapshot(self) -> Snapshot | None:
        for name, job in self.session.jobs:
            if name == self.pick_model.value:
                return job.latest()
        return None

    def _draw_maps(self) -> None:
        """The maps of the chosen emulator, run and year (nearest snapshot it has); redrawn only on change."""
        snap = self._snapshot()
        if self.maps is None or snap is None or snap.fields is None or self.pick_run.value is None:
            return
        f = snap.fields
        runs = list(f["run"].values)
        if self.pick_run.value not in runs:
            return
        r, k = runs.index(self.pick_run.value), nearest(f["time"].values, self.year.value)
        key = (id(snap), r, k)
        if key == self._shown:
            self.maps.refresh()
            return
        self._shown = key
        h_true = f["h_true"].values[r, k]
        self.maps.update(h_true, f["h"].values[r, k], f["speed_error"].values[r, k],
                         h_max=float(np.nanmax(f["h_true"].values)))
        year = float(f["time"].values[k])
        rmse = float(np.sqrt(np.mean(f["h_error"].values[r, k] ** 2)))
        self.maps.emulated.figure.title.text = f"Emulator ({snap.model}, {self.pick_run.value}, year {year:.1f})"
        self.maps.h_error.figure.title.text = f"Δh, emulator − simulator (RMSE {rmse:.1f} m)"

    def _update_status(self) -> None:
        s = self.session
        self.message.param.update(object=for_browser(s.message), visible=bool(s.message), alert_type="danger")
        build, progress = s.build_job, s.build_progress()
        parts = []
        if s.building() and build.status is JobStatus.QUEUED:
            place = build.position()
            where = f" (place {place + 1} in line)" if place is not None else ""
            parts.append(f"**waiting** to build {build.name}{where}")
        elif s.building() and progress is not None:
            parts.append(f"**building** {build.name}: run {progress.done} of {progress.total} done")
        elif s.building():
            parts.append(f"**loading** {build.name}")
        elif s.problem is None:
            parts.append("No ensemble yet: press **Build / load the ensemble**.")
        active = s.active_job()
        if s.jobs:
            done = sum(job.status.finished for _, job in s.jobs)
            parts.append(f"{done} of {len(s.jobs)} emulators finished")
            if active is not None:
                name = next(n for n, j in s.jobs if j is active)
                snap = active.latest()
                seconds = format_seconds(snap.seconds) if snap is not None else "starting"
                parts.append(f"**{active.status.value}**: {name}, epoch {snap.epoch if snap else 0}, {seconds}, "
                             f"{where_text(active)}")
        troubles = [f"**{n} failed.** {j.error}" if j.status is JobStatus.FAILED
                    else f"**{n} was cut short.** {j.shortfall}"
                    for n, j in s.jobs if j.status in (JobStatus.FAILED, JobStatus.SHORT)]
        if troubles:
            failed = any(j.status is JobStatus.FAILED for _, j in s.jobs)
            self.message.param.update(object=for_browser("  \n".join(troubles)), visible=True,
                                      alert_type="danger" if failed else "warning")
        self.status.object = " · ".join(parts)
        building = s.building()
        self.build_button.disabled = building or s.running()
        self.train_button.disabled = building or s.problem is None or s.running()
        self.controls.param.update(
            pause_label="Resume" if active is not None and active.status is JobStatus.PAUSED else "Pause",
            pause_disabled=active is None, cancel_disabled=not (s.running() or building))
        self.build_progress.bar_color = STATUS_COLOURS[JobStatus.RUNNING]

