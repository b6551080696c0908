"""The explorer: pick a region of Antarctica, train flux models, watch them learn.

``build_app()`` makes one independent app per browser session (``panel serve``
runs the script once per session), with its own :class:`ExplorerState`,
job queue and periodic callback. Closing the tab cancels the session's jobs.
"""

from __future__ import annotations

import asyncio
import functools
import io
import logging
import tempfile
import threading
from pathlib import Path
from typing import Any

import holoviews as hv
import numpy as np
import panel as pn
from datashader import count_cat as ds_count_cat
from datashader import mean as ds_mean
from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketClosedError
from holoviews.operation.datashader import datashade, dynspread, rasterize

from bokeh.models.widgets.tables import NumberFormatter, ScientificFormatter

from iceviz.app.live import TABLE_FORMATS, TABLE_SCIENTIFIC, JobCard, LiveRow, metrics_frame, shared_limits
from iceviz.app.paths import RUN_SUFFIXES, allowed_roots, safe_path
from iceviz.app.state import REPO_ROOT, ExplorerState
from iceviz.data.overview import SpeedPyramid
from iceviz.data.problem import DataError
from iceviz.data.splits import validation_mask
from iceviz.data.netcdf import grid_dataset, write_netcdf
from iceviz.geo.basemap import basemap
from iceviz.geo.crs import format_bounds
from iceviz.geo.graticule import graticule, graticule_labels
from iceviz.geo.regions import PRESET_REGIONS
from iceviz.models.registry import get_model
from iceviz.training.checkpoint import load_checkpoint
from iceviz.training.fields import flux_grid_fields
from iceviz.training.job import Job
from iceviz.training.queue import JobQueue
from iceviz.training.trainers import training_job
from iceviz.training.worker import warm_up
from iceviz.viz.live_figures import cell_bounds, shared_ranges
from iceviz.viz import maps

POLL_MS = 500
HOLD_ROWS_POLLS = 4
"""Polls that new maps wait for the other jobs' first progress (see ``Explorer._poll``)."""
SIMULATOR_TAB = 5
VISCOSITY_TAB = 6
EMULATOR_TAB = 7
SNAPSHOT_EVERY_S = 1.0
TRAINING_NICE = 10
"""Training threads yield the CPU to the server and the browser first."""
LESSON_TEXT = (
    "**Divergence-free vs soft-constrained.** Both networks fit the same noisy observations along nine "
    "flight lines of a field whose truth is known. Watch the middle column: the dfNN's divergence map stays "
    "blank because mass conservation is built into it, while the PINN only approaches zero divergence as "
    "far as its penalty weight pushes it, trading that against fitting the data."
)

SPLIT_COLOURS = {"train": "#1a1a1a", "validation": "#ff5a00", "test": "#e0457b"}
"""Colours of the region tab's points by split, in the order they are drawn and listed."""

OVERVIEW_OPTS = dict(frame_width=620, frame_height=620, xaxis=None, yaxis=None, toolbar="above")


# -- pure view builders (HoloViews only) --------------------------------------------------------

@functools.lru_cache(maxsize=4)
def speed_pyramid(path: str, product: str) -> SpeedPyramid:
    """One speed pyramid per velocity file and server process, shared read-only by the sessions."""
    return SpeedPyramid(path, product)


def overview(state: ExplorerState, speed: SpeedPyramid | None = None) -> hv.Overlay:
    """Antarctica in EPSG:3031: offline base map, the ice-speed mosaic when one is configured (and ready),
    graticule, preset regions, data footprints."""
    from iceviz.viz.velocity_map import speed_layer

    # the source raster has 0.5° (~55 km) pixels: a static 10 km picture loses nothing and, unlike a regrid,
    # costs no server round trip at every zoom
    bm = basemap(resolution_m=10_000)
    rgb = hv.RGB((bm.x, bm.y, bm.rgb[..., 0], bm.rgb[..., 1], bm.rgb[..., 2]), kdims=maps.KDIMS).opts(
        **OVERVIEW_OPTS)
    if speed is not None:
        rgb = rgb * speed_layer(speed)
    lines = hv.Path([np.column_stack([g.x, g.y]) for g in graticule()], kdims=maps.KDIMS).opts(
        color="white", alpha=0.5, line_dash="dotted", line_width=1)
    labels = hv.Labels([(x, y, t) for x, y, t in graticule_labels()], kdims=maps.KDIMS, vdims="text").opts(
        text_color="white", text_font_size="8pt", text_alpha=0.8)
    presets = [r for r in PRESET_REGIONS.values() if r.parent is None]
    regions = maps.boxes([r.bounds for r in presets], [r.name for r in presets], color="#ffd400")
    footprints = state.footprints()
    data = maps.boxes(list(footprints.values()), list(footprints), color="#00e5ff")
    return rgb * lines * labels * regions * data


