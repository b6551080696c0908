"""Activation functions with their first and second derivatives.

The stream-function gradient (:mod:`iceviz.models.stream_gradient`) propagates
derivatives by hand, so it needs sigma, sigma' and sigma'' as plain tensor
functions. ``torch_activation`` gives the matching ``nn.Module`` for networks
that rely on autograd.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
from torch import nn

Tensor = torch.Tensor


class Derivatives(NamedTuple):
    """Value, first and second derivative of an activation at z."""

    value: Tensor
    first: Tensor
    second: Tensor


def _silu(z: Tensor) -> Derivatives:
    # a = z s, a' = s + a (1 - s), a'' = s (1 - s) (2 + z - 2 a), s = sigmoid(z)
    s = torch.sigmoid(z)
    a = z * s
    one_minus_s = 1.0 - s
    first = torch.addcmul(s, a, one_minus_s)
    second = s.mul_(one_minus_s).mul_(z.add(a, alpha=-2.0).add_(2.0))  # reuses s's storage
    return Derivatives(a, first, second)


def _tanh(z: Tensor) -> Derivatives:
    t = torch.tanh(z)
    first = 1.0 - t * t
    return Derivatives(t, first, -2.0 * t * first)


def _softplus(z: Tensor) -> Derivatives:
    s = torch.sigmoid(z)
    return Derivatives(nn.functional.softplus(z), s, s * (1.0 - s))


SMOOTH_ACTIVATIONS: dict[str, Callable[[Tensor], Derivatives]] = {
    "silu": _silu,
    "tanh": _tanh,
    "softplus": _softplus,
}
"""Twice-differentiable activations usable in a stream-function network."""

def _silu_first(z: Tensor) -> tuple[Tensor, Tensor]:
    s = torch.sigmoid(z)
    a = z * s
    return a, torch.addcmul(s, a, 1.0 - s)


def _tanh_first(z: Tensor) -> tuple[Tensor, Tensor]:
    t = torch.tanh(z)
    return t, 1.0 - t * t


def _softplus_first(z: Tensor) -> tuple[Tensor, Tensor]:
    return nn.functional.softplus(z), torch.sigmoid(z)


def _relu_first(z: Tensor) -> tuple[Tensor, Tensor]:
    return torch.relu(z), (z > 0).to(z.dtype)


FIRST_DERIVATIVES: dict[str, Callable[[Tensor], tuple[Tensor, Tensor]]] = {
    "silu": _silu_first,
    "tanh": _tanh_first,
    "softplus": _softplus_first,
    "relu": _relu_first,
}
"""Value and first derivative, for propagating input tangents forward through a network."""

ACTIVATIONS: tuple[str, ...] = tuple(FIRST_DERIVATIVES)
"""Every activation a network in iceviz may use (relu only where no second derivative is needed)."""


def smooth_activation(name: str) -> Callable[[Tensor], Derivatives]:
    try:
        return SMOOTH_ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"activation {name!r} has no second derivative; a stream-function network needs one of "
            f"{sorted(SMOOTH_ACTIVATIONS)}"
        ) from None


def torch_activation(name: str) -> nn.Module:
    modules = {"silu": nn.SiLU, "tanh": nn.Tanh, "softplus": nn.Softplus, "relu": nn.ReLU}
    if name not in modules:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(modules)}")
    return modules[name]()
