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
    first = s + a * one_minus_s
    second = s * one_minus_s * (2.0 + z - 2.0 * a)
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

ACTIVATIONS: tuple[str, ...] = ("silu", "tanh", "softplus", "relu")
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
