"""Pure builders: arrays and xarray fields in EPSG:3031 metres -> HoloViews elements.

Nothing here touches torch or Panel. Colour conventions: sequential for
magnitudes, diverging and symmetric about zero for divergence and signed
errors, so maps of different models compare honestly when they share limits.
"""

from __future__ import annotations

from typing import Sequence

import holoviews as hv
import holoviews.plotting.bokeh  # noqa: F401  (registers the Bokeh options these builders set)
import numpy as np
import xarray as xr

KDIMS = [hv.Dimension("x", label="x (EPSG:3031)", unit="m"), hv.Dimension("y", label="y (EPSG:3031)", unit="m")]
SEQUENTIAL = "viridis"
DIVERGING = "RdBu"  # as in the paper: sources (∇·q > 0) blue, sinks (∇·q < 0) red
ERROR = "magma"

VARIABLE_LABELS = {
    "flux_magnitude": ("|q|", "m²/yr"),
    "qx": ("q_x", "m²/yr"),
    "qy": ("q_y", "m²/yr"),
    "divergence": ("∇·q", "m/yr"),
    "divergence_fd": ("∇·q (finite differences)", "m/yr"),
    "error": ("|q − truth|", "m²/yr"),
    "error_x": ("q_x − truth", "m²/yr"),
    "error_y": ("q_y − truth", "m²/yr"),
}


def km_formatter():
    """A Bokeh tick formatter that shows metres as km."""
    from bokeh.models import CustomJSTickFormatter

    return CustomJSTickFormatter(code="return (tick / 1000).toLocaleString('en-US')")


def km_axes() -> dict:
    """HoloViews options that label a map's axes in km of EPSG:3031 (the data stay in metres)."""
    km = km_formatter()
    return dict(xformatter=km, yformatter=km, xlabel="x (km, EPSG:3031)", ylabel="y (km, EPSG:3031)")


def value_dimension(name: str) -> hv.Dimension:
    """The labelled, unit-carrying dimension for a field variable."""
    label, unit = VARIABLE_LABELS.get(name, (name, None))
    return hv.Dimension(name, label=label, unit=unit)


def field_image(ds: xr.Dataset, name: str, title: str = "") -> hv.Image:
    """One gridded variable of ``ds`` (dims y, x) as an image in EPSG:3031 metres."""
    x, y = ds["x"].values, ds["y"].values
    return hv.Image((x, y, ds[name].values), kdims=KDIMS, vdims=[value_dimension(name)], label=title)


def symmetric_limit(arrays: Sequence[np.ndarray], quantile: float = 0.99) -> float:
    """A shared symmetric colour limit: the ``quantile`` of |value| over all arrays (robust to spikes)."""
    values = np.concatenate([np.abs(np.asarray(a, dtype=np.float64)).ravel() for a in arrays])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 1.0
    limit = float(np.quantile(values, quantile))
    return limit if limit > 0 else max(float(values.max()), 1e-12)


DIVERGENCE_FLOOR = 1e-3
"""Smallest colour limit of a divergence map [m/yr]: a millimetre a year of thinning, far below any surface
mass balance and far above float rounding (a dfNN's ~1e-6 m/yr), so a divergence-free field reads as zero."""


def divergence_limit(arrays: Sequence[np.ndarray], flux_limit: float | None = None,
                     extent: float | None = None) -> float:
    """The symmetric colour limit ±L of divergence maps: the 99th percentile of |∇·q|, never below
    :data:`DIVERGENCE_FLOOR` nor a thousandth of ``flux_limit`` / ``extent`` (the divergence of the largest
    flux changing by 0.1 % across the region, for fields in other units)."""
    floor = DIVERGENCE_FLOOR
    if flux_limit and extent:
        floor = max(floor, 1e-3 * flux_limit / extent)
    return max(symmetric_limit(arrays), floor)


def flux_and_divergence_limits(fields: Sequence[xr.Dataset]) -> tuple[float, float]:
    """Shared colour limits of flux-magnitude and divergence maps of ``fields`` (grids with ``x``, ``y``,
    ``flux_magnitude`` and ``divergence``): |q| to its 99.5th percentile, ∇·q by :func:`divergence_limit`."""
    flux = symmetric_limit([f["flux_magnitude"].values for f in fields], quantile=0.995)
    extent = max(float(np.ptp(fields[0]["x"].values)), float(np.ptp(fields[0]["y"].values)), 1.0)
    return flux, divergence_limit([f["divergence"].values for f in fields], flux, extent)


def nil_divergence_note(arrays: Sequence[np.ndarray], limit: float, unit: str = "m/yr") -> str:
    """"|∇·q| < 1e-06 m/yr everywhere" (the largest |∇·q| rounded up to a power of ten) when it is below
    1 % of the colour limit, so that a field drawn as zero says so; else ""."""
    values = np.concatenate([np.abs(np.asarray(a, dtype=np.float64)).ravel() for a in arrays])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return ""
    top = float(values.max())
    if top >= 0.01 * limit:
        return ""
    bound = 10.0 ** np.ceil(np.log10(top)) if top > 0 else 0.0
    return f"|∇·q| < {bound:.0e} {unit} everywhere" if bound else "∇·q = 0 everywhere"


