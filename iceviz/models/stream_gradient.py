r"""The input gradient of a scalar MLP, with a hand-written backward pass.

A divergence-free network predicts q = (∂ψ/∂y, -∂ψ/∂x) from a scalar network
ψ. Autograd would compute ∇ψ with ``create_graph=True`` and then differentiate
that graph again for the weight gradients (double backward). Here both sweeps
are written out, which gives the same numbers with far fewer graph nodes.

For hidden layers l = 1..L with pre-activations z_l = h_{l-1} W_lᵀ + b_l,
h_l = σ(z_l), and ψ = h_L w_oᵀ + b_o, the input gradient is the reverse sweep

    g_L = w_o,   δ_l = g_l ⊙ σ'(z_l),   g_{l-1} = δ_l W_l,   ∇ψ = g_0.

Given the adjoint ḡ_0 = ∂loss/∂g_0, the backward pass first walks up the
sweep (l = 1..L)

    δ̄_l = ḡ_{l-1} W_lᵀ,   W̄_l += δ_lᵀ ḡ_{l-1},   ḡ_l = δ̄_l ⊙ σ'(z_l),
    z̄_l = δ̄_l ⊙ g_l ⊙ σ''(z_l),

collects w̄_o = Σ_n ḡ_L, then walks down the forward pass (l = L..1)

    z̄_l += h̄_l ⊙ σ'(z_l),   W̄_l += z̄_lᵀ h_{l-1},   b̄_l = Σ_n z̄_l,   h̄_{l-1} = z̄_l W_l,

with h̄_L = 0 (the loss sees ψ only through its gradient) and x̄ = h̄_0. The
backward pass is itself not differentiable (no third derivatives), which is
all training and divergence checks need.
"""

from __future__ import annotations

from typing import Sequence

import torch

from iceviz.models.activations import smooth_activation

Tensor = torch.Tensor


def affine(h: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """h Wᵀ + b: one network (h (N, in), W (out, in), b (out,)), or K stacked ones (h (K, N, in), W (K, out, in),
    b (K, out))."""
    if h.dim() == 2:
        return torch.addmm(b, h, w.t())
    return torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))


class _StreamGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, activation: str, *params: Tensor) -> Tensor:  # type: ignore[override]
        weights, biases, w_out = params[0:-1:2], params[1:-1:2], params[-1]
        act = smooth_activation(activation)
        hs, firsts, seconds = [x], [], []
        h = x
        for w, b in zip(weights, biases):
            a = act(affine(h, w, b))
            h = a.value
            hs.append(h)
            firsts.append(a.first)
            seconds.append(a.second)
        # Reverse sweep. The backward pass needs g_l only through g_l ⊙ σ''(z_l),
        # so that product is kept instead of g_l (and σ'' is overwritten in place).
        g = w_out.expand(*x.shape[:-1], w_out.shape[-1])
        deltas: list[Tensor] = []
        curvatures: list[Tensor] = []
        for w, first, second in zip(reversed(weights), reversed(firsts), reversed(seconds)):
            deltas.append(g * first)
            curvatures.append(second.mul_(g))
            g = deltas[-1] @ w
        deltas.reverse()  # deltas[l] = δ_{l+1}
        curvatures.reverse()  # curvatures[l] = g_{l+1} ⊙ σ''(z_{l+1})
        ctx.save_for_backward(*params)
        ctx.cache = (hs, firsts, curvatures, deltas)
        return g

    @staticmethod
    def backward(ctx, g_bar: Tensor):  # type: ignore[override]
        params = ctx.saved_tensors
        weights = params[0:-1:2]
        hs, firsts, curvatures, deltas = ctx.cache
        n_layers = len(weights)
        w_grads: list[Tensor] = []
        z_bars: list[Tensor] = []
        for l in range(n_layers):
            d_bar = g_bar @ weights[l].transpose(-1, -2)
            w_grads.append(deltas[l].transpose(-1, -2) @ g_bar)
            z_bars.append(d_bar * curvatures[l])
            g_bar = d_bar.mul_(firsts[l])
        w_out_grad = g_bar.sum(-2, keepdim=True)
        b_grads: list[Tensor] = []
        h_bar: Tensor | None = None
        for l in reversed(range(n_layers)):
            z_bar = z_bars[l] if h_bar is None else z_bars[l].addcmul_(h_bar, firsts[l])
            w_grads[l] = (w_grads[l].addmm_(z_bar.t(), hs[l]) if z_bar.dim() == 2 else
                          w_grads[l].baddbmm_(z_bar.transpose(1, 2), hs[l]))
            b_grads.append(z_bar.sum(-2))
            h_bar = z_bar @ weights[l] if (l > 0 or ctx.needs_input_grad[0]) else None
        b_grads.reverse()
        grads: list[Tensor | None] = [h_bar, None]
        for wg, bg in zip(w_grads, b_grads):
            grads += [wg, bg]
        grads.append(w_out_grad)
        return tuple(grads)


def stream_gradient(
    x: Tensor,
    weights: Sequence[Tensor],
    biases: Sequence[Tensor],
    w_out: Tensor,
    activation: str = "silu",
) -> Tensor:
    """∇ψ(x) of the MLP ψ(x) = σ(...σ(x W_1ᵀ + b_1)...) w_outᵀ, shape (N, n_in).

    Differentiable with respect to ``x`` and every weight (first order).
    ``w_out`` has shape (1, width); the output bias does not enter ∇ψ.
    K networks stacked (an ensemble) take x (K, N, n_in), weights (K, out, in),
    biases (K, out) and w_out (K, 1, width), and give (K, N, n_in).
    """
    params: list[Tensor] = []
    for w, b in zip(weights, biases):
        params += [w, b]
    params.append(w_out)
    return _StreamGradient.apply(x, activation, *params)
