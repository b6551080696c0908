"""Bokeh figures for live training views, built once and updated in place.

HoloViews re-renders a whole plot for every new frame (measured: about 20 ms
per map on a 2-core CPU, then a walk over the whole document), which a view
updating every second for several models cannot afford: the server would
spend its time there and delay clicks. These figures only ever receive new
numbers: an update replaces the columns of a ``ColumnDataSource`` and the
colour limits, which Bokeh sends as a small patch without re-walking the
document. Colour maps and arrow thinning come from :mod:`iceviz.viz.maps`, so
live and static views look the same. Nothing here imports Panel.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import xarray as xr
from bokeh.models import (Arrow, BasicTickFormatter, ColorBar, ColumnDataSource, HoverTool, Label, Legend, LegendItem,
                          LinearColorMapper, NumeralTickFormatter, Range1d, Span, VeeHead)
from bokeh.palettes import Category10_10
from bokeh.plotting import figure
from holoviews.plotting.util import process_cmap

from iceviz.viz import maps

FRAME_WIDTH = 250
"""Width of a map's frame in pixels; heights follow the region's aspect ratio."""
COLORBAR_SPACE = 95
"""Pixels right of a map's frame for its colour bar and labels."""
TITLE_SPACE = 40
"""Pixels above a map's frame for its title and tools."""
TOOLS = "pan,wheel_zoom,box_zoom,reset,save"
ARROW_FILL = 0.9
"""The longest arrow covers this fraction of the spacing between arrows."""


def palette(name: str, n: int = 256) -> list[str]:
    """A named colour map (the names :mod:`iceviz.viz.maps` uses) as n hex colours, low to high."""
    return process_cmap(name, n)


def round2(value: float) -> float:
    """Two significant digits, so that colour limits only change (and maps re-render) when it shows."""
    return float(f"{value:.2g}")


def _spacing(c: np.ndarray) -> float:
    return abs(float(c[-1] - c[0])) / (c.size - 1) if c.size > 1 else 1.0


