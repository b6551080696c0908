"""Flux networks: exact divergence-free construction, and the +aux total derivative."""

import numpy as np
import pytest
import torch

from iceviz.models.flux import DirectFlux, DivergenceFreeFlux, make_flux_model
from iceviz.models.surface import SmoothSurface

COMMON = dict(center=(0.5, 0.5), half=0.5, amplitude=2.0)


def _fitted_surface() -> SmoothSurface:
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(400, 2, generator=g, dtype=torch.float64)
    s = 1.0 + 0.8 * torch.sin(3 * xy[:, 0]) * torch.cos(2 * xy[:, 1]) + 0.5 * xy[:, 1]
    return SmoothSurface(features=200, length_scale=0.3, seed=1).fit(xy, s)


def _divergence(model, n=256, seed=0):
    model = model.double()
    x = torch.rand(n, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return model.divergence(x)


def test_dfnn_is_exactly_divergence_free_float64():
    torch.manual_seed(0)
    model = DivergenceFreeFlux(32, 3, "silu", **COMMON)
    div = _divergence(model)
    q = model(torch.rand(256, 2, dtype=torch.float64))
    assert q.abs().mean() > 0.01  # a real, non-trivial field
    assert div.abs().max() < 1e-12


def test_dfnn_aux_total_derivative_is_divergence_free_in_physical_space():
    torch.manual_seed(0)
    surface = _fitted_surface()
    total = DivergenceFreeFlux(32, 3, "silu", aux_derivative="total", surface=surface, surface_mean=1.0,
                               surface_std=0.5, **COMMON)
    partial = DivergenceFreeFlux(32, 3, "silu", aux_derivative="partial", surface=surface, surface_mean=1.0,
                                 surface_std=0.5, **COMMON)
    with torch.no_grad():  # a network that has learned to use the surface (it starts without it)
        total.hidden[0].weight[:, 2].normal_()
    partial.load_state_dict(total.state_dict())
    div_total = _divergence(total)
    div_partial = _divergence(partial)
    assert div_total.abs().max() < 1e-11
    # The reference's fixed-s derivative leaves a real divergence in physical space.
    assert div_partial.abs().mean() > 1e3 * max(div_total.abs().mean().item(), 1e-15)


@pytest.mark.parametrize("cls", [DivergenceFreeFlux, DirectFlux])
def test_aux_models_start_as_their_surface_free_variant_and_can_learn_the_surface(cls):
    """The first layer's weights on ŝ start at zero: the initial field does not depend on the surface, and
    the gradient reaches those weights, so training adds the surface only as far as the data ask for it."""
    torch.manual_seed(0)
    surface = _fitted_surface()
    model = cls(16, 2, "silu", surface=surface, surface_mean=1.0, surface_std=0.5, **COMMON).double()
    assert torch.all(model.hidden[0].weight[:, 2] == 0)
    xy = torch.rand(64, 2, dtype=torch.float64)
    s, grad = surface.value_and_gradient(xy)
    q = model(xy, (s, grad))
    shifted = model(xy, (s + 5.0, grad))  # another surface height: the same field
    torch.testing.assert_close(q, shifted)
    q.square().sum().backward()
    assert model.hidden[0].weight.grad[:, 2].abs().max() > 0


def test_surface_fit_and_gradient():
    surface = _fitted_surface()
    x = torch.rand(100, 2, dtype=torch.float64, requires_grad=True)
    s, grad = surface.value_and_gradient(x)
    truth = 1.0 + 0.8 * torch.sin(3 * x[:, 0]) * torch.cos(2 * x[:, 1]) + 0.5 * x[:, 1]
    assert (s - truth).abs().max() < 0.02
    auto = torch.autograd.grad(s.sum(), x)[0]
    assert torch.allclose(grad, auto, atol=1e-10)


def test_direct_flux_is_not_divergence_free():
    torch.manual_seed(0)
    div = _divergence(DirectFlux(32, 3, "silu", **COMMON))
    assert div.abs().mean() > 1e-3


def test_make_flux_model_round_trip():
    torch.manual_seed(0)
    config = dict(constraint="hard", width=8, depth=2, activation="tanh", center=[0.5, 0.5], half=0.5, amplitude=1.0)
    a = make_flux_model(config)
    b = make_flux_model(config)
    b.load_state_dict(a.state_dict())
    x = torch.rand(10, 2)
    assert torch.equal(a(x), b(x))
    assert isinstance(a, DivergenceFreeFlux)
    assert isinstance(make_flux_model({**config, "constraint": "soft"}), DirectFlux)


def test_stream_function_is_consistent_with_flux():
    torch.manual_seed(0)
    model = DivergenceFreeFlux(16, 2, "silu", **COMMON).double()
    x = torch.rand(50, 2, dtype=torch.float64, requires_grad=True)
    psi = model.stream_function(x)
    grad = torch.autograd.grad(psi.sum(), x)[0]
    q = model(x.detach())
    np.testing.assert_allclose(q[:, 0].detach(), grad[:, 1], atol=1e-10)
    np.testing.assert_allclose(q[:, 1].detach(), -grad[:, 0], atol=1e-10)


def test_unknown_aux_derivative():
    with pytest.raises(ValueError, match="aux_derivative"):
        DivergenceFreeFlux(8, 1, "silu", aux_derivative="sideways", **COMMON)


@pytest.mark.parametrize("activation", ["silu", "tanh", "softplus", "relu"])
@pytest.mark.parametrize("aux", [False, True])
def test_forward_mode_divergence_matches_autograd(activation, aux):
    torch.manual_seed(0)
    extra = dict(surface=_fitted_surface(), surface_mean=1.0, surface_std=0.5) if aux else {}
    model = DirectFlux(16, 3, activation, **COMMON, **extra).double()
    x = torch.rand(64, 2, dtype=torch.float64, requires_grad=True)
    q, div = model.flux_and_divergence(x)
    ref = sum(torch.autograd.grad(model(x)[:, i].sum(), x)[0][:, i] for i in range(2))
    assert torch.allclose(q, model(x))
    assert torch.allclose(div, ref, atol=1e-12)
    assert div.abs().mean() > 1e-3
