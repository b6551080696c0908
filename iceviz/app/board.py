"""A board of training runs: one line per run, a metrics table, the maps of the runs being compared, exports.

The explorer's Training tab and its Lesson tab each own a :class:`RunBoard`, so
the lesson's runs, colour scales and maps never mix with the session's other
runs. The session's periodic callback calls :meth:`RunBoard.poll`; nothing here
runs in a training thread.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import panel as pn
from bokeh.models.widgets.tables import NumberFormatter, ScientificFormatter

from iceviz.app.live import (TABLE_FORMATS, TABLE_SCIENTIFIC, TABLE_TITLES, JobCard, LiveRow, metrics_frame,
                             shared_limits)
from iceviz.data.netcdf import fields_dataset, write_netcdf
from iceviz.runtime.job import Job
from iceviz.viz import maps
from iceviz.viz.live_figures import cell_bounds, shared_ranges

HOLD_ROWS_POLLS = 4
"""Polls that new maps wait for the other jobs' first progress (see :meth:`RunBoard.poll`)."""


def divergence_scale(ds: Any) -> tuple[float, str]:
    """The colour limit of a field set's divergence map and its "zero everywhere" note (maybe empty)."""
    _, limit = maps.flux_and_divergence_limits([ds])
    return limit, maps.nil_divergence_note([ds["divergence"].values], limit)


