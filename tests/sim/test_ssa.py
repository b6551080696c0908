"""The SSA solver against the analytic ice-shelf ramp, friction, determinism and bad input."""

import numpy as np
import pytest

from iceviz.sim.mesh import mesh_outline, rectangle
from iceviz.sim.ssa import Friction, Geometry, Rheology, SimulationError, SSASolver
from iceviz.sim.verify import Ramp, relative_error


def uniform_inflow(speed):
    return lambda p: np.column_stack([np.full(len(p), speed), np.zeros(len(p))])


@pytest.fixture(scope="module")
def ramp_mesh():
    return mesh_outline(*rectangle(0, Ramp().length, 0, Ramp().width), max_area=2e6)


@pytest.fixture(scope="module")
def ramp_solutions(ramp_mesh):
    """Glen's law on the ramp by each method (tol 1e-9), keyed by method."""
    ramp = Ramp()
    x = ramp_mesh.points[:, 0]
    geometry = Geometry(ramp.thickness(x), np.full(len(x), -3000.0))
    return {method: SSASolver(ramp_mesh).solve(geometry, Rheology(rate_factor=ramp.rate_factor),
                                               inflow=uniform_inflow(ramp.u0), tol=1e-9, method=method)
            for method in ("picard", "newton")}


@pytest.mark.parametrize("method", ["picard", "newton"])
def test_glen_matches_the_analytic_ramp(ramp_mesh, ramp_solutions, method):
    ramp = Ramp()
    x = ramp_mesh.points[:, 0]
    result = ramp_solutions[method]
    assert result.converged and result.changes[-1] < 1e-9
    assert relative_error(result.u, ramp.speed(x)) < 1e-4
    assert np.abs(result.v).max() < 1e-3 * ramp.u0  # free-slip walls, no lateral force
    # the viscosity it converged to is the closed form's
    centres = ramp_mesh.points[ramp_mesh.triangles].mean(axis=1)[:, 0]
    assert np.allclose(result.viscosity, ramp.viscosity(centres), rtol=0.02)


def test_newton_and_picard_converge_to_the_same_velocity_newton_quadratically(ramp_solutions):
    picard, newton = ramp_solutions["picard"], ramp_solutions["newton"]
    assert relative_error(newton.u, picard.u) < 1e-6 and relative_error(newton.v, picard.v) < 1e-6
    assert newton.iterations < picard.iterations / 4
    # a correct Jacobian: the last changes fall quadratically, not by a constant factor as Picard's do
    assert newton.changes[-1] < newton.changes[-2] ** 1.5
    assert picard.changes[-1] > 0.3 * picard.changes[-2]


def test_newton_from_a_warm_start_needs_far_fewer_iterations(ramp_mesh, ramp_solutions):
    """A time step's solve: the geometry changed a little since the velocity it starts from."""
    ramp = Ramp()
    x = ramp_mesh.points[:, 0]
    geometry = Geometry(ramp.thickness(x) * (1.0 + 0.02 * np.sin(np.pi * x / ramp.length)), np.full(len(x), -3000.0))
    solver = SSASolver(ramp_mesh)
    warm = {method: solver.solve(geometry, Rheology(rate_factor=ramp.rate_factor), inflow=uniform_inflow(ramp.u0),
                                 warm_start=(result.u, result.v), tol=1e-9, method=method)
            for method, result in ramp_solutions.items()}
    assert warm["newton"].converged and warm["picard"].converged
    assert warm["newton"].iterations <= 5 and warm["newton"].iterations < warm["picard"].iterations / 5
    assert relative_error(warm["newton"].u, warm["picard"].u) < 1e-6


def test_newton_converges_to_picards_velocity_across_a_grounding_line():
    """Weertman friction (m = 1/3) upstream, floating downstream, the grounding line across elements."""
    length, width = 50e3, 20e3
    mesh = mesh_outline(*rectangle(0, length, 0, width), max_area=2e6)
    x = mesh.points[:, 0]
    geometry = Geometry(600.0 - 300.0 * x / length, -100.0 - 700.0 * x / length)
    assert 0.3 < geometry.floating.mean() < 0.7
    solver = SSASolver(mesh)
    picard, newton = (solver.solve(geometry, Rheology(), inflow=uniform_inflow(50.0),
                                   friction=Friction(coefficient=1e4, m=1.0 / 3.0), tol=1e-9, method=method)
                      for method in ("picard", "newton"))
    assert picard.converged and newton.converged
    assert relative_error(newton.u, picard.u) < 1e-6 and relative_error(newton.v, picard.v) < 1e-6
    assert newton.iterations < picard.iterations / 4
    assert newton.changes[-1] < newton.changes[-2] ** 1.5


