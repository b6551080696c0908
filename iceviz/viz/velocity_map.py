"""The continental ice-speed map: a velocity mosaic rendered for the range in view (datashader aggregates
when there are more cells than pixels).

:func:`speed_image` is pure (a pyramid level in, a screen-sized image out);
:func:`speed_layer` wraps it in a DynamicMap on the plot's x / y range, so a
zoom or pan re-renders only what is visible, at screen resolution, on a
logarithmic colour scale (slow interior ice and fast streams in one picture).
"""

from __future__ import annotations

import datashader as ds
import holoviews as hv
import numpy as np
import xarray as xr

from iceviz.data.overview import SpeedPyramid
from iceviz.viz.maps import KDIMS

SPEED = hv.Dimension("speed", label="ice speed", unit="m/yr")
SPEED_CMAP = "inferno"
SPEED_LIMITS = (1.0, 3000.0)
PIXELS = 620


def speed_image(pyramid: SpeedPyramid, bounds: tuple[float, float, float, float], pixels: int = PIXELS) -> hv.Image:
    """Speed over ``bounds`` = (xmin, xmax, ymin, ymax), aggregated by datashader to ``pixels`` on the longer side."""
    x, y, speed, _ = pyramid.view(bounds, pixels)
    xmin, xmax, ymin, ymax = bounds
    w, h = xmax - xmin, ymax - ymin
    nx, ny = (pixels, max(2, int(pixels * h / w))) if w >= h else (max(2, int(pixels * w / h)), pixels)
    opts = dict(cmap=SPEED_CMAP, logz=True, clim=SPEED_LIMITS, colorbar=True, alpha=0.85, tools=["hover"],
                clipping_colors={"NaN": (0, 0, 0, 0)})
    if speed.size < 4 or len(x) < 2 or len(y) < 2:
        return hv.Image((np.linspace(xmin, xmax, 2), np.linspace(ymin, ymax, 2), np.full((2, 2), np.nan)),
                        kdims=KDIMS, vdims=[SPEED]).opts(**opts)
    if len(x) <= nx and len(y) <= ny:  # no more cells than pixels: the cells as they are, the browser scales them
        return hv.Image((x, y, speed.astype(np.float32)), kdims=KDIMS, vdims=[SPEED]).opts(**opts)
    # contiguous: a strided view would make numba compile a second kernel (seconds) at the first zoom
    da = xr.DataArray(np.ascontiguousarray(speed), dims=("y", "x"), coords={"x": x, "y": y}, name="speed")
    canvas = ds.Canvas(plot_width=nx, plot_height=ny, x_range=(xmin, xmax), y_range=(ymin, ymax))
    out = canvas.raster(da).astype(np.float32)  # mean over the cells of each pixel; half the bytes to the browser
    # one label whatever the level: a changing label would make a new renderer at every zoom
    return hv.Image((out["x"].values, out["y"].values, out.values), kdims=KDIMS, vdims=[SPEED]).opts(**opts)


def speed_layer(pyramid: SpeedPyramid, pixels: int = PIXELS) -> hv.DynamicMap:
    """The speed map re-rendered for the plot's range on every zoom or pan (log colours, 1 to 3000 m/yr)."""
    fp = pyramid.footprint

    def render(x_range=None, y_range=None):
        xr_ = x_range or (fp[0], fp[1])
        yr_ = y_range or (fp[2], fp[3])
        return speed_image(pyramid, (xr_[0], xr_[1], yr_[0], yr_[1]), pixels)

    return hv.DynamicMap(render, streams=[hv.streams.RangeXY()])
