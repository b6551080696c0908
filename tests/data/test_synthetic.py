"""Synthetic fields: exact divergence-free truth, analytic gradients, sampling and placement."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from iceviz.data import synthetic as syn
from iceviz.data.problem import DataError

# mean |q| over the 20 x 20 test grid, from science.md section 1
PUBLISHED_MEANS = {"curve": 1.572, "branching": 0.743, "deflection": 1.470, "ridges": 1.478, "edge": 0.808}
LINE_COUNTS = [11, 19, 21, 31, 30, 17, 30, 24, 15]


def _unit_points(n: int = 600, seed: int = 0, requires_grad: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 2, generator=g, dtype=torch.float64) * 1.2 - 0.1  # a margin round the square
    return x.requires_grad_(requires_grad)


def _glacier_points(n: int = 1500, seed: int = 1, requires_grad: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    lo = torch.tensor([400e3, -950e3], dtype=torch.float64)
    x = lo + 200e3 * torch.rand(n, 2, generator=g, dtype=torch.float64)
    return x.requires_grad_(requires_grad)


def _autograd_divergence(f, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(∂q₁/∂x₁ + ∂q₂/∂x₂, the Jacobian's largest entry) by autograd."""
    q = f(x)
    (g1,) = torch.autograd.grad(q[:, 0].sum(), x, retain_graph=True)
    (g2,) = torch.autograd.grad(q[:, 1].sum(), x)
    return g1[:, 0] + g2[:, 1], torch.max(g1.abs().max(), g2.abs().max())


@pytest.mark.parametrize("name", syn.BENCHMARK_NAMES)
def test_mean_magnitude_matches_published(name):
    assert syn.mean_magnitude(name) == pytest.approx(PUBLISHED_MEANS[name], abs=1e-3)


