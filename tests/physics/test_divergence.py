"""Finite-difference divergence against analytic fields."""

import numpy as np
import pytest

from iceviz.physics.divergence import divergence_fd


def test_divergence_of_quadratic_field_is_exact():
    # q = (x² y, x y²): ∇·q = 2xy + 2xy = 4xy; second-order differences are exact for quadratics.
    x = np.linspace(-1.0, 2.0, 31)
    y = np.linspace(0.0, 1.5, 17)
    xx, yy = np.meshgrid(x, y)
    div = divergence_fd(xx**2 * yy, xx * yy**2, x, y)
    np.testing.assert_allclose(div, 4 * xx * yy, atol=1e-12)


def test_rotational_field_has_small_fd_divergence_converging_at_second_order():
    def error(n):
        x = y = np.linspace(0, 1, n)
        xx, yy = np.meshgrid(x, y)
        # q = rot ψ, ψ = sin(3x) cos(2y): exactly divergence-free
        qx = -2 * np.sin(3 * xx) * np.sin(2 * yy)
        qy = -3 * np.cos(3 * xx) * np.cos(2 * yy)
        return np.abs(divergence_fd(qx, qy, x, y)).max()

    e1, e2 = error(21), error(41)
    assert e2 < e1 / 3  # second order: error falls about 4x when h halves
    assert e2 < 0.05


def test_shape_errors():
    with pytest.raises(ValueError, match="shapes disagree"):
        divergence_fd(np.zeros((3, 4)), np.zeros((3, 4)), np.arange(3.0), np.arange(3.0))
    with pytest.raises(ValueError, match="too small"):
        divergence_fd(np.zeros((2, 2)), np.zeros((2, 2)), np.arange(2.0), np.arange(2.0))
