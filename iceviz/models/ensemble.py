r"""Deep ensembles of flux networks, trained together as one batched network.

K members with the same architecture and different initialisations are stored as stacked weights (a first
axis of length K), so that one pass of batched matrix products (``torch.baddbmm``) evaluates all members and
one optimiser step updates them all: K members cost far less than K separate runs (see BENCHMARKS.md).

The members' spread is the ensemble's uncertainty. The mean of dfNN members is itself divergence-free: each
member's flux is the rotated gradient of its stream function ψ_k, so their mean is the rotated gradient of the
mean stream function (1/K) Σ ψ_k.

An ensemble is made from K single networks (:func:`stack_members`): member k computes exactly what the k-th
network computes alone, so everything known about one network (its initialisation, its input handling, its
surface input) holds for each member.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from iceviz.models.activations import FIRST_DERIVATIVES, torch_activation
from iceviz.models.flux import (DirectFlux, DivergenceFreeFlux, FluxNet, SurfaceValues, flux_and_tangent_divergence,
                                make_flux_model)
from iceviz.models.stream_gradient import affine, stream_gradient

Tensor = torch.Tensor


def _stacked(tensors: Sequence[Tensor]) -> nn.Parameter:
    return nn.Parameter(torch.stack([t.detach() for t in tensors]).clone())


class FluxEnsemble(FluxNet):
    """K flux networks evaluated together: ``members(xy)`` gives every member's flux (K, N, 2), ``forward`` the
    ensemble mean (N, 2), :meth:`mean_and_std` the mean and the members' standard deviation. Made from the
    networks themselves: the input handling (centre, extent, amplitude, surface) is the first's, every hidden
    layer's weights and biases are stacked."""

    def __init__(self, members: Sequence[FluxNet]):
        first = members[0]
        super().__init__(center=tuple(first.center.tolist()), half=float(first.half_extent),
                         amplitude=float(first.amplitude), surface=first.surface,
                         surface_mean=float(first.surface_mean), surface_std=float(first.surface_std))
        self.size = len(members)
        self.activation = first.activation
        hidden = range(len(first.hidden))
        self.weights = nn.ParameterList(_stacked([m.hidden[i].weight for m in members]) for i in hidden)
        self.biases = nn.ParameterList(_stacked([m.hidden[i].bias for m in members]) for i in hidden)

    def members(self, xy: Tensor, surface: SurfaceValues | None = None) -> Tensor:
        raise NotImplementedError

    def forward(self, xy: Tensor, surface: SurfaceValues | None = None) -> Tensor:
        return self.members(xy, surface).mean(0)

    def mean_and_std(self, xy: Tensor) -> tuple[Tensor, Tensor]:
        """The ensemble mean (N, 2) and the members' standard deviation (N, 2, with K - 1 in the denominator)."""
        q = self.members(xy)
        return q.mean(0), q.std(0, correction=1)

    def _stacked_inputs(self, xy: Tensor, surface: SurfaceValues | None) -> tuple[Tensor, Tensor | None]:
        inputs, grad_s = self._inputs(xy, surface)
        return inputs.expand(self.size, *inputs.shape), grad_s


class DivergenceFreeEnsemble(FluxEnsemble):
    """K dfNN members: q_k = A · rot ψ_k, each exactly divergence-free, and so is their mean."""

    def __init__(self, members: Sequence[DivergenceFreeFlux]):
        super().__init__(members)
        self.aux_derivative = members[0].aux_derivative
        self.w_out = _stacked([m.w_out for m in members])

    def members(self, xy: Tensor, surface: SurfaceValues | None = None) -> Tensor:
        inputs, grad_s = self._stacked_inputs(xy, surface)
        g = stream_gradient(inputs, list(self.weights), list(self.biases), self.w_out, self.activation)
        g_xy = g[..., :2] / self.half_extent
        if grad_s is not None and self.aux_derivative == "total":
            g_xy = g_xy + g[..., 2:3] * grad_s
        g_xy = g_xy * self.amplitude
        return torch.stack([g_xy[..., 1], -g_xy[..., 0]], dim=-1)


class DirectEnsemble(FluxEnsemble):
    """K direct members (NN, PINN): q_k = A · MLP_k; the divergence of each by forward-mode tangents, as
    :class:`~iceviz.models.flux.DirectFlux` computes it."""

    def __init__(self, members: Sequence[DirectFlux]):
        super().__init__(members)
        self._act = FIRST_DERIVATIVES[self.activation]
        self._act_module = torch_activation(self.activation)
        self.out_weight = _stacked([m.out.weight for m in members])
        self.out_bias = _stacked([m.out.bias for m in members])

    def members(self, xy: Tensor, surface: SurfaceValues | None = None) -> Tensor:
        h, _ = self._stacked_inputs(xy, surface)
        for w, b in zip(self.weights, self.biases):
            h = self._act_module(affine(h, w, b))
        return affine(h, self.out_weight, self.out_bias) * self.amplitude

    def members_and_divergence(self, xy: Tensor, surface: SurfaceValues | None = None) -> tuple[Tensor, Tensor]:
        """Every member's q (K, N, 2) and ∇·q (K, N), in one differentiable pass."""
        inputs, grad_s = self._stacked_inputs(xy, surface)
        return flux_and_tangent_divergence(inputs, grad_s, list(self.weights), list(self.biases), self.out_weight,
                                           self.out_bias, self._act, self.half_extent, self.amplitude)


def stack_members(members: Sequence[FluxNet]) -> FluxEnsemble:
    """One batched ensemble of ``members`` (networks of one kind, architecture and input handling)."""
    if not members:
        raise ValueError("an ensemble needs at least one member")
    kinds = {type(m) for m in members}
    if len(kinds) != 1:
        raise ValueError(f"an ensemble's members must be of one kind, got {sorted(k.__name__ for k in kinds)}")
    kind = kinds.pop()
    if kind is DivergenceFreeFlux:
        return DivergenceFreeEnsemble(members)  # type: ignore[arg-type]
    if kind is DirectFlux:
        return DirectEnsemble(members)  # type: ignore[arg-type]
    raise ValueError(f"no ensemble of {kind.__name__} networks")


def make_model(config: dict) -> FluxNet:
    """A flux network from its config (:func:`~iceviz.models.flux.make_flux_model`), or, with ``members`` K > 1
    in it, an ensemble of K such networks, each drawn in turn from torch's random state."""
    members = int(config.get("members", 1))
    if members == 1:
        return make_flux_model(config)
    return stack_members([make_flux_model(config) for _ in range(members)])
