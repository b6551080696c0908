"""Live views of training jobs: a card with progress and controls, and a row of maps per job.

Each browser session polls its jobs (``pn.state.add_periodic_callback``) and
writes the latest snapshots into Bokeh figures made once per job, so the maps
update in place, cheaply, and keep the user's zoom. Nothing here runs in a training
thread, and the training threads never call into Panel.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import panel as pn
from bokeh.models import Range1d

from iceviz.app.controls import JobControls
from iceviz.runtime.job import Job, JobStatus
from iceviz.training.snapshot import Snapshot
from iceviz.viz import maps
from iceviz.viz.live_figures import FieldFigure, LossFigure, arrow_columns, image_columns, round2

LOSS_EVERY_S = 2.0
"""Loss curves redraw at most this often (they grow every epoch)."""

JOB_NICE = 10
"""Background jobs (training, simulations) yield the CPU to the server and the browser first."""
STATUS_COLOURS = {
    JobStatus.QUEUED: "secondary", JobStatus.RUNNING: "primary", JobStatus.PAUSED: "warning",
    JobStatus.DONE: "success", JobStatus.SHORT: "warning", JobStatus.FAILED: "danger", JobStatus.CANCELLED: "light",
}


def run_buttons(label: str, width: int, on_pause: Callable[[], None],
                on_cancel: Callable[[], None]) -> tuple[pn.widgets.Button, JobControls]:
    """A start button named ``label``, and the Pause / Cancel controls (disabled until something runs), each
    button ``width`` pixels wide."""
    return (pn.widgets.Button(name=label, button_type="primary", width=width),
            JobControls(on_pause=on_pause, on_cancel=on_cancel, button_width=width, cancel_disabled=True))


def toggle_pause(job: Job | None) -> None:
    """Pause a running job, resume a paused one (the Pause / Resume button)."""
    if job is None:
        return
    if job.status is JobStatus.PAUSED:
        job.resume()
    else:
        job.pause()


def format_seconds(s: float | None) -> str:
    if s is None or not math.isfinite(s):
        return "–"
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


TABLE_FORMATS = {"rmse": "0.0000", "mae": "0.0000", "rmse_m2_per_yr": "0,0", "val_rmse_m2_per_yr": "0,0",
                 "seconds": "0.0"}
"""Number formats (numbro) for the metrics table; the MAD columns are scientific (dfNN's is ~1e-7)."""
TABLE_SCIENTIFIC = ("mad", "mad_m_per_yr")
TABLE_TITLES = {"model": "run", "seconds": "seconds (s)", "rmse": "test RMSE (scaled)", "mae": "test MAE (scaled)",
                "mad": "mean |∇·q| (scaled)", "rmse_m2_per_yr": "test RMSE (m²/yr)",
                "val_rmse_m2_per_yr": "validation RMSE (m²/yr)", "mad_m_per_yr": "mean |∇·q| (m/yr)"}
"""Column titles of the metrics table, with units; "scaled" is the data's own normalisation (flux over the
training flux RMS, lengths over the region's extent), the units the papers quote."""


def waiting_text(job: Job) -> str:
    """What a job that has not begun is doing: its place in the server's line, or starting its worker."""
    if job.status is not JobStatus.QUEUED:
        return "starting its worker"
    place = job.position()
    if place is None:
        return "waiting for a free worker"
    return "next in line for a free worker" if place == 0 else f"waiting for a free worker: {place} job(s) ahead"


def where_text(job: Job, device: str | None = None) -> str:
    """Where a job trains, for its card: its device, and the worker it runs on ('cpu on Dask worker 1')."""
    device = device or job.device or "…"
    text = f"{device} on {job.worker}" if job.worker else device
    if job.restarts:
        text += f" (begun again {job.restarts}x: a worker died)"
    return text


class JobCard:
    """Name, status, progress bar with ETA, device, and pause / resume / cancel buttons for one job."""

    def __init__(self, job: Job, label: str):
        self.job, self.label = job, label
        self.progress = pn.indicators.Progress(value=0, max=1000, sizing_mode="stretch_width", height=14,
                                               bar_color="primary")
        self.info = pn.pane.Markdown("", margin=(0, 5), sizing_mode="stretch_width")
        self.controls = JobControls(on_pause=self._on_pause, on_cancel=self.job.cancel)
        self.shown: tuple = ()
        """(status, progress in thousandths, text) as last shown: an update that would show the same does nothing."""
        self.view = pn.Column(self.info, self.progress, self.controls, css_classes=["job-card"],
                              styles={"border": "1px solid #ddd", "border-radius": "6px", "padding": "4px"},
                              sizing_mode="stretch_width")
        self.update()

    def _on_pause(self) -> None:
        toggle_pause(self.job)
        self.update()

    def update(self) -> None:
        job, status = self.job, self.job.status
        history = job.history()
        last = history[-1] if history else {}
        progress = 1.0 if status.completed else float(last.get("progress", 0.0))
        elapsed = float(last.get("seconds", 0.0))
        eta = elapsed * (1 - progress) / progress if progress > 0.01 and not status.finished else None
        device = where_text(job)
        epoch, phase = last.get("epoch", 0), ""
        if last.get("phase") == "refit":  # the second phase of a flux run: its epochs count from 1 again
            latest = job.latest()
            if status.finished and latest is not None:
                epoch, phase = latest.epoch, f", refitted on all points to epoch {last.get('best_epoch')}"
            else:
                phase = f" of {last.get('best_epoch')}, refit on all points"
        if not history and not status.finished:  # a worker process is starting (imports, data): seconds
            text = f"**{self.label}** · {status.value} · {waiting_text(job)} …"
        elif status.finished:  # one line: nothing left to control or to wait for
            text = f"**{self.label}** · {status.value} · {device} · epoch {epoch}{phase} · {format_seconds(elapsed)}"
        else:
            text = (f"**{self.label}** · {status.value} · {device} · epoch {epoch}{phase} · "
                    f"{format_seconds(elapsed)} elapsed · ETA {format_seconds(eta)}")
        if status is JobStatus.FAILED:
            text += f"\n\n<span style='color:#b00020'>Failed: {job.error}</span>"
        elif status is JobStatus.SHORT:
            text += f"\n\n<span style='color:#8a5300'>Cut short: {job.shortfall}</span>"
        shown = (status, int(1000 * progress), text)
        if shown == self.shown:  # a class's waiting cards poll twice a second with nothing new to say
            return
        self.shown = shown
        self.info.object = text
        self.progress.value = int(1000 * progress)
        self.progress.bar_color = STATUS_COLOURS[status]
        self.controls.param.update(pause_label="Resume" if status is JobStatus.PAUSED else "Pause",
                                   pause_disabled=status not in (JobStatus.RUNNING, JobStatus.PAUSED),
                                   cancel_disabled=status.finished)
        if status.finished and len(self.view) > 1:  # collapse to its one line of text
            self.view.objects = [self.info]


def fixed_pane(fig: Any, css_class: str) -> pn.Column:
    """A fixed-size Bokeh figure in a box carrying ``css_class`` (for styling and browser tests).

    The box takes the figure's stated outer size, so no layout has to measure it."""
    return pn.Column(pn.pane.Bokeh(fig, sizing_mode="fixed"), css_classes=[css_class], sizing_mode="fixed",
                     width=fig.width, height=fig.height)


class LiveRow:
    """Predicted flux (magnitude + arrows), divergence and error maps plus loss curves for one job.

    Made when the job's first snapshot exists, and filled with it, so every plot is drawn with its
    colour bar and legend in place; later snapshots only replace data (see iceviz.viz.live_figures).
    Rows given the same ``ranges`` zoom and pan together.
    """

    def __init__(self, label: str, snapshot: Snapshot, limits: dict[str, float], history: list[dict],
                 ranges: tuple[Range1d, Range1d], captions: Sequence[str] | None = None):
        self.label = label
        # every term the trainer reports, known from the first snapshot (the PINN's collocation term
        # joins after its first epoch), so the legend never changes
        terms = [f"loss_{k}" for k in snapshot.losses] + (["loss_collocation"] if "div" in snapshot.losses else [])
        validation = any(maps.VALIDATION_KEY in h for h in history)
        keys = sorted(set(maps.loss_terms(history)) | set(terms) | {maps.EPOCH_LOSS}
                      | ({maps.REFIT_LOSS} if validation else set()))
        truth = "error" in snapshot.fields
        self.flux = FieldFigure(f"{label}: predicted flux |q|", maps.SEQUENTIAL, "|q| (m²/yr)", ranges, arrows=True)
        self.divergence = FieldFigure(f"{label}: divergence ∇·q, shared scale", maps.DIVERGING, "∇·q (m/yr)",
                                      ranges, compact=False)
        self.error = FieldFigure(f"{label}: |error| vs known truth" if truth else
                                 f"{label}: mean |error| at held-out points", maps.ERROR, "|error| (m²/yr)", ranges)
        self.loss = LossFigure(f"{label}: loss terms", keys, validation=validation)
        self.last_snapshot: Snapshot | None = None
        self.last_limits: tuple[float, float, float] | None = None
        self.last_history = -1
        self.last_loss_push = -float("inf")
        self.push(snapshot, limits, history)
        panes = [fixed_pane(f.figure, name) for f, name in
                 ((self.flux, "flux-map"), (self.divergence, "divergence-map"), (self.error, "error-map"))]
        if captions:
            panes = [pn.Column(p, pn.pane.Markdown(c, width=p.width, margin=(0, 5), css_classes=["map-caption"],
                                                   styles={"font-size": "0.85em", "color": "#444"}))
                     for p, c in zip(panes, captions)]
        self.view = pn.Row(*panes, css_classes=["live-row"], sizing_mode="stretch_width")
        self.loss_view = fixed_pane(self.loss.figure, "loss-view")

    @staticmethod
    def _key(limits: dict[str, float]) -> tuple[float, float, float]:
        return limits["div_limit"], limits["flux_limit"], limits["err_limit"]

    def _draw(self, snapshot: Snapshot, limits: dict[str, float]) -> None:
        ds = snapshot.fields
        x, y = ds["x"].values, ds["y"].values
        self.flux.update(image_columns(x, y, ds["flux_magnitude"].values), 0.0, limits["flux_limit"],
                         arrows=arrow_columns(ds))
        div = limits["div_limit"]
        self.divergence.update(image_columns(x, y, ds["divergence"].values), -div, div,
                               note=maps.nil_divergence_note([ds["divergence"].values], div))
        if "error" in ds:
            error = image_columns(x, y, ds["error"].values)
        else:
            error = image_columns(*maps.binned_mean(snapshot.points, (x[0], x[-1], y[0], y[-1])))
        self.error.update(error, 0.0, limits["err_limit"])

    def push(self, snapshot: Snapshot | None, limits: dict[str, float], history: list[dict]) -> None:
        key = self._key(limits)
        if snapshot is not None and (snapshot is not self.last_snapshot or key != self.last_limits):
            self.last_snapshot, self.last_limits = snapshot, key
            self._draw(snapshot, limits)
        now = time.monotonic()
        final = snapshot is not None and snapshot.final
        if len(history) != self.last_history and (now - self.last_loss_push > LOSS_EVERY_S or final):
            self.last_history, self.last_loss_push = len(history), now
            self.loss.update(history)


def shared_limits(snapshots: list[Snapshot]) -> dict[str, float]:
    """Colour limits shared by every model's maps, so they compare honestly."""
    fields = [s.fields for s in snapshots if s is not None and s.fields is not None]
    if not fields:
        return dict(div_limit=1.0, flux_limit=1.0, err_limit=1.0)
    # never stretch the divergence scale below a physical floor, or float rounding would look like sources and sinks
    flux, div = maps.flux_and_divergence_limits(fields)
    errors = [f["error"].values for f in fields if "error" in f]
    errors += [s.points["error"] for s in snapshots if s is not None and s.points is not None and not errors]
    err = maps.symmetric_limit(errors, quantile=0.98) if errors else 1.0
    return dict(div_limit=round2(div), flux_limit=round2(flux), err_limit=round2(err))


def metrics_frame(jobs: list[tuple[str, Job]]) -> pd.DataFrame:
    """One row per job: status, epochs, seconds and test metrics, ranked by RMSE, with the RMSE on the
    held-out validation points beside the test RMSE (once a run with a validation set ends; NaN before)."""
    rows = []
    for label, job in jobs:
        snap = job.latest()
        m = snap.metrics if snap is not None else {}
        rows.append(dict(model=label, status=job.status.value, epochs=snap.epoch if snap else 0,
                         seconds=round(snap.seconds, 1) if snap else 0.0,
                         rmse=m.get("rmse", np.nan), mae=m.get("mae", np.nan), mad=m.get("mad", np.nan),
                         rmse_m2_per_yr=m.get("rmse_phys", np.nan), val_rmse_m2_per_yr=m.get("val_rmse_phys", np.nan),
                         mad_m_per_yr=m.get("mad_phys", np.nan)))
    frame = pd.DataFrame(rows, columns=["model", "status", "epochs", "seconds", "rmse", "mae", "mad",
                                        "rmse_m2_per_yr", "val_rmse_m2_per_yr", "mad_m_per_yr"])
    return frame.sort_values("rmse", na_position="last").reset_index(drop=True)
