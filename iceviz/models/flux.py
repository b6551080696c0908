r"""Flux networks: divergence-free by construction (dfNN) or direct (PINN, NN).

All networks take positions in the problem's *scaled* units and return flux
in scaled units. Inside, positions are centred and divided by one half-extent
``half`` (isotropic, so rotated gradients stay divergence-free), and the output
is multiplied by an amplitude fixed from the data, so the optimiser starts on
the right scale instead of spending epochs on a plateau.

dfNN: q = A · (∂ψ/∂y, −∂ψ/∂x) for a scalar network ψ. With surface elevation
as an extra input (``-aux``), ψ̃(x, y) = ψ(x, y, s(x, y)) with s a smooth
fitted surface, and the total derivative ∂ψ̃/∂x = ψ_x + ψ_s s_x keeps the
flux divergence-free in physical space (``aux_derivative="total"``). The
reference method holds s fixed (``"partial"``), which is divergence-free only
in the network's input space.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from iceviz.models.activations import FIRST_DERIVATIVES, torch_activation
from iceviz.models.stream_gradient import affine, stream_gradient
from iceviz.models.surface import SmoothSurface

Tensor = torch.Tensor
SurfaceValues = tuple[Tensor, Tensor]
"""s (N,) and ∇s (N, 2) of the fitted surface at some points, scaled units."""

AUX_DERIVATIVES = ("total", "partial")


class FluxNet(nn.Module):
    """Common input handling: centring, isotropic scaling, optional surface input.

    Parameters
    ----------
    center : (2,) centre of the domain, scaled units.
    half : half-extent of the domain, scaled units (one number: isotropic).
    amplitude : output scale, scaled flux units.
    surface : fitted surface elevation in scaled units, for ``-aux`` models.
    surface_mean, surface_std : standardisation of s before it enters the network.
    """

    def __init__(
        self,
        center: tuple[float, float],
        half: float,
        amplitude: float,
        surface: SmoothSurface | None = None,
        surface_mean: float = 0.0,
        surface_std: float = 1.0,
    ):
        super().__init__()
        self.register_buffer("center", torch.tensor(center, dtype=torch.float32))
        self.register_buffer("half_extent", torch.tensor(float(half)))
        self.register_buffer("amplitude", torch.tensor(float(amplitude)))
        self.register_buffer("surface_mean", torch.tensor(float(surface_mean)))
        self.register_buffer("surface_std", torch.tensor(float(surface_std)))
        self.surface = surface

    def _start_without_surface(self, first: nn.Linear) -> None:
        """Zero the first layer's weights on ŝ: the network starts as its surface-free variant
        and takes from the surface only what the data ask for."""
        if self.uses_surface:
            with torch.no_grad():
                first.weight[:, 2].zero_()

    @property
    def uses_surface(self) -> bool:
        return self.surface is not None

    def _inputs(self, xy: Tensor, surface: SurfaceValues | None = None) -> tuple[Tensor, Tensor | None]:
        """Network inputs (N, 2 or 3) and ∇ŝ (N, 2) in scaled-coordinate units (None without aux).

        ``surface`` may carry s and ∇s already evaluated at ``xy`` (the trainer caches them for
        its fixed training points); they are then treated as constants of ``xy``.
        """
        x_hat = (xy - self.center) / self.half_extent
        if self.surface is None:
            return x_hat, None
        s, grad_s = surface if surface is not None else self.surface.value_and_gradient(xy)
        s_hat = ((s - self.surface_mean) / self.surface_std).unsqueeze(1)
        return torch.cat([x_hat, s_hat], dim=1), grad_s / self.surface_std

    def divergence(self, xy: Tensor, create_graph: bool = False) -> Tensor:
        """∂qx/∂x + ∂qy/∂y (N,) by automatic differentiation, in scaled units (total derivative)."""
        with torch.enable_grad():
            xy = xy.detach().requires_grad_(True)
            q = self(xy)
            dqx = torch.autograd.grad(q[:, 0].sum(), xy, retain_graph=True, create_graph=create_graph)[0][:, 0]
            dqy = torch.autograd.grad(q[:, 1].sum(), xy, create_graph=create_graph)[0][:, 1]
            div = dqx + dqy
        return div if create_graph else div.detach()


class DivergenceFreeFlux(FluxNet):
    """q = A · rot ψ with ψ an MLP; exactly divergence-free (up to rounding)."""

    def __init__(
        self,
        width: int,
        depth: int,
        activation: str,
        aux_derivative: str = "total",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if aux_derivative not in AUX_DERIVATIVES:
            raise ValueError(f"aux_derivative must be one of {AUX_DERIVATIVES}, got {aux_derivative!r}")
        n_in = 3 if self.uses_surface else 2
        dims = [n_in] + [width] * depth
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.w_out = nn.Parameter(torch.randn(1, width) / width**0.5)
        self._start_without_surface(self.hidden[0])
        self.activation = activation
        self.aux_derivative = aux_derivative

    def psi_gradient(self, xy: Tensor, surface: SurfaceValues | None = None) -> Tensor:
        """(∂ψ̃/∂x, ∂ψ̃/∂y) (N, 2) in scaled units, with the amplitude applied."""
        inputs, grad_s = self._inputs(xy, surface)
        g = stream_gradient(
            inputs,
            [layer.weight for layer in self.hidden],
            [layer.bias for layer in self.hidden],
            self.w_out,
            self.activation,
        )
        g_xy = g[:, :2] / self.half_extent
        if grad_s is not None and self.aux_derivative == "total":
            g_xy = g_xy + g[:, 2:3] * grad_s
        return g_xy * self.amplitude

    def forward(self, xy: Tensor, surface: SurfaceValues | None = None) -> Tensor:
        g = self.psi_gradient(xy, surface)
        return torch.stack([g[:, 1], -g[:, 0]], dim=1)

    def stream_function(self, xy: Tensor) -> Tensor:
        """ψ̃ (N,) in scaled flux × length units (defined up to a constant)."""
        inputs, _ = self._inputs(xy)
        h = inputs
        act = torch_activation(self.activation)
        for layer in self.hidden:
            h = act(layer(h))
        return (h @ self.w_out.T).squeeze(1) * self.amplitude


class DirectFlux(FluxNet):
    """q = A · MLP(x̂, ŷ[, ŝ]): no constraint (NN) or a soft one in the loss (PINN).

    The divergence comes from forward-mode derivatives: the tangents ∂/∂x and
    ∂/∂y of the inputs (including ∂ŝ/∂x, ∂ŝ/∂y for ``-aux``) travel through
    each layer beside the values, so one pass gives q and ∇·q, and the loss
    needs a single backward pass instead of a double one.
    """

    def __init__(self, width: int, depth: int, activation: str, **kwargs):
        super().__init__(**kwargs)
        n_in = 3 if self.uses_surface else 2
        dims = [n_in] + [width] * depth
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.out = nn.Linear(width, 2)
        self._start_without_surface(self.hidden[0])
        self.activation = activation
        self._act = FIRST_DERIVATIVES[activation]
        self._act_module = torch_activation(activation)

    def forward(self, xy: Tensor, surface: SurfaceValues | None = None) -> Tensor:
        h, _ = self._inputs(xy, surface)
        for layer in self.hidden:
            h = self._act_module(layer(h))
        return self.out(h) * self.amplitude

    def flux_and_divergence(self, xy: Tensor, surface: SurfaceValues | None = None) -> tuple[Tensor, Tensor]:
        """q (N, 2) and ∂qx/∂x + ∂qy/∂y (N,), both in scaled units, in one differentiable pass."""
        inputs, grad_s = self._inputs(xy, surface)
        return flux_and_tangent_divergence(inputs, grad_s, [layer.weight for layer in self.hidden],
                                           [layer.bias for layer in self.hidden], self.out.weight, self.out.bias,
                                           self._act, self.half_extent, self.amplitude)

    def divergence(self, xy: Tensor, create_graph: bool = False) -> Tensor:
        with torch.set_grad_enabled(create_graph and torch.is_grad_enabled()):
            return self.flux_and_divergence(xy)[1]


def flux_and_tangent_divergence(inputs: Tensor, grad_s: Tensor | None, weights: Sequence[Tensor],
                                biases: Sequence[Tensor], out_weight: Tensor, out_bias: Tensor,
                                act: Callable[[Tensor], tuple[Tensor, Tensor]], half: Tensor,
                                amplitude: Tensor) -> tuple[Tensor, Tensor]:
    """q = A · MLP(inputs) and its divergence by forward-mode tangents, for one network (inputs (N, n_in),
    weights (out, in): q (N, 2), ∇·q (N,)) or K stacked ones (inputs (K, N, n_in), weights (K, out, in):
    (K, N, 2), (K, N)).

    The tangents ∂/∂x and ∂/∂y of the inputs (1 / ``half`` on x̂ and ŷ, and ∇ŝ (N, 2) when ``grad_s`` is given)
    travel through each layer beside the values: one pass gives q and ∇·q, and a loss on them needs a single
    backward pass."""
    lead = inputs.shape[:-1]
    zeros = torch.zeros(*lead, 1, dtype=inputs.dtype, device=inputs.device)
    ones = zeros + 1.0 / half
    tx, ty = torch.cat([ones, zeros], -1), torch.cat([zeros, ones], -1)
    if grad_s is not None:
        tx = torch.cat([tx, grad_s[:, 0:1].expand(*lead, 1)], -1)
        ty = torch.cat([ty, grad_s[:, 1:2].expand(*lead, 1)], -1)
    h = inputs
    for w, b in zip(weights, biases):
        value, first = act(affine(h, w, b))
        wt = w.transpose(-1, -2)
        tx, ty = first * (tx @ wt), first * (ty @ wt)
        h = value
    q = affine(h, out_weight, out_bias) * amplitude
    div = ((tx @ out_weight[..., 0, :].unsqueeze(-1)) + (ty @ out_weight[..., 1, :].unsqueeze(-1))).squeeze(-1)
    return q, div * amplitude


def make_flux_model(config: dict) -> FluxNet:
    """Build a flux network from a JSON-able config (what checkpoints store).

    Keys: ``constraint`` (``hard`` for dfNN, else direct), ``width``, ``depth``,
    ``activation``, ``aux_derivative``, ``center``, ``half``, ``amplitude`` and,
    for ``-aux`` models, ``surface`` = {``features``, ``length_scale``, ``ridge``,
    ``seed``}, ``surface_mean``, ``surface_std``. A surface built here is
    unfitted: fit it, or load a state dict that holds it.
    """
    surface_cfg = config.get("surface")
    surface = SmoothSurface(**surface_cfg) if surface_cfg else None
    common = dict(
        center=tuple(config["center"]),
        half=config["half"],
        amplitude=config["amplitude"],
        surface=surface,
        surface_mean=config.get("surface_mean", 0.0),
        surface_std=config.get("surface_std", 1.0),
    )
    if config["constraint"] == "hard":
        return DivergenceFreeFlux(
            config["width"], config["depth"], config["activation"], config.get("aux_derivative", "total"), **common
        )
    return DirectFlux(config["width"], config["depth"], config["activation"], **common)
