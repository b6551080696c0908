"""Bokeh figures of fields on a triangle mesh, built once and updated in place (as in
:mod:`iceviz.viz.live_figures`, for the same reason: a HoloViews re-render per update costs too much).

A per-node (P1) field is rasterised with datashader's triangle-mesh glyph and
linear interpolation over the visible window, at the frame's pixel size, and the
image is pushed to an image glyph: the browser never receives the mesh, and a
zoom is re-rasterised at full resolution. The grounding line is drawn exactly:
the zero contour of the P1 height above flotation is, in every triangle whose
corners change sign, the segment between the two linearly interpolated edge
crossings. The mesh edges can be overlaid (thin, hidden by default). Two time
series go with the maps: the mass budget (the volume change next to the sum of
the fluxes, which must agree) and the grounding-line position.

Nothing here imports Panel.
"""

from __future__ import annotations

import threading
from typing import Sequence

import datashader as ds
import numpy as np
import pandas as pd
from bokeh.models import (ColorBar, ColumnDataSource, CustomJSTickFormatter, FixedTicker, HoverTool, Legend,
                          LegendItem, LinearColorMapper, LogColorMapper, NumeralTickFormatter, Range1d)
from bokeh.plotting import figure

from iceviz.viz.live_figures import (COLORBAR_SPACE, TITLE_SPACE, TOOLS, image_columns, palette, round2,
                                     shared_ranges)

AXIS_SPACE = (42, 22)
"""Pixels left of and below a map's frame for its axes (ticks in km)."""
MESH_COLOUR = "#303030"
FLOATING_COLOURS = ("#b89b72", "#8ecae6")
"""Grounded (sand) and floating (sea-ice blue) in the floating-mask map."""
BUDGET_LINES = (
    # key, legend, colour, dash, width
    ("volume_change", "ΔV", "#000000", "solid", 3.0),
    ("explained", "Σ fluxes", "#ff7f0e", "dashed", 2.0),
    ("smb", "smb", "#2ca02c", "solid", 1.2),
    ("melt", "− melt", "#d62728", "solid", 1.2),
    ("boundary", "in − out", "#1f77b4", "solid", 1.2),
    ("floor_calved", "floor − calved", "#9467bd", "solid", 1.2),
)
"""The mass-budget figure's lines [km³]: the first two must agree."""


# -- pure functions ------------------------------------------------------------------------------

def km_formatter() -> CustomJSTickFormatter:
    """Axis ticks in metres shown as kilometres (a new model per axis: models cannot be shared)."""
    return CustomJSTickFormatter(code="return (tick / 1000).toLocaleString() + ' km'")


def map_figure(title: str, ranges: tuple[Range1d, Range1d], frame: tuple[int, int]) -> figure:
    """An empty map: shared (x, y) ranges, a ``frame`` (width, height) in pixels with room stated for the
    title, the axes and a colour bar, axes in km, no grid."""
    x_range, y_range = ranges
    fig = figure(title=title, x_range=x_range, y_range=y_range, tools=TOOLS, toolbar_location="above",
                 width=frame[0] + COLORBAR_SPACE + AXIS_SPACE[0], height=frame[1] + TITLE_SPACE + AXIS_SPACE[1],
                 min_border_left=AXIS_SPACE[0], min_border_bottom=AXIS_SPACE[1])
    fig.grid.visible = False
    fig.title.text_font_size = "9pt"
    for axis in fig.axis:
        axis.formatter = km_formatter()
        axis.major_label_text_font_size = "7pt"
        axis.ticker.desired_num_ticks = 4
    return fig