def test_prescribed_viscosity_is_one_solve_whatever_the_method(ramp_mesh):
    ramp = Ramp()
    x = ramp_mesh.points[:, 0]
    geometry = Geometry(ramp.thickness(x), np.full(len(x), -3000.0))
    picard, newton = (SSASolver(ramp_mesh).solve(geometry, Rheology(viscosity=ramp.viscosity(x)),
                                                 inflow=uniform_inflow(ramp.u0), method=method)
                      for method in ("picard", "newton"))
    assert picard.iterations == newton.iterations == 1
    assert np.array_equal(picard.u, newton.u)


def test_prescribed_viscosity_is_one_linear_solve_with_second_order_convergence():
    ramp = Ramp()
    errors = []
    for area in (8e6, 2e6, 5e5):
        mesh, result, exact = ramp.solve(area, prescribed=True)
        assert result.iterations == 1
        errors.append(np.sqrt(np.mean((result.u - exact) ** 2)))
    assert errors[0] / errors[1] > 3.0 and errors[1] / errors[2] > 3.0  # h halves: error / ~4


def test_the_same_input_gives_the_same_velocity(ramp_mesh):
    ramp = Ramp()
    x = ramp_mesh.points[:, 0]
    geometry = Geometry(ramp.thickness(x), np.full(len(x), -3000.0))
    a = SSASolver(ramp_mesh).solve(geometry, Rheology(), inflow=uniform_inflow(100.0))
    b = SSASolver(ramp_mesh).solve(geometry, Rheology(), inflow=uniform_inflow(100.0))
    assert np.array_equal(a.u, b.u) and np.array_equal(a.v, b.v)


def test_a_warm_start_converges_in_fewer_iterations(ramp_mesh):
    ramp = Ramp()
    x = ramp_mesh.points[:, 0]
    geometry = Geometry(ramp.thickness(x), np.full(len(x), -3000.0))
    solver = SSASolver(ramp_mesh)
    cold = solver.solve(geometry, Rheology(), inflow=uniform_inflow(100.0))
    warm = solver.solve(geometry, Rheology(), inflow=uniform_inflow(100.0), warm_start=(cold.u, cold.v))
    assert warm.iterations < cold.iterations / 3
    assert np.allclose(warm.u, cold.u, rtol=1e-6)


def test_grounded_ice_is_held_back_by_friction(ramp_mesh):
    ramp = Ramp()
    x = ramp_mesh.points[:, 0]
    h = ramp.thickness(x)
    solver = SSASolver(ramp_mesh)
    floating = solver.solve(Geometry(h, np.full(len(x), -3000.0)), Rheology(), inflow=uniform_inflow(100.0))
    # the same ice grounded on a bed 100 m below sea level (it would need > 1100 m of water to float)
    grounded = solver.solve(Geometry(h, np.full(len(x), -100.0)), Rheology(), inflow=uniform_inflow(100.0),
                            friction=Friction(coefficient=1e5))
    assert grounded.u.max() < 0.5 * floating.u.max()
    stronger = solver.solve(Geometry(h, np.full(len(x), -100.0)), Rheology(), inflow=uniform_inflow(100.0),
                            friction=Friction(coefficient=1e6))
    assert stronger.u.mean() < grounded.u.mean()


def test_bad_input_gets_a_clear_error(ramp_mesh):
    solver = SSASolver(ramp_mesh)
    n = ramp_mesh.n_nodes
    with pytest.raises(SimulationError, match="thickness must be positive"):
        solver.solve(Geometry(np.full(n, -1.0), np.full(n, -3000.0)), Rheology(), inflow=uniform_inflow(1.0))
    with pytest.raises(SimulationError, match="one value per node"):
        solver.solve(Geometry(np.ones(3), np.ones(3)), Rheology(), inflow=uniform_inflow(1.0))
    with pytest.raises(SimulationError, match="non-finite"):
        solver.solve(Geometry(np.full(n, np.nan), np.full(n, -3000.0)), Rheology(), inflow=uniform_inflow(1.0))
    with pytest.raises(SimulationError, match="prescribed viscosity"):
        solver.solve(Geometry(np.full(n, 100.0), np.full(n, -3000.0)), Rheology(viscosity=np.zeros(n)),
                     inflow=uniform_inflow(1.0))
    floating_free = mesh_outline(*rectangle(0, 1e3, 0, 1e3, tags=("front",) * 4), max_area=1e5)
    with pytest.raises(SimulationError, match="no inflow side"):
        SSASolver(floating_free)
    with pytest.raises(SimulationError, match="negative weight"):  # skfem's order 3: friction could push
        SSASolver(ramp_mesh, intorder=3)
    with pytest.raises(SimulationError, match="give the inflow velocity"):
        solver.solve(Geometry(np.full(n, 100.0), np.full(n, -3000.0)), Rheology())
    with pytest.raises(SimulationError, match="unknown method 'gauss-seidel'; choose one of newton, picard"):
        solver.solve(Geometry(np.full(n, 100.0), np.full(n, -3000.0)), Rheology(), inflow=uniform_inflow(1.0),
                     method="gauss-seidel")
