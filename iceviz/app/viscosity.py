"""The viscosity view: invert an ice shelf's viscosity with the PINN and watch it learn.

Pick a shelf (:mod:`iceviz.app.shelf_presets`), optionally drag a box on its
observed speed to invert only part of it (the box must hold a stretch of
calving front: without the front condition the viscosity is not identifiable,
and such a box is refused with that explanation), set the budget and the
hyper-parameters, press **Start**. The ``viscosity-pinn`` job trains in the
background (a worker process in a server); a periodic callback copies its
latest snapshot into Bokeh figures made once per shelf
(:mod:`iceviz.viz.shelf_figures`): μ on a log scale, the truth and the relative
error where known, the SSA residual, the strain rate and the misfits, plus the
loss terms beside the validation misfit (on the held-out cells, which choose the
kept weights: marked). At the end: a metrics table and the final fields as NetCDF.

Loading a shelf (seconds for a synthetic one: it solves an SSA) and the
least-squares preview are jobs in the server's quick queue, run in a thread of
the server (a loaded shelf is cached for every session), off its event loop;
the poll picks their results up, so the page stays responsive.
"""

from __future__ import annotations

import asyncio
import io
import math
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import panel as pn

from iceviz.app.live import (JOB_NICE, STATUS_COLOURS, fixed_pane, format_seconds, run_buttons, toggle_pause,
                             where_text)
from iceviz.app.paths import for_browser
from iceviz.app.shelf_presets import DEFAULT_PRESET, MODEL, PRESETS, ViscosityState, load_preset
from iceviz.app.widgets import param_widgets
from iceviz.data.problem import DataError
from iceviz.data.shelf import ShelfProblem
from iceviz.models.registry import short_budget
from iceviz.runtime.job import CallTask, Job, JobStatus
from iceviz.runtime.queue import JobQueue, QueueFull, SessionQueue
from iceviz.training.snapshot import Snapshot
from iceviz.viz.shelf_figures import ShelfFigures, ShelfPreview

from iceviz.physics.viscosity_preview import least_squares_viscosity

POLL_MS = 1000
"""How often the view copies the job's latest snapshot (and finished loads) into its figures."""
SNAPSHOT_EVERY_S = 1.0
LOSS_EVERY_S = 2.0
"""The loss chart redraws at most this often (it grows every 50 steps)."""
CONTROL_WIDTH = 300
WIDGET_WIDTH = 138
PREVIEW_FRAME = (560, 300)
"""The shelf preview's frame (width, height) [px]: one size for every shelf."""
LOADING_NOTE_MS = 400
"""A shelf still loading after this long [ms] gets a "Loading" note in place of the previous one's preview."""
HIDDEN = {"name", "seconds"}
LABELS = {"epochs": "Steps", "lr": "Learning rate", "batch_size": "Batch size", "width": "Width",
          "depth": "Depth", "mu_width": "μ net width", "mu_depth": "μ net depth", "collocation": "Collocation",
          "front_points": "Front points", "thickness_weight": "Thickness weight", "equation_weight": "SSA weight",
          "front_weight": "Front weight", "lbfgs_fraction": "L-BFGS fraction", "resampling": "Sampling",
          "resample_every": "Re-score every", "seed": "Seed", "anneal": "Anneal fraction",
          "subdomains": "Sub-domains", "interface_weight": "Interface weight", "interface_points": "Interface points",
          "val_fraction": "Validation fraction"}
LSQ_LABEL = "Instant μ preview (noise-sensitive)"
INTRO = ("Pick an ice shelf, optionally drag a box on its observed speed (box-select tool) to invert only a part "
         "of it (the box must contain calving front: the front condition is what makes the viscosity "
         "identifiable), then press **Start**. The PINN fits velocity and thickness while satisfying the "
         "shallow-shelf equations; the maps show the inferred viscosity μ (log scale), the truth and the "
         "relative error where known, the SSA residual, the strain rate and the misfits. Calving front: magenta.")