def current_box(bounds: tuple[float, float, float, float]) -> hv.Rectangles:
    xmin, xmax, ymin, ymax = bounds
    return hv.Rectangles([(xmin, ymin, xmax, ymax)], kdims=["x", "y", "x1", "y1"]).opts(
        fill_color="#ff3d00", fill_alpha=0.15, line_color="#ff3d00", line_width=3)


def _region_bounds(problem: Any) -> tuple[float, float, float, float]:
    return tuple(problem.bounds) if problem is not None else (0.0, 1.0, 0.0, 1.0)


def region_truth(problem: Any) -> hv.Image:
    """|q| of the known truth on a fine grid (all-NaN when the source has no truth)."""
    xmin, xmax, ymin, ymax = _region_bounds(problem)
    vdim = hv.Dimension("flux_magnitude", label="|q|", unit="m²/yr")
    if problem is None or problem.truth is None:
        return hv.Image(np.full((2, 2), np.nan), bounds=(xmin, ymin, xmax, ymax), kdims=maps.KDIMS, vdims=[vdim])
    x, y = problem.grid((160, 160))
    xx, yy = np.meshgrid(x, y)
    q = problem.truth(np.column_stack([xx.ravel(), yy.ravel()]))
    return hv.Image((x, y, np.hypot(q[:, 0], q[:, 1]).reshape(xx.shape)), kdims=maps.KDIMS, vdims=[vdim])


def region_observations(problem: Any) -> hv.Points:
    """Every observation with its flux magnitude (rasterised by the caller)."""
    if problem is None:
        return maps.flux_points(np.empty((0, 2)), np.empty((0, 2)))
    return maps.flux_points(np.vstack([problem.train.xy, problem.test.xy]),
                            np.vstack([problem.train.q, problem.test.q]))


def split_points(problem: Any) -> dict[str, np.ndarray]:
    """Locations (N, 2) per split, :data:`SPLIT_COLOURS`' keys: the training points a flux run fits, those it
    holds out for validation (a seed-0 run with the default fraction, :func:`~iceviz.data.splits.validation_mask`),
    the test points."""
    held, _ = validation_mask(problem.train, problem.bounds)
    return {"train": problem.train.xy[~held], "validation": problem.train.xy[held], "test": problem.test.xy}


def split_text(counts: dict[str, int]) -> str:
    """Points per split in words: '168 train · 30 validation · 400 test points'."""
    return " · ".join(f"{counts[name]} {name}" for name in SPLIT_COLOURS) + " points"


def region_split(problem: Any) -> hv.Points:
    """Fitted training, validation and test locations with their split as a category (shaded by the caller)."""
    if problem is None:
        return hv.Points(([], [], []), kdims=maps.KDIMS, vdims=["split"])
    parts = split_points(problem)
    xy = np.vstack(list(parts.values()))
    split = np.repeat(list(parts), [len(v) for v in parts.values()])
    return hv.Points((xy[:, 0], xy[:, 1], split), kdims=maps.KDIMS, vdims=["split"])


def region_arrows(problem: Any) -> hv.VectorField:
    if problem is None:
        return hv.VectorField([], kdims=maps.KDIMS, vdims=["angle", "magnitude"])
    title = f"{problem.spec}: {split_text({name: len(xy) for name, xy in split_points(problem).items()})}"
    return maps.binned_arrows(problem.train.xy, problem.train.q, problem.bounds).opts(title=title)


