"""Emulators of the finite-element simulator on its own mesh: EGCN, GCN, node-wise MLP, grid CNN, persistence.

Every emulator maps one batch of graphs of the same mesh to the change of the state
from its initial value, in scaled units (see :mod:`iceviz.training.emulator_data`)::

    forward(scalars [B, N, S], vectors [B, N, V, 2], pos [B, N, 2]) -> [B, N, 3]  (Δvx, Δvy, Δh)

``scalars`` are rotation-invariant node inputs (initial thickness, bed, speed, floating
mask, boundary tags and distances, forcing, time, forcing × time), ``vectors`` vector
inputs (the initial velocity, surface and bed slope, the direction away from each boundary),
``pos`` the node positions. Only :class:`EGCN` is E(2)-equivariant: it sees positions only
through edge vectors x_i − x_j and the vector inputs only as vectors and through invariant
dot products, so rotating or reflecting the mesh and the vectors rotates or reflects the
predicted velocity change and leaves the thickness change as it was; translating changes
nothing. The baselines take vector components and positions as plain numbers.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from iceviz.models.graph import (IncomingSum, batch_edges, directed_edges, gcn_weights, mesh_to_raster,
                                 raster_shape, raster_to_mesh)

OUTPUTS = 3
"""Δvx, Δvy, Δh."""


def mlp(sizes: list[int], last_activation: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2 or last_activation:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


def mlp_parameters(sizes: list[int]) -> int:
    """Weights and biases of a fully connected network with layer sizes ``sizes`` (what :func:`mlp` holds)."""
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


class BatchedEdges(NamedTuple):
    """The directed edges of B copies of a mesh graph, numbered copy by copy and sorted by destination."""

    src: torch.Tensor
    dst: torch.Tensor
    weight: torch.Tensor
    inv_degree: torch.Tensor
    incoming: IncomingSum
    """Sum of per-edge values at each destination node."""


class MeshGraph(nn.Module):
    """The mesh's directed edges (both ways) and in-degrees, as buffers that travel with the model;
    :meth:`batched` gives the edges of B copies for a flattened batch."""

    def __init__(self, points: np.ndarray, edges: np.ndarray, self_loops: bool = False):
        super().__init__()
        src, dst = directed_edges(edges)
        n = len(points)
        weight = np.ones(len(src))
        if self_loops:  # the GCN's normalised adjacency with self-loops
            src, dst, weight = gcn_weights(src, dst, n)
        order = np.argsort(dst, kind="stable")  # sums over incoming edges need edges sorted by destination
        src, dst, weight = src[order], dst[order], weight[order]
        self.n = n
        self.register_buffer("src", torch.as_tensor(src, dtype=torch.long))
        self.register_buffer("dst", torch.as_tensor(dst, dtype=torch.long))
        self.register_buffer("weight", torch.as_tensor(weight, dtype=torch.float32))
        degree = np.maximum(np.bincount(dst, minlength=n), 1)
        self.register_buffer("inv_degree", torch.as_tensor(1.0 / degree, dtype=torch.float32))
        self._cache: dict[tuple[int, str], BatchedEdges] = {}

    def batched(self, copies: int) -> BatchedEdges:
        """The edges of ``copies`` copies of the graph, numbered copy by copy."""
        key = (copies, str(self.src.device))
        if key not in self._cache:
            if len(self._cache) > 8:
                self._cache.clear()
            src, dst = batch_edges(self.src, self.dst, self.n, copies)
            self._cache[key] = BatchedEdges(src, dst, self.weight.repeat(copies), self.inv_degree.repeat(copies),
                                            IncomingSum(dst, self.n * copies))
        return self._cache[key]


HEADS = 8
"""Gates per edge message in the EGCN layer (each gates width / HEADS features)."""


class EquivariantLayer(nn.Module):
    """One E(2)-equivariant message-passing layer with scalar features h and C vector channels V.

    Messages j -> i are built from invariants only: a gate of H heads from both ends and the
    geometry, which scales the sender's features (gated messages, so that the per-edge work is
    one gather, one product and one sum of the features, the cost of a GCN; the wide nonlinear
    work runs per node)::

        g_ij = σ(A h_i + B h_j + G [|x_i − x_j|²/ℓ², V_i·ê_ij, V_j·ê_ij, V_i·V_j])   (H heads)
        m_ij = g_ij ⊙ W h_j                                                         (each head gates W/H features)
        V_i ← V_i + mean_j (a(g_ij) ê_ij + b(g_ij) V_j)                             (per channel)
        h_i ← h_i + φ_h(h_i, mean_j m_ij, |V_i|²)

    with ê_ij = (x_i − x_j) / |x_i − x_j| and ℓ² the mean squared edge length. Dot products and norms
    are invariant under rotations and reflections, and V changes only by sums of vectors times
    invariants: the layer is equivariant.
    Tensors are flattened batches: h [M, F], the x and y components of V [M, C] each, per edge [K, ...].
    """

    def __init__(self, width: int, channels: int, hidden: int):
        super().__init__()
        self.channels, self.heads = channels, math.gcd(width, HEADS)
        self.gate_i = nn.Linear(width, self.heads)
        self.gate_j = nn.Linear(width, self.heads, bias=False)
        self.gate_geometry = nn.Linear(1 + 3 * channels, self.heads, bias=False)
        self.value = nn.Linear(width, width, bias=False)
        self.coefficients = nn.Linear(self.heads, 2 * channels)
        self.update = mlp([2 * width + channels, hidden, width])

    def vector_terms(self, vx: torch.Tensor, vy: torch.Tensor, edge: "EdgeGeometry"
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The per-edge work that depends on the vectors and the geometry alone: the gate's geometric term
        G [...] [K, H] and the senders' vectors V_j (x and y, [K, C] each)."""
        src, dst = edge.src, edge.dst
        xi, yi, xj, yj = vx.index_select(0, dst), vy.index_select(0, dst), vx.index_select(0, src), vy.index_select(0, src)
        ex, ey = edge.ex, edge.ey
        geometry = torch.cat([edge.dist2, xi * ex + yi * ey, xj * ex + yj * ey, xi * xj + yi * yj], -1)
        return self.gate_geometry(geometry), xj, yj

    def forward(self, h: torch.Tensor, vx: torch.Tensor, vy: torch.Tensor, edge: "EdgeGeometry",
                terms: tuple[torch.Tensor, ...] | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One layer; ``terms`` are :meth:`vector_terms` when already known."""
        src, dst, ex, ey = edge.src, edge.dst, edge.ex, edge.ey
        geometric, xj, yj = self.vector_terms(vx, vy, edge) if terms is None else terms
        gate = torch.sigmoid(self.gate_i(h).index_select(0, dst) + self.gate_j(h).index_select(0, src)
                             + geometric)  # [K, H]
        value = self.value(h).index_select(0, src)
        k, width = value.shape
        m = (value.view(k, self.heads, width // self.heads) * gate.unsqueeze(-1)).view(k, width)  # H heads
        a, b = self.coefficients(gate).split(self.channels, dim=-1)
        vx = vx + edge.mean(a * ex + b * xj)
        vy = vy + edge.mean(a * ey + b * yj)
        h = h + self.update(torch.cat([h, edge.mean(m), vx**2 + vy**2], -1))
        return h, vx, vy


class EdgeGeometry:
    """Per-edge invariants of a flattened batch: squared length relative to the mean over the edges, unit
    vector (ex, ey) repeated for each of C vector channels ([K, C] each: products with [K, C] tensors of
    equal shape run faster than broadcast ones), and the mean over each node's incoming edges.

    The relative length keeps the invariant of order one whatever the mesh's size (in scaled positions the
    default glacier's 2-10 km edges have squared lengths of 1e-4 to 3e-3, too small for a gate to use), and
    makes the network blind to a uniform change of scale as well as to rotations, reflections and shifts.
    """

    def __init__(self, edges: BatchedEdges, dist2: torch.Tensor, ex: torch.Tensor, ey: torch.Tensor):
        self.src, self.dst, self.inv_degree, self.incoming = edges.src, edges.dst, edges.inv_degree, edges.incoming
        self.dist2, self.ex, self.ey = dist2, ex, ey

    @classmethod
    def of(cls, x: torch.Tensor, edges: BatchedEdges, channels: int) -> "EdgeGeometry":
        """The geometry of the flattened batch's node positions ``x`` [M, 2]."""
        rel = x.index_select(0, edges.dst) - x.index_select(0, edges.src)  # x_i − x_j, [K, 2]
        dist2 = (rel**2).sum(-1, keepdim=True)
        unit = rel / dist2.clamp_min(1e-12).sqrt()
        ex, ey = (unit[:, k:k + 1].expand(-1, channels).contiguous() for k in (0, 1))
        return cls(edges, dist2 / dist2.mean().clamp_min(1e-24), ex, ey)  # relative length: of order one on any mesh

    def repeated(self, edges: BatchedEdges) -> "EdgeGeometry":
        """This geometry of one graph for a batch of copies of it with the batch's ``edges``."""
        copies = len(edges.dst) // len(self.dst)
        return EdgeGeometry(edges, *(t.repeat(copies, 1) for t in (self.dist2, self.ex, self.ey)))

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        return self.incoming(values) * self.inv_degree.unsqueeze(-1)


class EGCN(nn.Module):
    """Equivariant graph convolutional network: velocity from the vector channels, thickness from the scalars.

    The V vector inputs start the first V of C ≥ V vector channels (the rest start at zero); their
    invariants (squared lengths and mutual dot products) join the scalar inputs. The velocity change
    is a sum of the final channels with weights that vary from node to node::

        Δv_i = Σ_c (w_c + ψ_c(h_i, |V_i|²)) V_ic

    a fixed part w and a part ψ of the node's invariants (zero at the start), so that one node can
    speed up along its flow while another hardly changes. Weights that are invariants keep the sum
    equivariant.
    """

    def __init__(self, points: np.ndarray, edges: np.ndarray, n_scalars: int, n_vectors: int = 1, width: int = 32,
                 layers: int = 3, channels: int = 2, hidden: int | None = None):
        super().__init__()
        hidden = hidden or 2 * width  # node-wise layers are cheap next to the edges: they get twice the width
        self.graph = MeshGraph(points, edges)
        self.n_vectors, self.channels = n_vectors, max(channels, n_vectors)
        pairs = n_vectors * (n_vectors + 1) // 2
        self.embed = mlp([n_scalars + pairs, hidden, hidden, width])
        self.layers = nn.ModuleList(EquivariantLayer(width, self.channels, hidden) for _ in range(layers))
        self.velocity_head = nn.Linear(self.channels, 1, bias=False)  # w
        self.velocity_weights = mlp([width + self.channels, hidden, self.channels])  # ψ
        nn.init.zeros_(self.velocity_weights[-1].weight)
        nn.init.zeros_(self.velocity_weights[-1].bias)
        self.thickness_head = mlp([width + self.channels, hidden, 1])

    def forward(self, scalars: torch.Tensor, vectors: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        b, n, _ = scalars.shape
        m = b * n
        # Vectors and positions shared by the batch (views with stride 0, as for the snapshots of one run): the
        # geometry, the vectors' invariants and the first layer's vector terms are computed on one graph.
        g = 1 if b > 1 and vectors.stride(0) == 0 and pos.stride(0) == 0 else b
        edge = EdgeGeometry.of(pos[:g].reshape(g * n, 2), self.graph.batched(g), self.channels)
        v = vectors[:g].reshape(g * n, self.n_vectors, 2)
        dots = torch.cat([(v[:, a:a + 1] * v[:, a:]).sum(-1) for a in range(self.n_vectors)], -1)  # |v_a|², v_a·v_b
        zeros = v.new_zeros(g * n, self.channels - self.n_vectors)
        vx, vy = torch.cat([v[..., 0], zeros], -1), torch.cat([v[..., 1], zeros], -1)  # [g·N, C]
        terms = None
        if g < b:
            terms = tuple(t.repeat(b, 1) for t in self.layers[0].vector_terms(vx, vy, edge))
            edge = edge.repeated(self.graph.batched(b))
            dots, vx, vy = (t.repeat(b, 1) for t in (dots, vx, vy))
        h = self.embed(torch.cat([scalars.reshape(m, -1), dots], -1))
        for i, layer in enumerate(self.layers):
            h, vx, vy = layer(h, vx, vy, edge, terms if i == 0 else None)
        invariants = torch.cat([h, vx**2 + vy**2], -1)
        w = self.velocity_head.weight + self.velocity_weights(invariants)  # [M, C]
        dv = torch.stack([(w * vx).sum(-1), (w * vy).sum(-1)], -1)  # [M, 2]
        dh = self.thickness_head(invariants)
        return torch.cat([dv, dh], -1).reshape(b, n, OUTPUTS)


class SeedEGCN(nn.Module):
    """The seed's EGCN layer (Satorras et al.'s EGNN as the paper uses it), for comparison.

    Velocity enters as two plain numbers among the scalars and all three outputs come from the
    scalar features, so it is not equivariant for velocity; positions are a coordinate channel
    updated along edge directions, x_i ← x_i + mean_j (x_i − x_j) φ_x(m_ij), with
    m_ij = φ_e(h_i, h_j, |x_i − x_j|²) and h_i ← h_i + φ_h(h_i, Σ_j m_ij).
    """

    def __init__(self, points: np.ndarray, edges: np.ndarray, n_scalars: int, n_vectors: int = 1, width: int = 64,
                 layers: int = 4):
        super().__init__()
        self.graph = MeshGraph(points, edges)
        self.embed = mlp([n_scalars + 2 * n_vectors, width, width])
        self.edge = nn.ModuleList(mlp([2 * width + 1, width, width], last_activation=True) for _ in range(layers))
        self.coord = nn.ModuleList(mlp([width, width, 1]) for _ in range(layers))
        self.node = nn.ModuleList(mlp([2 * width, width, width]) for _ in range(layers))
        self.head = mlp([width, width, OUTPUTS])

    def forward(self, scalars: torch.Tensor, vectors: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        b, n, _ = scalars.shape
        src, dst, _, inv_degree, incoming = self.graph.batched(b)
        h = self.embed(torch.cat([scalars, vectors.flatten(2)], -1).reshape(b * n, -1))
        x = pos.reshape(b * n, 2)
        for edge, coord, node in zip(self.edge, self.coord, self.node):
            rel = x.index_select(0, dst) - x.index_select(0, src)
            m = edge(torch.cat([h.index_select(0, dst), h.index_select(0, src), (rel**2).sum(-1, keepdim=True)], -1))
            x = x + incoming(rel * coord(m)) * inv_degree.unsqueeze(-1)
            h = h + node(torch.cat([h, incoming(m)], -1))
        return self.head(h).reshape(b, n, OUTPUTS)


class GCN(nn.Module):
    """Kipf & Welling graph convolutions with residual connections on every input as plain numbers."""

    def __init__(self, points: np.ndarray, edges: np.ndarray, n_scalars: int, n_vectors: int = 1, width: int = 64,
                 layers: int = 4):
        super().__init__()
        self.graph = MeshGraph(points, edges, self_loops=True)
        self.embed = mlp([n_scalars + 2 * n_vectors + 2, width, width])
        self.convs = nn.ModuleList(nn.Linear(width, width) for _ in range(layers))
        self.head = mlp([width, width, OUTPUTS])

    def forward(self, scalars: torch.Tensor, vectors: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        b, n, _ = scalars.shape
        src, _, weight, _, incoming = self.graph.batched(b)
        h = self.embed(torch.cat([scalars, vectors.flatten(2), pos], -1).reshape(b * n, -1))
        for conv in self.convs:
            z = conv(h)
            h = h + nn.functional.silu(incoming(z.index_select(0, src) * weight.unsqueeze(-1)))
        return self.head(h).reshape(b, n, OUTPUTS)


class NodeMLP(nn.Module):
    """Every node on its own: an MLP of the node's inputs (positions and velocity as plain numbers)."""

    def __init__(self, points: np.ndarray, edges: np.ndarray, n_scalars: int, n_vectors: int = 1, width: int = 64,
                 layers: int = 4):
        super().__init__()
        self.net = mlp([n_scalars + 2 * n_vectors + 2] + [width] * layers + [OUTPUTS])

    def forward(self, scalars: torch.Tensor, vectors: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([scalars, vectors.flatten(2), pos], -1))


class GridCNN(nn.Module):
    """A CNN on a raster: node inputs interpolated to cell centres, convolutions, back to the nodes bilinearly."""

    def __init__(self, points: np.ndarray, edges: np.ndarray, n_scalars: int, n_vectors: int = 1, width: int = 64,
                 layers: int = 4, cells: int = 2048):
        super().__init__()
        self.shape = raster_shape(points, cells)
        self.register_buffer("to_grid", mesh_to_raster(points, self.shape), persistent=False)
        self.register_buffer("to_mesh", raster_to_mesh(points, self.shape), persistent=False)
        c = n_scalars + 2 * n_vectors + 2
        convs: list[nn.Module] = [nn.Conv2d(c, width, 3, padding=1), nn.SiLU()]
        for _ in range(layers - 1):
            convs += [nn.Conv2d(width, width, 3, padding=1), nn.SiLU()]
        self.convs = nn.Sequential(*convs)
        self.head = mlp([width + c, width, OUTPUTS])

    def forward(self, scalars: torch.Tensor, vectors: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        x = torch.cat([scalars, vectors.flatten(2), pos], -1)  # [B, N, C]
        b, n, c = x.shape
        ny, nx = self.shape
        flat = x.permute(1, 0, 2).reshape(n, b * c)
        grid = torch.sparse.mm(self.to_grid, flat).reshape(ny, nx, b, c).permute(2, 3, 0, 1)
        feats = self.convs(grid)  # [B, W, ny, nx]
        w = feats.shape[1]
        cells = feats.permute(2, 3, 0, 1).reshape(ny * nx, b * w)
        nodes = torch.sparse.mm(self.to_mesh, cells).reshape(n, b, w).permute(1, 0, 2)
        return self.head(torch.cat([nodes, x], -1))


class Persistence(nn.Module):
    """The floor: the state stays as it started (zero change)."""

    def __init__(self, points: np.ndarray, edges: np.ndarray, n_scalars: int, n_vectors: int = 1, **_: Any):
        super().__init__()

    def forward(self, scalars: torch.Tensor, vectors: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        return scalars.new_zeros(*scalars.shape[:2], OUTPUTS)


ARCHITECTURES: dict[str, type[nn.Module]] = {"egcn": EGCN, "egcn-seed": SeedEGCN, "gcn": GCN, "mlp": NodeMLP,
                                             "cnn": GridCNN, "persistence": Persistence}
"""Architecture name -> class."""


def make_emulator(config: dict[str, Any], points: np.ndarray, edges: np.ndarray) -> nn.Module:
    """The emulator described by ``config`` (``architecture``, ``n_scalars``, ``n_vectors`` and its sizes) on this mesh."""
    kwargs = dict(config)
    cls = ARCHITECTURES[kwargs.pop("architecture")]
    return cls(points, edges, **kwargs)