class RunBoard:
    """Runs of one part of a session, drawn as cards, a table, and live maps of the runs chosen to compare.

    Parameters
    ----------
    notify : shows a message to the user (e.g. an export with nothing to export).
    captions : one line under each of a row's three maps (flux, divergence, error), or None.
    export : offer NetCDF and PNG exports of the chosen run.
    """

    def __init__(self, notify: Callable[[str], None], captions: Sequence[str] | None = None, export: bool = True):
        self.notify, self.captions = notify, captions
        self.jobs: list[tuple[str, Job]] = []
        self.cards_by_id: dict[int, JobCard] = {}
        self.rows: dict[int, LiveRow] = {}
        self.seen: set[int] = set()  # jobs an earlier poll showed with a snapshot and progress (rows are due)
        self.held = 0  # polls that have held back due rows for jobs still starting
        self.live_ranges: dict[tuple, Any] = {}
        self.cards = pn.Column(sizing_mode="stretch_width", css_classes=["run-cards"])
        self.clear_button = pn.widgets.Button(name="Clear finished", button_type="light", width=130, disabled=True,
                                              description="Forget the runs that ended (their maps and table rows)")
        self.clear_button.on_click(lambda event: self.clear_finished())
        self.compare = pn.widgets.MultiChoice(name="Maps of", options={}, value=[], sizing_mode="stretch_width",
                                              css_classes=["compare-runs"])
        self.compare.param.watch(lambda event: self._show_rows(), "value")
        self.table_key: list[tuple[str, Any, Any]] = []
        """(label, status, latest snapshot) of each job as the table last showed them."""
        self.table = pn.widgets.Tabulator(metrics_frame([]), disabled=True, show_index=False, titles=TABLE_TITLES,
                                          sizing_mode="stretch_width", layout="fit_data_fill", visible=False,
                                          formatters={**{k: NumberFormatter(format=f) for k, f in TABLE_FORMATS.items()},
                                                      **{k: ScientificFormatter(precision=2, power_limit_low=0,
                                                                                power_limit_high=3)
                                                         for k in TABLE_SCIENTIFIC}})
        self.live = pn.Column(sizing_mode="stretch_width")
        self.losses = pn.GridBox(ncols=3, sizing_mode="fixed")
        self.loss_title = pn.pane.Markdown("#### Loss terms")
        # the title comes and goes with the curves by changing the column's children: toggling a pane's
        # visibility here made BokehJS fail to lay the page out ('parent_style')
        self.loss_area = pn.Column(sizing_mode="stretch_width")
        parts: list[Any] = [self.cards, self.clear_button, self.table]
        if export:
            self.export_job = pn.widgets.Select(name="Export run", options={}, width=240)
            self.download_nc = pn.widgets.FileDownload(callback=self.netcdf_bytes, filename="iceviz_prediction.nc",
                                                       label="NetCDF (CF, EPSG:3031)", button_type="success")
            self.download_png = pn.widgets.FileDownload(callback=self.png_bytes, filename="iceviz_view.png",
                                                        label="PNG of the maps", button_type="success")
            parts.append(pn.Row(self.export_job, self.download_nc, self.download_png))
        self.view = pn.Column(*parts, self.compare, self.live, self.loss_area,
                              sizing_mode="stretch_width")

    # -- runs ------------------------------------------------------------------------------------
    def add(self, jobs: list[Job], labels: Sequence[str] = ()) -> None:
        """Cards now; the maps of these runs replace the compared ones and appear with their first snapshots."""
        for i, job in enumerate(jobs):
            label = labels[i] if i < len(labels) else f"{job.name} #{job.id}"
            card = JobCard(job, label)
            self.cards_by_id[job.id] = card
            self.jobs.append((label, job))
            self.cards.append(card.view)
        if jobs:
            self._options()
            self.compare.value = [job.id for job in jobs]

    def compare_runs(self, ids: Sequence[int]) -> None:
        """Show the maps of these runs (ids of this board's jobs), in the board's order."""
        self.compare.value = [job.id for _, job in self.jobs if job.id in set(ids)]

    def clear_finished(self) -> None:
        """Forget the runs that ended: their cards, maps, table rows and export entries."""
        gone = {job.id for _, job in self.jobs if job.status.finished}
        self._forget(gone)

    def reset(self) -> None:
        """Forget every run (the caller cancels them)."""
        self._forget({job.id for _, job in self.jobs})

    def _forget(self, ids: set[int]) -> None:
        if not ids:
            return
        self.jobs = [(label, job) for label, job in self.jobs if job.id not in ids]
        self.cards.objects = [card.view for i, card in self.cards_by_id.items() if i not in ids]
        for i in ids:
            self.cards_by_id.pop(i, None)
            self.rows.pop(i, None)
        self.seen -= ids
        if not self.jobs:
            self.live_ranges.clear()
        self._options()
        self.compare.value = [i for i in self.compare.value if i not in ids]
        self._show_rows()
        self.table.value = metrics_frame(self.jobs)
        self.table.visible = bool(self.jobs)

    def _options(self) -> None:
        options = {label: job.id for label, job in self.jobs}
        self.compare.options = options
        if hasattr(self, "export_job"):
            self.export_job.options = options

    def _shown(self) -> list[tuple[str, Job]]:
        chosen = set(self.compare.value)
        return [(label, job) for label, job in self.jobs if job.id in chosen]

    def _show_rows(self) -> None:
        shown = [job.id for _, job in self._shown() if job.id in self.rows]
        self.live.objects = [self.rows[i].view for i in shown]
        self.losses.objects = [self.rows[i].loss_view for i in shown]
        wanted = [self.loss_title, self.losses] if shown else []
        if list(self.loss_area) != wanted:
            self.loss_area.objects = wanted

    # -- polling ---------------------------------------------------------------------------------
    def poll(self) -> None:
        """Copy the jobs' latest snapshots into the views (never blocks on training).

        A job's maps come after its card has shown progress (a snapshot and an epoch done), and after the
        cards of the jobs still starting have too, for up to :data:`HOLD_ROWS_POLLS`: drawing new figures
        takes the browser seconds, and every update sent with or after them waits until it is done."""
        snaps = {job.id: job.latest() for _, job in self.jobs}
        shown = self._shown()
        pending = {job.id for _, job in shown} & (self.seen - self.rows.keys())
        starting = any(job.id not in self.seen and not job.status.finished for _, job in self.jobs)
        self.held = self.held + 1 if pending and starting else 0
        due = pending if not starting or self.held > HOLD_ROWS_POLLS else set()
        progressed = {job.id for _, job in self.jobs  # (a job's history is copied only until its first progress)
                      if job.id not in self.seen and snaps[job.id] is not None and job.history()}
        # Freezing the document makes Bokeh walk its whole model graph once at the end: worth it when
        # plots are added (once instead of once per model), wasted when only data changes.
        with pn.io.hold(freeze=bool(due)):
            self._refresh(snaps, shown, due)
        self.seen |= progressed  # the cards just drawn show at least this progress

    def _refresh(self, snaps: dict[int, Any], shown: list[tuple[str, Job]], due: set[int]) -> None:
        for _, job in self.jobs:
            self.cards_by_id[job.id].update()
        limits = shared_limits([snaps[job.id] for _, job in shown])
        added = False
        for label, job in shown:
            snap, row = snaps[job.id], self.rows.get(job.id)
            if row is None and job.id in due:
                self.rows[job.id] = LiveRow(label, snap, limits, job.history(), self._ranges(snap), self.captions)
                added = True
            elif row is not None:
                row.push(snap, limits, job.history())
        if added:
            self._show_rows()
        key = [(label, job.status, snaps[job.id]) for label, job in self.jobs]
        if not _same_rows(key, self.table_key):  # the table changes only with a job's status or a new snapshot
            self.table_key = key
            frame = metrics_frame(self.jobs)
            if not frame.equals(self.table.value):
                self.table.value = frame
        self.table.visible = bool(self.jobs)
        self.clear_button.disabled = not any(job.status.finished for _, job in self.jobs)

    def _ranges(self, snapshot: Any) -> tuple[Any, Any]:
        """The shared zoom of every live map over the same region (maps of another region zoom apart)."""
        bounds = cell_bounds(snapshot.fields["x"].values, snapshot.fields["y"].values)
        key = tuple(round(b) for b in bounds)
        if key not in self.live_ranges:
            self.live_ranges[key] = shared_ranges(bounds)
        return self.live_ranges[key]

    # -- export ----------------------------------------------------------------------------------
    def _selected_snapshot(self) -> tuple[str, Any]:
        """The chosen run's label and latest snapshot (snapshot None, and the user told, when there is none)."""
        ids = {job.id: (label, job) for label, job in self.jobs}
        label, job = ids.get(self.export_job.value, ("", None))
        snap = job.latest() if job is not None else None
        if snap is None:
            self.notify("No run to export yet: start a training job first.")
        return label, snap

    def netcdf_bytes(self) -> io.BytesIO:
        """The chosen run's latest fields as a CF NetCDF file (divergence says when it is zero everywhere)."""
        label, snap = self._selected_snapshot()
        if snap is None:
            return io.BytesIO(b"")
        ds = snap.fields
        _, note = divergence_scale(ds)
        out = fields_dataset(ds, {"title": f"iceviz {label} prediction", "data_spec": ds.attrs.get("data", ""),
                                  "epoch": snap.epoch})
        if note:
            out["divergence"].attrs["comment"] = f"{note}: zero to float precision (divergence-free by construction)"
        with tempfile.TemporaryDirectory() as tmp:
            path = write_netcdf(out, Path(tmp) / "prediction.nc")
            return io.BytesIO(path.read_bytes())

    def png_bytes(self) -> io.BytesIO:
        """The chosen run's flux and divergence maps as a PNG laid out for print (km ticks, units, titles)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        label, snap = self._selected_snapshot()
        if snap is None:
            return io.BytesIO(b"")
        ds = snap.fields
        limit, note = divergence_scale(ds)
        fig, axes = plt.subplots(1, 2, figsize=(12, 5.2), constrained_layout=True)
        km = 1e-3
        extent = [float(ds.x[0]) * km, float(ds.x[-1]) * km, float(ds.y[0]) * km, float(ds.y[-1]) * km]
        im = axes[0].imshow(ds["flux_magnitude"].values, origin="lower", extent=extent, cmap=maps.SEQUENTIAL)
        fig.colorbar(im, ax=axes[0], label="|q| (m²/yr)", shrink=0.85)
        im = axes[1].imshow(ds["divergence"].values, origin="lower", extent=extent, cmap=maps.DIVERGING,
                            vmin=-limit, vmax=limit)
        fig.colorbar(im, ax=axes[1], label="∇·q (m/yr)", shrink=0.85)
        for ax, name in zip(axes, ("predicted flux |q|", "divergence ∇·q" + (f"\n{note}" if note else ""))):
            ax.set_title(name, fontsize=11)
            ax.set_xlabel("x (km, EPSG:3031)")
            ax.set_ylabel("y (km, EPSG:3031)")
            ax.xaxis.set_major_locator(plt.MaxNLocator(5))
            ax.yaxis.set_major_locator(plt.MaxNLocator(5))
        data = f" ({ds.attrs['data']})" if ds.attrs.get("data") else ""
        fig.suptitle(f"iceviz {label}, epoch {snap.epoch}{data}", fontsize=12)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        buf.seek(0)
        return buf


def _same_rows(a: list[tuple[str, Any, Any]], b: list[tuple[str, Any, Any]]) -> bool:
    """Whether two (label, status, snapshot) lists name the same jobs in the same state (snapshots by identity:
    a job publishes a new one for every change)."""
    return len(a) == len(b) and all(x[0] == y[0] and x[1] is y[1] and x[2] is y[2] for x, y in zip(a, b))
