"""The viscosity PINN: networks for (u, v, h) and log μ with forward-propagated derivatives.

Two tanh MLPs on normalised coordinates (x̂, ŷ), as DIFFICE_jax: one gives
(û, v̂, ĥ), the other n with μ = μ₀ exp(n), positive by construction. The SSA
residual needs the first and second derivatives of u, v and the first of h
and μ with respect to the inputs. :class:`JetMLP` computes them in the forward
pass, carrying (value, ∂x, ∂y, ∂xx, ∂xy, ∂yy) of every hidden unit through each
layer as one stacked matrix product, instead of nesting reverse-mode autograd;
the loss is then differentiated once, by ordinary backpropagation. On one CPU
thread that makes a loss-and-gradient evaluation 1.6x cheaper than nested
autograd in PyTorch, and a whole training step (0.03 s at our default batches)
several times cheaper than the JAX reference's ~0.22 s (BENCHMARKS.md).

Scales (:class:`ShelfScales`, the reference's non-dimensionalisation)::

    x̂ = (x − x_c) / x_r,  ŷ = (y − y_c) / y_r        (x_r, y_r: half-extents)
    û = (u − ū) / u_r,  u_r = 2 std(u);  likewise v
    ĥ = h / h₀,  h₀ = mean(h)
    U = max(u_r, v_r),  L = max(x_r, y_r),  μ₀ = ρ g' h₀ L / U

In the dimensionless variables ξ = x / L, ũ = u / U, h̃ = h / h₀, μ̃ = μ / μ₀
the SSA equations and the front condition of :mod:`iceviz.physics.ssa` have
all coefficients one (``buoyancy=1``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from iceviz.physics.ssa import BUOYANCY, Jet
from iceviz.physics.units import SECONDS_PER_YEAR


class JetMLP(nn.Module):
    """A tanh MLP R² -> R^k that can also return its input derivatives up to second order.

    Parameters
    ----------
    outputs : k, the number of outputs.
    width, depth : hidden units per layer and hidden layers.
    """

    def __init__(self, outputs: int, width: int, depth: int):
        super().__init__()
        sizes = [2] + [width] * depth + [outputs]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        for layer in self.layers:
            nn.init.xavier_normal_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Values (N, k) at inputs (N, 2)."""
        for layer in self.layers[:-1]:
            x = torch.tanh(layer(x))
        return self.layers[-1](x)

    def jet(self, x: torch.Tensor, order: int = 2) -> torch.Tensor:
        """Values and derivatives, stacked: (m, N, k) with m = 3 (order 1: value, ∂x, ∂y) or 6 (order 2: + ∂xx, ∂xy, ∂yy)."""
        if order not in (1, 2):
            raise ValueError(f"order must be 1 or 2, got {order}")
        first, n = self.layers[0], len(x)
        a = first(x)
        w = first.weight  # (width, 2): ∂a/∂x and ∂a/∂y are the weight columns, the same at every point
        ax, ay = w[:, 0].expand_as(a), w[:, 1].expand_as(a)
        z = self._tanh_jet(a, ax, ay, None, None, None, order)
        for layer in self.layers[1:]:
            stacked = (z.reshape(-1, z.shape[-1]) @ layer.weight.T).reshape(len(z), n, -1)
            # unbind, not indexing: the backward of an index zero-fills the whole stack, once per index
            value, *derivatives = stacked.unbind(0)
            value = value + layer.bias
            if layer is self.layers[-1]:
                return torch.stack([value, *derivatives])
            z = self._tanh_jet(value, *derivatives, *([None] * (6 - len(z))), order=order)
        raise AssertionError("unreachable")

    @staticmethod
    def _tanh_jet(a: torch.Tensor, ax: torch.Tensor, ay: torch.Tensor, axx: torch.Tensor | None,
                  axy: torch.Tensor | None, ayy: torch.Tensor | None, order: int) -> torch.Tensor:
        t = torch.tanh(a)
        s = 1 - t * t  # tanh'
        parts = [t, s * ax, s * ay]
        if order == 2:
            s2 = -2 * t * s  # tanh''
            second = [s2 * ax * ax, s2 * ax * ay, s2 * ay * ay]
            if axx is not None:
                second = [second[0] + s * axx, second[1] + s * axy, second[2] + s * ayy]
            parts += second
        return torch.stack(parts)


