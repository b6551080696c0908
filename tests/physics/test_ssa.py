"""The SSA residuals: the expanded product rule against the divergence form by autograd, exact solutions
score zero, finite-difference residuals of a manufactured solution converge at second order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from iceviz.physics.ssa import BUOYANCY, Jet, effective_strain_rate, front_residual, momentum_residual
from iceviz.physics.viscosity_preview import grid_jets, grid_residual, GridFields

L = 50e3  # m


def manufactured(x, y, lib=np):
    """Smooth u, v [m/s], h [m], μ [Pa·s] on a 50 km square (any library with sin, cos, exp)."""
    u = 3e-5 * (1 + 0.5 * lib.sin(np.pi * x / L) * lib.cos(0.5 * np.pi * y / L))
    v = 4e-6 * lib.cos(np.pi * x / L) * lib.sin(np.pi * y / L)
    h = 400 - 150 * x / L + 30 * lib.cos(np.pi * y / L)
    mu = 4e13 * lib.exp(0.3 * lib.sin(np.pi * (x + 0.5 * y) / L))
    return u, v, h, mu


def autograd_jets(x: torch.Tensor, y: torch.Tensor):
    """Jets of the manufactured fields by reverse-mode autograd (float64)."""
    u, v, h, mu = manufactured(x, y, torch)

    def d(f, wrt):
        return torch.autograd.grad(f.sum(), wrt, create_graph=True)[0]

    def jet(f, second: bool):
        fx, fy = d(f, x), d(f, y)
        if not second:
            return Jet(f, fx, fy)
        return Jet(f, fx, fy, d(fx, x), d(fx, y), d(fy, y))

    return jet(u, True), jet(v, True), jet(h, False), jet(mu, False), (u, v, h, mu)


def points(n: int = 200, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * L
    return xy[:, 0].clone().requires_grad_(True), xy[:, 1].clone().requires_grad_(True)


def test_expanded_residual_equals_the_divergence_of_the_stress():
    """momentum_residual expands ∂x[2μh(2u_x + v_y)] + ∂y[μh(u_y + v_x)] − ρg'h h_x by the product rule:
    compare with the divergence of the stress tensor taken by autograd."""
    x, y = points()
    u, v, h, mu, (uf, vf, hf, muf) = autograd_jets(x, y)
    f1, f2 = momentum_residual(u, v, h, mu)
    txx = 2 * muf * hf * (2 * u.x + v.y)
    tyy = 2 * muf * hf * (u.x + 2 * v.y)
    txy = muf * hf * (u.y + v.x)

    def grad(f, wrt):
        return torch.autograd.grad(f.sum(), wrt, retain_graph=True)[0]

    ref1 = grad(txx, x) + grad(txy, y) - BUOYANCY * hf * h.x
    ref2 = grad(txy, x) + grad(tyy, y) - BUOYANCY * hf * h.y
    scale = float(BUOYANCY * (hf * h.x.abs()).max().detach())
    np.testing.assert_allclose(f1.detach().numpy(), ref1.detach().numpy(), atol=1e-9 * scale)
    np.testing.assert_allclose(f2.detach().numpy(), ref2.detach().numpy(), atol=1e-9 * scale)


def test_a_field_that_solves_the_ssa_has_zero_residual():
    """A slab spreading in x only, constant μ, h linear in x: integrating the x equation with the front's
    stress balance gives 4μh u_x = ½ρg'h², so u_x = ρg'h / (8μ). Both residuals vanish everywhere."""
    mu0, h0, slope = 2e13, 500.0, -2e-3
    x = torch.linspace(0, L, 101, dtype=torch.float64)
    h = h0 + slope * x
    # 4μh u_x = ½ ρg' h² (integrated balance with zero stress at the front, free in y): u_x = ρg' h / (8μ)
    ux = BUOYANCY * h / (8 * mu0)
    uxx = BUOYANCY * slope / (8 * mu0)
    zeros = torch.zeros_like(x)
    u = Jet(zeros, ux, zeros, uxx * torch.ones_like(x), zeros, zeros)
    v = Jet(zeros, zeros, zeros, zeros, zeros, zeros)
    f1, f2 = momentum_residual(u, v, Jet(h, slope * torch.ones_like(x), zeros), Jet(mu0 * torch.ones_like(x), zeros, zeros))
    assert float(f1.abs().max()) < 1e-12 * BUOYANCY * h0 and float(f2.abs().max()) == 0.0
    g1, g2 = front_residual(u, v, h, mu0, torch.ones_like(x), zeros)
    assert float(g1.abs().max()) < 1e-9 * BUOYANCY * h0 and float(g2.abs().max()) == 0.0


def test_effective_strain_rate_is_the_second_invariant():
    u = Jet(None, np.array([1.0, 0.0]), np.array([0.0, 2.0]))
    v = Jet(None, np.array([0.0, 2.0]), np.array([-1.0, 0.0]))
    # pure shear: ε = diag(1, -1) -> sqrt(1 + 1 - 1); simple shear u_y = v_x = 2 -> ε_xy = 2
    np.testing.assert_allclose(effective_strain_rate(u, v), [1.0, 2.0])


@pytest.mark.parametrize("field", ["u", "h"])
def test_grid_derivatives_converge_at_second_order(field):
    errors = []
    for n in (41, 81, 161):
        x = y = np.linspace(0, L, n)
        xx, yy = np.meshgrid(x, y)
        values = dict(zip("uvhm", manufactured(xx, yy)))[field]
        jet = grid_jets(x, y, values, order=2)
        xt, yt = (torch.tensor(a.ravel()).requires_grad_(True) for a in (xx, yy))
        u, v, h, mu, _ = autograd_jets(xt, yt)
        exact = u if field == "u" else h
        errors.append(max(np.nanmax(np.abs(getattr(jet, d) - getattr(exact, d).detach().numpy().reshape(xx.shape)))
                          / np.abs(getattr(exact, d).detach().numpy()).max() for d in "xy"))
    rates = np.log2(np.array(errors[:-1]) / errors[1:])
    assert np.all(rates > 1.8), (errors, rates)


def test_the_grid_residual_of_a_manufactured_solution_converges_at_second_order():
    """Force the SSA with the manufactured fields' own residual: the finite-difference residual on ever finer
    grids must tend to that forcing at second order (so the preview's discretisation is consistent)."""
    errors = []
    for n in (26, 51, 101):
        x = y = np.linspace(0, L, n)
        xx, yy = np.meshgrid(x, y)
        u, v, h, mu = manufactured(xx, yy)
        f1, f2 = grid_residual(GridFields(x, y, u, v, h), mu)
        xt, yt = (torch.tensor(a.ravel()).requires_grad_(True) for a in (xx, yy))
        ju, jv, jh, jmu, _ = autograd_jets(xt, yt)
        e1, e2 = (t.detach().numpy().reshape(xx.shape) for t in momentum_residual(ju, jv, jh, jmu))
        interior = (slice(2, -2), slice(2, -2))
        scale = np.abs(e1[interior]).max()
        errors.append(max(np.abs(f1 - e1)[interior].max(), np.abs(f2 - e2)[interior].max()) / scale)
    rates = np.log2(np.array(errors[:-1]) / errors[1:])
    assert errors[-1] < 1e-3 and np.all(rates > 1.8), (errors, rates)
