"""Bokeh figures of a viscosity inversion, made once per shelf and updated in place.

The maps of one shelf (see :class:`ShelfFigures`): the inferred viscosity μ on
a logarithmic colour scale [Pa·s], beside it the true μ and the relative error
(diverging, symmetric about zero) where the truth is known, the SSA momentum
residual, the effective strain rate (log scale), and the network-minus-data
misfits of u, v (velocity raster) and h (thickness raster). Every map draws the
calving-front points and zooms with the others. A loss chart shows every loss
term against the optimisation step on a log axis, the validation misfit and the
step whose weights are kept (when the run holds out cells), and the viscosity
error when the truth is known.

As in :mod:`iceviz.viz.live_figures` an update only replaces the columns of a
``ColumnDataSource`` and, when they change by more than rounding, the colour
limits: a small patch, no re-render. Live snapshots hold at most about 100
cells a side; the final one is full size. Rasters may run north to south
(descending y, as in the real DIFFICE files): :func:`image_columns` flips them.

:class:`ShelfPreview` is the observed speed of a shelf before any inversion, where
a box is dragged to crop: one figure for every shelf, so that choosing another
shelf sends new data, not a new figure. Nothing here imports Panel.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import xarray as xr
from bokeh.events import SelectionGeometry
from bokeh.models import (BasicTickFormatter, BoxSelectTool, ColorBar, ColumnDataSource, CustomJSTickFormatter,
                          HoverTool, Legend, LegendItem, LinearColorMapper, LogColorMapper, NumeralTickFormatter,
                          Range1d)
from bokeh.plotting import figure

from iceviz.viz import maps
from iceviz.viz.live_figures import TOOLS, KeptMarker, image_columns, palette, round2, shared_ranges
from iceviz.viz.mesh_figures import frame_size, map_figure

FRAME_WIDTH = 230
"""Width of a map's frame in pixels; heights follow the shelf's aspect ratio (within limits)."""
VISCOSITY_CMAP = "viridis"
STRAIN_CMAP = "inferno"
RESIDUAL_CMAP = "magma"
FRONT_COLOUR = "#ff2d95"
"""The calving front: a bright magenta that no colour map here uses."""
CROP_COLOUR = "#ff3d00"
"""The crop box on the shelf preview."""
DEFAULT_MU_LIMITS = (1e13, 1e15)
"""Colour limits [Pa·s] before any viscosity is known (typical ice-shelf values)."""
LOSS_LINES = (
    # history key, legend, colour, dash, width
    ("loss_total", "total (scaled)", "#000000", "solid", 2.5),
    ("loss_u", "u misfit", "#1f77b4", "solid", 1.4),
    ("loss_v", "v misfit", "#17becf", "solid", 1.4),
    ("loss_h", "h misfit", "#2ca02c", "solid", 1.4),
    ("loss_equation", "SSA residual", "#d62728", "solid", 1.4),
    ("loss_front", "front residual", "#9467bd", "solid", 1.4),
    ("loss_interface", "interface jumps (XPINN)", "#8c564b", "solid", 1.4),
)
"""The loss chart's lines (unweighted terms in scaled units, and the weighted total relative to its start)."""
VALIDATION_LINE = ("val_misfit", "validation misfit", "#000000", "dashed", 2.0)
"""The data part of the loss, MSE(û) + MSE(v̂) + w_h MSE(ĥ), on the held-out cells: dashed black, as the
validation curve of the flux models' loss charts (:class:`iceviz.viz.live_figures.LossFigure`)."""
MU_ERROR_LINE = ("mu_rel_error", "μ rel. error", "#ff7f0e", "dashed", 2.5)
OPTIONAL_LINES = ("loss_interface", "val_misfit")
"""Lines in the legend only once the history has them (runs with sub-domains, runs holding out cells)."""


# -- pure functions ------------------------------------------------------------------------------

