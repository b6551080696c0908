"""Thickness transport: the steady analytic profile, exact mass budget, melt under floating ice only, floor."""

import numpy as np
import pytest

from iceviz.sim.mesh import mesh_outline, rectangle
from iceviz.sim.ssa import SimulationError
from iceviz.sim.transport import MassBudget, Transport


@pytest.fixture(scope="module")
def channel():
    return mesh_outline(*rectangle(0, 100e3, 0, 20e3), max_area=1e6)


def test_steady_thickness_in_a_stretching_flow_matches_the_closed_form(channel):
    x = channel.points[:, 0]
    u0, k, h_in, a = 100.0, 5e-3, 500.0, 0.5
    transport = Transport(channel, bed=np.full(len(x), 100.0))
    h, _ = transport.step(np.full_like(x, 300.0), u0 + k * x, np.zeros_like(x), dt=1e7, smb=a, h_in=h_in)
    exact = (h_in * u0 + a * x) / (u0 + k * x)
    assert np.abs(h - exact).max() / exact.max() < 2e-3
    assert np.sqrt(np.mean((h - exact) ** 2)) / exact.max() < 2e-4


def test_every_step_closes_its_mass_budget(channel):
    x = channel.points[:, 0]
    bed = np.where(x < 50e3, 100.0, -2000.0)  # grounded upstream, floating downstream
    transport = Transport(channel, bed)
    h = 400.0 - 2e-3 * x
    u, v = 200.0 + 4e-3 * x, 10.0 * np.sin(x / 1e4)
    total = MassBudget()
    for _ in range(20):
        dt = transport.max_step(u, v, cfl=0.5)
        h, budget = transport.step(h, u, v, dt, smb=0.3, melt=40.0, h_in=450.0)
        assert budget.relative_residual < 1e-11
        total = total + budget
    assert total.melt > 0 and total.inflow > 0 and total.outflow > 0 and total.smb > 0
    assert total.relative_residual < 1e-11


def test_melt_acts_only_where_the_ice_floats(channel):
    x = channel.points[:, 0]
    bed = np.where(x < 50e3, 100.0, -2000.0)
    transport = Transport(channel, bed)
    h0 = np.full(len(x), 400.0)
    still = np.zeros(len(x))
    dry, _ = transport.step(h0, still, still, 1.0, melt=0.0)
    wet, budget = transport.step(h0, still, still, 1.0, melt=30.0)
    grounded_far = x < 45e3
    floating_far = x > 55e3
    assert np.abs(wet[grounded_far] - dry[grounded_far]).max() < 1e-9
    assert (wet <= dry + 1e-6).all()  # lumped mass: no overshoot next to the grounding line
    assert np.allclose(dry[floating_far] - wet[floating_far], 30.0, rtol=1e-9)
    floating_area = 20e3 * 50e3
    assert budget.melt == pytest.approx(30.0 * floating_area, rel=0.03)  # the line cuts elements


def test_the_floor_holds_and_books_the_volume_it_creates(channel):
    x = channel.points[:, 0]
    transport = Transport(channel, np.full(len(x), -2000.0), floor=2.0)
    still = np.zeros(len(x))
    h, budget = transport.step(np.full(len(x), 10.0), still, still, 1.0, melt=50.0)
    assert h.min() == pytest.approx(2.0)
    assert budget.floor > 0 and budget.relative_residual < 1e-12


def test_cfl_step_bounds_the_courant_number(channel):
    transport = Transport(channel, np.zeros(channel.n_nodes))
    u = np.linspace(0, 1000.0, channel.n_nodes)
    dt = transport.max_step(u, np.zeros_like(u), cfl=0.5)
    speed = u[channel.triangles].max(axis=1)
    assert (speed * dt <= 0.5 * transport.size + 1e-9).all()
    assert np.isclose((speed * dt / transport.size).max(), 0.5)
    assert transport.max_step(np.zeros_like(u), np.zeros_like(u)) == np.inf


def test_bad_input_gets_a_clear_error(channel):
    n = channel.n_nodes
    transport = Transport(channel, np.zeros(n))
    zero = np.zeros(n)
    with pytest.raises(SimulationError, match="negative thickness"):
        transport.step(np.full(n, -1.0), zero, zero, 1.0)
    with pytest.raises(SimulationError, match="time step"):
        transport.step(np.ones(n), zero, zero, 0.0)
    with pytest.raises(SimulationError, match="one finite value per node"):
        transport.step(np.full(n, np.nan), zero, zero, 1.0)
    with pytest.raises(SimulationError, match="one value per node"):
        Transport(channel, np.zeros(3))
    with pytest.raises(SimulationError, match="floor"):
        Transport(channel, np.zeros(n), floor=0.0)
