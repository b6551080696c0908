"""Metrics against hand-computed values."""

import numpy as np
import pytest

from iceviz.data.problem import FluxScale
from iceviz.training.metrics import flux_scores, mad, mae, rmse


def test_rmse_mae_pool_points_and_components():
    pred = np.array([[1.0, 2.0], [3.0, 4.0]])
    true = np.array([[1.0, 0.0], [0.0, 4.0]])
    # errors: 0, 2, 3, 0 -> RMSE sqrt(13/4), MAE 5/4
    assert rmse(pred, true) == pytest.approx(np.sqrt(13 / 4))
    assert mae(pred, true) == pytest.approx(5 / 4)
    assert mad(np.array([-1.0, 2.0, 0.0])) == pytest.approx(1.0)


def test_physical_units_follow_the_scale():
    scale = FluxScale(x0=400_000, y0=-950_000, length=200_000, flux=70_000)
    pred = np.array([[1.0, 0.0]])
    scores = flux_scores(pred, np.zeros((1, 2)), np.array([2.0]), scale)
    assert scores["rmse"] == pytest.approx(np.sqrt(0.5))
    assert scores["rmse_phys"] == pytest.approx(np.sqrt(0.5) * 70_000)
    assert scores["mae_phys"] == pytest.approx(0.5 * 70_000)
    assert scores["mad_phys"] == pytest.approx(2.0 * 0.35)  # 70 000 m²/yr per 200 km
