"""Divergence of gridded vector fields by finite differences."""

from __future__ import annotations

import numpy as np


def divergence_fd(qx: np.ndarray, qy: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """∂qx/∂x + ∂qy/∂y on a regular grid, second-order central differences.

    Parameters
    ----------
    qx, qy : (ny, nx) components, rows along y, columns along x.
    x : (nx,) increasing coordinates; y : (ny,) increasing coordinates.

    Returns
    -------
    (ny, nx) divergence in units of q per unit of x (one-sided second-order
    differences on the edges).
    """
    qx = np.asarray(qx, dtype=np.float64)
    qy = np.asarray(qy, dtype=np.float64)
    if qx.shape != qy.shape or qx.shape != (len(y), len(x)):
        raise ValueError(f"shapes disagree: qx {qx.shape}, qy {qy.shape}, grid (ny, nx) = ({len(y)}, {len(x)})")
    if min(qx.shape) < 3:
        raise ValueError(f"grid {qx.shape} too small for second-order differences (need at least 3 x 3)")
    return np.gradient(qx, x, axis=1, edge_order=2) + np.gradient(qy, y, axis=0, edge_order=2)
