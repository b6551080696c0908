"""The viscosity PINN's networks: forward-propagated derivatives against autograd, scales, positivity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from iceviz.models.viscosity import JetMLP, ShelfScales, ViscosityPINN, strip_edges
from iceviz.physics.ssa import BUOYANCY
from iceviz.physics.units import SECONDS_PER_YEAR


def autograd_derivatives(fn, x: torch.Tensor) -> list[torch.Tensor]:
    """(value, ∂x, ∂y, ∂xx, ∂xy, ∂yy) of every output of ``fn`` by nested reverse-mode autograd."""
    x = x.clone().requires_grad_(True)
    y = fn(x)
    out = [[y[:, k]] for k in range(y.shape[1])]
    for k in range(y.shape[1]):
        g = torch.autograd.grad(y[:, k].sum(), x, create_graph=True)[0]
        gx = torch.autograd.grad(g[:, 0].sum(), x, create_graph=True)[0]
        gy = torch.autograd.grad(g[:, 1].sum(), x, create_graph=True)[0]
        out[k] += [g[:, 0], g[:, 1], gx[:, 0], gx[:, 1], gy[:, 1]]
    return [torch.stack(o) for o in out]


@pytest.fixture
def float64():
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


@pytest.mark.parametrize("depth", [1, 3, 6])
def test_jet_matches_nested_autograd(float64, depth):
    torch.manual_seed(depth)
    net = JetMLP(3, 17, depth)
    x = torch.randn(40, 2)
    jet = net.jet(x, 2)
    reference = autograd_derivatives(net, x)
    for k in range(3):
        np.testing.assert_allclose(jet[:, :, k].detach().numpy(), reference[k].detach().numpy(), atol=1e-12)
    np.testing.assert_allclose(net.jet(x, 1).detach().numpy(), jet[:3].detach().numpy(), atol=1e-14)


def test_jet_backward_matches_autograd_parameter_gradients(float64):
    """The loss is differentiated once through the jets: same parameter gradients as double backward."""
    torch.manual_seed(0)
    net = JetMLP(2, 11, 3)
    x = torch.randn(25, 2)
    loss = (net.jet(x, 2)[3:] ** 2).sum()  # second derivatives only
    ours = torch.autograd.grad(loss, list(net.parameters()))
    ref = autograd_derivatives(net, x)
    loss_ref = sum((r[3:] ** 2).sum() for r in ref)
    theirs = torch.autograd.grad(loss_ref, list(net.parameters()))
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-9, atol=1e-12)


def test_jet_rejects_third_order():
    with pytest.raises(ValueError, match="order"):
        JetMLP(1, 4, 2).jet(torch.zeros(3, 2), 3)


SCALES = ShelfScales(x_c=40e3, y_c=25e3, x_r=40e3, y_r=25e3, u_mean=1000.0, u_r=800.0, v_mean=0.0, v_r=70.0, h0=300.0)


def test_scales_make_the_viscosity_scale_balance_driving_stress():
    sc = SCALES
    assert sc.speed == 800.0 and sc.length == 40e3
    # μ₀ U / L² (viscous) equals ρ g' h₀ / L (driving) per unit thickness: coefficient one
    assert sc.viscosity * (sc.speed / SECONDS_PER_YEAR) / sc.length**2 == pytest.approx(BUOYANCY * sc.h0 / sc.length)
    xy = np.array([[0.0, 0.0], [80e3, 50e3], [40e3, 25e3]])
    np.testing.assert_allclose(SCALES.to_input(xy), [[-1, -1], [1, 1], [0, 0]])


@pytest.mark.parametrize("separate_thickness", [False, True])
def test_dimensionless_jets_are_the_physical_derivatives_rescaled(float64, separate_thickness):
    """ũ = u/U and ∂ũ/∂ξ = (L/U) ∂u/∂x with u the network's physical velocity: checked by autograd in metres;
    the same with a thickness network of its own."""
    torch.manual_seed(1)
    model = ViscosityPINN(SCALES, width=12, depth=3, mu_width=12, mu_depth=2, separate_thickness=separate_thickness)
    assert len(model.thicknesses) == int(separate_thickness)
    xy = torch.tensor(np.random.default_rng(0).uniform([0, 0], [80e3, 50e3], size=(30, 2)))
    sc = SCALES

    def physical(p: torch.Tensor) -> torch.Tensor:
        xhat = (p - torch.tensor([sc.x_c, sc.y_c])) / torch.tensor([sc.x_r, sc.y_r])
        out = model.physical(xhat)
        return torch.stack([out["u"], out["v"], out["h"], out["mu"]], dim=1)

    ref = autograd_derivatives(physical, xy)
    u, v, h, mu = model.jets(torch.as_tensor(sc.to_input(xy.numpy())), 2)
    L, U = sc.length, sc.speed
    for jet, r, scale in ((u, ref[0], U), (v, ref[1], U)):
        np.testing.assert_allclose(jet.value.detach(), r[0].detach() / scale, rtol=1e-10)
        np.testing.assert_allclose(jet.x.detach(), L * r[1].detach() / scale, rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(jet.y.detach(), L * r[2].detach() / scale, rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(jet.xy.detach(), L**2 * r[4].detach() / scale, rtol=1e-7, atol=1e-12)
        np.testing.assert_allclose(jet.yy.detach(), L**2 * r[5].detach() / scale, rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(h.value.detach(), ref[2][0].detach() / sc.h0, rtol=1e-10)
    np.testing.assert_allclose(h.x.detach(), L * ref[2][1].detach() / sc.h0, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(h.y.detach(), L * ref[2][2].detach() / sc.h0, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(mu.value.detach(), ref[3][0].detach() / sc.viscosity, rtol=1e-10)
    np.testing.assert_allclose(mu.y.detach(), L * ref[3][2].detach() / sc.viscosity, rtol=1e-8, atol=1e-12)


def test_viscosity_stays_positive_for_any_weights():
    torch.manual_seed(2)
    model = ViscosityPINN(SCALES, width=8, depth=2, mu_width=8, mu_depth=2)
    with torch.no_grad():
        for p in model.log_mus[0].parameters():
            p.mul_(50.0)  # wild weights: log μ anywhere in ±hundreds
    mu = model.physical(torch.randn(500, 2) * 3)["mu"]
    assert torch.all(mu >= 0) and torch.all(torch.isfinite(mu) | (mu == float("inf")))
    assert (mu > 0).float().mean() > 0.9


@pytest.mark.parametrize("separate_thickness", [False, True])
def test_from_config_rebuilds_the_same_architecture(separate_thickness):
    model = ViscosityPINN(SCALES, width=9, depth=2, mu_width=7, mu_depth=4, separate_thickness=separate_thickness)
    again = ViscosityPINN.from_config(model.config)
    again.load_state_dict(model.state_dict())
    x = torch.randn(10, 2)
    assert torch.equal(model(x), again(x))
    assert again.scales == SCALES


def test_subdomains_evaluate_each_point_with_its_own_networks(float64):
    torch.manual_seed(4)
    model = ViscosityPINN(SCALES, width=8, depth=2, mu_width=8, mu_depth=2, edges=(-0.3, 0.4), axis=0)
    x = torch.rand(60, 2, dtype=torch.float64) * 2 - 1
    part = model.part_of(x)
    assert set(part.tolist()) == {0, 1, 2}
    assert torch.equal(part, (x[:, 0] >= -0.3).long() + (x[:, 0] >= 0.4).long())
    out = model(x)
    u, v, h, mu = model.jets(x, 2)
    for k in range(3):
        sel = part == k
        direct = torch.cat([model.flows[k](x[sel]), model.log_mus[k](x[sel])], dim=1)
        torch.testing.assert_close(out[sel], direct)
        ku, kv, kh, kmu = model.part_jets(k, x[sel])
        torch.testing.assert_close(u.x[sel], ku.x)
        torch.testing.assert_close(mu.y[sel], kmu.y)
    # second derivatives come from the right network too
    ref = autograd_derivatives(lambda p: model.flows[1](p), x[part == 1])
    scale = SCALES.length**2 / SCALES.x_r**2 * SCALES.u_r / SCALES.speed
    torch.testing.assert_close(u.xx[part == 1], ref[0][3] * scale)


def test_interface_mismatch_is_zero_for_identical_networks_and_positive_otherwise(float64):
    torch.manual_seed(5)
    model = ViscosityPINN(SCALES, width=8, depth=2, mu_width=8, mu_depth=2, edges=(0.1,))
    line = torch.stack([torch.full((30,), 0.1, dtype=torch.float64), torch.linspace(-1, 1, 30)], dim=1)
    assert float(model.interface_mismatch(0, line).detach()) > 0
    model.flows[1].load_state_dict(model.flows[0].state_dict())
    model.log_mus[1].load_state_dict(model.log_mus[0].state_dict())
    assert float(model.interface_mismatch(0, line).detach()) == 0.0


def test_decomposed_config_round_trips_and_bad_edges_are_refused():
    model = ViscosityPINN(SCALES, width=6, depth=2, mu_width=6, mu_depth=2, edges=(0.0, 0.5), axis=1)
    again = ViscosityPINN.from_config(model.config)
    again.load_state_dict(model.state_dict())
    x = torch.randn(25, 2)
    assert torch.equal(model(x), again(x)) and again.edges == (0.0, 0.5) and again.axis == 1
    with pytest.raises(ValueError, match="ascend"):
        ViscosityPINN(SCALES, edges=(0.5, 0.0))


def test_strips_have_equal_point_counts_along_the_longer_side():
    rng = np.random.default_rng(0)
    xhat = rng.uniform(-1, 1, size=(3000, 2))
    edges, axis = strip_edges(xhat, 3, SCALES)  # x_r 40 km > y_r 25 km: strips across x
    assert axis == 0 and len(edges) == 2
    counts = np.bincount(np.searchsorted(edges, xhat[:, 0], side="right"))
    assert counts.min() > 0.95 * counts.max()
    assert strip_edges(xhat, 1, SCALES) == ((), 0)
