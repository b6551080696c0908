"""Synthetic shelves: the SSA solution, the DIFFICE layout and units, the front, and DIFFICE's COMSOL shelf."""

import numpy as np
import pytest
from scipy.interpolate import RegularGridInterpolator
from scipy.io import loadmat

from iceviz.physics.units import GRAVITY, RHO_ICE, RHO_WATER, SECONDS_PER_YEAR
from iceviz.sim.mesh import mesh_outline, rectangle
from iceviz.sim.shelves import LENGTH, SHELVES, WIDTH, front_points, interpolate, make_shelf, solve_velocity, \
    thickness, to_grids, write_shelf
from iceviz.sim.ssa import SimulationError, SSASolver

DIFFICE_KEYS = {"xd", "yd", "ud", "vd", "xd_h", "yd_h", "hd", "mud", "xct", "yct", "nnct"}


def rrmse(a, b):
    return float(np.sqrt(np.mean((a - b) ** 2)) / np.sqrt(np.mean(b**2)))


@pytest.fixture(scope="module")
def analytic():
    return make_shelf("analytic", resolution=2000.0)


@pytest.fixture(scope="module")
def grids(analytic):
    return to_grids(analytic)


def test_the_velocity_converges_at_second_order():
    reference = to_grids(make_shelf("analytic", 1000.0), spacing=1000.0)
    errors = [rrmse(to_grids(make_shelf("analytic", r), spacing=1000.0)["ud"], reference["ud"]) for r in (4000, 2000)]
    assert errors[1] < 0.005 and errors[0] / errors[1] > 3.0  # ~4 per halving (P1)


def test_the_front_stress_balances_the_hydrostatic_push(analytic):
    """Along x = L: ∫ 2μh (2u_x + v_y) dy = ∫ ½ ρ g (1 − ρ/ρ_w) h² dy and ∫ μh (u_y + v_x) dy = 0."""
    mesh = analytic.mesh
    scalar = SSASolver(mesh).scalar
    gu, gv = (scalar.interpolate(f).grad.mean(axis=2) for f in (analytic.u, analytic.v))
    push = normal = shear = 0.0
    for a, b in mesh.boundary["front"]:
        e = np.flatnonzero((mesh.triangles == a).any(axis=1) & (mesh.triangles == b).any(axis=1))[0]
        x, y = mesh.points[[a, b]].mean(axis=0)
        dy = abs(mesh.points[a, 1] - mesh.points[b, 1])
        mu_h = SHELVES["analytic"].viscosity(x, y) / SECONDS_PER_YEAR * thickness(x, y)
        normal += 2 * mu_h * (2 * gu[0, e] + gv[1, e]) * dy
        shear += mu_h * (gu[1, e] + gv[0, e]) * dy
        push += 0.5 * RHO_ICE * GRAVITY * (1 - RHO_ICE / RHO_WATER) * thickness(x, y) ** 2 * dy
    assert normal / push == pytest.approx(1.0, abs=0.05)  # element gradients sit h/3 inside the front
    assert abs(shear / push) < 0.01


def test_grids_have_the_diffice_layout_and_si_units(grids):
    assert set(grids) == DIFFICE_KEYS
    x, y = grids["xd"], grids["yd"]
    assert x.shape == (250, 400) and x[0, 0] == 100.0 and x[0, -1] == 79_900.0
    assert (np.diff(y[:, 0]) == 200.0).all()  # y grows with the row index
    assert np.array_equal(grids["xd_h"], x) and np.array_equal(grids["yd_h"], y)
    assert not any(np.isnan(g).any() for g in grids.values())  # a rectangle: nothing outside
    # m/s: the inflow peak is 1 km/a ≈ 3.17e-5 m/s
    assert grids["ud"][:, 0].max() == pytest.approx(1000.0 / SECONDS_PER_YEAR, rel=0.01)
    assert 1e-5 < grids["ud"].max() < 1e-4 and np.abs(grids["vd"]).max() < 1e-5
    assert grids["hd"].min() > 150.0 and grids["hd"].max() < 500.0
    assert all(g.dtype == np.float64 for g in grids.values())


def test_true_viscosity_is_the_closed_form_in_pascal_seconds(grids):
    x, y = grids["xd"], grids["yd"]
    closed = 5e13 * (1 - 0.5 * np.cos(2 * np.pi * y / 50e3)) * (2 / 3 + x / 240e3)
    np.testing.assert_allclose(grids["mud"], closed, rtol=1e-14)


def test_front_points_are_the_last_two_columns_with_outward_unit_normals(grids):
    xct, yct, nnct = grids["xct"], grids["yct"], grids["nnct"]
    assert xct.shape == yct.shape == (500, 1) and nnct.shape == (500, 2)
    assert set(xct.ravel()) == {79_700.0, 79_900.0}
    np.testing.assert_allclose(np.linalg.norm(nnct, axis=1), 1.0)
    np.testing.assert_allclose(nnct, np.tile([1.0, 0.0], (500, 1)), atol=1e-15)


def test_front_normals_come_from_the_geometry():
    # a slanted front from (80, 0) to (70, 50) km: outward normal ∝ (50, 10)
    outline = np.array([[0.0, 0.0], [80e3, 0.0], [70e3, 50e3], [0.0, 50e3]])
    x, y = np.meshgrid(np.arange(100.0, 80e3, 200.0), np.arange(100.0, 50e3, 200.0))
    pts, normals = front_points(x, y, outline, ["wall", "front", "wall", "inflow"], within=400.0)
    assert len(pts) > 0
    np.testing.assert_allclose(normals, np.tile(np.array([50.0, 10.0]) / np.hypot(50.0, 10.0), (len(pts), 1)))
    # the same outline listed clockwise: still outward
    _, reversed_normals = front_points(x, y, outline[::-1], ["wall", "front", "wall", "inflow"], within=400.0)
    np.testing.assert_allclose(reversed_normals, normals)


