"""Figures of the emulator view: simulator and emulator side by side on the mesh, and RMSE over time.

Built once and updated in place, like :mod:`iceviz.viz.mesh_figures` (whose rasteriser and
linked zoom they use). Nothing here imports Panel.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from bokeh.models import ColumnDataSource, HoverTool, Legend, LegendItem
from bokeh.palettes import Category10_10
from bokeh.plotting import figure

from iceviz.sim.ssa import height_above_flotation
from iceviz.viz.live_figures import TOOLS, round2
from iceviz.viz.mesh_figures import LinkedMaps, MeshFieldFigure, segment_columns, zero_contour

ERROR_COLOURS = "RdBu_r"
"""Diverging map of the thickness error (blue: too thin, red: too thick)."""


def model_colour(index: int) -> str:
    return Category10_10[index % 10]


def symmetric_limit(values: np.ndarray, floor: float = 1.0) -> float:
    """A rounded colour limit for a diverging map: the 99th percentile of |values| (at least ``floor``)."""
    finite = np.abs(np.asarray(values, dtype=float))
    finite = finite[np.isfinite(finite)]
    return round2(max(float(np.percentile(finite, 99)) if finite.size else floor, floor))


class ComparisonMaps(LinkedMaps):
    """Simulator thickness, emulator thickness, their difference and the velocity error at one snapshot,
    zooming together; both thickness maps carry their own grounding line (zero of the height above flotation).

    Parameters
    ----------
    points, triangles : the mesh.
    bed : bed elevation at the nodes [m] (for the grounding lines).
    frame_width : width of each map's frame in pixels.
    """

    def __init__(self, points: np.ndarray, triangles: np.ndarray, bed: np.ndarray, frame_width: int = 700):
        super().__init__(points, triangles, frame_width)
        self.bed = np.asarray(bed, dtype=float)
        r, f = self.ranges, self.frame
        self.truth = MeshFieldFigure("Simulator: ice thickness", "viridis", "h (m)", r, f)
        self.emulated = MeshFieldFigure("Emulator: ice thickness", "viridis", "h (m)", r, f)
        self.h_error = MeshFieldFigure("Thickness error, emulator − simulator", ERROR_COLOURS, "Δh (m)", r, f)
        self.v_error = MeshFieldFigure("Velocity error |Δu|", "inferno", "|Δu| (m/a)", r, f)
        self.maps = (self.truth, self.emulated, self.h_error, self.v_error)
        self._fields: tuple[np.ndarray, ...] | None = None

    def layers(self) -> list[tuple[MeshFieldFigure, np.ndarray]]:
        return [] if self._fields is None else list(zip(self.maps, self._fields))

    def update(self, h_true: np.ndarray, h_pred: np.ndarray, speed_error: np.ndarray, h_max: float | None = None,
               error_limit: float | None = None, speed_error_max: float | None = None) -> None:
        """New per-node fields; colour limits from them unless given (to keep a scale while a slider moves)."""
        h_true, h_pred = np.asarray(h_true, float), np.asarray(h_pred, float)
        error = h_pred - h_true
        self._fields = (h_true, h_pred, error, np.asarray(speed_error, float))
        hi = h_max if h_max is not None else round2(max(float(np.nanmax(h_true)), 1.0))
        for fig in (self.truth, self.emulated):
            fig.update(low=0.0, high=hi)
        limit = error_limit if error_limit is not None else symmetric_limit(error)
        self.h_error.update(low=-limit, high=limit)
        vmax = speed_error_max if speed_error_max is not None else round2(max(float(np.nanmax(speed_error)), 1.0))
        self.v_error.update(low=0.0, high=vmax)
        for fig, h in ((self.truth, h_true), (self.emulated, h_pred)):
            haf = height_above_flotation(h, self.bed)
            fig.update(grounding_line=segment_columns(zero_contour(self.points, self.triangles, haf)))
        self._raster(self.window())


class RmseFigure:
    """Test RMSE of thickness [m] against model year, one line per model, updated as they train."""

    def __init__(self, models: Sequence[str], width: int = 560, height: int = 260,
                 title: str = "Thickness RMSE over the held-out runs", label: str = "RMSE of h (m)"):
        self.figure = figure(title=title, width=width, height=height, tools=TOOLS, toolbar_location="above",
                             x_axis_label="model year", y_axis_label=label)
        self.figure.title.text_font_size = "9pt"
        self.sources: dict[str, ColumnDataSource] = {}
        items = []
        for i, name in enumerate(models):
            source = ColumnDataSource(dict(t=[], rmse=[]))
            line = self.figure.line("t", "rmse", source=source, color=model_colour(i), line_width=2)
            self.figure.scatter("t", "rmse", source=source, color=model_colour(i), size=4)
            self.sources[name] = source
            items.append(LegendItem(label=name, renderers=[line]))
        self.figure.add_layout(Legend(items=items, label_text_font_size="8pt", click_policy="hide", spacing=0,
                                      padding=4, margin=4), "right")
        self.figure.add_tools(HoverTool(tooltips=[("year", "@t{0.0}"), ("RMSE", "@rmse{0.0}")]))

    def update(self, name: str, t: np.ndarray, rmse: np.ndarray) -> None:
        if name in self.sources:
            self.sources[name].data = dict(t=np.asarray(t, float), rmse=np.asarray(rmse, float))
