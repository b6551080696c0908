"""Gridded fields of a flux model in physical units, for maps and NetCDF export."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import xarray as xr

from iceviz.data.problem import FluxScale, regular_grid
from iceviz.models.flux import FluxNet
from iceviz.physics.divergence import divergence_fd
from iceviz.training.metrics import in_chunks


def flux_grid_fields(
    model: FluxNet,
    scale: FluxScale,
    bounds: tuple[float, float, float, float],
    shape: tuple[int, int],
    truth: Callable[[np.ndarray], np.ndarray] | None = None,
    attrs: dict | None = None,
) -> xr.Dataset:
    """Prediction, divergence (autograd and finite differences) and, where truth is known, error.

    Returns an xarray Dataset on dims (y, x) in EPSG:3031 metres: ``qx``, ``qy``,
    ``flux_magnitude`` (m²/yr), ``divergence``, ``divergence_fd`` (m/yr) and
    with ``truth`` also ``error_x``, ``error_y``, ``error`` (m²/yr).
    """
    x, y = regular_grid(bounds, shape)
    xx, yy = np.meshgrid(x, y)
    xy = np.column_stack([xx.ravel(), yy.ravel()])
    device = next(model.parameters()).device
    xs = torch.as_tensor(scale.xy_to_scaled(xy), dtype=torch.float32, device=device)
    with torch.no_grad():
        q = in_chunks(model, xs) * scale.flux
    div = in_chunks(model.divergence, xs) * scale.divergence
    qx, qy = q[:, 0].reshape(xx.shape), q[:, 1].reshape(xx.shape)
    data = {
        "qx": (qx, "m2 yr-1", "ice flux, x component"),
        "qy": (qy, "m2 yr-1", "ice flux, y component"),
        "flux_magnitude": (np.hypot(qx, qy), "m2 yr-1", "ice flux magnitude"),
        "divergence": (div.reshape(xx.shape), "m yr-1", "flux divergence (automatic differentiation)"),
        "divergence_fd": (divergence_fd(qx, qy, x, y), "m yr-1", "flux divergence (finite differences on this grid)"),
    }
    if truth is not None:
        t = truth(xy)
        ex, ey = qx - t[:, 0].reshape(xx.shape), qy - t[:, 1].reshape(xx.shape)
        data["error_x"] = (ex, "m2 yr-1", "prediction minus truth, x")
        data["error_y"] = (ey, "m2 yr-1", "prediction minus truth, y")
        data["error"] = (np.hypot(ex, ey), "m2 yr-1", "error magnitude against the known truth")
    coords = {"x": ("x", x, {"units": "m", "standard_name": "projection_x_coordinate"}),
              "y": ("y", y, {"units": "m", "standard_name": "projection_y_coordinate"})}
    variables = {k: (("y", "x"), v, {"units": u, "long_name": n}) for k, (v, u, n) in data.items()}
    return xr.Dataset(variables, coords=coords, attrs=attrs or {})