def log_limits(arrays: Sequence[np.ndarray], quantiles: tuple[float, float] = (0.01, 0.99),
               default: tuple[float, float] = DEFAULT_MU_LIMITS) -> tuple[float, float]:
    """(low, high) for a logarithmic colour scale: quantiles of the finite, positive values, two significant
    digits (so that limits, and the colour bar, only change when it shows); ``default`` when there are none."""
    values = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in arrays]) if arrays else np.zeros(0)
    values = values[np.isfinite(values) & (values > 0)]
    if values.size == 0:
        return default
    low, high = (round2(float(q)) for q in np.quantile(values, quantiles))
    if not high > low * 1.05:  # (nearly) uniform: a band around it, so the scale is not degenerate
        low, high = round2(low / 1.5), round2(high * 1.5)
    return low, high


def symmetric_limit(arrays: Sequence[np.ndarray], quantile: float = 0.98) -> float:
    """A symmetric colour limit ±L for signed fields (L the ``quantile`` of |value|, two significant digits)."""
    return round2(maps.symmetric_limit(arrays, quantile=quantile))


def positive(values: np.ndarray) -> np.ndarray:
    """``values`` with the non-positive entries as NaN (a logarithmic scale has no colour for them)."""
    v = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.where(v > 0, v, np.nan)