METRIC_ROWS = (
    ("mu_rel_error", "viscosity μ: relative L2 error vs the truth", "percent"),
    ("mu_rel_error_interior", "… in the interior", "percent"),
    ("mu_rel_error_boundary", "… within 5 km of the shelf's edge", "percent"),
    ("u_rel_error", "u: relative L2 misfit to the observations (all cells)", "percent"),
    ("v_rel_error", "v: relative L2 misfit to the observations (all cells)", "percent"),
    ("h_rel_error", "h: relative L2 misfit to the observations (all cells)", "percent"),
    ("val_u_rel_error", "u: relative L2 misfit on the held-out validation cells", "percent"),
    ("val_v_rel_error", "v: relative L2 misfit on the held-out validation cells", "percent"),
    ("val_h_rel_error", "h: relative L2 misfit on the held-out validation cells", "percent"),
    ("residual", "RMS SSA momentum residual (× driving stress)", "number"),
    ("front_residual", "RMS calving-front residual (scaled)", "number"),
    ("steps", "optimisation steps", "integer"),
)


def percent(value: float | None) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{100 * value:.1f} %"


def status_text(job: Job | None, snap: Snapshot | None, budget: float | None = None) -> str:
    """One line: status, step, time (of the budget), phase, the viscosity error where known, device."""
    if job is None:
        return "No inversion yet: pick a shelf and press **Start**."
    status = job.status
    parts = [f"**{status.value}**"]
    if snap is None:
        if status is JobStatus.RUNNING:
            parts.append("building the networks")
    else:
        parts.append(f"step {snap.step:,}")
        parts.append(f"{format_seconds(snap.seconds)}" + (f" of {format_seconds(budget)}" if budget else ""))
        history = job.history()
        phase = history[-1].get("phase") if history else None
        if phase and not snap.final:
            parts.append(f"phase {phase}")
        if "mu_rel_error" in snap.metrics:
            parts.append(f"μ error {percent(snap.metrics['mu_rel_error'])}")
        parts.append(where_text(job, snap.device))
    return " · ".join(parts)


def metrics_markdown(metrics: dict[str, float], seconds: float) -> str:
    """The final scores as a Markdown table (what each means beside it)."""
    rows = ["| score | value |", "|---|---|"]
    for key, meaning, kind in METRIC_ROWS:
        if key not in metrics:
            continue
        v = metrics[key]
        text = percent(v) if kind == "percent" else f"{int(v):,}" if kind == "integer" else f"{v:.3g}"
        rows.append(f"| {meaning} | {text} |")
    rows.append(f"| training time | {format_seconds(seconds)} |")
    return "\n".join(rows)


