"""The explorer: pick a region of Antarctica, train flux models, watch them learn.

``build_app()`` makes one independent app per browser session (``panel serve``
runs the script once per session), with its own :class:`ExplorerState`,
job queue and periodic callback. Closing the tab cancels the session's jobs.
"""

from __future__ import annotations

import asyncio
import functools
import io
import itertools
import logging
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import holoviews as hv
import numpy as np
import panel as pn
import param
from bokeh.models import NumeralTickFormatter
from datashader import count_cat as ds_count_cat
from datashader import mean as ds_mean
from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketClosedError
from holoviews.operation.datashader import datashade, dynspread, rasterize

from iceviz.app.board import RunBoard
from iceviz.app.live import JOB_NICE
from iceviz.app.paths import allowed_roots, offered_folders
from iceviz.app.saved_runs import SavedRuns
from iceviz.app.state import REPO_ROOT, ExplorerState
from iceviz.data.overview import SpeedPyramid
from iceviz.data.problem import DataError
from iceviz.data.roots import data_roots, shown_path
from iceviz.data.splits import validation_mask
from iceviz.geo.basemap import DEFAULT_EXTENT_M, basemap
from iceviz.geo.crs import format_bounds
from iceviz.geo.graticule import graticule, graticule_labels
from iceviz.geo.regions import PRESET_REGIONS
from iceviz.models.registry import REGISTRY, get_model, short_budget
from iceviz.runtime.job import JobStatus
from iceviz.runtime.executor import configure, describe, prepare
from iceviz.runtime.queue import JobQueue, QueueFull, quick_queue, server_queue
from iceviz.training.trainers import training_job
from iceviz.viz import maps

POLL_MS = 500
SWEEP_TAB = 4
SIMULATOR_TAB = 6
VISCOSITY_TAB = 7
EMULATOR_TAB = 8
SNAPSHOT_EVERY_S = 1.0
LESSON_TEXT = (
    "**Divergence-free vs soft-constrained.** Both networks fit the same noisy observations along nine "
    "flight lines of a field whose truth is known. The dfNN conserves mass by construction; the PINN only "
    "as far as its penalty weight pushes it, traded against fitting the data."
)
LESSON_AGAIN = ("Start again with another penalty weight: its PINN joins the maps beside the first, on the "
                "same colour scales (the dfNN of this field and noise is trained once).")
LESSON_CAPTIONS = (
    "The flux each network learned from the flight lines. Arrows: direction and size.",
    "Where ice would appear (blue) or vanish (red). The dfNN's map stays blank: zero to float precision.",
    "Error against the known truth. Look between the flight lines, where only physics can help.",
)

SPLIT_COLOURS = {"train": "#1a1a1a", "validation": "#ff5a00", "test": "#e0457b"}
"""Colours of the region tab's points by split, in the order they are drawn and listed."""

OVERVIEW_OPTS = dict(frame_width=760, frame_height=760, xaxis=None, yaxis=None, toolbar="above")


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
    footprints = state.footprints()
    # labels placed for the whole-continent view, data footprints' first so that no preset's covers them
    metres_per_px = 2 * DEFAULT_EXTENT_M / OVERVIEW_OPTS["frame_width"]
    anchors = maps.label_anchors([*footprints.values(), *(r.bounds for r in presets)],
                                 [*footprints, *(r.name for r in presets)], metres_per_px)
    data = maps.boxes(list(footprints.values()), list(footprints), color="#00e5ff", anchors=anchors[:len(footprints)])
    regions = maps.boxes([r.bounds for r in presets], [r.name for r in presets], color="#ffd400",
                         anchors=anchors[len(footprints):])
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
    title = split_text({name: len(xy) for name, xy in split_points(problem).items()})
    return maps.binned_arrows(problem.train.xy, problem.train.q, problem.bounds).opts(title=title)


class ShownProblem(param.Parameterized):
    """The problem a view draws: the session's, passed on only while the view is on screen (a hidden Region
    tab that redrew every new box would cost each choice of data set seconds)."""

    problem = param.Parameter(None, doc="The problem drawn (None: nothing loaded).")


def region_view(shown: param.Parameterized) -> hv.DynamicMap:
    """Flux magnitude (truth or observations), mean observed flux arrows, fitted training, validation and test
    points with a legend, all rasterised with datashader so that large datasets never travel raw to the browser.
    ``shown``'s ``problem`` parameter drives it (an :class:`ExplorerState` or a :class:`ShownProblem`)."""
    problem = shown.param.problem
    opts = dict(data_aspect=1, frame_width=620, colorbar=True, tools=["hover"], cmap=maps.SEQUENTIAL,
                cnorm="eq_hist", clabel="|q| (m²/yr); colours histogram-equalised", framewise=True,
                cformatter=NumeralTickFormatter(format="0.[0]a"), **maps.km_axes())
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

