"""An ensemble as tensors: scaled emulator inputs and targets, and the scaling that travels with the model.

A sample is one (run, snapshot) pair: the inputs are the run's initial state, its forcing,
the snapshot's time and the forcing accumulated up to then (forcing × time: for basal melt
the metres of ice melted, which the shelf's thinning follows at first); the target is the
change of (vx, vy, h) from the initial state, each divided by its RMS over the training
samples (so persistence predicts zero and the three targets weigh alike in a mean squared
error).

The vector inputs are the initial velocity, the initial surface slope, the bed slope and, per
boundary tag, the direction away from that boundary (the gradient of the distance to it): every
one is a gradient or a flow of the geometry, so it rotates and reflects with the mesh. Besides the
flow they give a node directions that are not along it (across the channel, away from the front),
in which a velocity change can point.

Scaling keeps the emulators' symmetries: velocity is divided by one speed (no per-component
mean), slopes by one RMS each, positions are centred and divided by one length, thickness and bed
are standardised.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
from scipy.spatial import cKDTree

from iceviz.data.ensemble import TARGETS, EnsembleProblem
from iceviz.models.graph import node_gradients
from iceviz.sim.ssa import Geometry, height_above_flotation


@dataclass(frozen=True)
class EmulatorScales:
    """How inputs and targets are scaled (JSON-able; saved in checkpoints)."""

    pos_mean: tuple[float, float]
    length: float
    """[m]: positions are (x − pos_mean) / length."""
    speed: float
    """[m/a]: the initial velocity is divided by it."""
    slope: float
    """[1]: the initial surface slope (gradient of the surface elevation) is divided by it."""
    bed_slope: float
    """[1]: the bed slope (gradient of the bed elevation) is divided by it."""
    h_mean: float
    h_std: float
    bed_mean: float
    bed_std: float
    forcing_keys: tuple[str, ...]
    forcing_mean: tuple[float, ...]
    forcing_std: tuple[float, ...]
    forcing_rms: tuple[float, ...]
    """Root mean square of each forcing over the training runs: the accumulated forcing F·t̂ is divided by it."""
    duration: float
    """[a]: time is t / duration."""
    dv: float
    """[m/a]: RMS of the velocity change over the training samples (the Δvx, Δvy target unit)."""
    dh: float
    """[m]: RMS of the thickness change over the training samples (the Δh target unit)."""
    tags: tuple[str, ...]
    """Boundary tags, one indicator input each."""

    @classmethod
    def from_problem(cls, problem: EnsembleProblem, runs: np.ndarray) -> "EmulatorScales":
        f = problem.fields
        pts = problem.mesh.points
        u0, v0, h0 = f["vx"][runs, 0], f["vy"][runs, 0], f["h"][runs, 0]
        dvx, dvy = f["vx"][runs] - u0[:, None], f["vy"][runs] - v0[:, None]
        dh = f["h"][runs] - h0[:, None]
        forcing = problem.forcing[runs]
        slope = surface_slope(problem, h0)
        return cls(pos_mean=tuple(map(float, pts.mean(axis=0))), length=float(pts.std(axis=0).max()),
                   speed=_rms(np.stack([u0, v0], axis=-1)),
                   slope=_rms(slope), bed_slope=_rms(bed_slope(problem)), h_mean=float(h0.mean()),
                   h_std=_positive(h0.std()), bed_mean=float(problem.bed.mean()), bed_std=_positive(problem.bed.std()),
                   forcing_keys=problem.forcing_keys, forcing_mean=tuple(map(float, forcing.mean(axis=0))),
                   forcing_std=tuple(_positive(s) for s in forcing.std(axis=0)),
                   forcing_rms=tuple(_positive(r) for r in np.sqrt(np.mean(forcing**2, axis=0))),
                   duration=_positive(problem.times[-1] - problem.times[0]),
                   dv=_positive(np.sqrt(np.mean(dvx**2 + dvy**2) / 2)), dh=_positive(np.sqrt(np.mean(dh**2))),
                   tags=tuple(sorted(problem.mesh.boundary)))

    @classmethod
    def from_dict(cls, d: dict) -> "EmulatorScales":
        missing = sorted({f.name for f in fields(cls)} - set(d))
        if missing:
            raise ValueError(f"the emulator scales lack {', '.join(missing)} (saved by an older iceviz: retrain the model)")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def n_vectors(self) -> int:
        """Vector inputs per node: the initial velocity, the initial surface slope, the bed slope and per boundary
        tag the direction away from it."""
        return 3 + len(self.tags)

    @property
    def n_scalars(self) -> int:
        """Scalar inputs per node: h₀, bed, height above flotation, |u₀|, floating, per boundary tag an
        indicator and the distance to it, the forcings, time and the accumulated forcings."""
        return 5 + 2 * len(self.tags) + 2 * len(self.forcing_keys) + 1


def surface_slope(problem: EnsembleProblem, h: np.ndarray) -> np.ndarray:
    """Gradient (..., N, 2) of the surface elevation of thickness fields ``h`` (..., N) [1]: what drives the flow."""
    surface = Geometry(h, problem.bed).surface
    return node_gradients(problem.mesh.points, problem.mesh.triangles, surface)


def bed_slope(problem: EnsembleProblem) -> np.ndarray:
    """Gradient (N, 2) of the bed elevation [1]: the same in every run."""
    return node_gradients(problem.mesh.points, problem.mesh.triangles, problem.bed)


def _rms(vectors: np.ndarray) -> float:
    """Root mean square length of vectors (..., 2), or 1 where there is none."""
    return _positive(np.sqrt(np.mean(np.sum(vectors**2, axis=-1))))


def _positive(value: float) -> float:
    value = float(value)
    return value if value > 0 and np.isfinite(value) else 1.0


class EmulatorData:
    """Scaled tensors of an ensemble on one device, and the way back to physical units."""

    def __init__(self, problem: EnsembleProblem, scales: EmulatorScales, device: torch.device):
        self.problem, self.scales, self.device = problem, scales, device
        sc, f, mesh = scales, problem.fields, problem.mesh
        u0, v0, h0 = f["vx"][:, 0], f["vy"][:, 0], f["h"][:, 0]  # (R, N)
        haf = height_above_flotation(h0, problem.bed[None, :])
        tags, away = [], []
        for tag in sc.tags:  # on the tagged side, how far from it and which way away from it (equivariant)
            on = mesh.boundary_nodes(tag)
            distance = cKDTree(mesh.points[on]).query(mesh.points)[0]
            tags += [np.isin(np.arange(mesh.n_nodes), on).astype(float), distance / sc.length]
            away.append(node_gradients(mesh.points, mesh.triangles, distance))  # unit length except on ridges
        n_runs = problem.n_runs
        static = [(h0 - sc.h_mean) / sc.h_std, np.broadcast_to((problem.bed - sc.bed_mean) / sc.bed_std, h0.shape),
                  haf / sc.h_std, np.hypot(u0, v0) / sc.speed, (haf < 0).astype(float),
                  *[np.broadcast_to(t, h0.shape) for t in tags]]
        self.static = self._tensor(np.stack(static, axis=-1))  # [R, N, F0]
        velocity = np.stack([u0, v0], axis=-1) / sc.speed
        slope = surface_slope(problem, h0) / sc.slope
        fixed = [bed_slope(problem) / sc.bed_slope, *away]  # the same in every run
        vectors = [velocity, slope, *[np.broadcast_to(v, velocity.shape) for v in fixed]]
        self.vectors = self._tensor(np.stack(vectors, axis=2))  # [R, N, V vectors, 2]
        self.pos = self._tensor((mesh.points - np.array(sc.pos_mean)) / sc.length)  # [N, 2]
        forcing = (problem.forcing - np.array(sc.forcing_mean)) / np.array(sc.forcing_std)
        self.forcing = self._tensor(forcing.reshape(n_runs, -1))  # [R, K]
        self.time = self._tensor((problem.times - problem.times[0]) / sc.duration)  # [S]
        # the forcings in units of their training RMS, 0 for no forcing; times t̂ they are the accumulated forcings
        self.rate = self._tensor((problem.forcing / np.array(sc.forcing_rms)).reshape(n_runs, -1))  # [R, K]
        change = np.stack([(f["vx"] - u0[:, None]) / sc.dv, (f["vy"] - v0[:, None]) / sc.dv,
                           (f["h"] - h0[:, None]) / sc.dh], axis=-1)
        self.targets = self._tensor(change)  # [R, S, N, 3]

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(array), dtype=torch.float32, device=self.device)

    def samples(self, runs: np.ndarray, snapshots: np.ndarray | None = None) -> np.ndarray:
        """(K, 2) (run, snapshot) pairs of the given runs (every snapshot by default)."""
        s = np.arange(len(self.problem.times)) if snapshots is None else np.asarray(snapshots)
        return np.array([(r, j) for r in runs for j in s], dtype=np.int64).reshape(-1, 2)

    def inputs(self, pairs: np.ndarray, share: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(scalars [B, N, F], vectors [B, N, V, 2], pos [B, N, 2]) of (run, snapshot) pairs.

        The positions are one view shared by the batch (stride 0); so are the vectors when ``share`` is
        set and the pairs are of one run, which lets the EGCN compute what depends on them alone once.
        """
        r = torch.as_tensor(pairs[:, 0], device=self.device)
        s = torch.as_tensor(pairs[:, 1], device=self.device)
        n = self.pos.shape[0]
        t = self.time[s, None]
        globals_ = torch.cat([self.forcing[r], t, self.rate[r] * t], -1)  # [B, 2K + 1]
        scalars = torch.cat([self.static[r], globals_[:, None, :].expand(-1, n, -1)], -1)
        one_run = share and len(pairs) > 0 and bool(np.all(pairs[:, 0] == pairs[0, 0]))
        vectors = self.vectors[r[:1]].expand(len(pairs), -1, -1, -1) if one_run else self.vectors[r]
        return scalars, vectors, self.pos.expand(len(pairs), -1, -1)

    def target(self, pairs: np.ndarray) -> torch.Tensor:
        return self.targets[torch.as_tensor(pairs[:, 0], device=self.device),
                            torch.as_tensor(pairs[:, 1], device=self.device)]

    def physical(self, change: torch.Tensor, pairs: np.ndarray) -> dict[str, np.ndarray]:
        """Predicted (vx, vy, h) [m/a, m/a, m] -> (B, N) from scaled changes [B, N, 3] of (run, snapshot) pairs."""
        c = change.detach().double().cpu().numpy()
        sc, f, runs = self.scales, self.problem.fields, pairs[:, 0]
        units = (sc.dv, sc.dv, sc.dh)
        return {k: f[k][runs, 0] + c[..., i] * units[i] for i, k in enumerate(TARGETS)}
