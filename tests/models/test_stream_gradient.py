"""The hand-written stream-function gradient against autograd's double backward."""

import pytest
import torch

from iceviz.models.activations import SMOOTH_ACTIVATIONS, torch_activation
from iceviz.models.stream_gradient import stream_gradient


def _net(n_in: int, width: int, depth: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    dims = [n_in] + [width] * depth
    weights = [torch.randn(b, a, generator=g, dtype=torch.float64) / a**0.5 for a, b in zip(dims[:-1], dims[1:])]
    biases = [torch.randn(b, generator=g, dtype=torch.float64) * 0.3 for b in dims[1:]]
    w_out = torch.randn(1, width, generator=g, dtype=torch.float64) / width**0.5
    for t in [*weights, *biases, w_out]:
        t.requires_grad_(True)
    return weights, biases, w_out


def _psi(x, weights, biases, w_out, activation):
    act = torch_activation(activation)
    h = x
    for w, b in zip(weights, biases):
        h = act(h @ w.T + b)
    return (h @ w_out.T).squeeze(1)


@pytest.mark.parametrize("activation", sorted(SMOOTH_ACTIVATIONS))
@pytest.mark.parametrize("n_in", [2, 3])
def test_gradient_and_its_derivatives_match_autograd(activation, n_in):
    weights, biases, w_out = _net(n_in, 16, 3)
    x = torch.rand(40, n_in, dtype=torch.float64, requires_grad=True)
    g = stream_gradient(x, weights, biases, w_out, activation)
    x_ref = x.detach().clone().requires_grad_(True)
    g_ref = torch.autograd.grad(_psi(x_ref, weights, biases, w_out, activation).sum(), x_ref, create_graph=True)[0]
    assert torch.allclose(g, g_ref, atol=1e-13, rtol=0)

    # Any loss of the gradient: weight and input gradients agree with double backward.
    w = torch.randn_like(g)
    params = [*weights, *biases, w_out]
    ours = torch.autograd.grad((g * w).sum() + (g**2).sum(), [x, *params])
    ref = torch.autograd.grad((g_ref * w).sum() + (g_ref**2).sum(), [x_ref, *params])
    for a, b in zip(ours, ref):
        assert torch.allclose(a, b, atol=1e-12, rtol=1e-10)


def test_gradcheck_first_order():
    weights, biases, w_out = _net(2, 5, 2, seed=1)
    x = torch.rand(7, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda x, *p: stream_gradient(x, p[0:2], p[2:4], p[4]), (x, *weights, *biases, w_out)
    )


def test_relu_is_refused():
    weights, biases, w_out = _net(2, 4, 1)
    with pytest.raises(ValueError, match="second derivative"):
        stream_gradient(torch.rand(3, 2, dtype=torch.float64), weights, biases, w_out, "relu")


def test_stacked_networks_give_each_networks_gradient_and_derivatives():
    """K networks stacked along a first axis (an ensemble) give exactly what each gives alone, derivatives too."""
    nets = [_net(2, 8, 2, seed=k) for k in range(3)]
    stacked = [torch.stack([net[0][i] for net in nets]).detach().requires_grad_(True) for i in range(2)]
    stacked_b = [torch.stack([net[1][i] for net in nets]).detach().requires_grad_(True) for i in range(2)]
    stacked_out = torch.stack([net[2] for net in nets]).detach().requires_grad_(True)
    x = torch.rand(3, 11, 2, dtype=torch.float64)
    g = stream_gradient(x, stacked, stacked_b, stacked_out, "silu")
    assert g.shape == (3, 11, 2)
    w = torch.randn_like(g)
    grads = torch.autograd.grad((g * w).sum() + (g**2).sum(), [*stacked, *stacked_b, stacked_out])
    for k, (weights, biases, w_out) in enumerate(nets):
        alone = stream_gradient(x[k], weights, biases, w_out, "silu")
        assert torch.allclose(g[k], alone, atol=1e-14, rtol=0)
        mine = torch.autograd.grad((alone * w[k]).sum() + (alone**2).sum(), [*weights, *biases, w_out])
        for got, want in zip(grads, mine):
            assert torch.allclose(got[k], want, atol=1e-12, rtol=1e-10)
    assert torch.autograd.gradcheck(
        lambda x, *p: stream_gradient(x, p[0:2], p[2:4], p[4]),
        (x[:, :4].clone().requires_grad_(True), *stacked, *stacked_b, stacked_out))