def region_view(state: ExplorerState) -> hv.DynamicMap:
    """Flux magnitude (truth or observations), mean observed flux arrows, fitted training, validation and test
    points with a legend, all rasterised with datashader so that large datasets never travel raw to the browser."""
    problem = state.param.problem
    opts = dict(data_aspect=1, frame_width=620, colorbar=True, tools=["hover"], cmap=maps.SEQUENTIAL,
                cnorm="eq_hist")
    size = dict(width=360, height=360)  # raster resolution: bounded whatever the data size
    truth = hv.DynamicMap(pn.bind(region_truth, problem)).opts(**opts)
    obs = dynspread(rasterize(hv.DynamicMap(pn.bind(region_observations, problem)),
                              aggregator=ds_mean("flux_magnitude"), **size), threshold=0.6).opts(**opts)
    # every point opaque in its split's colour (by default a pixel's opacity grows with its count, and lone
    # points, the usual case along a flight line, are all but invisible)
    split = dynspread(datashade(hv.DynamicMap(pn.bind(region_split, problem)), aggregator=ds_count_cat("split"),
                                color_key=SPLIT_COLOURS, min_alpha=255, **size), threshold=0.5)
    layers = [truth, obs, split.opts(alpha=0.8)]
    layers.append(hv.DynamicMap(pn.bind(region_arrows, problem)))
    return hv.Overlay(layers).collate()  # the legend: datashade's, one entry per split


# -- the app ------------------------------------------------------------------------------------