def rasterize_triangles(points: np.ndarray, triangles: np.ndarray, values: np.ndarray,
                        bounds: tuple[float, float, float, float], width: int, height: int
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The P1 field ``values`` (one per point) on a ``width`` × ``height`` raster of ``bounds``.

    Returns the cell-centre axes x (width,), y (height,), ascending, and the (height, width) float32
    image, linearly interpolated inside the triangles and NaN outside the mesh.
    """
    xmin, xmax, ymin, ymax = (float(b) for b in bounds)
    if not (xmax > xmin and ymax > ymin):
        raise ValueError(f"raster bounds must have positive extent, got {bounds}")
    p = np.asarray(points, dtype=np.float64)
    verts = pd.DataFrame({"x": p[:, 0], "y": p[:, 1], "z": np.asarray(values, dtype=np.float64)})
    tris = pd.DataFrame(np.asarray(triangles, dtype=np.int64), columns=["v0", "v1", "v2"])
    canvas = ds.Canvas(plot_width=int(width), plot_height=int(height), x_range=(xmin, xmax), y_range=(ymin, ymax))
    agg = canvas.trimesh(verts, tris, agg=ds.mean("z"), interpolate="linear")
    return (np.asarray(agg["x"].values, dtype=float), np.asarray(agg["y"].values, dtype=float),
            np.asarray(agg.values, dtype=np.float32))


def zero_contour(points: np.ndarray, triangles: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The zero contour of a P1 field: (K, 2, 2) segments [[x0, y0], [x1, y1]], one per triangle it crosses.

    A node counts as "positive" when its value is ≥ 0. In each triangle whose nodes are not all on the
    same side, exactly two edges join nodes of opposite sides; on each, the crossing lies where the linear
    interpolant vanishes, t = a / (a − b) of the way from the node with value a to the one with b.
    """
    p = np.asarray(points, dtype=float)
    t = np.asarray(triangles)
    v = np.asarray(values, dtype=float)[t]  # (M, 3)
    positive = v >= 0
    mixed = positive.any(axis=1) & ~positive.all(axis=1)
    if not mixed.any():
        return np.zeros((0, 2, 2))
    t, v, positive = t[mixed], v[mixed], positive[mixed]
    corners = p[t]  # (K, 3, 2)
    a_idx, b_idx = np.array([0, 1, 2]), np.array([1, 2, 0])
    va, vb = v[:, a_idx], v[:, b_idx]  # (K, 3) per edge
    crosses = positive[:, a_idx] != positive[:, b_idx]
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(crosses, va / (va - vb), 0.0)
    pts = corners[:, a_idx] + frac[..., None] * (corners[:, b_idx] - corners[:, a_idx])  # (K, 3, 2)
    return pts[crosses].reshape(-1, 2, 2)


def segment_columns(segments: np.ndarray) -> dict[str, list]:
    """One multi_line entry holding every segment, separated by NaN (a single glyph, however many)."""
    seg = np.asarray(segments, dtype=float).reshape(-1, 2, 2)
    if len(seg) == 0:
        return dict(xs=[], ys=[])
    gap = np.full((len(seg), 1), np.nan)
    xs = np.hstack([seg[:, :, 0], gap]).ravel()[:-1]
    ys = np.hstack([seg[:, :, 1], gap]).ravel()[:-1]
    return dict(xs=[xs], ys=[ys])


def edge_segments(points: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """(E, 2, 2) segments of the mesh edges (node index pairs)."""
    return np.asarray(points, dtype=float)[np.asarray(edges)]


def budget_columns(history: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The budget figure's columns [km³] from a run's history (see :data:`iceviz.sim.job.HISTORY_KEYS`).

    ``volume_change`` is the volume now minus at the start (from the volumes), ``explained`` the sum of
    the cumulative fluxes: the two agree when the run conserves mass.
    """
    t = np.asarray(history.get("t", []), dtype=float)
    if t.size == 0:
        return dict(t=t, **{key: np.zeros(0) for key, *_ in BUDGET_LINES})
    b = {k: np.asarray(history[f"budget_{k}"], dtype=float) / 1e9
         for k in ("smb", "melt", "inflow", "outflow", "floor", "calved")}
    volume = np.asarray(history["volume"], dtype=float) / 1e9
    return dict(t=t, volume_change=volume - volume[0],
                explained=b["smb"] - b["melt"] + b["inflow"] - b["outflow"] + b["floor"] - b["calved"],
                smb=b["smb"], melt=-b["melt"], boundary=b["inflow"] - b["outflow"],
                floor_calved=b["floor"] - b["calved"])


def frame_size(bounds: tuple[float, float, float, float], frame_width: int, min_height: int = 60,
               max_height: int = 420) -> tuple[int, int]:
    """(width, height) in pixels of a map frame keeping the region's aspect (height clipped to limits)."""
    xmin, xmax, ymin, ymax = bounds
    aspect = (ymax - ymin) / max(xmax - xmin, 1e-9)
    return int(frame_width), int(np.clip(round(frame_width * aspect), min_height, max_height))


_warm = threading.Event()
_warm_lock = threading.Lock()


def warm_up() -> None:
    """Compile datashader's triangle rasteriser (seconds, once per process) on a two-triangle mesh."""
    with _warm_lock:
        if _warm.is_set():
            return
        pts = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
        tri = np.array([[0, 1, 2], [0, 2, 3]])
        for shape in ((8, 6), (5, 9)):
            rasterize_triangles(pts, tri, np.arange(4.0), (0.0, 1.0, 0.0, 1.0), *shape)
            rasterize_triangles(pts, tri, np.arange(4.0), (-0.5, 2.0, -1.0, 1.5), *shape)
        _warm.set()


# -- figures --------------------------------------------------------------------------------------

class MeshFieldFigure:
    """A mesh field as an image with a colour bar, the grounding line and (toggleable) mesh edges.

    Parameters
    ----------
    title : fixed title.
    cmap : colour map name (see :mod:`iceviz.viz.maps`), or a list of colours.
    label : what the colour bar and the hover show, with the unit.
    ranges : the (x, y) ranges, shared with the maps that zoom together.
    frame : (width, height) of the plotting frame in pixels; the figure's outer size adds the axes,
        title and colour bar, and is stated (never measured by a layout).
    log : a logarithmic colour scale (values below its low end take the lowest colour).
    categories : label per colour for a categorical map (ticks at the colour's middle).
    """

    def __init__(self, title: str, cmap: str | Sequence[str], label: str, ranges: tuple[Range1d, Range1d],
                 frame: tuple[int, int], log: bool = False, categories: Sequence[str] | None = None):
        self.frame = frame
        self.figure = map_figure(title, ranges, frame)
        colours = list(cmap) if not isinstance(cmap, str) else palette(cmap)
        transparent = "rgba(0, 0, 0, 0)"
        self.log = log
        self.mapper = (LogColorMapper(palette=colours, low=1.0, high=10.0, nan_color=transparent) if log else
                       LinearColorMapper(palette=colours, low=0.0, high=1.0, nan_color=transparent))
        self.source = ColumnDataSource(dict(image=[], x=[], y=[], dw=[], dh=[]))
        image = self.figure.image(image="image", x="x", y="y", dw="dw", dh="dh", source=self.source,
                                  color_mapper=self.mapper)
        bar = dict(color_mapper=self.mapper, title=label, width=8, title_text_font_size="8pt",
                   major_label_text_font_size="8pt", formatter=NumeralTickFormatter(format="0.[0]a"))
        if categories:
            n = len(categories)
            self.mapper.update(low=0.0, high=1.0)
            ticks = [(i + 0.5) / n for i in range(n)]
            bar.update(ticker=FixedTicker(ticks=ticks), major_label_overrides=dict(zip(ticks, categories)))
            bar.pop("formatter")
        self.figure.add_layout(ColorBar(**bar), "right")
        self.figure.add_tools(HoverTool(renderers=[image], tooltips=[(label, "@image{0.[00]a}")]))
        self.mesh = ColumnDataSource(dict(xs=[], ys=[]))
        self.mesh_lines = self.figure.multi_line("xs", "ys", source=self.mesh, line_color=MESH_COLOUR,
                                                 line_width=0.5, line_alpha=0.45, visible=False)
        self.grounding_line = ColumnDataSource(dict(xs=[], ys=[]))
        # one source, drawn twice: a dark halo under a white line stays visible on every colour map
        self.figure.multi_line("xs", "ys", source=self.grounding_line, line_color="black", line_width=3.5,
                               line_alpha=0.8)
        self.figure.multi_line("xs", "ys", source=self.grounding_line, line_color="white", line_width=1.6)

    def update(self, columns: dict[str, list] | None = None, low: float | None = None, high: float | None = None,
               grounding_line: dict[str, list] | None = None) -> None:
        """New image columns (see :func:`image_columns`), colour limits, grounding-line columns."""
        if columns is not None:
            self.source.data = columns
        if low is not None and high is not None and (self.mapper.low, self.mapper.high) != (low, high):
            self.mapper.update(low=low, high=high)
        if grounding_line is not None:
            self.grounding_line.data = grounding_line

    def set_mesh(self, columns: dict[str, list]) -> None:
        self.mesh.data = columns

    def show_mesh(self, visible: bool) -> None:
        self.mesh_lines.visible = bool(visible)


class BudgetFigure:
    """Cumulative mass-budget terms [km³] against model year; ΔV and the flux sum must overlap."""

    def __init__(self, width: int = 560, height: int = 280):
        self.figure = figure(title="Mass budget since the start: ΔV = Σ fluxes = smb − melt + in − out + floor "
                                   "− calved", width=width, height=height, tools=TOOLS, toolbar_location="above",
                             x_axis_label="model year", y_axis_label="volume (km³)")
        self.figure.title.text_font_size = "9pt"
        self.source = ColumnDataSource(budget_columns({}))
        items = []
        for key, legend, colour, dash, width_px in BUDGET_LINES:
            line = self.figure.line("t", key, source=self.source, color=colour, line_dash=dash, line_width=width_px)
            items.append(LegendItem(label=legend, renderers=[line]))
        # outside the frame: the lines may run through any corner
        self.figure.add_layout(Legend(items=items, label_text_font_size="8pt", click_policy="hide",
                                      spacing=0, padding=4, margin=4), "right")
        self.figure.add_tools(HoverTool(tooltips=[("year", "@t{0.00}"), ("ΔV", "@volume_change{0.000} km³"),
                                                  ("Σ fluxes", "@explained{0.000} km³")], mode="vline"))

    def update(self, history: dict[str, np.ndarray]) -> None:
        self.source.data = budget_columns(history)


class GroundingLineFigure:
    """Centreline grounding-line position [km] against model year."""

    def __init__(self, width: int = 420, height: int = 280):
        self.figure = figure(title="Grounding line on the centreline", width=width, height=height, tools=TOOLS,
                             toolbar_location="above", x_axis_label="model year",
                             y_axis_label="distance from the upstream side (km)")
        self.figure.title.text_font_size = "9pt"
        self.source = ColumnDataSource(dict(t=[], gl=[]))
        self.figure.line("t", "gl", source=self.source, color="#6a3d9a", line_width=2)
        self.figure.scatter("t", "gl", source=self.source, color="#6a3d9a", size=3)
        self.figure.add_tools(HoverTool(tooltips=[("year", "@t{0.00}"), ("grounding line", "@gl{0.0} km")]))

    def update(self, history: dict[str, np.ndarray]) -> None:
        t = np.asarray(history.get("t", []), dtype=float)
        self.source.data = dict(t=t, gl=np.asarray(history.get("grounding_line", []), dtype=float) / 1e3)


class LinkedMaps:
    """Maps of per-node fields on one mesh that zoom together; :meth:`refresh` re-rasterises after a zoom.

    Subclasses make the figures (``self.maps``, sharing ``self.ranges``, each ``self.frame`` in size) and
    give :meth:`layers`, the (figure, per-node values) pairs to rasterise.
    """

    def __init__(self, points: np.ndarray, triangles: np.ndarray, frame_width: int):
        self.points, self.triangles = np.asarray(points, dtype=float), np.asarray(triangles)
        x, y = self.points[:, 0], self.points[:, 1]
        self.bounds = (float(x.min()), float(x.max()), float(y.min()), float(y.max()))
        xmin, xmax, ymin, ymax = self.bounds
        dx, dy = 0.01 * (xmax - xmin), 0.01 * (ymax - ymin)  # a margin: the outline stays visible
        self.ranges = shared_ranges((xmin - dx, xmax + dx, ymin - dy, ymax + dy))
        self.frame = frame_size(self.bounds, frame_width)
        self._window: tuple[float, float, float, float] | None = None

    def layers(self) -> list[tuple[MeshFieldFigure, np.ndarray]]:
        """(figure, values per node) to rasterise now; empty before the first update."""
        raise NotImplementedError

    def transform(self, fig: MeshFieldFigure, image: np.ndarray) -> np.ndarray:
        """A figure's raster before it is shown (as it is, by default)."""
        return image

    def window(self) -> tuple[float, float, float, float]:
        """The visible (xmin, xmax, ymin, ymax), as the browser last reported it."""
        xr, yr = self.ranges
        x0, x1 = sorted((float(xr.start), float(xr.end)))
        y0, y1 = sorted((float(yr.start), float(yr.end)))
        return x0, x1, y0, y1

    def refresh(self) -> bool:
        """Re-rasterise if the visible window changed since the last raster (after a zoom); True if it did."""
        window = self.window()
        if not self.layers() or window == self._window:
            return False
        self._raster(window)
        return True

    def _raster(self, window: tuple[float, float, float, float]) -> None:
        self._window = window
        for fig, values in self.layers():
            x, y, image = rasterize_triangles(self.points, self.triangles, values, window, *fig.frame)
            fig.update(columns=image_columns(x, y, self.transform(fig, image)))


class SimulationMaps(LinkedMaps):
    """Thickness, speed and floating mask of one mesh, zooming together, plus the budget and grounding-line
    figures. :meth:`update` takes new per-node fields; :meth:`refresh` re-rasterises after a zoom.

    Parameters
    ----------
    points, triangles, edges : the mesh.
    frame_width : width of each map's frame in pixels (heights keep the domain's aspect).
    """

    def __init__(self, points: np.ndarray, triangles: np.ndarray, edges: np.ndarray, frame_width: int = 240):
        super().__init__(points, triangles, frame_width)
        frame = self.frame
        self.thickness = MeshFieldFigure("Ice thickness", "viridis", "h (m)", self.ranges, frame)
        self.speed = MeshFieldFigure("Ice speed (log scale)", "inferno", "|u| (m/a)", self.ranges, frame, log=True)
        self.floating = MeshFieldFigure("Grounded or floating", list(FLOATING_COLOURS), "", self.ranges, frame,
                                        categories=("grounded", "floating"))
        self.maps = (self.thickness, self.speed, self.floating)
        self.edges = np.asarray(edges)
        self._mesh_sent = False  # the edges go to the browser when first shown (a fine mesh has many)
        self.budget = BudgetFigure()
        self.gl = GroundingLineFigure()
        self._fields: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def layers(self) -> list[tuple[MeshFieldFigure, np.ndarray]]:
        return [] if self._fields is None else list(zip(self.maps, self._fields))

    def transform(self, fig: MeshFieldFigure, image: np.ndarray) -> np.ndarray:
        if fig is self.speed:
            return np.maximum(image, np.float32(fig.mapper.low))  # NaN stays NaN (outside the mesh)
        if fig is self.floating:
            return np.where(np.isnan(image), np.nan, (image < 0).astype(np.float32)).astype(np.float32)
        return image

    def update(self, h: np.ndarray, speed: np.ndarray, haf: np.ndarray, history: dict[str, np.ndarray] | None,
               h_max: float | None = None, speed_max: float | None = None) -> None:
        """New fields (per node) and history; colour limits from the fields unless given."""
        self._fields = (np.asarray(h, float), np.asarray(speed, float), np.asarray(haf, float))
        hi = h_max if h_max is not None else round2(max(float(np.nanmax(h)), 1.0))
        self.thickness.update(low=0.0, high=hi)
        smax = speed_max if speed_max is not None else round2(max(float(np.nanmax(speed)), 10.0))
        self.speed.update(low=max(1.0, round2(smax / 1e4)), high=smax)
        line = segment_columns(zero_contour(self.points, self.triangles, haf))
        for m in self.maps:
            m.update(grounding_line=line)
        self._raster(self.window())
        if history is not None:
            self.budget.update(history)
            self.gl.update(history)

    def show_mesh(self, visible: bool) -> None:
        if visible and not self._mesh_sent:
            columns = segment_columns(edge_segments(self.points, self.edges))
            for m in self.maps:
                m.set_mesh(columns)
            self._mesh_sent = True
        for m in self.maps:
            m.show_mesh(visible)
