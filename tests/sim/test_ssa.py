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


def test_glen_picard_matches_the_analytic_ramp(ramp_mesh):
    ramp = Ramp()
    x = ramp_mesh.points[:, 0]
    result = SSASolver(ramp_mesh).solve(Geometry(ramp.thickness(x), np.full(len(x), -3000.0)),
                                        Rheology(rate_factor=ramp.rate_factor), inflow=uniform_inflow(ramp.u0))
    assert result.converged and result.changes[-1] < 1e-8
    assert relative_error(result.u, ramp.speed(x)) < 1e-4
    assert np.abs(result.v).max() < 1e-3 * ramp.u0  # free-slip walls, no lateral force
    # the viscosity it converged to is the closed form's
    centres = ramp_mesh.points[ramp_mesh.triangles].mean(axis=1)[:, 0]
    assert np.allclose(result.viscosity, ramp.viscosity(centres), rtol=0.02)


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
    closed = mesh_outline(*rectangle(0, 1e3, 0, 1e3, tags=("wall", "front", "wall", "wall")), max_area=1e5)
    with pytest.raises(SimulationError, match="no inflow side"):
        SSASolver(closed)