@dataclass(frozen=True)
class ShelfScales:
    """The non-dimensionalisation of one shelf (see the module docstring). Lengths in m, speeds in m/a."""

    x_c: float
    y_c: float
    x_r: float
    y_r: float
    u_mean: float
    u_r: float
    v_mean: float
    v_r: float
    h0: float

    @classmethod
    def from_data(cls, xy: np.ndarray, uv: np.ndarray, h: np.ndarray) -> "ShelfScales":
        """Scales from velocity points (xy (N, 2) [m], uv (N, 2) [m/a]) and thicknesses h [m]."""
        lo, hi = xy.min(axis=0), xy.max(axis=0)
        std = uv.std(axis=0)
        return cls(x_c=float((lo[0] + hi[0]) / 2), y_c=float((lo[1] + hi[1]) / 2),
                   x_r=float((hi[0] - lo[0]) / 2) or 1.0, y_r=float((hi[1] - lo[1]) / 2) or 1.0,
                   u_mean=float(uv[:, 0].mean()), u_r=float(2 * std[0]) or 1.0,
                   v_mean=float(uv[:, 1].mean()), v_r=float(2 * std[1]) or 1.0, h0=float(h.mean()))

    @property
    def speed(self) -> float:
        """U [m/a]."""
        return max(self.u_r, self.v_r)

    @property
    def length(self) -> float:
        """L [m]."""
        return max(self.x_r, self.y_r)

    @property
    def viscosity(self) -> float:
        """μ₀ = ρ g' h₀ L / U [Pa·s]."""
        return BUOYANCY * self.h0 * self.length / (self.speed / SECONDS_PER_YEAR)

    def to_input(self, xy: np.ndarray) -> np.ndarray:
        """(x̂, ŷ) of positions (N, 2) in metres."""
        return (np.asarray(xy, dtype=np.float64) - [self.x_c, self.y_c]) / [self.x_r, self.y_r]

    def normalise(self, uv: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(û, v̂) (N, 2) and ĥ (N,) from m/a and m."""
        return (uv - [self.u_mean, self.v_mean]) / [self.u_r, self.v_r], h / self.h0

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


class ViscosityPINN(nn.Module):
    """(û, v̂, ĥ) and log μ̃ networks for one shelf, with the dimensionless SSA fields.

    With ``edges`` the shelf is split (XPINN-style domain decomposition) into
    strips along the normalised coordinate ``axis``: sub-domain k holds the
    points with ``edges[k-1] <= x̂[axis] < edges[k]`` and has its own pair of
    networks; every method evaluates each point with its own sub-domain's
    networks. The sub-domains are tied together by interface terms in the loss
    (see :meth:`interface_mismatch`).

    Parameters
    ----------
    scales : the shelf's non-dimensionalisation.
    width, depth : of the (u, v, h) networks.
    mu_width, mu_depth : of the viscosity networks.
    edges : ascending sub-domain boundaries in normalised coordinates (empty: one domain).
    axis : 0 to split along x̂, 1 along ŷ.
    separate_thickness : ĥ from a network of its own (width x depth, like the flow's), the flow network giving
        (û, v̂) only; by default one network gives all three.
    """

    def __init__(self, scales: ShelfScales, width: int = 30, depth: int = 6, mu_width: int = 30, mu_depth: int = 6,
                 edges: Sequence[float] = (), axis: int = 0, separate_thickness: bool = False):
        super().__init__()
        self.scales = scales
        self.edges, self.axis = tuple(float(e) for e in edges), int(axis)
        if list(self.edges) != sorted(set(self.edges)) or self.axis not in (0, 1):
            raise ValueError(f"edges must ascend strictly and axis be 0 or 1, got {self.edges}, {axis}")
        parts = len(self.edges) + 1
        self.separate_thickness = bool(separate_thickness)
        self.flows = nn.ModuleList(JetMLP(2 if separate_thickness else 3, width, depth) for _ in range(parts))
        self.log_mus = nn.ModuleList(JetMLP(1, mu_width, mu_depth) for _ in range(parts))
        self.thicknesses = nn.ModuleList(JetMLP(1, width, depth) for _ in range(parts if separate_thickness else 0))

    @property
    def config(self) -> dict[str, Any]:
        """What rebuilds this network (with its state dict)."""
        flow, log_mu = self.flows[0], self.log_mus[0]
        return dict(scales=self.scales.as_dict(), width=flow.layers[0].out_features, depth=len(flow.layers) - 1,
                    mu_width=log_mu.layers[0].out_features, mu_depth=len(log_mu.layers) - 1,
                    edges=list(self.edges), axis=self.axis, separate_thickness=self.separate_thickness)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "ViscosityPINN":
        """The (untrained) network that :attr:`config` describes."""
        rest = {k: v for k, v in config.items() if k != "scales"}
        return cls(ShelfScales(**config["scales"]), **rest)

    # -- sub-domains ---------------------------------------------------------------------------
    def part_of(self, xhat: torch.Tensor) -> torch.Tensor:
        """(N,) the sub-domain index of each normalised input."""
        if not self.edges:
            return torch.zeros(len(xhat), dtype=torch.long, device=xhat.device)
        edges = torch.tensor(self.edges, dtype=xhat.dtype, device=xhat.device)
        return torch.bucketize(xhat[:, self.axis].contiguous(), edges, right=True)

    def _piecewise(self, xhat: torch.Tensor, evaluate: Callable[[int, torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``evaluate(k, points of sub-domain k)`` (points on the second-last dimension), reassembled in the
        order of ``xhat``."""
        if not self.edges:
            return evaluate(0, xhat)
        part = self.part_of(xhat)
        order = torch.argsort(part, stable=True)
        counts = torch.bincount(part, minlength=len(self.flows)).tolist()
        chunks = [evaluate(k, x) for k, x in enumerate(xhat[order].split(counts)) if counts[k]]
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(len(order), device=order.device)
        return torch.cat(chunks, dim=-2).index_select(-2, inverse)

    # -- fields --------------------------------------------------------------------------------
    def _flow(self, k: int, x: torch.Tensor) -> torch.Tensor:
        """(û, v̂, ĥ) (N, 3) of sub-domain ``k``'s networks."""
        if self.separate_thickness:
            return torch.cat([self.flows[k](x), self.thicknesses[k](x)], dim=1)
        return self.flows[k](x)

    def _flow_jet(self, k: int, x: torch.Tensor, order: int) -> torch.Tensor:
        """Sub-domain ``k``'s (û, v̂, ĥ) jets (m, N, 3); ĥ's derivatives beyond the first are zero when it has a
        network of its own (nothing needs them: the SSA takes ∇h only)."""
        flow = self.flows[k].jet(x, order)
        if not self.separate_thickness:
            return flow
        h = self.thicknesses[k].jet(x, 1)
        h = torch.cat([h, h.new_zeros((len(flow) - len(h), *h.shape[1:]))]) if len(flow) > len(h) else h
        return torch.cat([flow, h], dim=2)

    def flow_values(self, xhat: torch.Tensor) -> torch.Tensor:
        """(û, v̂, ĥ) (N, 3) at normalised inputs."""
        return self._piecewise(xhat, self._flow)

    def forward(self, xhat: torch.Tensor) -> torch.Tensor:
        """(û, v̂, ĥ, n) (N, 4) at normalised inputs, μ̃ = exp(n)."""
        return self._piecewise(xhat, lambda k, x: torch.cat([self._flow(k, x), self.log_mus[k](x)], dim=1))

    def jets(self, xhat: torch.Tensor, order: int = 2) -> tuple[Jet, Jet, Jet, Jet]:
        """Dimensionless (ũ, ṽ, h̃, μ̃) jets in ξ = x / L, η = y / L at normalised inputs.

        ``order`` 2 gives u and v second derivatives (the momentum equations); 1 gives first
        derivatives only (the front condition, strain rates).
        """
        flow = self._piecewise(xhat, lambda k, x: self._flow_jet(k, x, order))
        log_mu = self._piecewise(xhat, lambda k, x: self.log_mus[k].jet(x, 1))
        return self._dimensionless(flow, log_mu)

    def part_jets(self, part: int, xhat: torch.Tensor) -> tuple[Jet, Jet, Jet, Jet]:
        """First-order jets of sub-domain ``part``'s networks at any inputs (for the interface terms)."""
        return self._dimensionless(self._flow_jet(part, xhat, 1), self.log_mus[part].jet(xhat, 1))

    def interface_mismatch(self, part: int, xhat: torch.Tensor) -> torch.Tensor:
        """Mean squared jump, across the interface between sub-domains ``part`` and ``part + 1`` at points
        ``xhat`` on it, of ũ, ṽ, h̃, log μ̃ and the velocity gradient (so that the stress is continuous too)."""
        a, b = self.part_jets(part, xhat), self.part_jets(part + 1, xhat)
        jumps = [a[i].value - b[i].value for i in range(3)] + [torch.log(a[3].value) - torch.log(b[3].value)]
        jumps += [getattr(a[i], d) - getattr(b[i], d) for i in range(2) for d in ("x", "y")]
        return torch.stack(jumps).pow(2).sum(0).mean()

    def _dimensionless(self, flow: torch.Tensor, log_mu: torch.Tensor) -> tuple[Jet, Jet, Jet, Jet]:
        """Jets from the stacked network jets: flow (m, N, 3) and log μ (3, N, 1) in normalised inputs."""
        sc = self.scales
        ax, ay = sc.length / sc.x_r, sc.length / sc.y_r  # d/dξ = ax d/dx̂
        # (outputs, derivatives, N) unbound once: per-element indexing would zero-fill the stack in backward
        parts = [k.unbind(0) for k in flow.permute(2, 0, 1).unbind(0)]
        n, n_x, n_y = log_mu[..., 0].unbind(0)
        axis = [1.0, ax, ay, ax * ax, ax * ay, ay * ay]

        def jet(values: tuple[torch.Tensor, ...], scale: float, offset: float) -> Jet:
            out = [p * (scale * a) for p, a in zip(values, axis)]
            out[0] = out[0] + offset
            return Jet(*out)

        u = jet(parts[0], sc.u_r / sc.speed, sc.u_mean / sc.speed)
        v = jet(parts[1], sc.v_r / sc.speed, sc.v_mean / sc.speed)
        h = jet(parts[2][:3], 1.0, 0.0)
        mu = torch.exp(n)
        return u, v, h, Jet(mu, mu * n_x * ax, mu * n_y * ay)

    def physical(self, xhat: torch.Tensor) -> dict[str, torch.Tensor]:
        """u, v [m/a], h [m], μ [Pa·s] at normalised inputs (no derivatives)."""
        out = self(xhat)
        sc = self.scales
        return dict(u=out[:, 0] * sc.u_r + sc.u_mean, v=out[:, 1] * sc.v_r + sc.v_mean,
                    h=out[:, 2] * sc.h0, mu=torch.exp(out[:, 3]) * sc.viscosity)


def strip_edges(xhat: np.ndarray, parts: int, scales: ShelfScales) -> tuple[tuple[float, ...], int]:
    """Sub-domain edges that split normalised points (N, 2) into ``parts`` strips of equal point counts
    along the shelf's longer side, and that axis (0: x̂, 1: ŷ)."""
    axis = 0 if scales.x_r >= scales.y_r else 1
    edges = np.quantile(xhat[:, axis], np.arange(1, parts) / parts) if parts > 1 else []
    return tuple(float(e) for e in edges), axis