def front_columns(front: np.ndarray | dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    """The calving-front points as columns ``x``, ``y`` (from an (n, 2) array or a snapshot's ``points``)."""
    if front is None:
        return dict(x=np.zeros(0), y=np.zeros(0))
    if isinstance(front, dict):
        return dict(x=np.asarray(front["x"], dtype=float), y=np.asarray(front["y"], dtype=float))
    front = np.asarray(front, dtype=float).reshape(-1, 2)
    return dict(x=front[:, 0], y=front[:, 1])


def padded(bounds: tuple[float, float, float, float], fraction: float = 0.02) -> tuple[float, float, float, float]:
    """``bounds`` (xmin, xmax, ymin, ymax) grown by ``fraction`` of their extent on every side."""
    xmin, xmax, ymin, ymax = bounds
    dx, dy = fraction * (xmax - xmin), fraction * (ymax - ymin)
    return xmin - dx, xmax + dx, ymin - dy, ymax + dy


def fit_aspect(bounds: tuple[float, float, float, float], aspect: float) -> tuple[float, float, float, float]:
    """``bounds`` (xmin, xmax, ymin, ymax) widened about their centre in x or in y so that height / width is
    ``aspect``: a frame of that shape shows them with one metre the same length on both axes."""
    xmin, xmax, ymin, ymax = bounds
    width, height = xmax - xmin, ymax - ymin
    if height < aspect * width:
        grow = (aspect * width - height) / 2
        return xmin, xmax, ymin - grow, ymax + grow
    grow = (height / aspect - width) / 2
    return xmin - grow, xmax + grow, ymin, ymax


def _thin(x: np.ndarray, y: np.ndarray, values: np.ndarray, max_cells: int) -> tuple[np.ndarray, ...]:
    step = max(1, math.ceil(max(len(x), len(y)) / max_cells))
    return x[::step], y[::step], values[::step, ::step]


# -- figures --------------------------------------------------------------------------------------

def _log_formatter() -> CustomJSTickFormatter:
    """Colour-bar ticks of a log scale as 2e13 or 1.5e14 (Bokeh's defaults print 20000000000000)."""
    return CustomJSTickFormatter(code="return tick.toExponential(1).replace('.0e', 'e').replace('e+', 'e')")


class ShelfMap:
    """One field of a shelf as an image with a colour bar and the calving front, updated in place.

    Parameters
    ----------
    title : the title (changed only to say what the map shows, e.g. a preview).
    cmap : colour map name (see :mod:`iceviz.viz.maps`).
    label : what the colour bar shows, with the unit.
    ranges : the (x, y) ranges, shared with the maps that zoom together.
    frame : (width, height) of the plotting frame in pixels; the outer size is stated, never measured.
    front : the calving front's source (shared by every map of the shelf).
    scale : ``linear``, ``log`` (positive values; non-positive ones are left blank) or ``percent``
        (a linear scale whose colour bar reads 0.05 as 5 %).
    """

    def __init__(self, title: str, cmap: str, label: str, ranges: tuple[Range1d, Range1d], frame: tuple[int, int],
                 front: ColumnDataSource, scale: str = "linear", css_class: str = ""):
        self.frame, self.scale, self.css_class = frame, scale, css_class
        self.figure = map_figure(title, ranges, frame)
        transparent = "rgba(0, 0, 0, 0)"
        colours = palette(cmap)
        if scale == "log":
            self.mapper = LogColorMapper(palette=colours, low=DEFAULT_MU_LIMITS[0], high=DEFAULT_MU_LIMITS[1],
                                         nan_color=transparent)
            formatter, hover = _log_formatter(), "@image{%0.3e}"
        else:
            self.mapper = LinearColorMapper(palette=colours, low=-1.0 if scale == "percent" else 0.0, high=1.0,
                                            nan_color=transparent)
            formatter = NumeralTickFormatter(format="0%") if scale == "percent" else BasicTickFormatter(
                precision="auto", power_limit_high=4, power_limit_low=-3)
            hover = "@image{0.0%}" if scale == "percent" else "@image{%0.3g}"
        self.source = ColumnDataSource(dict(image=[], x=[], y=[], dw=[], dh=[]))
        image = self.figure.image(image="image", x="x", y="y", dw="dw", dh="dh", source=self.source,
                                  color_mapper=self.mapper)
        self.figure.add_layout(ColorBar(color_mapper=self.mapper, title=label, width=8, title_text_font_size="8pt",
                                        major_label_text_font_size="8pt", formatter=formatter), "right")
        self.figure.add_tools(HoverTool(renderers=[image], tooltips=[(label, hover)],
                                        formatters={"@image": "printf"} if "%0" in hover else {}))
        self.front = self.figure.scatter("x", "y", source=front, size=3, color=FRONT_COLOUR, line_color=None,
                                         legend_label="calving front")
        self.figure.legend.location = "top_left"
        self.figure.legend.label_text_font_size = "7pt"
        self.figure.legend.padding = 2
        self.figure.legend.margin = 2
        self.figure.legend.background_fill_alpha = 0.6

    def update(self, x: np.ndarray, y: np.ndarray, values: np.ndarray, low: float, high: float) -> None:
        """New values (dims y, x) on cell centres ``x``, ``y`` (either order) and colour limits."""
        if self.scale == "log":
            values = positive(values)
        self.source.data = image_columns(x, y, values)
        if (self.mapper.low, self.mapper.high) != (low, high):
            self.mapper.update(low=low, high=high)


class ShelfPreview:
    """A shelf before any inversion: observed speed |u| [m/yr] on a log scale (at most ``max_cells`` a side),
    the calving front, and the crop box, which the user drags (box-select) and ``on_box`` receives as
    (xmin, xmax, ymin, ymax) [m]. One figure of one size for every shelf: :meth:`show` replaces its data and
    ranges (a new size would lay the whole page out again in the browser, seconds on a busy page).

    Parameters
    ----------
    frame_width, frame_height : the plotting frame in pixels; a shelf's ranges are widened to its aspect.
    on_box : called with the dragged box (in the server's event thread).
    """

    TITLE = "Observed speed: drag a box to invert only part of the shelf"

    def __init__(self, frame_width: int, frame_height: int,
                 on_box: Callable[[tuple[float, float, float, float]], None] | None = None, max_cells: int = 300):
        self.frame_width, self.frame_height, self.max_cells = frame_width, frame_height, max_cells
        self.on_box = on_box
        self.front = ColumnDataSource(front_columns(None))
        self.ranges = shared_ranges((0.0, 1.0, 0.0, 1.0))
        self.map = ShelfMap(self.TITLE, VISCOSITY_CMAP, "observed speed (m/yr)", self.ranges,
                            (frame_width, frame_height), self.front, scale="log")
        fig = self.figure = self.map.figure
        fig.title.text_font_size = "10pt"
        self.box = ColumnDataSource(dict(left=[], right=[], bottom=[], top=[]))
        fig.quad(left="left", right="right", bottom="bottom", top="top", source=self.box, fill_color=CROP_COLOUR,
                 fill_alpha=0.12, line_color=CROP_COLOUR, line_width=2)
        select = BoxSelectTool(dimensions="both", renderers=[fig.renderers[0]])
        fig.add_tools(select)
        fig.toolbar.active_drag = select
        fig.on_event(SelectionGeometry, self._on_selection)

    def show(self, x: np.ndarray, y: np.ndarray, u: np.ndarray, v: np.ndarray, front: np.ndarray,
             bounds: tuple[float, float, float, float]) -> None:
        """A new shelf: velocity components (dims y, x) on cell centres ``x``, ``y`` (in the shelf's own
        coordinates), its calving front and bounds."""
        speed = np.hypot(np.asarray(u, dtype=float), np.asarray(v, dtype=float))
        x, y, speed = _thin(np.asarray(x, float), np.asarray(y, float), speed, self.max_cells)
        values = speed[np.isfinite(speed) & (speed > 0)]
        low, high = ((max(1.0, round2(float(np.quantile(values, 0.01)))), round2(float(np.quantile(values, 0.999))))
                     if values.size else (1.0, 1e3))
        xmin, xmax, ymin, ymax = fit_aspect(padded(bounds), self.frame_height / self.frame_width)
        self.ranges[0].update(start=xmin, end=xmax)
        self.ranges[1].update(start=ymin, end=ymax)
        self.map.update(x, y, speed, low, max(high, low * 1.5))
        self.front.data = front_columns(front)
        self.set_box(None)
        self.figure.title.text = self.TITLE

    def clear(self, title: str) -> None:
        """No shelf (loading, or refused): an empty frame titled ``title``."""
        self.source.data = dict(image=[], x=[], y=[], dw=[], dh=[])
        self.front.data = front_columns(None)
        self.set_box(None)
        self.figure.title.text = title

    @property
    def source(self) -> ColumnDataSource:
        return self.map.source

    def set_box(self, box: tuple[float, float, float, float] | None) -> None:
        """Draw the crop box (xmin, xmax, ymin, ymax) [m], or none."""
        self.box.data = (dict(left=[box[0]], right=[box[1]], bottom=[box[2]], top=[box[3]]) if box is not None
                         else dict(left=[], right=[], bottom=[], top=[]))

    def _on_selection(self, event: SelectionGeometry) -> None:
        geometry = event.geometry or {}
        if geometry.get("type") != "rect" or not event.final or self.on_box is None:
            return
        x0, x1, y0, y1 = (float(geometry[k]) for k in ("x0", "x1", "y0", "y1"))
        self.on_box((min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1)))