def magnitude_map(ds: xr.Dataset, title: str = "", clim: tuple[float, float] | None = None) -> hv.Image:
    img = field_image(ds, "flux_magnitude", title)
    return img.opts(cmap=SEQUENTIAL, colorbar=True, clim=clim or (np.nan, np.nan), title=title)


def divergence_map(ds: xr.Dataset, limit: float, title: str = "", name: str = "divergence") -> hv.Image:
    """Divergence with a diverging colour map and symmetric limits (±limit): blue sources, red sinks."""
    return field_image(ds, name, title).opts(cmap=DIVERGING, clim=(-limit, limit), colorbar=True, title=title)


def thinned_vectors(ds: xr.Dataset, max_arrows: int = 24,
                    scale_to: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """The flux of ``ds`` thinned to at most ``max_arrows`` per side, for drawing as arrows.

    Returns x, y (flat, metres), angle (rad), relative length sqrt(|q| / top) in [0, 1]
    (so slow ice stays visible; ``top`` is ``scale_to`` or max |q|), and the spacing of the
    kept points (metres).
    """
    x, y = ds["x"].values, ds["y"].values
    step = max(1, int(np.ceil(max(len(x), len(y)) / max_arrows)))
    qx = ds["qx"].values[::step, ::step]
    qy = ds["qy"].values[::step, ::step]
    xx, yy = np.meshgrid(x[::step], y[::step])
    mag = np.hypot(qx, qy)
    top = scale_to or (float(np.nanmax(mag)) if np.isfinite(mag).any() and np.nanmax(mag) > 0 else 1.0)
    spacing = step * float(np.ptp(x) / max(len(x) - 1, 1)) if len(x) > 1 else 1.0
    return xx.ravel(), yy.ravel(), np.arctan2(qy, qx).ravel(), np.sqrt(mag / top).ravel(), spacing


def flux_arrows(ds: xr.Dataset, max_arrows: int = 24, scale_to: float | None = None) -> hv.VectorField:
    """Flux arrows thinned to at most ``max_arrows`` per side; length ∝ sqrt(|q|) so slow ice stays visible."""
    x, y, angle, length, _ = thinned_vectors(ds, max_arrows, scale_to)
    field = hv.VectorField((x, y, angle, length), kdims=KDIMS, vdims=["angle", "magnitude"])
    return field.opts(magnitude="magnitude", rescale_lengths=True, color="black", line_width=1, pivot="tail",
                      arrow_heads=True)


def binned_mean(points: dict[str, np.ndarray], bounds: tuple[float, float, float, float],
                n: int = 50) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean ``error`` of the points (``x``, ``y``, ``error``) in an n x n grid of bins over ``bounds``:
    bin centres x, y and the (n, n) means on dims (y, x), NaN where no point falls."""
    xmin, xmax, ymin, ymax = bounds
    ex, ey = np.linspace(xmin, xmax, n + 1), np.linspace(ymin, ymax, n + 1)
    count, _, _ = np.histogram2d(points["y"], points["x"], bins=[ey, ex])
    total, _, _ = np.histogram2d(points["y"], points["x"], bins=[ey, ex], weights=points["error"])
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / count, np.nan)
    return (ex[:-1] + ex[1:]) / 2, (ey[:-1] + ey[1:]) / 2, mean


EPOCH_LOSS = "epoch_data_loss"
"""The history key of the epoch-mean training data loss (a mean square error, like the validation RMSE²)."""
REFIT_LOSS = "refit_data_loss"
"""The history key of the epoch-mean data loss while a flux run refits on every training point (its epochs count
from 1 again, so the curve overlays the first phase's)."""
VALIDATION_KEY = "val_rmse"
"""The history key of a flux run's validation RMSE (scaled units; absent without a validation set)."""


def loss_terms(history: Sequence[dict]) -> list[str]:
    """The loss keys present in a training history (``loss_*`` terms and the epoch-mean data loss)."""
    keys: set[str] = set()
    for record in history:
        keys.update(k for k in record if k.startswith("loss_") or k in (EPOCH_LOSS, REFIT_LOSS))
    return sorted(keys)


def loss_series(history: Sequence[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    """Epochs and values of one loss term, keeping only the finite, positive ones (for a log axis)."""
    epochs = np.array([h["epoch"] for h in history], dtype=float)
    values = np.array([h.get(key, np.nan) for h in history], dtype=float)
    ok = np.isfinite(values) & (values > 0)
    return epochs[ok], values[ok]


def validation_series(history: Sequence[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Epochs and validation RMSE² (:data:`VALIDATION_KEY`): a mean square error like the data loss, so the
    two curves compare on one axis (empty without a validation set)."""
    epochs, rmse = loss_series(history, VALIDATION_KEY)
    return epochs, rmse**2


def kept_epoch(history: Sequence[dict]) -> int | None:
    """The epoch whose weights a run keeps so far (``best_epoch`` of the last record), None before the first."""
    kept = history[-1].get("best_epoch") if history else None
    return int(kept) if kept else None


CHAR_PX, LINE_PX = 6.5, 13.0
"""Estimated size of one character and one line of a 9 pt map label, in screen pixels."""


def label_anchors(bounds: Sequence[tuple[float, float, float, float]], labels: Sequence[str],
                  metres_per_px: float) -> list[tuple[float, float]]:
    """Lower-left corners [m] for the labels of boxes (xmin, xmax, ymin, ymax), placed greedily in order so that
    no two overlap at the scale ``metres_per_px``: above the box, else below it, right of it, left of it (the
    first free place; above when none is). Earlier labels keep their places: list first what must stay put."""
    placed: list[tuple[float, float, float, float]] = []
    anchors = []
    gap = 3 * metres_per_px
    for b, text in zip(bounds, labels):
        w, h = len(text) * CHAR_PX * metres_per_px, LINE_PX * metres_per_px
        cx, cy = (b[0] + b[1]) / 2, (b[2] + b[3]) / 2
        candidates = [(cx - w / 2, b[3] + gap), (cx - w / 2, b[2] - gap - h), (b[1] + gap, cy - h / 2),
                      (b[0] - gap - w, cy - h / 2)]
        rects = [(x, x + w, y, y + h) for x, y in candidates]
        free = [r for r in rects if not any(r[0] < o[1] and o[0] < r[1] and r[2] < o[3] and o[2] < r[3]
                                            for o in placed)]
        chosen = (free or rects)[0]
        placed.append(chosen)
        anchors.append((chosen[0], chosen[2]))
    return anchors


def boxes(bounds: Sequence[tuple[float, float, float, float]], labels: Sequence[str], color: str = "#ffcc00",
          anchors: Sequence[tuple[float, float]] | None = None):
    """Named rectangles (xmin, xmax, ymin, ymax) with their labels, for regions and data footprints; the
    labels' lower-left corners are ``anchors`` (see :func:`label_anchors`), else centred above each box."""
    rects = hv.Rectangles([(b[0], b[2], b[1], b[3]) for b in bounds], kdims=["x", "y", "x1", "y1"])
    if anchors is None:
        text = hv.Labels([((b[0] + b[1]) / 2, b[3], label) for b, label in zip(bounds, labels)], kdims=["x", "y"],
                         vdims=["text"]).opts(text_align="center")
    else:
        text = hv.Labels([(x, y, label) for (x, y), label in zip(anchors, labels)], kdims=["x", "y"],
                         vdims=["text"]).opts(text_align="left")
    return (rects.opts(fill_alpha=0.0, line_color=color, line_width=2)
            * text.opts(text_color=color, text_font_size="9pt", yoffset=0, text_baseline="bottom"))


def binned_arrows(xy: np.ndarray, q: np.ndarray, bounds: tuple[float, float, float, float],
                  n: int = 16) -> hv.VectorField:
    """Mean observed flux in an n x n grid of bins over ``bounds``, as arrows (empty bins dropped; length ∝ sqrt |q|)."""
    xmin, xmax, ymin, ymax = bounds
    edges_x, edges_y = np.linspace(xmin, xmax, n + 1), np.linspace(ymin, ymax, n + 1)
    count, _, _ = np.histogram2d(xy[:, 0], xy[:, 1], bins=[edges_x, edges_y])
    sx, _, _ = np.histogram2d(xy[:, 0], xy[:, 1], bins=[edges_x, edges_y], weights=q[:, 0])
    sy, _, _ = np.histogram2d(xy[:, 0], xy[:, 1], bins=[edges_x, edges_y], weights=q[:, 1])
    ok = count > 0
    cx, cy = np.meshgrid((edges_x[:-1] + edges_x[1:]) / 2, (edges_y[:-1] + edges_y[1:]) / 2, indexing="ij")
    mx, my = sx[ok] / count[ok], sy[ok] / count[ok]
    mag = np.hypot(mx, my)
    top = float(mag.max()) if mag.size and mag.max() > 0 else 1.0
    field = hv.VectorField((cx[ok], cy[ok], np.arctan2(my, mx), np.sqrt(mag / top)), kdims=KDIMS,
                           vdims=["angle", "magnitude"])
    return field.opts(magnitude="magnitude", rescale_lengths=True, color="black", line_width=1, pivot="tail")


def flux_points(xy: np.ndarray, q: np.ndarray, label: str = "observations") -> hv.Points:
    """Observation points carrying their flux magnitude (m²/yr), for rasterising."""
    return hv.Points((xy[:, 0], xy[:, 1], np.hypot(q[:, 0], q[:, 1])), kdims=KDIMS,
                     vdims=[value_dimension("flux_magnitude")], label=label)