_sessions = itertools.count(1)


def server_text(queue: JobQueue) -> str:
    """Where this server's jobs run, and how busy it is (every session's jobs)."""
    running = len(queue.running)
    waiting = len(queue.jobs) - running
    pace = f"{queue.slots} at a time" + (" (runs meant side by side start together)" if running > queue.slots else "")
    return f"Jobs run on {describe()}, {pace}: {running} running, {waiting} waiting (every session's)."


class Explorer:
    """All widgets and callbacks of one browser session."""

    def __init__(self):
        self.session_id = f"session-{next(_sessions)}"
        self.queue = server_queue().session(self.session_id)
        """This session's view of the server's one queue: every job of every tab waits there for a slot."""
        self.state = ExplorerState(build_in_background=True, queue=self.queue,
                                   loads=quick_queue().session(self.session_id), isolate=True)
        self.board = RunBoard(self._notify)
        """The Training tab's runs."""
        self.lesson_board = RunBoard(self._notify, captions=LESSON_CAPTIONS, export=False)
        """The lesson's runs: their own cards, maps and colour scales."""
        self.simulator: Any = None
        """The simulator tab's view (iceviz.app.simulator.SimulatorView), made on the tab's first visit."""
        self.viscosity: Any = None
        """The viscosity tab's view (iceviz.app.viscosity.ViscosityView), made on the tab's first visit."""
        self.shelf_wanted: str | None = None
        """A shelf preset picked on the map, for the viscosity tab's next visit."""
        self.emulator: Any = None
        """The emulator tab's view (iceviz.app.emulator.EmulatorView), made on the tab's first visit."""
        self.sweep: Any = None
        """The sweep tab's view (iceviz.app.sweep_view.SweepView), made on the tab's first visit."""
        self._build()

    # -- layout --------------------------------------------------------------------------------
    def _build(self) -> None:
        s = self.state
        self.message = pn.pane.Alert("", alert_type="warning", visible=False, sizing_mode="stretch_width",
                                     css_classes=["app-message"])
        self.summary = pn.pane.Markdown("", sizing_mode="stretch_width", css_classes=["region-summary"])
        self.server_note = pn.pane.Markdown("", sizing_mode="stretch_width", css_classes=["server-note"],
                                            styles={"color": "#555", "font-size": "0.85em"})
        """Where jobs run and how busy the server is (every session's jobs)."""
        region = pn.widgets.Select.from_param(s.param.region, name="Region")
        source = pn.widgets.Select.from_param(s.param.source, name="Data")
        whole = pn.widgets.Button(name="Whole dataset", button_type="light")
        whole.on_click(lambda e: s.use_source_extent())
        self.get_data = pn.widgets.Button(name="Get this dataset: Byrd Glacier observations (4.3 MB)",
                                          button_type="success", visible=bool(s.missing_datasets()),
                                          description="Download the Byrd tensors of 'Mass Conservation on Rails' "
                                                      "(SHA-256 checked, into the user cache): iceviz data fetch "
                                                      "byrd-mcor")
        self.get_data.on_click(self._on_get_data)
        models = pn.widgets.MultiChoice.from_param(s.param.models, name="Models")
        seconds = pn.widgets.FloatSlider.from_param(s.param.seconds, name="Budget per model (s)", step=5)
        # its text comes and goes (never its visibility: see RunBoard.loss_area)
        self.budget_note = pn.pane.Markdown("", sizing_mode="stretch_width", css_classes=["budget-note"],
                                            styles={"color": "#8a4b00", "font-size": "0.85em"})
        s.param.watch(lambda e: setattr(self.budget_note, "object", short_budget(s.models, s.seconds)),
                      ["models", "seconds"])
        device = pn.widgets.Select.from_param(s.param.device, name="Device")
        self.start = pn.widgets.Button(name="Start training", button_type="primary")
        self.start.on_click(self._on_start)
        # one model's widgets at a time: a document with every model's widgets makes each update slow
        configure = pn.widgets.Select(name="Hyper-parameters of", options=list(s.hyper), value="dfnn")
        defaults = pn.widgets.Button(name="Back to defaults", button_type="light",
                                     description="Every model's hyper-parameters as the registry and this data set "
                                                 "them (your edits are kept across boxes and sources until then)")
        defaults.on_click(lambda event: s.reset_hyper())
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
        self.sidebar = [pn.pane.Markdown("### Region and data"), region, source, whole, self.get_data, self.message,
                        self.recipe_slot,
                        self.summary,
                        pn.pane.Markdown("### Training"), models, seconds, self.budget_note, device, self.start,
                        self.server_note, configure, hyper, defaults]

        # map tab
        self.box_stream = hv.streams.BoundsXY(bounds=None)
        m = DEFAULT_EXTENT_M
        picker = hv.Rectangles([(-m, -m, m, m)], kdims=["x", "y", "x1", "y1"]).opts(
            fill_alpha=0, line_alpha=0, tools=["box_select"], active_tools=["box_select", "wheel_zoom"])
        self.box_stream.source = picker
        self.box_stream.add_subscriber(self._on_box)
        self.picker = picker * hv.DynamicMap(pn.bind(current_box, s.param.bounds))
        self.speed: SpeedPyramid | None = None
        self.speed_failed = ""
        self.speed_note = pn.pane.Markdown("", visible=False, css_classes=["speed-note"])
        self.overview_pane = pn.pane.HoloViews(linked_axes=False, css_classes=["overview-map"])
        self.data_files = pn.pane.Markdown("", sizing_mode="stretch_width", css_classes=["data-files"])
        self.data_choice = pn.widgets.Select(name="Data folders on this server", options={"(looking …)": ""},
                                             sizing_mode="stretch_width", css_classes=["data-choice"])
        add_data = pn.widgets.Button(name="Use this folder", button_type="primary", width=140)
        add_data.on_click(self._on_add_data)
        self._folders: Future | None = offered_folders()
        # the notes beside the map, not above it: a note that appears never moves the map under the cursor
        side = pn.Column(pn.pane.Markdown("Pick a preset region in the sidebar, or drag a box on the map "
                                          "(box-select tool). Yellow: preset regions; cyan: the data sources' "
                                          "footprints."),
                         self.speed_note, pn.pane.Markdown("#### Data files"), self.data_files, self.data_choice,
                         add_data, sizing_mode="stretch_width", min_width=300)
        map_tab = pn.Row(self.overview_pane, side, sizing_mode="stretch_width")
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
        training_tab = pn.Column(self.board.view, sizing_mode="stretch_width")

        # lesson tab: its controls beside its own runs
        self.lesson_field = pn.widgets.Select(name="Field", options=["curve", "branching", "deflection", "ridges",
                                                                     "edge"], value="curve")
        self.lesson_weight = pn.widgets.FloatSlider(name="PINN penalty weight", start=0.0, end=1.0, step=0.01,
                                                    value=get_model("pinn").make_params().div_weight)
        self.lesson_noise = pn.widgets.FloatSlider(name="Observation noise (× mean |q|)", start=0.0, end=0.2,
                                                   step=0.01, value=0.02)
        lesson_start = pn.widgets.Button(name="Start the lesson", button_type="primary")
        lesson_start.on_click(self._on_lesson)
        lesson_reset = pn.widgets.Button(name="Reset", button_type="warning")
        lesson_reset.on_click(self._on_reset)
        # the controls in a band right above the maps: a column beside them would leave the three maps no room
        lesson_controls = pn.Row(
            pn.pane.Markdown(LESSON_TEXT, width=380),
            pn.Column(self.lesson_field, self.lesson_weight, self.lesson_noise, width=260),
            pn.Column(pn.Row(lesson_start, lesson_reset), pn.pane.Markdown(LESSON_AGAIN, width=300,
                                                                          styles={"font-size": "0.9em"})),
            sizing_mode="stretch_width", css_classes=["lesson-controls"])
        lesson_tab = pn.Column(lesson_controls, self.lesson_board.view, sizing_mode="stretch_width")

        # saved runs tab
        self.saved = SavedRuns(allowed_roots(REPO_ROOT), [Path.cwd(), REPO_ROOT],
                               notify=lambda text: setattr(self.state, "message", text))
        runs_tab = self.saved.view

        # sweep, simulator and viscosity tabs: built on first visit, like the region tab
        sweep_tab = pn.Column(sizing_mode="stretch_width")
        simulator_tab = pn.Column(sizing_mode="stretch_width")
        viscosity_tab = pn.Column(sizing_mode="stretch_width")
        emulator_tab = pn.Column(sizing_mode="stretch_width")

        self.tabs = pn.Tabs(("Map", map_tab), ("Region", region_tab), ("Training", training_tab),
                            ("Lesson", lesson_tab), ("Sweep", sweep_tab), ("Saved runs", runs_tab),
                            ("Simulator", simulator_tab),
                            ("Viscosity", viscosity_tab), ("Emulator", emulator_tab), dynamic=False)
        self.tabs.param.watch(self._on_tab, "active")
        self.main = [pn.Column(self.tabs, sizing_mode="stretch_width")]
        s.param.watch(self._refresh_info, ["message", "problem", "bounds"])
        s.param.watch(self._on_region, "region")
        self.region_shown = ShownProblem(problem=s.problem)
        s.param.watch(lambda e: setattr(self.region_shown, "problem", e.new) if self.tabs.active == 1 else None,
                      "problem")
        self._refresh_info()

    def _on_tab(self, event: Any) -> None:
        region_tab = self.tabs[1]
        if event.new == 1:
            self.region_shown.problem = self.state.problem
        if event.new == 1 and len(region_tab) == 1:
            region_tab.append(pn.pane.HoloViews(region_view(self.region_shown), linked_axes=False,
                                                css_classes=["region-map"]))
        if event.new == SWEEP_TAB and self.sweep is None:
            from iceviz.app.sweep_state import SweepState
            from iceviz.app.sweep_view import SweepView

            self.sweep = SweepView(SweepState(self.state, queue=self.queue))
            self.tabs[SWEEP_TAB].append(self.sweep.view)
            self.sweep.attach()
        if event.new == SIMULATOR_TAB and self.simulator is None:
            # imported here: the simulator's modules would lengthen every session's first page load
            from iceviz.app.simulator import SimulatorView

            self.simulator = SimulatorView(region_bounds=lambda: self.state.bounds, queue=self.queue)
            self.tabs[SIMULATOR_TAB].append(self.simulator.view)
            self.simulator.attach()
        if event.new == VISCOSITY_TAB and self.viscosity is None:
            from iceviz.app.shelf_presets import preset_for_region
            from iceviz.app.viscosity import ViscosityView

            self.viscosity = ViscosityView(preset=preset_for_region(self.state.region), queue=self.queue,
                                           loads=self.state.loads)
            self.tabs[VISCOSITY_TAB].append(self.viscosity.view)
            self.viscosity.attach()
            self.shelf_wanted = None
        elif event.new == VISCOSITY_TAB:
            self._select_wanted_shelf()
        if event.new == EMULATOR_TAB and self.emulator is None:
            from iceviz.app.emulator import EmulatorView
            from iceviz.app.emulator_state import EmulatorSession

            self.emulator = EmulatorView(session=EmulatorSession(queue=self.queue,
                                                                 region_bounds=lambda: self.state.bounds))
            self.tabs[EMULATOR_TAB].append(self.emulator.view)
            self.emulator.attach()

    def _on_region(self, event: Any) -> None:
        """Zoom the map to a picked preset; a shelf preset also becomes the viscosity tab's shelf (unless an
        inversion runs)."""
        region = PRESET_REGIONS.get(event.new)
        if region is not None:
            self._zoom_map(region.bounds)
        from iceviz.app.shelf_presets import preset_for_region

        self.shelf_wanted = preset_for_region(event.new) or self.shelf_wanted
        if self.viscosity is not None and self.tabs.active == VISCOSITY_TAB:
            self._select_wanted_shelf()

    def _select_wanted_shelf(self) -> None:
        """The shelf picked on the map, in the viscosity tab (on its next visit: loading and drawing a shelf
        in a hidden tab would slow every pick on the map)."""
        if self.shelf_wanted is not None:
            self.viscosity.select(self.shelf_wanted)
            self.shelf_wanted = None

    def _hyper_panel(self, name: str) -> pn.Param:
        params = self.state.hyper[name]
        # wide-ranged integers get a number box: a slider from 1 to a million cannot be set
        boxes = {k: pn.widgets.IntInput for k in ("epochs", "planned_epochs", "patience", "batch_size", "collocation",
                                                  "seed") if k in params.param}
        boxes.update({k: pn.widgets.FloatInput for k in ("lr", "weight_decay") if k in params.param})
        spec = REGISTRY[name]
        shown = [k for k in params.param if k not in ("name", "seconds") and spec.uses(k)]
        return pn.Param(params, show_name=False, parameters=shown, widgets=boxes, sizing_mode="stretch_width")

    # -- callbacks -----------------------------------------------------------------------------
    def _refresh_info(self, *events: Any) -> None:
        s = self.state
        self.message.object = s.shown(s.message)
        self.message.visible = bool(s.message)
        info = s.summary()
        lines = [f"Box: {format_bounds(s.bounds)}", f"Spec: `{s.shown(info['spec'])}`"]
        if "train" in info:
            lines.append(f"{split_text(info)}; fields: {', '.join(info['fields'])}")
        self.summary.object = "\n\n".join(lines)
        self.start.disabled = s.problem is None

    def _show_catalog(self) -> None:
        """List the product files found, and put the speed mosaic on the map (prepared in the background
        the first time: its coarse levels read the whole file once)."""
        cat = self.state.catalog
        rows = []  # one item each (a table's four columns overflow the map's side column)
        for f in cat.files:
            if f.product != "bedmap":
                rows.append(f"- **{f.product}** `{f.path.name}`: {format_bounds(f.footprint)}, "
                            f"{f.shape[1]} × {f.shape[0]} cells")
        folders: dict[Path, list] = {}
        for f in cat.of("bedmap"):  # campaigns by folder: a user has dozens of them
            folders.setdefault(f.path.parent, []).append(f)
        for folder, group in folders.items():
            boxes = [f.footprint for f in group if f.footprint]
            union = (min(b[0] for b in boxes), max(b[1] for b in boxes), min(b[2] for b in boxes),
                     max(b[3] for b in boxes)) if boxes else None
            name = f"`{group[0].path.name}`" if len(group) == 1 else f"{len(group)} files in `{folder.name}/`"
            rows.append(f"- **bedmap** {name}: {format_bounds(union) if union else '-'}, "
                        f"{sum(f.points or 0 for f in group):,} points")
        text = "\n".join(rows) if cat.files else (
            "No product files yet. Use one of this server's data folders below; whoever runs the server adds "
            "more with `iceviz data add PATH` or `iceviz data download PRODUCT`.")
        if cat.problems:  # their reasons name server paths and may quote the files: counted here, listed by the CLI
            text += (f"\n\n{len(cat.problems)} path(s) could not be used: `iceviz data list` on the server says "
                     "why.")
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

    def _zoom_map(self, bounds: tuple[float, float, float, float], margin: float = 1.0) -> None:
        """Show ``bounds`` (xmin, xmax, ymin, ymax) [m] on the map, centred, with ``margin`` times its size
        around it, keeping the square frame. (HoloViews has no public call to set a drawn plot's ranges: the
        pane's Bokeh figures are reached through its plots.)"""
        xmin, xmax, ymin, ymax = bounds
        cx, cy = (xmin + xmax) / 2, (ymin + ymax) / 2
        half = max(xmax - xmin, ymax - ymin) * (0.5 + margin)
        for plot, _ in getattr(self.overview_pane, "_plots", {}).values():
            fig = getattr(plot, "state", None)
            if fig is not None and hasattr(fig, "x_range"):
                fig.x_range.update(start=cx - half, end=cx + half)
                fig.y_range.update(start=cy - half, end=cy + half)

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

    def _offer_folders(self) -> None:
        """Once the walk of the data roots (in a thread) is done: the folders it found, as the list's options."""
        if self._folders is None or not self._folders.done():
            return
        future, self._folders = self._folders, None
        folders, notes = future.result()
        roots = data_roots()
        options = {shown_path(f, roots): str(f) for f in folders}
        self.data_choice.options = {"(choose a folder)" if options else "(no data folders on this server)": "",
                                    **options}
        if notes:
            self.data_choice.description = "Not all folders could be looked at: " + "; ".join(notes)

    def _on_add_data(self, event: Any = None) -> None:
        if self.data_choice.value:
            self.state.use_data(self.data_choice.value)
        else:
            self.state.message = "Pick one of this server's data folders first."
        self._show_catalog()
        self._draw_map()

    async def _on_get_data(self, event: Any = None) -> None:
        """Fetch the missing public dataset off the event loop, then offer and pick it."""
        missing = self.state.missing_datasets()
        if not missing:
            return
        self.get_data.loading = True
        try:
            await asyncio.to_thread(self.state.fetch_dataset, missing[0])
        finally:
            self.get_data.loading = False
        self.get_data.visible = bool(self.state.missing_datasets())

    def _on_box(self, bounds: tuple[float, float, float, float] | None = None, **_: Any) -> None:
        if bounds is None:
            return
        left, bottom, right, top = bounds
        self.state.set_bounds((left, right, bottom, top))

    def _notify(self, text: str) -> None:
        self.state.message = text

    def _on_start(self, event: Any = None) -> None:
        self.tabs.active = 2  # show the tab first, then add plots to it
        self.board.add(self.state.start(snapshot_every=SNAPSHOT_EVERY_S, nice=JOB_NICE, isolate=True))

    def _on_lesson(self, event: Any = None) -> None:
        """Train a PINN with the chosen penalty beside a dfNN on the same observations; a second Start with
        another penalty adds its PINN beside the first (the dfNN of that field and noise is trained once)."""
        field, noise, weight = self.lesson_field.value, self.lesson_noise.value, self.lesson_weight.value
        spec = f"synthetic:{field}?noise={noise:g}"
        setting = f"{field}, noise {noise:g}"
        labels = {label: job for label, job in self.lesson_board.jobs  # runs to reuse: not stopped short
                  if job.status not in (JobStatus.CANCELLED, JobStatus.FAILED, JobStatus.SHORT)}
        wanted = [(f"dfNN · {setting}", "dfnn", {}), (f"PINN {weight:g} · {setting}", "pinn", {"div_weight": weight})]
        jobs, names = [], []
        for label, name, extra in wanted:
            if label in labels:
                continue
            # the plan, patience and batch follow the field's size (problem_defaults); 60 s at most
            job = training_job(name, spec, device=self.state.device, snapshot_every=SNAPSHOT_EVERY_S, seconds=60,
                               nice=JOB_NICE, isolate=True, **extra)
            jobs.append(job)
            names.append(label)
        try:
            self.queue.submit_together(jobs)  # both at once, so they learn side by side
        except QueueFull as err:
            self.state.message = f"The lesson did not start: {err}."
            return
        self.lesson_board.add(jobs, names)
        # compare every run of this field and noise: the dfNN and each PINN penalty tried (the latest three)
        same = [job.id for label, job in self.lesson_board.jobs if label.endswith(f"· {setting}")]
        self.lesson_board.compare_runs(same[:1] + same[1:][-2:] if len(same) > 3 else same)

    def cancel_all(self) -> None:
        """Cancel every job of this session (the tab closed), its region builds too."""
        self.queue.cancel_all()
        self.state.loads.cancel_all()

    def close(self) -> None:
        """The session ended: cancel its training jobs, its sweep, its simulation, its inversion and its
        emulators."""
        self.cancel_all()
        if self.sweep is not None:
            self.sweep.cancel()
        if self.simulator is not None:
            self.simulator.cancel()
        if self.viscosity is not None:
            self.viscosity.close()
        if self.emulator is not None:
            self.emulator.cancel()

    def _on_reset(self, event: Any = None) -> None:
        """The lesson's Reset: cancel its runs and forget them (the Training tab's runs are left alone)."""
        for _, job in self.lesson_board.jobs:
            job.cancel()
        self.lesson_board.reset()

    def _poll(self) -> None:
        """Periodic: copy the jobs' latest snapshots into the views (never blocks on training)."""
        self.state.finish_build()
        if self.speed is not None and self.speed_note.visible and not self.speed_failed and self.speed.ready:
            self.speed.prepare()  # from memory: the thread has finished (or from the disk cache it wrote)
            self.speed_note.visible = False
            self._draw_map()
        elif self.speed_failed and self.speed_note.object != self.speed_failed:
            self.speed_note.object = self.speed_failed
        note = server_text(self.queue.queue)
        if note != self.server_note.object:
            self.server_note.object = note
        self.board.poll()
        self.lesson_board.poll()
        self.saved.poll()
        self._offer_folders()

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


def build_app(scheduler: str = "") -> pn.template.BootstrapTemplate:
    """A fresh explorer for one browser session; its jobs go to the Dask cluster whose scheduler is at
    ``scheduler`` ('' : ``$ICEVIZ_SCHEDULER``, else an embedded cluster; see iceviz.runtime.executor)."""
    pn.extension("tabulator", notifications=False, sizing_mode="stretch_width")
    hv.extension("bokeh")
    try:
        asyncio.get_running_loop().set_exception_handler(_quiet_closed_websockets)
    except RuntimeError:  # not inside a server (e.g. built in a test or a notebook)
        pass
    configure(scheduler)
    prepare("iceviz.training.trainers", "iceviz.sim.job")  # start the workers now, with what jobs import
    return Explorer().servable()