class LossChart:
    """Every loss term against the optimisation step on a log axis, the validation misfit and the kept step
    (when the run holds out cells), and μ's relative error when known."""

    def __init__(self, truth: bool, width: int = 620, height: int = 280):
        self.figure = figure(title="Loss terms (scaled units) and viscosity error" if truth else
                             "Loss terms (scaled units)", y_axis_type="log", width=width, height=height, tools=TOOLS,
                             toolbar_location="above", x_axis_label="step", y_axis_label="loss / error")
        self.figure.title.text_font_size = "9pt"
        self.source = ColumnDataSource({"step": [], **{key: [] for key, *_ in self.lines(truth)}})
        self.items = {}
        for key, legend, colour, dash, width_px in self.lines(truth):
            line = self.figure.line("step", key, source=self.source, color=colour, line_dash=dash,
                                    line_width=width_px)
            self.items[key] = LegendItem(label=legend, renderers=[line], visible=key not in OPTIONAL_LINES)
        # outside the frame: the curves may run through any corner
        self.figure.add_layout(Legend(items=list(self.items.values()), label_text_font_size="8pt", click_policy="hide", spacing=0,
                                      padding=4, margin=4), "right")
        self.kept = KeptMarker(self.figure, unit="step")
        self.figure.add_tools(HoverTool(tooltips=[("step", "@step"), ("total", "@loss_total{%0.3e}"),
                                                  ("validation", "@val_misfit{%0.3e}")]
                                        + ([("μ rel. error", "@mu_rel_error{0.0%}")] if truth else []),
                                        formatters={"@loss_total": "printf", "@val_misfit": "printf"}, mode="vline"))

    @staticmethod
    def lines(truth: bool) -> tuple[tuple, ...]:
        return LOSS_LINES + (VALIDATION_LINE,) + ((MU_ERROR_LINE,) if truth else ())

    def update(self, history: Sequence[dict]) -> None:
        self.source.data = columns = loss_columns(history, list(self.items))
        for key in OPTIONAL_LINES:
            shown = bool(np.isfinite(columns[key]).any())
            if self.items[key].visible != shown:
                self.items[key].visible = shown
        self.kept.update(history, columns["step"])


