"""The explorer: pick a region of Antarctica, train flux models, watch them learn.

``build_app()`` makes one independent app per browser session (``panel serve``
runs the script once per session), with its own :class:`ExplorerState`,
job queue and periodic callback. Closing the tab cancels the session's jobs.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import holoviews as hv
import numpy as np
import panel as pn
from holoviews.operation.datashader import dynspread, rasterize, regrid

from iceviz.app.live import JobCard, LiveRow, metrics_frame, shared_limits
from iceviz.app.paths import RUN_SUFFIXES, allowed_roots, safe_path
from iceviz.app.state import REPO_ROOT, ExplorerState
from iceviz.data.netcdf import grid_dataset
from iceviz.geo.basemap import basemap
from iceviz.geo.crs import format_bounds
from iceviz.geo.graticule import graticule, graticule_labels
from iceviz.geo.regions import PRESET_REGIONS
from iceviz.training.checkpoint import load_checkpoint
from iceviz.training.fields import flux_grid_fields
from iceviz.training.job import Job
from iceviz.training.trainers import training_job
from iceviz.viz import maps

POLL_MS = 500
LESSON_TEXT = (
    "**Divergence-free vs soft-constrained.** Both networks fit the same noisy observations along nine "
    "flight lines of a field whose truth is known. Watch the middle column: the dfNN's divergence map stays "
    "blank because mass conservation is built into it, while the PINN only approaches zero divergence as "
    "far as its penalty weight pushes it, trading that against fitting the data."
)

OVERVIEW_OPTS = dict(data_aspect=1, frame_width=620, xaxis=None, yaxis=None, toolbar="above")


# -- pure view builders (HoloViews only) --------------------------------------------------------

def overview(state: ExplorerState) -> hv.Overlay:
    """Antarctica in EPSG:3031: offline base map, graticule, preset regions, data footprints."""
    bm = basemap(resolution_m=5000)
    rgb = hv.RGB((bm.x, bm.y, bm.rgb[..., 0], bm.rgb[..., 1], bm.rgb[..., 2]), kdims=maps.KDIMS)
    lines = hv.Path([np.column_stack([g.x, g.y]) for g in graticule()], kdims=maps.KDIMS).opts(
        color="white", alpha=0.5, line_dash="dotted", line_width=1)
    labels = hv.Labels([(x, y, t) for x, y, t in graticule_labels()], kdims=maps.KDIMS, vdims="text").opts(
        text_color="white", text_font_size="8pt", text_alpha=0.8)
    presets = [r for r in PRESET_REGIONS.values() if r.parent is None]
    regions = maps.boxes([r.bounds for r in presets], [r.name for r in presets], color="#ffd400")
    footprints = state.footprints()
    data = maps.boxes(list(footprints.values()), list(footprints), color="#00e5ff")
    return (regrid(rgb).opts(**OVERVIEW_OPTS) * lines * labels * regions * data)


def current_box(bounds: tuple[float, float, float, float]) -> hv.Rectangles:
    xmin, xmax, ymin, ymax = bounds
    return hv.Rectangles([(xmin, ymin, xmax, ymax)], kdims=["x", "y", "x1", "y1"]).opts(
        fill_color="#ff3d00", fill_alpha=0.15, line_color="#ff3d00", line_width=3)


def region_view(problem: Any) -> hv.Overlay:
    """Flux of the chosen region: truth or observed magnitude, arrows, train / test points."""
    if problem is None:
        return hv.Overlay([hv.Points([], kdims=maps.KDIMS)]).opts(title="no usable data in this box")
    opts = dict(data_aspect=1, frame_width=560, colorbar=True, tools=["hover"])
    layers = []
    if problem.truth is not None:
        x, y = problem.grid((120, 120))
        xx, yy = np.meshgrid(x, y)
        q = problem.truth(np.column_stack([xx.ravel(), yy.ravel()]))
        mag = np.hypot(q[:, 0], q[:, 1]).reshape(xx.shape)
        layers.append(hv.Image((x, y, mag), kdims=maps.KDIMS, vdims=[hv.Dimension("flux_magnitude", label="|q| truth",
                                                                                     unit="m²/yr")])
                      .opts(cmap=maps.SEQUENTIAL, **opts))
    else:
        pts = maps.flux_points(np.vstack([problem.train.xy, problem.test.xy]),
                               np.vstack([problem.train.q, problem.test.q]))
        layers.append(dynspread(rasterize(pts, aggregator="mean", vdim_prefix="")).opts(cmap=maps.SEQUENTIAL, **opts))
    layers.append(maps.binned_arrows(problem.train.xy, problem.train.q, problem.bounds))
    layers.append(_points(problem.train.xy, "train"))
    layers.append(_points(problem.test.xy, "test"))
    title = f"{problem.spec}: {len(problem.train)} train / {len(problem.test)} test points"
    return hv.Overlay(layers).opts(title=title, legend_position="bottom_right")


def _points(xy: np.ndarray, split: str):
    pts = maps.observation_points(xy, split, size=2)
    return dynspread(rasterize(pts, aggregator="count")).opts(cmap=[pts.opts.get().kwargs["color"]] * 2,
                                                             alpha=0.7) if len(xy) > 20_000 else pts


# -- the app ------------------------------------------------------------------------------------

class Explorer:
    """All widgets and callbacks of one browser session."""

    def __init__(self):
        self.state = ExplorerState()
        self.rows: dict[int, tuple[JobCard, LiveRow]] = {}
        self.jobs: list[tuple[str, Job]] = []
        self.lesson_active = False
        self._build()

    # -- layout --------------------------------------------------------------------------------
    def _build(self) -> None:
        s = self.state
        self.message = pn.pane.Alert("", alert_type="warning", visible=False, sizing_mode="stretch_width")
        self.summary = pn.pane.Markdown("", sizing_mode="stretch_width")
        region = pn.widgets.Select.from_param(s.param.region, name="Region")
        source = pn.widgets.Select.from_param(s.param.source, name="Data")
        whole = pn.widgets.Button(name="Whole dataset", button_type="light")
        whole.on_click(lambda e: s.use_source_extent())
        models = pn.widgets.MultiChoice.from_param(s.param.models, name="Models")
        seconds = pn.widgets.FloatSlider.from_param(s.param.seconds, name="Budget per model (s)", step=5)
        device = pn.widgets.Select.from_param(s.param.device, name="Device")
        self.start = pn.widgets.Button(name="Start training", button_type="primary")
        self.start.on_click(self._on_start)
        hyper = pn.Accordion(*[(name, pn.Param(p, show_name=False, widgets={"seconds": {"visible": False}},
                                               parameters=[k for k in p.param if k not in ("name", "seconds")]))
                               for name, p in s.hyper.items()], sizing_mode="stretch_width")
        self.sidebar = [pn.pane.Markdown("### Region and data"), region, source, whole, self.summary,
                        pn.pane.Markdown("### Training"), models, seconds, device, self.start,
                        pn.pane.Markdown("Hyper-parameters (docs as tooltips)"), hyper]

        # map tab
        self.box_stream = hv.streams.BoundsXY(bounds=None)
        picker = hv.Rectangles([(-3.4e6, -3.4e6, 3.4e6, 3.4e6)], kdims=["x", "y", "x1", "y1"]).opts(
            fill_alpha=0, line_alpha=0, tools=["box_select"], active_tools=["box_select"])
        self.box_stream.source = picker
        self.box_stream.add_subscriber(self._on_box)
        box = hv.DynamicMap(pn.bind(current_box, s.param.bounds))
        self.overview_pane = pn.pane.HoloViews(overview(s) * picker * box, linked_axes=False)
        map_tab = pn.Column(pn.pane.Markdown("Pick a preset region, or drag a box on the map (box-select tool)."),
                            self.overview_pane)

        # region tab
        region_dm = hv.DynamicMap(pn.bind(region_view, s.param.problem))
        region_tab = pn.Column(pn.pane.HoloViews(region_dm, linked_axes=False))

        # training tab
        self.cards = pn.Column(sizing_mode="stretch_width")
        self.live = pn.Column(sizing_mode="stretch_width")
        self.table = pn.widgets.Tabulator(metrics_frame([]), disabled=True, show_index=False, height=160,
                                          sizing_mode="stretch_width")
        self.lesson_note = pn.pane.Markdown(LESSON_TEXT, visible=False, styles={"background": "#eef6ff"},
                                            sizing_mode="stretch_width")
        self.export_job = pn.widgets.Select(name="Export run", options=[], width=240)
        self.download_nc = pn.widgets.FileDownload(callback=self._netcdf_bytes, filename="iceviz_prediction.nc",
                                                   label="NetCDF (CF, EPSG:3031)", button_type="success")
        self.download_png = pn.widgets.FileDownload(callback=self._png_bytes, filename="iceviz_view.png",
                                                    label="PNG of the maps", button_type="success")
        training_tab = pn.Column(self.lesson_note, self.cards, self.table,
                                 pn.Row(self.export_job, self.download_nc, self.download_png), self.live,
                                 sizing_mode="stretch_width")

        # lesson tab
        self.lesson_field = pn.widgets.Select(name="Field", options=["curve", "branching", "deflection", "ridges",
                                                                     "edge"], value="curve")
        self.lesson_weight = pn.widgets.FloatSlider(name="PINN penalty weight", start=0.0, end=0.9, step=0.05,
                                                    value=0.2)
        self.lesson_noise = pn.widgets.FloatSlider(name="Observation noise (× mean |q|)", start=0.0, end=0.2,
                                                   step=0.01, value=0.02)
        lesson_start = pn.widgets.Button(name="Start the lesson", button_type="primary")
        lesson_start.on_click(self._on_lesson)
        lesson_reset = pn.widgets.Button(name="Reset", button_type="warning")
        lesson_reset.on_click(self._on_reset)
        lesson_tab = pn.Column(pn.pane.Markdown(LESSON_TEXT), self.lesson_field, self.lesson_weight,
                               self.lesson_noise, pn.Row(lesson_start, lesson_reset))

        # saved runs tab
        self.run_path = pn.widgets.TextInput(name="Saved run (folder with model.safetensors, or the file)",
                                             placeholder="runs/glacier-dfnn", width=420)
        load_run = pn.widgets.Button(name="Load run", button_type="primary")
        load_run.on_click(self._on_load_run)
        self.run_view = pn.Column()
        runs_tab = pn.Column(self.run_path, load_run, self.run_view)

        self.tabs = pn.Tabs(("Map", map_tab), ("Region", region_tab), ("Training", training_tab),
                            ("Lesson", lesson_tab), ("Saved runs", runs_tab), dynamic=False)
        self.main = [self.message, self.tabs]
        s.param.watch(self._refresh_info, ["message", "problem", "bounds"])
        self._refresh_info()

    # -- callbacks -----------------------------------------------------------------------------
    def _refresh_info(self, *events: Any) -> None:
        s = self.state
        self.message.object = s.message
        self.message.visible = bool(s.message)
        info = s.summary()
        lines = [f"Box: {format_bounds(s.bounds)}", f"Spec: `{info['spec']}`"]
        if "train" in info:
            lines.append(f"{info['train']} train / {info['test']} test points; fields: {', '.join(info['fields'])}")
        self.summary.object = "\n\n".join(lines)
        self.start.disabled = s.problem is None

    def _on_box(self, bounds: tuple[float, float, float, float] | None = None, **_: Any) -> None:
        if bounds is None:
            return
        left, bottom, right, top = bounds
        self.state.set_bounds((left, right, bottom, top))

    def _on_start(self, event: Any = None) -> None:
        self.lesson_active = False
        self.lesson_note.visible = False
        self._add_jobs(self.state.start(), [])
        self.tabs.active = 2

    def _on_lesson(self, event: Any = None) -> None:
        spec = f"synthetic:{self.lesson_field.value}?noise={self.lesson_noise.value:g}"
        jobs = []
        for name, extra in (("dfnn", {}), ("pinn", {"div_weight": self.lesson_weight.value})):
            job = training_job(name, spec, device=self.state.device, snapshot_every=0.5, epochs=400, seconds=60,
                               **extra)
            jobs.append(self.state.queue.submit(job))
        self.lesson_active = True
        self.lesson_note.visible = True
        self._add_jobs(jobs, [f"lesson {n}" for n in ("dfNN", "PINN")])
        self.tabs.active = 2

    def _on_reset(self, event: Any = None) -> None:
        self.state.cancel_all()
        self.jobs.clear()
        self.rows.clear()
        self.cards.clear()
        self.live.clear()
        self.lesson_note.visible = False
        self._poll()

    def _add_jobs(self, jobs: list[Job], labels: list[str]) -> None:
        for i, job in enumerate(jobs):
            label = labels[i] if i < len(labels) else f"{job.name} #{job.id}"
            card, row = JobCard(job, label, self.state.seconds), LiveRow(label)
            self.rows[job.id] = (card, row)
            self.jobs.append((label, job))
            self.cards.append(card.view)
            self.live.append(row.view)
        self.export_job.options = {label: job.id for label, job in self.jobs}

    def _poll(self) -> None:
        """Periodic: copy the jobs' latest snapshots into the views (never blocks on training)."""
        snaps = {job.id: job.latest() for _, job in self.jobs}
        limits = shared_limits(list(snaps.values()))
        for _, job in self.jobs:
            card, row = self.rows[job.id]
            card.update()
            row.push(snaps[job.id], limits, job.history())
        frame = metrics_frame(self.jobs)
        if not frame.equals(self.table.value):
            self.table.value = frame

    def _on_load_run(self, event: Any = None) -> None:
        text = self.run_path.value.strip()
        if not text.endswith(RUN_SUFFIXES):
            text = text.rstrip("/") + "/model.safetensors"  # a run folder written by --out or the app
        try:
            ckpt = load_checkpoint(safe_path(text, allowed_roots(REPO_ROOT), RUN_SUFFIXES))
        except ValueError as err:
            self.state.message = f"Could not load the run: {err}"
            return
        fields = flux_grid_fields(ckpt.model, ckpt.scale, ckpt.bounds, ckpt.grid_shape)
        limit = maps.symmetric_limit([fields["divergence"].values])
        title = f"{ckpt.model_name} on {ckpt.data}"
        plot = (maps.magnitude_map(fields, f"{title}: |q| (m²/yr)") * maps.flux_arrows(fields)
                + maps.divergence_map(fields, limit, f"{title}: ∇·q (m/yr)")).opts(
            hv.opts.Image(data_aspect=1, frame_width=380))
        metrics = {k: v for k, v in ckpt.metrics.items() if isinstance(v, (int, float, str))}
        self.run_view.objects = [pn.pane.HoloViews(plot, linked_axes=False),
                                 pn.pane.JSON(json.dumps(metrics), depth=1, name="metrics")]
        self.state.message = ""

    # -- export ----------------------------------------------------------------------------------
    def _selected_snapshot(self):
        ids = {job.id: (label, job) for label, job in self.jobs}
        chosen = ids.get(self.export_job.value)
        return (chosen[0], chosen[1].latest()) if chosen else (None, None)

    def _netcdf_bytes(self) -> io.BytesIO:
        label, snap = self._selected_snapshot()
        if snap is None:
            self.state.message = "No run to export yet: start a training job first."
            return io.BytesIO(b"")
        ds = snap.fields
        out = grid_dataset(ds["x"].values, ds["y"].values,
                           {k: (v.values, v.attrs["units"], v.attrs["long_name"]) for k, v in ds.data_vars.items()},
                           attrs={"title": f"iceviz {label} prediction", "data_spec": ds.attrs.get("data", ""),
                                  "epoch": snap.epoch})
        return io.BytesIO(out.to_netcdf(engine="h5netcdf"))

    def _png_bytes(self) -> io.BytesIO:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        label, snap = self._selected_snapshot()
        if snap is None:
            self.state.message = "No run to export yet: start a training job first."
            return io.BytesIO(b"")
        ds = snap.fields
        limit = maps.symmetric_limit([ds["divergence"].values])
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.8), constrained_layout=True)
        extent = [float(ds.x[0]), float(ds.x[-1]), float(ds.y[0]), float(ds.y[-1])]
        im = axes[0].imshow(ds["flux_magnitude"].values, origin="lower", extent=extent, cmap=maps.SEQUENTIAL)
        fig.colorbar(im, ax=axes[0], label="|q| (m²/yr)")
        im = axes[1].imshow(ds["divergence"].values, origin="lower", extent=extent, cmap=maps.DIVERGING,
                            vmin=-limit, vmax=limit)
        fig.colorbar(im, ax=axes[1], label="∇·q (m/yr)")
        for ax, name in zip(axes, ("predicted flux", "divergence")):
            ax.set_title(f"{label}: {name}, epoch {snap.epoch}")
            ax.set_xlabel("x (m, EPSG:3031)")
            ax.set_ylabel("y (m)")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        buf.seek(0)
        return buf

    # -- serving ---------------------------------------------------------------------------------
    def servable(self) -> pn.template.FastListTemplate:
        template = pn.template.FastListTemplate(title="iceviz: physics-informed ice flow, live",
                                                sidebar=self.sidebar, main=self.main, sidebar_width=330,
                                                accent_base_color="#1565c0", header_background="#0d47a1")
        if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
            pn.state.add_periodic_callback(self._poll, period=POLL_MS)
            pn.state.on_session_destroyed(lambda ctx: self.state.cancel_all())
        return template


def build_app() -> pn.template.FastListTemplate:
    """A fresh explorer for one browser session."""
    pn.extension("tabulator", notifications=False, sizing_mode="stretch_width")
    hv.extension("bokeh")
    return Explorer().servable()