class Explorer:
    """All widgets and callbacks of one browser session."""

    def __init__(self):
        self.state = ExplorerState(build_in_background=True)
        self.lesson_queue = JobQueue(slots=2)
        self.rows: dict[int, LiveRow] = {}
        self.seen: set[int] = set()  # jobs an earlier poll showed with a snapshot and progress (rows are due)
        self.held = 0  # polls that have held back due rows for jobs still starting
        self.live_ranges: dict[tuple, Any] = {}
        self.cards_by_id: dict[int, JobCard] = {}
        self.jobs: list[tuple[str, Job]] = []
        self.simulator: Any = None
        """The simulator tab's view (iceviz.app.simulator.SimulatorView), made on the tab's first visit."""
        self.viscosity: Any = None
        """The viscosity tab's view (iceviz.app.viscosity.ViscosityView), made on the tab's first visit."""
        self.emulator: Any = None
        """The emulator tab's view (iceviz.app.emulator.EmulatorView), made on the tab's first visit."""
        self._build()

    # -- layout --------------------------------------------------------------------------------
    def _build(self) -> None:
        s = self.state
        self.message = pn.pane.Alert("", alert_type="warning", visible=False, sizing_mode="stretch_width",
                                     css_classes=["app-message"])
        self.summary = pn.pane.Markdown("", sizing_mode="stretch_width", css_classes=["region-summary"])
        region = pn.widgets.Select.from_param(s.param.region, name="Region")
        source = pn.widgets.Select.from_param(s.param.source, name="Data")
        whole = pn.widgets.Button(name="Whole dataset", button_type="light")
        whole.on_click(lambda e: s.use_source_extent())
        models = pn.widgets.MultiChoice.from_param(s.param.models, name="Models")
        seconds = pn.widgets.FloatSlider.from_param(s.param.seconds, name="Budget per model (s)", step=5)
        device = pn.widgets.Select.from_param(s.param.device, name="Device")
        self.start = pn.widgets.Button(name="Start training", button_type="primary")
        self.start.on_click(self._on_start)
        # one model's widgets at a time: a document with every model's widgets makes each update slow
        configure = pn.widgets.Select(name="Hyper-parameters of", options=list(s.hyper), value="dfnn")
        hyper = pn.Column(self._hyper_panel("dfnn"), sizing_mode="stretch_width")
        configure.param.watch(lambda e: setattr(hyper, "objects", [self._hyper_panel(e.new)]), "value")
        # shown only for the real-data source (a template's sidebar draws hidden cards' headers anyway)
        keep_points = pn.widgets.FileDownload(callback=self._points_csv, filename="iceviz_region_points.csv",
                                              label="Points file of this box (CSV)", button_type="success")
        recipe_card = pn.Card(pn.Param(s.recipe, show_name=False, sizing_mode="stretch_width",
                                       parameters=[k for k in s.recipe.param if k != "name"]), keep_points,
                              title="Region builder (real data)", collapsed=True, sizing_mode="stretch_width")
        self.recipe_slot = pn.Column(*([recipe_card] if s.is_real else []), sizing_mode="stretch_width")
        s.param.watch(lambda e: setattr(self.recipe_slot, "objects", [recipe_card] if s.is_real else []), "source")
        self.sidebar = [pn.pane.Markdown("### Region and data"), region, source, whole, self.recipe_slot,
                        self.summary,
                        pn.pane.Markdown("### Training"), models, seconds, device, self.start,
                        configure, hyper]

        # map tab
        self.box_stream = hv.streams.BoundsXY(bounds=None)
        picker = hv.Rectangles([(-3.4e6, -3.4e6, 3.4e6, 3.4e6)], kdims=["x", "y", "x1", "y1"]).opts(
            fill_alpha=0, line_alpha=0, tools=["box_select"], active_tools=["box_select", "wheel_zoom"])
        self.box_stream.source = picker
        self.box_stream.add_subscriber(self._on_box)
        self.picker = picker * hv.DynamicMap(pn.bind(current_box, s.param.bounds))
        self.speed: SpeedPyramid | None = None
        self.speed_failed = ""
        self.speed_note = pn.pane.Markdown("", visible=False, css_classes=["speed-note"])
        self.overview_pane = pn.pane.HoloViews(linked_axes=False, css_classes=["overview-map"])
        self.data_files = pn.pane.Markdown("", sizing_mode="stretch_width", css_classes=["data-files"])
        self.data_path = pn.widgets.TextInput(name="Add a product file or folder (MEaSUREs, BedMachine, Bedmap)",
                                              placeholder="/data/antarctica", width=420)
        add_data = pn.widgets.Button(name="Add data", button_type="primary", align="end")
        add_data.on_click(self._on_add_data)
        map_tab = pn.Column(pn.pane.Markdown("Pick a preset region, or drag a box on the map (box-select tool)."),
                            self.speed_note, self.overview_pane, pn.pane.Markdown("#### Data files"),
                            self.data_files, pn.Row(self.data_path, add_data))
        self._show_catalog()
        self._draw_map()

        # region tab
        # built on first visit: every plot in the document makes each live update slower
        region_tab = pn.Column(pn.pane.Markdown("Flux magnitude (known truth, else the observations), mean "
                                                "observed flux arrows, and the points by split: training points "
                                                "the models fit (black), validation points held out of them "
                                                "as whole flight lines or tiles to choose the kept weights and "
                                                "when to stop (orange; a seed-0 run's), and held-out test "
                                                "points (pink)."))

        # training tab
        self.cards = pn.Column(sizing_mode="stretch_width")
        self.live = pn.Column(sizing_mode="stretch_width")
        self.losses = pn.GridBox(ncols=3, sizing_mode="fixed")
        self.table = pn.widgets.Tabulator(metrics_frame([]), disabled=True, show_index=False, height=160,
                                          sizing_mode="stretch_width",
                                          formatters={**{k: NumberFormatter(format=f) for k, f in TABLE_FORMATS.items()},
                                                      **{k: ScientificFormatter(precision=2, power_limit_low=0, power_limit_high=3)
                                                         for k in TABLE_SCIENTIFIC}})
        self.lesson_note = pn.pane.Markdown(LESSON_TEXT, visible=False, styles={"background": "#eef6ff"},
                                            sizing_mode="stretch_width")
        self.export_job = pn.widgets.Select(name="Export run", options=[], width=240)
        self.download_nc = pn.widgets.FileDownload(callback=self._netcdf_bytes, filename="iceviz_prediction.nc",
                                                   label="NetCDF (CF, EPSG:3031)", button_type="success")
        self.download_png = pn.widgets.FileDownload(callback=self._png_bytes, filename="iceviz_view.png",
                                                    label="PNG of the maps", button_type="success")
        training_tab = pn.Column(self.lesson_note, self.cards, self.table,
                                 pn.Row(self.export_job, self.download_nc, self.download_png), self.live,
                                 pn.pane.Markdown("#### Loss terms"), self.losses, sizing_mode="stretch_width")

        # lesson tab
        self.lesson_field = pn.widgets.Select(name="Field", options=["curve", "branching", "deflection", "ridges",
                                                                     "edge"], value="curve")
        self.lesson_weight = pn.widgets.FloatSlider(name="PINN penalty weight", start=0.0, end=0.5, step=0.01,
                                                    value=get_model("pinn").make_params().div_weight)
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

        # simulator and viscosity tabs: built on first visit, like the region tab
        simulator_tab = pn.Column(sizing_mode="stretch_width")
        viscosity_tab = pn.Column(sizing_mode="stretch_width")
        emulator_tab = pn.Column(sizing_mode="stretch_width")

        self.tabs = pn.Tabs(("Map", map_tab), ("Region", region_tab), ("Training", training_tab),
                            ("Lesson", lesson_tab), ("Saved runs", runs_tab), ("Simulator", simulator_tab),
                            ("Viscosity", viscosity_tab), ("Emulator", emulator_tab), dynamic=False)
        self.tabs.param.watch(self._on_tab, "active")
        self.main = [pn.Column(self.message, self.tabs, sizing_mode="stretch_width")]
        s.param.watch(self._refresh_info, ["message", "problem", "bounds"])
        s.param.watch(self._on_region, "region")
        self._refresh_info()

    def _on_tab(self, event: Any) -> None:
        region_tab = self.tabs[1]
        if event.new == 1 and len(region_tab) == 1:
            region_tab.append(pn.pane.HoloViews(region_view(self.state), linked_axes=False))
        if event.new == SIMULATOR_TAB and self.simulator is None:
            # imported here: the simulator's modules would lengthen every session's first page load
            from iceviz.app.simulator import SimulatorView

            self.simulator = SimulatorView(region_bounds=lambda: self.state.bounds)
            self.tabs[SIMULATOR_TAB].append(self.simulator.view)
            self.simulator.attach()
        if event.new == VISCOSITY_TAB and self.viscosity is None:
            from iceviz.app.shelf_presets import preset_for_region
            from iceviz.app.viscosity import ViscosityView

            self.viscosity = ViscosityView(preset=preset_for_region(self.state.region))
            self.tabs[VISCOSITY_TAB].append(self.viscosity.view)
            self.viscosity.attach()
        if event.new == EMULATOR_TAB and self.emulator is None:
            from iceviz.app.emulator import EmulatorView

            self.emulator = EmulatorView(region_bounds=lambda: self.state.bounds)
            self.tabs[EMULATOR_TAB].append(self.emulator.view)
            self.emulator.attach()

    def _on_region(self, event: Any) -> None:
        """A shelf preset picked on the map becomes the viscosity tab's shelf (unless an inversion runs)."""
        if self.viscosity is None:
            return
        from iceviz.app.shelf_presets import preset_for_region

        label = preset_for_region(event.new)
        if label is not None:
            self.viscosity.select(label)

    def _hyper_panel(self, name: str) -> pn.Param:
        params = self.state.hyper[name]
        # wide-ranged integers get a number box: a slider from 1 to a million cannot be set
        boxes = {k: pn.widgets.IntInput for k in ("epochs", "planned_epochs", "patience", "batch_size", "collocation",
                                                  "seed") if k in params.param}
        boxes.update({k: pn.widgets.FloatInput for k in ("lr", "weight_decay") if k in params.param})
        return pn.Param(params, show_name=False, parameters=[k for k in params.param if k not in ("name", "seconds")],
                        widgets=boxes, sizing_mode="stretch_width")

    # -- callbacks -----------------------------------------------------------------------------
    def _refresh_info(self, *events: Any) -> None:
        s = self.state
        self.message.object = s.message
        self.message.visible = bool(s.message)
        info = s.summary()
        lines = [f"Box: {format_bounds(s.bounds)}", f"Spec: `{info['spec']}`"]
        if "train" in info:
            lines.append(f"{split_text(info)}; fields: {', '.join(info['fields'])}")
        self.summary.object = "\n\n".join(lines)
        self.start.disabled = s.problem is None

    def _show_catalog(self) -> None:
        """List the product files found, and put the speed mosaic on the map (prepared in the background
        the first time: its coarse levels read the whole file once)."""
        cat = self.state.catalog
        rows = ["| product | file | footprint | size |", "|---|---|---|---|"]
        for f in cat.files:
            if f.product != "bedmap":
                rows.append(f"| {f.product} | `{f.path.name}` | {format_bounds(f.footprint)} "
                            f"| {f.shape[1]} × {f.shape[0]} cells |")
        folders: dict[Path, list] = {}
        for f in cat.of("bedmap"):  # campaigns by folder: a user has dozens of them
            folders.setdefault(f.path.parent, []).append(f)
        for folder, group in folders.items():
            boxes = [f.footprint for f in group if f.footprint]
            union = (min(b[0] for b in boxes), max(b[1] for b in boxes), min(b[2] for b in boxes),
                     max(b[3] for b in boxes)) if boxes else None
            name = f"`{group[0].path.name}`" if len(group) == 1 else f"{len(group)} files in `{folder.name}/`"
            rows.append(f"| bedmap | {name} | {format_bounds(union) if union else '-'} "
                        f"| {sum(f.points or 0 for f in group):,} points |")
        text = "\n".join(rows) if cat.files else (
            "No product files yet. Add a folder below, or on the command line: `iceviz data add PATH`, "
            "`iceviz data download PRODUCT`.")
        if cat.problems:
            text += "\n\nUnusable: " + "; ".join(cat.problems)
        self.data_files.object = text
        mosaics = cat.mosaics()
        if not mosaics or (self.speed is not None and self.speed.path == mosaics[0].path):
            return
        vfile = mosaics[0]
        self.speed = speed_pyramid(str(vfile.path), vfile.product)
        if self.speed.ready:
            self.speed.prepare()  # the coarse levels into memory now (from the disk cache), not at the first zoom
            self.speed_note.visible = False
        else:
            self.speed_note.object = (f"Preparing the ice-speed map from `{vfile.path.name}` (first use: the "
                                      "whole mosaic is read once, then cached)…")
            self.speed_note.visible = True
            threading.Thread(target=self._prepare_speed, args=(self.speed,), daemon=True,
                             name="speed-pyramid").start()

    def _prepare_speed(self, pyramid: SpeedPyramid) -> None:
        """In a thread: the speed map's coarse levels; a failure replaces the note, the map keeps its base."""
        try:
            pyramid.prepare()
        except Exception as err:  # noqa: BLE001 - whatever the file does, the app keeps serving
            self.speed_failed = f"The ice-speed map could not be prepared from `{pyramid.path.name}`: {err}"

    def _draw_map(self) -> None:
        """The overview with the footprints of today's sources, and the speed mosaic once it is prepared."""
        shown = self.speed if self.speed is not None and not self.speed_note.visible else None
        self.overview_pane.object = overview(self.state, shown) * self.picker

    def _points_csv(self) -> io.StringIO:
        """The built box as a points file (train it later as points:FILE)."""
        try:
            return io.StringIO(self.state.points_csv())
        except DataError as err:
            self.state.message = str(err)
            return io.StringIO("")

    def _on_add_data(self, event: Any = None) -> None:
        found = self.state.add_data(self.data_path.value)
        if found:
            self.data_path.value = ""
        self._show_catalog()
        self._draw_map()

    def _on_box(self, bounds: tuple[float, float, float, float] | None = None, **_: Any) -> None:
        if bounds is None:
            return
        left, bottom, right, top = bounds
        self.state.set_bounds((left, right, bottom, top))

    def _on_start(self, event: Any = None) -> None:
        self.lesson_note.visible = False
        self.tabs.active = 2  # show the tab first, then add plots to it
        self._add_jobs(self.state.start(snapshot_every=SNAPSHOT_EVERY_S, nice=TRAINING_NICE, isolate=True), [])

    def _on_lesson(self, event: Any = None) -> None:
        spec = f"synthetic:{self.lesson_field.value}?noise={self.lesson_noise.value:g}"
        jobs = []
        for name, extra in (("dfnn", {}), ("pinn", {"div_weight": self.lesson_weight.value})):
            # the plan, patience and batch follow the field's size (problem_defaults); 60 s at most
            job = training_job(name, spec, device=self.state.device, snapshot_every=SNAPSHOT_EVERY_S, seconds=60,
                               nice=TRAINING_NICE, isolate=True, **extra)
            jobs.append(self.lesson_queue.submit(job))  # both at once, so they learn side by side
        self.lesson_note.visible = True
        self.tabs.active = 2  # show the tab first, then add plots to it
        self._add_jobs(jobs, [f"lesson {n}" for n in ("dfNN", "PINN")])

    def cancel_all(self) -> None:
        """Cancel every job of this session (the tab closed, or a reset)."""
        self.state.cancel_all()
        self.lesson_queue.cancel_all()

    def close(self) -> None:
        """The session ended: cancel its training jobs, its simulation, its inversion and its emulators."""
        self.cancel_all()
        if self.simulator is not None:
            self.simulator.cancel()
        if self.viscosity is not None:
            self.viscosity.close()
        if self.emulator is not None:
            self.emulator.cancel()

    def _on_reset(self, event: Any = None) -> None:
        self.cancel_all()
        self.jobs.clear()
        self.rows.clear()
        self.seen.clear()
        self.live_ranges.clear()
        self.cards_by_id.clear()
        self.cards.clear()
        self.live.clear()
        self.losses.clear()
        self.lesson_note.visible = False
        self._poll()

    def _add_jobs(self, jobs: list[Job], labels: list[str]) -> None:
        """Cards now; each job's maps appear with its first snapshot (see :meth:`_poll`)."""
        for i, job in enumerate(jobs):
            label = labels[i] if i < len(labels) else f"{job.name} #{job.id}"
            card = JobCard(job, label)
            self.cards_by_id[job.id] = card
            self.jobs.append((label, job))
            self.cards.append(card.view)
        self.export_job.options = {label: job.id for label, job in self.jobs}

    def _poll(self) -> None:
        """Periodic: copy the jobs' latest snapshots into the views (never blocks on training)."""
        self.state.finish_build()
        if self.speed is not None and self.speed_note.visible and not self.speed_failed and self.speed.ready:
            self.speed.prepare()  # from memory: the thread has finished (or from the disk cache it wrote)
            self.speed_note.visible = False
            self._draw_map()
        elif self.speed_failed and self.speed_note.object != self.speed_failed:
            self.speed_note.object = self.speed_failed
        snaps = {job.id: job.latest() for _, job in self.jobs}
        # A job's maps come after its card has shown progress (a snapshot and an epoch done), and after the
        # cards of the jobs still starting have too, for up to HOLD_ROWS_POLLS: drawing new figures takes the
        # browser seconds, and every update sent with or after them waits until it is done.
        pending = self.seen - self.rows.keys()
        starting = any(job.id not in self.seen and not job.status.finished for _, job in self.jobs)
        self.held = self.held + 1 if pending and starting else 0
        due = pending if not starting or self.held > HOLD_ROWS_POLLS else set()
        progressed = {job.id for _, job in self.jobs  # (a job's history is copied only until its first progress)
                      if job.id not in self.seen and snaps[job.id] is not None and job.history()}
        # Freezing the document makes Bokeh walk its whole model graph once at the end: worth it when
        # plots are added (once instead of once per model), wasted when only data changes.
        with pn.io.hold(freeze=bool(due)):
            self._refresh_jobs(snaps, due)
        self.seen |= progressed  # the cards just drawn show at least this progress

    def _refresh_jobs(self, snaps: dict[int, Any], due: set[int]) -> None:
        limits = shared_limits(list(snaps.values()))
        for i, (label, job) in enumerate(self.jobs):
            self.cards_by_id[job.id].update()
            snap, row = snaps[job.id], self.rows.get(job.id)
            if row is None and job.id in due:
                place = sum(j.id in self.rows for _, j in self.jobs[:i])  # rows keep the jobs' order
                row = self.rows[job.id] = LiveRow(label, snap, limits, job.history(), self._ranges(snap))
                self.live.insert(place, row.view)
                self.losses.insert(place, row.loss_view)
            elif row is not None:
                row.push(snap, limits, job.history())
        frame = metrics_frame(self.jobs)
        if not frame.equals(self.table.value):
            self.table.value = frame

    def _ranges(self, snapshot: Any) -> tuple[Any, Any]:
        """The shared zoom of every live map over the same region (maps of another region zoom apart)."""
        bounds = cell_bounds(snapshot.fields["x"].values, snapshot.fields["y"].values)
        key = tuple(round(b) for b in bounds)
        if key not in self.live_ranges:
            self.live_ranges[key] = shared_ranges(bounds)
        return self.live_ranges[key]

    def _on_load_run(self, event: Any = None) -> None:
        text = self.run_path.value.strip()
        if not text.endswith(RUN_SUFFIXES):
            text = text.rstrip("/") + "/model.safetensors"  # a run folder written by --out or the app
        try:
            ckpt = load_checkpoint(safe_path(text, allowed_roots(REPO_ROOT), RUN_SUFFIXES,
                                             bases=[Path.cwd(), REPO_ROOT]))
        except ValueError as err:
            self.state.message = f"Could not load the run: {err}"
            return
        fields = flux_grid_fields(ckpt.model, ckpt.scale, ckpt.bounds, ckpt.grid_shape)
        limit = maps.symmetric_limit([fields["divergence"].values])
        title = f"{ckpt.model_name} on {ckpt.data}"
        plot = (maps.magnitude_map(fields, f"{title}: |q| (m²/yr)") * maps.flux_arrows(fields)
                + maps.divergence_map(fields, limit, f"{title}: ∇·q (m/yr)")).opts(
            hv.opts.Image(data_aspect=1, frame_width=380))
        rows = "\n".join(f"| {k} | {v:.6g} |" if isinstance(v, float) else f"| {k} | {v} |"
                         for k, v in ckpt.metrics.items() if isinstance(v, (int, float, str)))
        self.run_view.objects = [pn.pane.HoloViews(plot, linked_axes=False),
                                 pn.pane.Markdown(f"| metric | value |\n|---|---|\n{rows}", css_classes=["run-metrics"])]
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
        with tempfile.TemporaryDirectory() as tmp:
            path = write_netcdf(out, Path(tmp) / "prediction.nc")
            return io.BytesIO(path.read_bytes())

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
    def servable(self) -> pn.template.BootstrapTemplate:
        # Bootstrap rather than Fast: the Fast theme pulls its font from the web, and the app must work offline.
        template = pn.template.BootstrapTemplate(title="iceviz: physics-informed ice flow, live",
                                                 sidebar=self.sidebar, main=self.main, sidebar_width=340,
                                                 header_background="#0d47a1",
                                                 # the busy spinner would flicker on every poll, and cost a
                                                 # round trip each time; job cards show what is running
                                                 busy_indicator=None)
        if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
            pn.state.add_periodic_callback(self._poll, period=POLL_MS)
            pn.state.on_session_destroyed(lambda ctx: self.close())
        return template


def _quiet_closed_websockets(loop: asyncio.AbstractEventLoop, context: dict) -> None:
    """A tab closed while an update was on its way: tornado leaves an unretrieved task error
    that asyncio would log as a traceback. Log one line instead; anything else goes through."""
    if isinstance(context.get("exception"), (WebSocketClosedError, StreamClosedError)):
        logging.getLogger(__name__).info("a browser session closed while an update was being sent")
        return
    loop.default_exception_handler(context)


def build_app() -> pn.template.BootstrapTemplate:
    """A fresh explorer for one browser session."""
    pn.extension("tabulator", notifications=False, sizing_mode="stretch_width")
    hv.extension("bokeh")
    try:
        asyncio.get_running_loop().set_exception_handler(_quiet_closed_websockets)
    except RuntimeError:  # not inside a server (e.g. built in a test or a notebook)
        pass
    warm_up()  # training runs in worker processes; start their forkserver before the first click
    return Explorer().servable()
