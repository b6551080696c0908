"""The least-squares viscosity preview: exact on an exact SSA solution, needs the front, ruined by noise,
and a test reference for our simulated shelves on its subgrid."""

from __future__ import annotations

import numpy as np
import pytest

from iceviz.data.specs import load_problem
from iceviz.physics.ssa import BUOYANCY
from iceviz.physics.viscosity_preview import GridFields, grid_jets, grid_residual, least_squares_viscosity
from iceviz.training.viscosity_trainer import relative_error

LX, LY = 60e3, 30e3


def spreading_slab(n: int = 121, m: int = 31) -> tuple[GridFields, np.ndarray, np.ndarray, np.ndarray]:
    """An exact SSA solution: a slab spreading in x only, front at x = LX. With v = 0 and no y dependence the
    x equation integrates, with the front's stress balance, to 4μh u_x = ½ρg'h², so for any u with u_x > 0
    and any h, μ = ρg'h / (8 u_x). Returns the fields (SI), μ, and the front points and normals."""
    x, y = np.linspace(0, LX, n), np.linspace(0, LY, m)
    xx, _ = np.meshgrid(x, y)
    h = 500.0 - 4e-3 * xx
    ux = 1e-11 * (1.0 + 0.5 * np.sin(np.pi * xx / LX))  # 1/s
    u = 1e-5 + 1e-11 * (xx - 0.5 * LX / np.pi * (np.cos(np.pi * xx / LX) - 1.0))  # ∫ ux dx
    mu = BUOYANCY * h / (8 * ux)
    front = np.column_stack([np.full(m, LX), y])
    normals = np.tile([1.0, 0.0], (m, 1))
    return GridFields(x, y, u, np.zeros_like(u), h), mu, front, normals


def test_the_slab_is_an_exact_solution():
    fields, mu, *_ = spreading_slab()
    assert np.allclose(grid_jets(fields.x, fields.y, fields.u, 1).x, 1e-11 * (1 + 0.5 * np.sin(np.pi * fields.x / LX)),
                       rtol=1e-3)
    f1, f2 = grid_residual(fields, mu)
    scale = BUOYANCY * np.abs(fields.h * 4e-3).max()
    assert np.nanmax(np.abs(f1)) < 2e-3 * scale and np.nanmax(np.abs(f2)) < 1e-9 * scale


def test_the_preview_recovers_the_exact_viscosity_at_second_order():
    """In SI units the driving stress is ~10¹⁵ times the viscous coefficients: a solve that formed its
    coefficients by subtracting residuals lost them to rounding (4.5 % error here, on every grid)."""
    errors = []
    for n in (61, 121, 241):
        fields, mu, front, normals = spreading_slab(n)
        errors.append(relative_error(least_squares_viscosity(fields, front_points=front, front_normals=normals), mu))
    rates = np.log2(np.array(errors[:-1]) / errors[1:])
    assert errors[-1] < 1e-4 and np.all(rates > 1.8), (errors, rates)


def test_without_the_front_the_viscosity_is_not_determined():
    """Without the front condition, μ + c/(h u_x) also satisfies the x equation: the solve can miss badly."""
    fields, mu, front, normals = spreading_slab()
    with_front = relative_error(least_squares_viscosity(fields, front_points=front, front_normals=normals), mu)
    without = relative_error(least_squares_viscosity(fields, front=False), mu)
    assert without > 10 * with_front


def test_one_percent_noise_ruins_the_preview():
    fields, mu, front, normals = spreading_slab()
    rng = np.random.default_rng(0)
    noisy = fields._replace(u=fields.u * (1 + 0.01 * rng.standard_normal(fields.u.shape)))
    error = relative_error(least_squares_viscosity(noisy, front_points=front, front_normals=normals), mu)
    assert error > 0.5  # the preview's documented failure: it differentiates the data twice


@pytest.mark.parametrize("name, tolerance", [("analytic", 0.02), ("margins", 0.1)])
def test_our_shelves_are_solved_on_their_smooth_subgrid(name, tolerance):
    problem = load_problem(f"shelf:{name}")
    assert problem.smooth_spacing == 2000.0
    truth = problem.velocity.fields["mu"]
    assert relative_error(least_squares_viscosity(problem), truth) < tolerance
    # on the raster itself the piecewise-linear velocities make it useless
    assert relative_error(least_squares_viscosity(problem, spacing=0.0), truth) > 0.3


def test_reference_syndata_is_recovered_to_a_fraction_of_a_percent(diffice_dir):
    problem = load_problem(f"diffice:{diffice_dir / 'SynData_exp1.mat'}")
    assert relative_error(least_squares_viscosity(problem), problem.velocity.fields["mu"]) < 0.005