class ViscosityView:
    """The viscosity tab of one browser session: controls, shelf preview, status, live maps, results.

    Parameters
    ----------
    preset : the shelf preset to start with (e.g. the one matching the explorer's map region).
    poll_ms : period of the poll in a served session (a view built elsewhere is polled by hand).
    isolate : train in a worker process (what a server wants; tests train in a thread).
    nice : raise the training's niceness by this much.
    queue : where the inversion waits (the server's queue in the app).
    loads : where loading a shelf and the least-squares preview wait (the server's quick queue in the app). Both
        run as jobs in a thread of this process: a loaded shelf is cached for every session of the server.
    """

    def __init__(self, preset: str | None = None, poll_ms: int = POLL_MS, isolate: bool = True,
                 nice: int = JOB_NICE, queue: JobQueue | SessionQueue | None = None,
                 loads: JobQueue | SessionQueue | None = None):
        self.poll_ms, self.isolate, self.nice = poll_ms, isolate, nice
        self.state = ViscosityState(preset=preset if preset in PRESETS else DEFAULT_PRESET, queue=queue)
        self.loads = loads or JobQueue(slots=1)
        self._loading: tuple[str, Job] | None = None
        self._lsq: tuple[ShelfProblem, Job] | None = None
        self.figures: ShelfFigures | None = None
        self._figures_problem: ShelfProblem | None = None
        self._job_problem: ShelfProblem | None = None
        self._last_snapshot: Snapshot | None = None
        self._last_status: JobStatus | None = None
        self._last_history = -1
        self._last_loss_push = -math.inf
        self._budget: float | None = None
        self._callback = None
        self._doc = None
        """The session's document once attached: loads finish on its event loop (thread-safe next tick)."""
        self.shelf_preview = ShelfPreview(*PREVIEW_FRAME, on_box=self.set_box)
        """One figure for every shelf: choosing another sends its data, not a new figure."""
        self._build()
        self.state.param.watch(self._on_preset, "preset")
        self.state.param.watch(lambda e: self.shelf_preview.set_box(e.new), "box")
        self.load()

    # -- layout ------------------------------------------------------------------------------------
    def _build(self) -> None:
        s = self.state
        w = CONTROL_WIDTH - 20
        self.preset_select = pn.widgets.Select.from_param(s.param.preset, name="Ice shelf", width=w)
        self.budget = pn.widgets.FloatInput.from_param(s.param.seconds, name="Budget [s]", step=10, width=w // 2 - 5)
        self.device = pn.widgets.Select.from_param(s.param.device, name="Device", width=w // 2 - 5)
        # three buttons of 72 px fit the 280-px column
        self.start_button, self.controls = run_buttons("Start", 72, self._on_pause, self.cancel)
        self.start_button.on_click(self._on_start)
        self.get_data = pn.widgets.Button(name="Get this dataset", button_type="success", width=w, visible=False,
                                          description="Download the shelf's DIFFICE_jax file (SHA-256 checked, into "
                                                      "the user cache), as `iceviz data fetch` does")
        self.get_data.on_click(self._on_get_data)
        self.whole_button = pn.widgets.Button(name="Use whole shelf", button_type="light", width=w)
        self.whole_button.on_click(lambda event: self.use_whole_shelf())
        self.lsq_button = pn.widgets.Button(name=LSQ_LABEL, button_type="warning", width=w,
                                            description="μ from the SSA equations by linear least squares on the "
                                                        "gridded data: a second, but it differentiates the data twice, "
                                                        "so noise ruins it. Not an inversion.")
        self.lsq_button.on_click(self._on_lsq)
        self.download = pn.widgets.FileDownload(callback=self._netcdf_bytes, filename="iceviz_viscosity.nc",
                                                label="Download the fields (NetCDF)", button_type="success",
                                                disabled=True, width=w)
        hyper = pn.GridBox(*param_widgets(s.hyper, WIDGET_WIDTH, HIDDEN, LABELS), ncols=2, sizing_mode="fixed", width=w)
        self.hyper_card = pn.Card(hyper, title="Hyper-parameters", collapsed=True, width=w + 10,
                                  sizing_mode="fixed", css_classes=["visc-hyper"])
        self.budget_note = pn.pane.Markdown(short_budget([MODEL], s.seconds), width=w, css_classes=["budget-note"],
                                            styles={"color": "#8a4b00", "font-size": "0.85em"})
        s.param.watch(lambda e: setattr(self.budget_note, "object", short_budget([MODEL], e.new)), "seconds")
        controls = pn.Column(self.preset_select, self.get_data, pn.Row(self.budget, self.device, width=w),
                             self.budget_note,
                             pn.Row(self.start_button, self.controls, width=w),
                             self.whole_button, self.lsq_button, self.download, self.hyper_card,
                             width=CONTROL_WIDTH, sizing_mode="fixed", css_classes=["visc-controls"])
        self.info = pn.pane.Markdown("", css_classes=["visc-info"], sizing_mode="stretch_width", margin=(0, 10))
        self.message = pn.pane.Alert("", alert_type="danger", visible=False, sizing_mode="stretch_width",
                                     css_classes=["visc-message"])
        self.preview = fixed_pane(self.shelf_preview.figure, "visc-preview")
        self.preview_note = pn.pane.Markdown("", visible=False, css_classes=["visc-preview-note"],
                                             sizing_mode="stretch_width", styles={"background": "#fff4e0"})
        self.progress = pn.indicators.Progress(value=0, max=1000, height=10, bar_color="secondary",
                                               sizing_mode="stretch_width")
        self.status = pn.pane.Markdown(status_text(None, None), css_classes=["visc-status"],
                                       sizing_mode="stretch_width", margin=(0, 10), styles={"font-size": "1.05em"})
        self.map_area = pn.Column(sizing_mode="stretch_width", css_classes=["visc-maps"])
        self.chart_area = pn.Row(sizing_mode="stretch_width")
        self.metrics = pn.pane.Markdown("", visible=False, css_classes=["visc-metrics"], width=560)
        top = pn.Row(controls, pn.Column(self.info, self.preview, sizing_mode="stretch_width"),
                     sizing_mode="stretch_width")
        self.view = pn.Column(pn.pane.Markdown(INTRO, sizing_mode="stretch_width"), self.message, top,
                              pn.Column(self.progress, self.status, sizing_mode="stretch_width"),
                              self.preview_note, self.map_area, self.chart_area, self.metrics,
                              sizing_mode="stretch_width", css_classes=["viscosity"])

    def attach(self) -> None:
        """Start polling (inside a served session; a view built elsewhere is polled by hand)."""
        if self._callback is None and pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
            self._callback = pn.state.add_periodic_callback(self.poll, period=self.poll_ms)
            self._doc = pn.state.curdoc

    # -- the shelf ---------------------------------------------------------------------------------
    def _on_preset(self, event: Any) -> None:
        self.load()

    def select(self, label: str) -> bool:
        """Switch to the shelf preset ``label`` (the explorer's map picked it); refused, with a message,
        while an inversion runs. True when the preset is (now) ``label``."""
        if label == self.state.preset:
            return True
        if self._training():
            self._show_message(f"{label} was picked on the map, but an inversion of {self.state.preset} is "
                               "running: cancel it first to switch shelves.")
            return False
        self.state.preset = label
        return True

    def load(self) -> None:
        """Load the current preset in the background (the poll shows it, or the refusal)."""
        label = self.state.preset
        job = Job(label, CallTask(load_preset, (label,), (DataError,)), snapshot_every=None, num_threads=None)
        if self._doc is not None:  # show it as soon as it is loaded, not at the next poll
            job.on_finish = self._loaded_soon
        try:
            self._loading = (label, self.loads.submit(job))
        except QueueFull as err:
            self._show_message(f"{label} was not loaded: {err}.")
            return
        if self._doc is None:
            self._show_loading(label)
        else:  # say "Loading" only if that takes a while
            self._doc.add_timeout_callback(lambda: self._show_loading(label), LOADING_NOTE_MS)
        self._refresh_buttons()

    def _show_loading(self, label: str) -> None:
        """The preview says the shelf is loading (when it still is): one change to the page for a shelf that
        loads at once, instead of a placeholder and then the picture."""
        if self._loading is None or self._loading[0] != label or self._loading[1].status.finished:
            return
        with pn.io.hold():
            self.shelf_preview.clear(f"Loading {label} …")
            self.info.object = PRESETS[label].description
            self._show_message("")

    def _loaded_soon(self, job: Job) -> None:
        """(In the loading job's thread) ask the session's event loop to show the result now; if the session
        has gone, the poll that no longer runs does not matter."""
        try:
            self._doc.add_next_tick_callback(self._apply_load)
        except Exception:  # noqa: BLE001 - a closed session's document refuses callbacks
            pass

    def _apply_load(self) -> None:
        if self._loading is None or not self._loading[1].status.finished:
            return
        (label, job), self._loading = self._loading, None
        if label != self.state.preset or job.status is JobStatus.CANCELLED:
            return
        with pn.io.hold():  # the picture, its description and the buttons reach the browser as one change
            self._show_loaded(label, job)

    def _show_loaded(self, label: str, job: Job) -> None:
        if job.status is not JobStatus.DONE:
            self.state.refuse(job.error or job.status.value, label)
            self.shelf_preview.clear(f"{label} cannot be loaded (see above)")
            self.info.object = PRESETS[label].description
        else:
            whole = job.result
            self.state.accept(whole, label)
            self._draw_preview(whole)
            self.info.object = self._describe(whole)
        self._show_message(self.state.message)
        self._refresh_buttons()
        missing = self.state.missing_dataset()
        self.get_data.visible = missing is not None
        if missing:
            self.get_data.name = f"Get this dataset ({missing})"

    async def _on_get_data(self, event: Any = None) -> None:
        """Fetch the current preset's public file off the event loop, then load the shelf."""
        from iceviz.data.public import fetch

        name = self.state.missing_dataset()
        if name is None:
            return
        self.get_data.loading = True
        try:
            await asyncio.to_thread(fetch, name)
        except DataError as err:
            self._show_message(str(err))
            return
        finally:
            self.get_data.loading = False
        self.get_data.visible = False
        self.load()

    @staticmethod
    def _offset(problem: ShelfProblem) -> bool:
        return any("offset" in note for note in problem.notes)

    def _describe(self, whole: ShelfProblem) -> str:
        vel, thk = whole.velocity, whole.thickness
        xmin, xmax, ymin, ymax = whole.bounds
        lines = [f"**{PRESETS[self.state.preset].description}**",
                 f"{(xmax - xmin) / 1e3:.0f} × {(ymax - ymin) / 1e3:.0f} km · velocity {vel.shape[1]} × "
                 f"{vel.shape[0]} cells ({vel.spacing:.0f} m), thickness {thk.shape[1]} × {thk.shape[0]} · "
                 f"{len(whole.front)} calving-front points · "
                 + ("true viscosity known" if whole.has_truth else "no true viscosity (real data)")]
        if self._offset(whole):
            lines.append("Drawn in the file's own coordinates: they carry an undocumented constant offset from "
                         "EPSG:3031 (roughly +2.5e6 m in x, +2.1e6 m in y), so this is not placed on the "
                         "Antarctic map.")
        return "\n\n".join(lines)

    def _draw_preview(self, whole: ShelfProblem) -> None:
        vel = whole.velocity
        self.shelf_preview.show(vel.x, vel.y, vel.fields["u"], vel.fields["v"], whole.front, whole.bounds)

    def set_box(self, box: tuple[float, float, float, float]) -> ShelfProblem | None:
        """Crop to ``box`` (xmin, xmax, ymin, ymax); a refusal shows in the message."""
        problem = self.state.set_box(box)
        self._show_message(self.state.message)
        self._refresh_buttons()
        return problem

    def use_whole_shelf(self) -> ShelfProblem | None:
        problem = self.state.clear_box()
        self._show_message(self.state.message)
        self._refresh_buttons()
        return problem

    def _show_message(self, text: str, kind: str = "danger") -> None:
        """Show ``text`` (a refusal or a failure; ``kind`` "warning" for a run cut short), or hide it when ""."""
        self.message.param.update(object=for_browser(text), alert_type=kind, visible=bool(text))

    # -- training ----------------------------------------------------------------------------------
    def _on_start(self, event: Any = None) -> Job | None:
        state = self.state
        job = state.start(snapshot_every=SNAPSHOT_EVERY_S, isolate=self.isolate, nice=self.nice)
        if job is None:
            self._show_message(state.message)
            return None
        self._show_message("")
        self._job_problem = state.problem
        self._ensure_figures(state.problem)
        self.preview_note.visible = False
        self.metrics.visible = False
        self.download.disabled = True
        self.download.filename = f"iceviz_viscosity_{re.sub(r'[^A-Za-z0-9]+', '_', state.preset).strip('_')}.nc"
        self._last_snapshot, self._last_status, self._last_history = None, None, -1
        self._budget = state.seconds
        self._update_status()
        return job

    def _on_pause(self) -> None:
        toggle_pause(self.state.job)
        self._update_status()

    def cancel(self) -> None:
        """Stop the running inversion (a button, or the session closing)."""
        self.state.cancel()
        if self.state.job is not None:
            self._update_status()

    def close(self) -> None:
        """The session ended: cancel the job and drop pending loads."""
        self.state.cancel()
        self.loads.cancel_all()

    # -- the least-squares preview -------------------------------------------------------------------
    def _on_lsq(self, event: Any = None) -> None:
        problem = self.state.problem
        if problem is None or self._lsq is not None:
            if problem is None:
                self._show_message(self.state.message or "Wait for the shelf to load first.")
            return
        if self._training():
            self._show_message("The least-squares preview shares the maps with the running inversion: "
                               "wait for it to end, or cancel it.")
            return
        self._ensure_figures(problem)
        self.lsq_button.name = "Computing the μ preview …"
        self.lsq_button.disabled = True
        job = Job("μ preview", CallTask(least_squares_viscosity, (problem,)), snapshot_every=None, num_threads=None)
        try:
            self._lsq = (problem, self.loads.submit(job))
        except QueueFull as err:
            self.lsq_button.name = LSQ_LABEL
            self._show_message(f"The least-squares preview did not start: {err}.")
            self._refresh_buttons()

    def _apply_lsq(self) -> None:
        if self._lsq is None or not self._lsq[1].status.finished:
            return
        (problem, job), self._lsq = self._lsq, None
        self.lsq_button.name = LSQ_LABEL
        self._refresh_buttons()
        if job.status is not JobStatus.DONE:
            if job.status is JobStatus.FAILED:
                self._show_message(f"The least-squares preview failed: {job.error}")
            return
        if problem is not self._figures_problem or self._training():
            return  # the shelf or the crop changed meanwhile, or an inversion took the maps
        mu = job.result
        vel = problem.velocity
        truth = vel.fields.get("mu")
        self.figures.show_preview(vel.x, vel.y, mu, truth)
        valid = np.isfinite(mu)
        lines = [f"**Least-squares preview** (instant, noise-sensitive): μ solved from the SSA equations on the "
                 f"gridded data. {np.mean(mu[valid] <= 0):.0%} of the cells have μ ≤ 0 (left blank on the log "
                 "scale)." if valid.any() else "**Least-squares preview**: no cell could be solved."]
        if truth is not None and valid.any():
            ok = valid & np.isfinite(truth)
            error = float(np.linalg.norm(mu[ok] - truth[ok]) / np.linalg.norm(truth[ok]))
            lines.append(f"Relative error vs the truth: {percent(error)}.")
        if problem.smooth_spacing > vel.spacing:
            lines.append(f"Solved on a {problem.smooth_spacing / 1e3:g} km subgrid: this shelf's simulated velocities "
                         "are piecewise linear, so differences across single cells mean nothing.")
        lines.append("It differentiates the data twice, so noise ruins it: a check, not an inversion.")
        self.preview_note.object = " ".join(lines)
        self.preview_note.visible = True

    # -- figures -------------------------------------------------------------------------------------
    def _training(self) -> bool:
        job = self.state.job
        return job is not None and not job.status.finished

    def _ensure_figures(self, problem: ShelfProblem) -> ShelfFigures:
        """The figures of ``problem`` (made once per shelf and crop)."""
        if self.figures is not None and problem is self._figures_problem:
            return self.figures
        with pn.io.hold(freeze=True):
            figures = ShelfFigures(problem.bounds, problem.front, problem.has_truth)
            if problem.has_truth:
                figures.set_truth_limits(problem.velocity.fields["mu"])
            self.map_area.objects = [pn.Row(*(fixed_pane(m.figure, m.css_class) for m in row), sizing_mode="fixed")
                                     for row in figures.rows]
            self.chart_area.objects = [fixed_pane(figures.loss.figure, "visc-loss")]
        self.figures, self._figures_problem = figures, problem
        return figures

    # -- periodic ------------------------------------------------------------------------------------
    def poll(self) -> None:
        """Apply finished loads and previews; copy the job's latest snapshot into the figures. Never blocks."""
        self._apply_load()
        self._apply_lsq()
        job = self.state.job
        if job is None:
            return
        snap, status = job.latest(), job.status
        history = None
        now = time.monotonic()
        if snap is self._last_snapshot and status is self._last_status:
            return
        with pn.io.hold():
            if snap is not None and snap is not self._last_snapshot and self._figures_problem is self._job_problem:
                self.figures.update(snap.fields)
                history = job.history()
                if len(history) != self._last_history and (now - self._last_loss_push > LOSS_EVERY_S or snap.final):
                    self._last_history, self._last_loss_push = len(history), now
                    self.figures.update_losses(history)
            self._last_snapshot = snap
            self._update_status(status)
            if snap is not None and snap.final and status.finished:
                self.metrics.object = metrics_markdown(snap.metrics, snap.seconds)
                self.metrics.visible = True

    def _update_status(self, status: JobStatus | None = None) -> None:
        """Status line, progress and buttons; ``status`` as the caller read it (the job's may move on meanwhile,
        and the poll must remember the status it acted on)."""
        job = self.state.job
        snap = job.latest() if job is not None else None
        if status is None and job is not None:
            status = job.status
        self._last_status = status
        self.status.object = status_text(job, snap, self._budget)
        if job is None:
            return
        self.progress.value = 1000 if status.completed else int(1000 * (snap.progress if snap else 0.0))
        self.progress.bar_color = STATUS_COLOURS[status]
        if status is JobStatus.FAILED:
            self._show_message(f"**The inversion failed.** {job.error}")
        elif status is JobStatus.SHORT:
            self._show_message(f"**The inversion was cut short.** {job.shortfall}", kind="warning")
        self._refresh_buttons()

    def _refresh_buttons(self) -> None:
        job = self.state.job
        status = job.status if job is not None else None
        active = status in (JobStatus.RUNNING, JobStatus.PAUSED)
        self.start_button.disabled = active or self.state.problem is None
        self.preset_select.disabled = active  # the maps belong to the running inversion's shelf
        self.controls.param.update(pause_label="Resume" if status is JobStatus.PAUSED else "Pause",
                                   pause_disabled=not active, cancel_disabled=not active)
        self.lsq_button.disabled = active or self.state.problem is None or self._lsq is not None
        self.whole_button.disabled = self.state.box is None
        final = job.latest() if job is not None else None
        self.download.disabled = not (final is not None and final.final)

    # -- export --------------------------------------------------------------------------------------
    def final_dataset(self) -> Any:
        """The final fields with their provenance and scores as attributes (None before a run ends)."""
        job = self.state.job
        snap = job.latest() if job is not None else None
        if snap is None or not snap.final:
            return None
        problem = self._job_problem
        attrs = {"title": "iceviz viscosity-pinn inversion", "source": "iceviz viscosity-pinn",
                 "data_spec": problem.spec if problem is not None else "", "steps": int(snap.step),
                 "training_seconds": float(snap.seconds), "device": snap.device,
                 **{k: float(v) for k, v in snap.metrics.items() if isinstance(v, (int, float))}}
        if problem is not None and problem.notes:
            attrs["comment"] = "; ".join(problem.notes)
        return snap.fields.assign_attrs(**attrs)

    def _netcdf_bytes(self) -> io.BytesIO:
        ds = self.final_dataset()
        if ds is None:
            return io.BytesIO(b"")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "viscosity.nc"
            ds.to_netcdf(path, engine="netcdf4")
            return io.BytesIO(path.read_bytes())