def loss_columns(history: Sequence[dict], keys: Sequence[str]) -> dict[str, np.ndarray]:
    """The loss chart's columns: ``step`` and each key, non-positive or missing values as NaN (a log axis)."""
    step = np.array([h.get("step", h.get("epoch", np.nan)) for h in history], dtype=float)
    out = {"step": step}
    for key in keys:
        values = np.array([h.get(key, np.nan) for h in history], dtype=float)
        out[key] = np.where(np.isfinite(values) & (values > 0), values, np.nan)
    return out


class ShelfFigures:
    """Every map of one shelf, zooming together, and the loss chart; :meth:`update` takes a snapshot's fields.

    Parameters
    ----------
    bounds : (xmin, xmax, ymin, ymax) [m] of the shelf (its own coordinates).
    front : (n, 2) calving-front points [m].
    truth : the true viscosity is known (adds the truth and the relative-error maps).
    frame_width : width of each map's frame in pixels.
    """

    def __init__(self, bounds: tuple[float, float, float, float], front: np.ndarray, truth: bool,
                 frame_width: int = FRAME_WIDTH):
        self.bounds, self.truth = tuple(float(b) for b in bounds), bool(truth)
        self.ranges = shared_ranges(padded(self.bounds))
        self.frame = frame_size(self.bounds, frame_width, min_height=80, max_height=320)
        self.front = ColumnDataSource(front_columns(front))

        def new(title: str, cmap: str, label: str, scale: str, css: str) -> ShelfMap:
            return ShelfMap(title, cmap, label, self.ranges, self.frame, self.front, scale=scale, css_class=css)

        self.mu = new("Viscosity μ (PINN)", VISCOSITY_CMAP, "μ (Pa·s)", "log", "visc-mu-map")
        self.mu_true = new("True viscosity μ", VISCOSITY_CMAP, "μ (Pa·s)", "log", "visc-mu-true-map") if truth else None
        self.mu_error = new("Relative error of μ: (μ − true) / true", maps.DIVERGING, "rel. error", "percent",
                            "visc-mu-error-map") if truth else None
        self.residual = new("SSA momentum residual |f|", RESIDUAL_CMAP, "|f| (× driving stress)", "linear",
                            "visc-residual-map")
        self.strain_rate = new("Effective strain rate", STRAIN_CMAP, "ε̇ₑ (1/yr)", "log", "visc-strain-map")
        self.u_misfit = new("u misfit: network − observed", maps.DIVERGING, "Δu (m/yr)", "linear", "visc-u-misfit-map")
        self.v_misfit = new("v misfit: network − observed", maps.DIVERGING, "Δv (m/yr)", "linear", "visc-v-misfit-map")
        self.h_misfit = new("h misfit: network − observed", maps.DIVERGING, "Δh (m)", "linear", "visc-h-misfit-map")
        self.loss = LossChart(truth)
        self.mu_limits: tuple[float, float] | None = None
        self.mu_source = ""
        """What the viscosity map shows now: '' (nothing), 'pinn' or 'preview'."""

    @property
    def rows(self) -> list[list[ShelfMap]]:
        """The maps in display rows: viscosity (with the truth and the error where known), the physics
        (residual, strain rate), the misfits."""
        misfits = [self.u_misfit, self.v_misfit, self.h_misfit]
        if self.truth:
            return [[self.mu, self.mu_true, self.mu_error], [self.residual, self.strain_rate], misfits]
        return [[self.mu, self.residual, self.strain_rate], misfits]

    @property
    def maps(self) -> list[ShelfMap]:
        return [m for row in self.rows for m in row]

    def _mu_limits(self, fields: xr.Dataset | None, mu: np.ndarray) -> tuple[float, float]:
        """Colour limits of μ: the truth's range where it is known (fixed, so that the maps compare honestly),
        else the 2nd to 98th percentile of the inferred μ."""
        if self.mu_limits is None and fields is not None and "mu_true" in fields:
            self.set_truth_limits(fields["mu_true"].values)
        if self.mu_limits is not None:
            return self.mu_limits
        return log_limits([mu], quantiles=(0.02, 0.98))

    def set_truth_limits(self, mu_true: np.ndarray) -> None:
        """Fix μ's colour limits to the range of the true viscosity (before any snapshot, e.g. for a preview)."""
        self.mu_limits = log_limits([mu_true], quantiles=(0.0, 1.0))

    def update(self, fields: xr.Dataset, label: str = "PINN") -> None:
        """Every map from a snapshot's fields (see :meth:`ViscosityTrainer.grid_fields`)."""
        x, y = fields["x"].values, fields["y"].values
        mu = fields["mu"].values
        low, high = self._mu_limits(fields, mu)
        self.mu.update(x, y, mu, low, high)
        self._title(self.mu, f"Viscosity μ ({label})")
        self.mu_source = "pinn"
        if self.truth and "mu_true" in fields:
            self.mu_true.update(x, y, fields["mu_true"].values, low, high)
            err = fields["mu_error"].values
            lim = max(symmetric_limit([err]), 0.01)
            self.mu_error.update(x, y, err, -lim, lim)
        res = fields["residual"].values
        self.residual.update(x, y, res, 0.0, max(round2(float(np.nanquantile(res, 0.98))) if np.isfinite(res).any()
                                                 else 1.0, 1e-6))
        rate = fields["strain_rate"].values
        self.strain_rate.update(x, y, rate, *log_limits([rate], quantiles=(0.02, 0.98), default=(1e-4, 1e-1)))
        for fig, name in ((self.u_misfit, "u_misfit"), (self.v_misfit, "v_misfit")):
            lim = max(symmetric_limit([fields[name].values]), 1e-6)
            fig.update(x, y, fields[name].values, -lim, lim)
        hm = fields["h_misfit"].values
        lim = max(symmetric_limit([hm]), 1e-6)
        self.h_misfit.update(fields["x_h"].values, fields["y_h"].values, hm, -lim, lim)

    def show_preview(self, x: np.ndarray, y: np.ndarray, mu: np.ndarray, mu_true: np.ndarray | None = None,
                     title: str = "μ: least-squares PREVIEW") -> None:
        """A viscosity computed otherwise (the least-squares preview) on the viscosity map, and its error
        against ``mu_true`` on the error map when given. Non-positive values are left blank (log scale)."""
        if mu_true is not None and self.mu_limits is None:
            self.set_truth_limits(mu_true)
        low, high = self.mu_limits or log_limits([mu], quantiles=(0.02, 0.98))
        self.mu.update(x, y, mu, low, high)
        self._title(self.mu, title)
        self.mu_source = "preview"
        if mu_true is not None and self.truth:
            self.mu_true.update(x, y, mu_true, low, high)
            with np.errstate(invalid="ignore", divide="ignore"):
                err = (np.asarray(mu, float) - mu_true) / mu_true
            lim = max(symmetric_limit([err]), 0.01)
            self.mu_error.update(x, y, err, -lim, lim)

    @staticmethod
    def _title(fig: ShelfMap, text: str) -> None:
        if fig.figure.title.text != text:
            fig.figure.title.text = text

    def update_losses(self, history: Sequence[dict]) -> None:
        self.loss.update(history)