def test_a_bad_front_is_an_error():
    outline = np.array([[0.0, 0.0], [80e3, 0.0], [80e3, 50e3], [0.0, 50e3]])
    x, y = np.array([100.0, 40e3]), np.array([100.0, 25e3])
    with pytest.raises(SimulationError, match="no side tagged 'front'"):
        front_points(x, y, outline, ["wall", "wall", "wall", "inflow"], within=400.0)
    with pytest.raises(SimulationError, match="no grid points"):
        front_points(x, y, outline, ["wall", "front", "wall", "inflow"], within=400.0)
    degenerate = np.array([[0.0, 0.0], [80e3, 0.0], [80e3, 0.0], [0.0, 50e3]])
    with pytest.raises(SimulationError, match="zero length"):
        front_points(x, y, degenerate, ["wall", "front", "wall", "inflow"], within=400.0)


def test_p1_interpolation_is_exact_for_linear_fields_and_nan_outside():
    mesh = mesh_outline(*rectangle(0.0, 10e3, 0.0, 5e3), max_area=1e6)
    linear = 3.0 * mesh.points[:, 0] - 2.0 * mesh.points[:, 1] + 7.0
    pts = np.array([[1234.0, 567.0], [9999.0, 4999.0], [0.0, 0.0], [11e3, 1e3]])
    values = interpolate(mesh, linear, pts)
    np.testing.assert_allclose(values[:3], 3.0 * pts[:3, 0] - 2.0 * pts[:3, 1] + 7.0)
    assert np.isnan(values[3])


def test_the_file_round_trips_like_syndata(tmp_path, grids):
    path = write_shelf("analytic", tmp_path / "analytic.mat", resolution=2000.0)
    loaded = loadmat(path)
    assert {k for k in loaded if not k.startswith("__")} == DIFFICE_KEYS
    for key, value in grids.items():
        assert loaded[key].shape == value.shape
        np.testing.assert_array_equal(loaded[key], value)


def test_margins_are_soft_and_the_centre_is_faster():
    analytic, margins = (to_grids(make_shelf(name, 2000.0), spacing=500.0) for name in ("analytic", "margins"))
    mu = SHELVES["margins"].viscosity
    assert mu(40e3, 0.0) / mu(40e3, WIDTH / 2) == pytest.approx(0.1, rel=1e-6)  # ten times softer at the walls
    middle, col = (n // 2 for n in margins["ud"].shape)
    assert margins["ud"][middle, col] > 1.03 * analytic["ud"][middle, col]
    assert margins["ud"][middle, -1] > 1.05 * analytic["ud"][middle, -1]

    def rise_in_bands(g):
        """The share of the wall-to-centre speed rise at x = L/2 that happens within 3 km of the wall."""
        u, y = g["ud"][:, col], g["yd"][:, 0]
        band = np.searchsorted(y, 3e3)
        return (u[band] - u[0]) / (u[middle] - u[0])

    assert rise_in_bands(margins) > rise_in_bands(analytic) + 0.1


def test_unknown_names_and_bad_sizes_are_errors(tmp_path):
    with pytest.raises(SimulationError, match="analytic, margins"):
        make_shelf("ross")
    with pytest.raises(SimulationError, match="unknown shelf"):
        write_shelf("ross", tmp_path / "x.mat")
    with pytest.raises(SimulationError, match="resolution"):
        make_shelf("analytic", resolution=-1000.0)
    with pytest.raises(SimulationError, match="spacing"):
        to_grids(make_shelf("analytic", 8000.0), spacing=0.0)
    assert all(spec.description for spec in SHELVES.values())


def test_against_diffice_syndata_exp1(diffice_dir, grids):
    """DIFFICE's COMSOL shelf has the same μ, inflow and walls but a mass-balanced thickness."""
    syn = loadmat(diffice_dir / "SynData_exp1.mat")
    np.testing.assert_allclose(grids["xd"], syn["xd"], rtol=1e-15)  # theirs carry round-off
    np.testing.assert_allclose(grids["yd"], syn["yd"], rtol=1e-15)
    np.testing.assert_allclose(grids["mud"], syn["mud"], rtol=1e-13)
    ours = {k: rrmse(grids[k], syn[k]) for k in ("ud", "vd", "hd")}
    # our SSA on their thickness (the rest of the set-up is the same): the velocity must agree
    h_of = RegularGridInterpolator((syn["yd"][:, 0], syn["xd"][0]), syn["hd"], bounds_error=False, fill_value=None)
    mesh = mesh_outline(*rectangle(0.0, LENGTH, 0.0, WIDTH), max_area=np.sqrt(3) / 4 * 1000.0**2)
    u, v = solve_velocity(SHELVES["analytic"], mesh, h_of(mesh.points[:, ::-1]))
    on_grid = interpolate(mesh, np.column_stack([u, v]), np.column_stack([syn["xd"].ravel(), syn["yd"].ravel()]))
    theirs_h = {k: rrmse(on_grid[:, i].reshape(syn["xd"].shape) / SECONDS_PER_YEAR, syn[k])
                for i, k in enumerate(("ud", "vd"))}
    print("\nrelative RMSE against SynData_exp1, our thickness:",
          ", ".join(f"{k} {e:.3g}" for k, e in ours.items()),
          "| their thickness:", ", ".join(f"{k} {e:.3g}" for k, e in theirs_h.items()))
    assert theirs_h["ud"] < 2e-3 and theirs_h["vd"] < 1e-2
    assert ours["ud"] < 0.05 and ours["hd"] < 0.1  # the thickness differs by design; v, smaller, differs more