@pytest.mark.parametrize("name", syn.BENCHMARK_NAMES)
def test_benchmark_gradient_matches_autograd(name):
    f = syn.BENCHMARKS[name]
    x = _unit_points(requires_grad=True)
    (auto,) = torch.autograd.grad(f.stream(x).sum(), x)
    analytic = f.stream_gradient(x.detach())
    scale = float(analytic.abs().max())
    assert torch.allclose(analytic, auto, rtol=0, atol=1e-10 * max(scale, 1.0))
    # the numpy path is the same maths
    np.testing.assert_allclose(f.stream_gradient(x.detach().numpy()), analytic.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", syn.BENCHMARK_NAMES)
def test_benchmark_field_is_divergence_free(name):
    f = syn.BENCHMARKS[name]
    x = _unit_points(requires_grad=True)
    div, jac = _autograd_divergence(f, x)
    assert jac > 0.1  # the field does vary
    assert float(div.abs().max()) < 1e-10 * float(jac)


@pytest.mark.parametrize("name", syn.BENCHMARK_NAMES)
def test_benchmark_field_is_rot_psi_plus_extra(name):
    f = syn.BENCHMARKS[name]
    x = _unit_points(requires_grad=True)
    (grad,) = torch.autograd.grad(f.stream(x).sum(), x)
    rot = torch.stack([grad[:, 1], -grad[:, 0]], -1)  # rot ψ = (∂ψ/∂x₂, −∂ψ/∂x₁)
    expected = f.rot_scale * rot + f.extra(x.detach())
    np.testing.assert_allclose(f(x.detach().numpy()), expected.numpy(), atol=1e-10)


def test_non_symmetric_sigma_is_used_row_wise():
    b = syn.Bump((0.5, 0.5), ((0.006, 0.0), (0.008, 0.004)), 0.03)
    sigma = np.array(b.sigma)
    x = np.array([[0.52, 0.47], [0.5, 0.5]])
    d = x - np.array(b.mu)
    inv = np.linalg.inv(sigma)
    expected = 0.03 * np.exp(-0.5 * np.einsum("ni,ij,nj->n", d, inv, d)) / (2 * math.pi * math.sqrt(np.linalg.det(sigma)))
    value, grad = syn.bumps_value_and_gradient(x, (b,))
    np.testing.assert_allclose(value, expected, rtol=1e-12)
    np.testing.assert_allclose(grad, -0.5 * expected[:, None] * d @ (inv + inv.T).T, rtol=1e-12, atol=1e-14)


def test_extra_terms_have_zero_divergence():
    x = _unit_points(requires_grad=True)
    for extra in (syn._curve_extra, syn._branching_extra, syn._deflection_extra):
        div, jac = _autograd_divergence(extra, x)
        assert jac > 0.5
        assert float(div.abs().max()) < 1e-12


def test_flight_lines_as_listed():
    pts = syn.benchmark_train_points()
    assert pts.shape == (sum(LINE_COUNTS), 2)
    start = 0
    for (a, b, n), count in zip(syn.BENCHMARK_FLIGHT_LINES, LINE_COUNTS):
        seg = pts[start : start + count]
        assert n == count
        np.testing.assert_allclose(seg[0], a, atol=1e-15)
        np.testing.assert_allclose(seg[-1], b, atol=1e-15)
        steps = np.linalg.norm(np.diff(seg, axis=0), axis=1)
        np.testing.assert_allclose(steps, steps[0], rtol=1e-9)
        assert 0.025 < steps[0] < 0.045  # "~0.035 apart"
        start += count


def test_benchmark_problem_placement_and_truth():
    p = syn.benchmark_problem("curve")
    sc = p.scale
    assert (sc.x0, sc.y0, sc.length, sc.flux, sc.surface) == (-50_000, 300_000, 100_000, 10_000, 1000)
    assert p.bounds == (-50_000, 50_000, 300_000, 400_000)
    assert p.grid_shape == (50, 50) and p.train.s is None and p.test.s is None and p.surface_truth is None
    assert len(p.test) == 400
    np.testing.assert_allclose(sc.xy_to_scaled(p.test.xy), syn.benchmark_test_points(), atol=1e-12)
    np.testing.assert_allclose(sc.xy_to_scaled(p.train.xy), syn.benchmark_train_points(), atol=1e-12)
    # test is noise-free truth, in m²/yr; scaled units are the field's own units
    np.testing.assert_allclose(p.test.q, p.truth(p.test.xy), rtol=1e-12)
    np.testing.assert_allclose(p.test.q / sc.flux, syn.BENCHMARKS["curve"](syn.benchmark_test_points()), rtol=1e-12)


def test_benchmark_noise_level_and_seed():
    clean = syn.benchmark_problem("edge", noise=0.0)
    np.testing.assert_allclose(clean.train.q, clean.truth(clean.train.xy), rtol=1e-12)
    noisy = syn.benchmark_problem("edge", noise=0.05, seed=3)
    resid = (noisy.train.q - clean.train.q) / noisy.scale.flux
    expected = 0.05 * syn.mean_magnitude("edge")
    assert np.std(resid) == pytest.approx(expected, rel=0.12)  # 396 samples
    again = syn.benchmark_problem("edge", noise=0.05, seed=3)
    np.testing.assert_array_equal(again.train.q, noisy.train.q)
    other = syn.benchmark_problem("edge", noise=0.05, seed=4)
    assert not np.allclose(other.train.q, noisy.train.q)
    with pytest.raises(DataError, match="noise"):
        syn.benchmark_problem("edge", noise=1.5)


@pytest.mark.parametrize("name", syn.SYNTHETIC_NAMES)
def test_direction_guidance_is_unit_truth(name):
    p = syn.synthetic_problem(name)
    d = p.direction
    n = syn.BENCHMARK_DIRECTION_N if name != "glacier" else syn.GLACIER_DIRECTION_N
    assert d.xy.shape[0] <= n * n and d.xy.shape[0] > 0.99 * n * n
    np.testing.assert_allclose(np.linalg.norm(d.unit, axis=1), 1.0, atol=1e-14)
    q = p.truth(d.xy)
    cos = np.sum(q * d.unit, axis=1) / np.linalg.norm(q, axis=1)
    np.testing.assert_allclose(cos, 1.0, atol=1e-12)
    xmin, xmax, ymin, ymax = p.bounds
    assert d.xy[:, 0].min() == xmin and d.xy[:, 0].max() == xmax
    assert d.xy[:, 1].min() == ymin and d.xy[:, 1].max() == ymax


def test_unknown_synthetic_name():
    with pytest.raises(DataError, match="valid: curve, branching"):
        syn.synthetic_problem("spiral")


# --------------------------------------------------------------------------- glacier


def test_glacier_gradient_matches_autograd():
    x = _glacier_points(requires_grad=True)
    (auto,) = torch.autograd.grad(syn.glacier_stream(x).sum(), x)
    analytic = syn.glacier_stream_gradient(x.detach())
    scale = float(analytic.abs().max())
    assert scale > 5e5
    assert float((analytic - auto).abs().max()) < 1e-10 * scale
    np.testing.assert_allclose(syn.glacier_flux(x.detach().numpy()), syn.glacier_flux(x.detach()).numpy(), rtol=1e-12, atol=1e-6)


def test_glacier_is_exactly_divergence_free():
    x = _glacier_points(requires_grad=True)
    div, jac = _autograd_divergence(syn.glacier_flux, x)
    assert float(jac) > 10.0  # m/yr: the field varies strongly
    assert float(div.abs().max()) < 1e-10 * float(jac)


def _transect(u: float, half_width: float, n: int = 4001) -> tuple[np.ndarray, np.ndarray, float]:
    """Points across the trunk at along-flow distance u, the downstream normal, and the step length."""
    g = syn.GLACIER
    a = math.radians(g.angle_deg)
    eu, ev = np.array([math.cos(a), math.sin(a)]), np.array([-math.sin(a), math.cos(a)])
    v = np.linspace(-half_width, half_width, n)
    xy = np.array(g.centre) + u * eu + v[:, None] * ev
    return xy, eu, v[1] - v[0]


def test_glacier_discharge_is_stream_function_difference_and_grows_downstream():
    discharge = []
    for u in (-110e3, -20e3, 60e3):
        xy, normal, dv = _transect(u, 40e3)
        qn = syn.glacier_flux(xy) @ normal
        through = float(np.sum((qn[1:] + qn[:-1]) / 2) * dv)  # trapezoid
        psi = syn.glacier_stream(xy)
        # for q = rot ψ the flux through a curve is the difference of ψ at its ends
        assert through == pytest.approx(float(psi[-1] - psi[0]), rel=1e-5)
        discharge.append(through)
    assert discharge[0] < discharge[1] < discharge[2]
    total = syn.GLACIER.trunk_flux + sum(t.flux for t in syn.GLACIER.tributaries)
    assert discharge[2] > 0.9 * total  # every tributary has joined the trunk by u = 60 km


def test_glacier_magnitudes_and_direction():
    xy = syn.grid_points(syn.GLACIER_BOUNDS, 100)
    q = syn.glacier_flux(xy)
    mag = np.hypot(q[:, 0], q[:, 1])
    assert 7e5 < mag.max() < 3e6  # trunk ~1e6 m²/yr
    assert 5e2 < np.percentile(mag, 10) < 1e4  # slow ice 1e3-1e4
    assert np.median(mag) < 5e4
    # overall flow towards −x, −y like Byrd Glacier
    assert np.sum(q[:, 0]) < 0 and np.sum(q[:, 1]) < 0
    v = syn.glacier_velocity(xy)
    speed = np.hypot(v[:, 0], v[:, 1])
    assert 300 < speed.max() < 1500 and np.all(speed > 0)


def test_glacier_speeds_up_where_trunk_narrows():
    def peak(u: float) -> float:
        xy, _, _ = _transect(u, 30e3)
        return float(np.hypot(*syn.glacier_flux(xy).T).max())

    g = syn.GLACIER
    wide, narrow = syn._trunk_width(np, np.array([-90e3, g.narrow_at + 30e3]), g)[0]
    assert narrow < 0.6 * wide
    assert peak(g.narrow_at + 30e3) > 3 * peak(-90e3)


def test_glacier_surface_is_realistic_and_falls_downstream():
    xy = syn.grid_points(syn.GLACIER_BOUNDS, 60)
    s = syn.glacier_surface(xy)
    assert 50 < s.min() < 500 and 1500 < s.max() < 2300
    g = syn.GLACIER
    u = np.linspace(-140e3, 140e3, 200)
    c, _ = syn._trunk_centre(np, u, g)
    a = math.radians(g.angle_deg)
    line = np.array(g.centre) + u[:, None] * np.array([math.cos(a), math.sin(a)]) + c[:, None] * np.array([-math.sin(a), math.cos(a)])
    assert np.all(np.diff(syn.glacier_surface(line)) < 0)


def test_glacier_problem_sampling():
    p = syn.glacier_problem()
    assert 2000 <= len(p.train) <= 4000 and len(p.test) > 1000
    assert p.bounds == syn.GLACIER_BOUNDS and p.grid_shape == (100, 100)
    for obs in (p.train, p.test):
        assert np.all((obs.xy[:, 0] >= 400e3) & (obs.xy[:, 0] <= 600e3))
        assert np.all((obs.xy[:, 1] >= -950e3) & (obs.xy[:, 1] <= -750e3))
        np.testing.assert_allclose(obs.s, p.surface_truth(obs.xy), rtol=1e-12)
    # checkerboard of 20 km tiles: test in (i + j) even tiles, train in odd
    for obs, parity in ((p.test, 0), (p.train, 1)):
        ij = np.floor((obs.xy - np.array([400e3, -950e3])) / 20e3).astype(int)
        assert np.all(ij.sum(axis=1) % 2 == parity)
    np.testing.assert_allclose(p.test.q, p.truth(p.test.xy), rtol=1e-12)
    mean_q = np.mean(np.linalg.norm(p.test.q, axis=1))
    resid = p.train.q - p.truth(p.train.xy)
    assert np.std(resid) == pytest.approx(0.02 * mean_q, rel=0.05)
    assert p.has_surface


def test_glacier_flight_lines():
    xy, line = syn.glacier_flight_lines()
    assert len(np.unique(line)) >= 18
    for k in np.unique(line):
        seg = xy[line == k]
        steps = np.linalg.norm(np.diff(seg, axis=0), axis=1)
        np.testing.assert_allclose(steps, syn.GLACIER_SPACING, rtol=1e-9)
        assert seg.shape[0] > 50  # each line crosses a good part of the box
    # many different headings
    headings = set()
    for k in np.unique(line):
        d = np.diff(xy[line == k][[0, -1]], axis=0)[0]
        headings.add(round(math.degrees(math.atan2(d[1], d[0])) % 180 / 10))
    assert len(headings) >= 10
