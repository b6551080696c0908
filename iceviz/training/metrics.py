"""Scores of a predicted flux field: RMSE, MAE and mean absolute divergence (MAD)."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from iceviz.data.problem import FluxScale


def rmse(pred: np.ndarray, true: np.ndarray) -> float:
    """Root mean square error pooled over points and both components."""
    diff = np.asarray(pred, dtype=np.float64) - np.asarray(true, dtype=np.float64)
    return float(np.sqrt(np.mean(diff**2)))


def mae(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean absolute error pooled over points and both components."""
    diff = np.asarray(pred, dtype=np.float64) - np.asarray(true, dtype=np.float64)
    return float(np.mean(np.abs(diff)))


def mad(divergence: np.ndarray) -> float:
    """Mean absolute divergence."""
    return float(np.mean(np.abs(np.asarray(divergence, dtype=np.float64))))


def in_chunks(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, chunk: int = 8192) -> np.ndarray:
    """Apply ``fn`` to ``x`` in chunks of rows and return the concatenated result as float64 numpy."""
    parts = [fn(x[i : i + chunk]).detach().to("cpu", torch.float64) for i in range(0, len(x), chunk)]
    return torch.cat(parts).numpy()


def flux_scores(pred: np.ndarray, true: np.ndarray, divergence: np.ndarray, scale: FluxScale) -> dict[str, float]:
    """RMSE, MAE, MAD in scaled units and in physical units (m²/yr, m²/yr, m/yr).

    All inputs are in the problem's scaled units.
    """
    scores = {"rmse": rmse(pred, true), "mae": mae(pred, true), "mad": mad(divergence)}
    scores["rmse_phys"] = scores["rmse"] * scale.flux
    scores["mae_phys"] = scores["mae"] * scale.flux
    scores["mad_phys"] = scores["mad"] * scale.divergence
    return scores