def cell_bounds(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    """(xmin, xmax, ymin, ymax) covered by the cells centred on the regular axes ``x``, ``y`` (any order)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    dx, dy = _spacing(x), _spacing(y)
    return (float(x.min() - dx / 2), float(x.max() + dx / 2), float(y.min() - dy / 2), float(y.max() + dy / 2))


def ascending(x: np.ndarray, y: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Axes and ``values`` (dims y, x) reordered so that both axes ascend."""
    if x.size > 1 and x[0] > x[-1]:
        x, values = x[::-1], values[:, ::-1]
    if y.size > 1 and y[0] > y[-1]:
        y, values = y[::-1], values[::-1]
    return x, y, values


def image_columns(x: np.ndarray, y: np.ndarray, values: np.ndarray) -> dict[str, list]:
    """The columns of an image source: ``values`` (dims y, x) on cell centres ``x``, ``y`` (any order).

    Bokeh draws row 0 of the array at the bottom, so rows and columns are put in ascending order.
    """
    x, y, v = ascending(np.asarray(x, dtype=float), np.asarray(y, dtype=float), np.asarray(values, dtype=np.float32))
    xmin, xmax, ymin, ymax = cell_bounds(x, y)
    return dict(image=[np.ascontiguousarray(v)], x=[xmin], y=[ymin], dw=[xmax - xmin], dh=[ymax - ymin])


def arrow_columns(ds: xr.Dataset, max_arrows: int = 24) -> dict[str, np.ndarray]:
    """Start and end points of the flux arrows of ``ds`` (length ∝ sqrt |q|, the longest nearly one spacing)."""
    x, y, angle, length, spacing = maps.thinned_vectors(ds, max_arrows)
    ok = np.isfinite(angle) & np.isfinite(length) & (length > 0)
    x, y, angle, reach = x[ok], y[ok], angle[ok], ARROW_FILL * spacing * length[ok]
    return dict(x0=x, y0=y, x1=x + reach * np.cos(angle), y1=y + reach * np.sin(angle))


def shared_ranges(bounds: tuple[float, float, float, float]) -> tuple[Range1d, Range1d]:
    """An x and a y range over ``bounds`` (xmin, xmax, ymin, ymax); figures given the same pair zoom together."""
    xmin, xmax, ymin, ymax = bounds
    return Range1d(xmin, xmax), Range1d(ymin, ymax)


class FieldFigure:
    """One gridded field as an image with a colour bar (and flux arrows, optionally), updated in place.

    Parameters
    ----------
    title : fixed title (live figures never change their titles).
    cmap : colour map name (see :mod:`iceviz.viz.maps`).
    label : what the colour bar and the hover show, with its unit.
    ranges : the (x, y) ranges, shared with the figures this one zooms with.
    arrows : draw flux arrows over the image.
    compact : colour-bar numbers with k / m suffixes (for magnitudes of thousands); otherwise plain
        numbers with as many decimals as the ticks need (for small signed values such as divergence).
    """

    def __init__(self, title: str, cmap: str, label: str, ranges: tuple[Range1d, Range1d], arrows: bool = False,
                 compact: bool = True):
        x_range, y_range = ranges
        aspect = (y_range.end - y_range.start) / max(x_range.end - x_range.start, 1e-9)
        # outer sizes, stated (a layout that has to measure the colour bar clips it when labels change)
        self.figure = figure(title=title, x_range=x_range, y_range=y_range, width=FRAME_WIDTH + COLORBAR_SPACE,
                             height=max(60, int(round(FRAME_WIDTH * aspect))) + TITLE_SPACE, tools=TOOLS,
                             toolbar_location="above")
        self.figure.axis.visible = False
        self.figure.grid.visible = False
        self.figure.title.text_font_size = "9pt"
        self.mapper = LinearColorMapper(palette=palette(cmap), low=0.0, high=1.0, nan_color="rgba(0, 0, 0, 0)")
        self.source = ColumnDataSource(dict(image=[], x=[], y=[], dw=[], dh=[]))
        image = self.figure.image(image="image", x="x", y="y", dw="dw", dh="dh", source=self.source,
                                  color_mapper=self.mapper)
        self.figure.add_tools(HoverTool(renderers=[image], tooltips=[(label, "@image{0.000a}")]))
        self.figure.add_layout(ColorBar(color_mapper=self.mapper, title=label, width=8, title_text_font_size="8pt",
                                        formatter=NumeralTickFormatter(format="0.[0]a") if compact
                                        else BasicTickFormatter(),
                                        major_label_text_font_size="8pt"), "right")
        self.note = Label(x=4, y=4, x_units="screen", y_units="screen", text="", text_font_size="8pt",
                          background_fill_color="white", background_fill_alpha=0.8)
        self.figure.add_layout(self.note)
        self.arrows: ColumnDataSource | None = None
        if arrows:
            self.arrows = ColumnDataSource(dict(x0=[], y0=[], x1=[], y1=[]))
            self.figure.add_layout(Arrow(end=VeeHead(size=4, line_color="black", fill_color="black"),
                                         x_start="x0", y_start="y0", x_end="x1", y_end="y1", line_width=1,
                                         line_color="black", source=self.arrows))

    def update(self, columns: dict[str, list], low: float, high: float,
               arrows: dict[str, np.ndarray] | None = None, note: str = "") -> None:
        """New image columns (see :func:`image_columns`), colour limits, a note in the lower-left corner
        (e.g. "|∇·q| < 1e-06 m/yr everywhere") and, if drawn, arrows."""
        self.source.data = columns
        if self.note.text != note:
            self.note.text = note
        if (self.mapper.low, self.mapper.high) != (low, high):
            self.mapper.update(low=low, high=high)
        if self.arrows is not None and arrows is not None:
            self.arrows.data = arrows


KEPT_COLOUR = "#555555"
"""The kept epoch's (or step's) line and label."""


class KeptMarker:
    """A dotted vertical line, labelled, at the epoch or step whose weights a run keeps (``best_epoch`` of the
    last history record, :func:`iceviz.viz.maps.kept_epoch`); hidden without one."""

    def __init__(self, fig: figure, unit: str = "epoch"):
        self.unit = unit
        self.span = Span(dimension="height", line_color=KEPT_COLOUR, line_dash="dotted", line_width=1.5,
                         visible=False)
        self.label = Label(x=0, y=4, y_units="screen", x_offset=3, text="kept", text_font_size="8pt",
                           text_color=KEPT_COLOUR, background_fill_color="white", background_fill_alpha=0.7,
                           visible=False)
        fig.add_layout(self.span)
        fig.add_layout(self.label)

    def update(self, history: Sequence[dict], steps: np.ndarray) -> None:
        """Mark the kept epoch or step of ``history``, whose records are drawn at ``steps``."""
        kept = maps.kept_epoch(history)
        if kept is None or len(steps) == 0:
            self.span.visible = self.label.visible = False
            return
        # the label on the side of the line with room: the kept epoch is often the last one
        right = kept > (np.nanmin(steps) + np.nanmax(steps)) / 2
        self.span.update(location=kept, visible=True)
        self.label.update(x=kept, text=f"kept: {self.unit} {kept:,}", visible=True,
                          text_align="right" if right else "left", x_offset=-3 if right else 3)


LOSS_LABELS = {maps.EPOCH_LOSS: "data (epoch mean)", maps.REFIT_LOSS: "refit on all points (epoch mean)"}
"""Legend labels of the history keys that are not ``loss_*`` terms (those lose the prefix): the epoch means,
drawn last and thicker (the last batch's terms are noisy)."""


class LossFigure:
    """One line per loss term against epoch on a log axis, the validation error beside them (when the run holds
    out a validation set) and a vertical line at the epoch whose weights are kept; every curve is in the
    legend from the start.

    Parameters
    ----------
    title : fixed title.
    keys : the history's loss terms to draw (see :func:`iceviz.viz.maps.loss_terms`).
    validation : draw the validation RMSE² (see :func:`iceviz.viz.maps.validation_series`).
    """

    def __init__(self, title: str, keys: Sequence[str], validation: bool = False):
        # the legend goes below the plot: inside, it would hide a third of so small a plot
        self.figure = figure(title=title, y_axis_type="log", width=FRAME_WIDTH + 80, height=320,
                             tools=TOOLS, toolbar_location="above", x_axis_label="epoch", y_axis_label="loss")
        self.figure.title.text_font_size = "9pt"
        self.legend = Legend(ncols=2, label_text_font_size="8pt", spacing=12, padding=4, margin=4,
                             border_line_alpha=0)
        self.figure.add_layout(self.legend, "below")
        self.sources: dict[str, ColumnDataSource] = {}
        # the epoch means (training data loss, refit, validation) last and thicker
        last = sorted(keys, key=lambda k: k in LOSS_LABELS)
        for key, colour in zip(last, Category10_10 * (len(keys) // 10 + 1)):
            self.sources[key] = self._line(LOSS_LABELS.get(key, key.removeprefix("loss_")), colour,
                                           line_width=2.0 if key in LOSS_LABELS else 1.0)
        self.validation = (self._line("validation (RMSE²)", "black", line_width=2.0, line_dash="dashed")
                           if validation else None)
        self.kept = KeptMarker(self.figure)
        self.figure.add_tools(HoverTool(tooltips=[("epoch", "@epoch"), ("loss", "@loss{0.000e}")]))

    def _line(self, label: str, colour: str, **style: Any) -> ColumnDataSource:
        source = ColumnDataSource(dict(epoch=[], loss=[]))
        line = self.figure.line("epoch", "loss", source=source, color=colour, **style)
        self.legend.items.append(LegendItem(label=label, renderers=[line]))
        return source

    def update(self, history: Sequence[dict]) -> None:
        for key, source in self.sources.items():
            epochs, values = maps.loss_series(history, key)
            source.data = dict(epoch=epochs, loss=values)
        if self.validation is not None:
            epochs, values = maps.validation_series(history)
            self.validation.data = dict(epoch=epochs, loss=values)
        self.kept.update(history, np.array([h["epoch"] for h in history]))
