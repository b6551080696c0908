r"""A smooth, differentiable surface elevation s(x, y) fitted to scattered points.

The ``-aux`` models take surface elevation as an input. For a divergence-free
flux in *physical* space, ψ(x, y, s(x, y)) must be differentiated with total
derivatives, so s has to be a differentiable function of position, not a
value looked up at the observation points. This is a ridge regression on
random Fourier features plus a linear trend:

    s(x) = a₀ + aᵀx + Σ_k c_k cos(ω_kᵀx + β_k),
    ∇s(x) = a − Σ_k c_k sin(ω_kᵀx + β_k) ω_k,

with ω_k ~ N(0, I/ℓ²), β_k ~ U(0, 2π). Fitting is one linear solve.
"""

from __future__ import annotations

import math

import torch
from torch import nn

Tensor = torch.Tensor


class SmoothSurface(nn.Module):
    """Random-Fourier-feature ridge fit of a scalar field; value and gradient in closed form.

    Parameters
    ----------
    features : number of Fourier features K.
    length_scale : ℓ, in the input units (scaled coordinates).
    ridge : Tikhonov weight on the feature coefficients, relative to the data count.
    seed : seed for the random frequencies and phases.
    """

    def __init__(self, features: int = 800, length_scale: float = 0.05, ridge: float = 1e-4, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("omega", torch.randn(features, 2, generator=g, dtype=torch.float64) / length_scale)
        self.register_buffer("beta", torch.rand(features, generator=g, dtype=torch.float64) * 2 * math.pi)
        self.register_buffer("coef", torch.zeros(features, dtype=torch.float64))
        self.register_buffer("linear", torch.zeros(3, dtype=torch.float64))
        self.ridge = ridge

    def fit(self, xy: Tensor, s: Tensor) -> "SmoothSurface":
        """Least-squares fit to values ``s`` (N,) at points ``xy`` (N, 2); returns self."""
        xy = xy.detach().to(torch.float64).cpu()
        s = s.detach().to(torch.float64).cpu()
        phi = torch.cat([torch.ones(len(xy), 1, dtype=torch.float64), xy, self._features(xy)], dim=1)
        reg = torch.full((phi.shape[1],), self.ridge * len(xy), dtype=torch.float64)
        reg[:3] = 0.0  # the trend is not penalised
        solution = torch.linalg.solve(phi.T @ phi + torch.diag(reg), phi.T @ s)
        self.linear.copy_(solution[:3].to(self.linear.device))
        self.coef.copy_(solution[3:].to(self.coef.device))
        return self

    def _features(self, xy: Tensor) -> Tensor:
        return torch.cos(xy @ self.omega.T.to(xy.device) + self.beta.to(xy.device))

    def value_and_gradient(self, xy: Tensor) -> tuple[Tensor, Tensor]:
        """s (N,) and ∇s (N, 2) at ``xy`` (N, 2), in the dtype of ``xy``."""
        xy64 = xy.to(torch.float64)
        phase = xy64 @ self.omega.T + self.beta
        value = self.linear[0] + xy64 @ self.linear[1:] + torch.cos(phase) @ self.coef
        grad = self.linear[1:] - (torch.sin(phase) * self.coef) @ self.omega
        return value.to(xy.dtype), grad.to(xy.dtype)
