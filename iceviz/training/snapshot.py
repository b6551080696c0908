"""Snapshots: plain data describing a training run at one moment."""

from __future__ import annotations

from dataclasses import dataclass, field
import numpy as np
import xarray as xr


@dataclass(frozen=True)
class Snapshot:
    """The state of a run, cheap to copy and safe to hand to another thread.

    Attributes
    ----------
    model : registered model name.
    step, epoch : optimisation steps and completed epochs.
    seconds : training wall time so far, pauses excluded [s].
    progress : fraction of the budget used, 0..1.
    losses : every loss term of the latest step (``total``, ``data``, ``div``, ``dir``...).
    metrics : test metrics at this moment (shown, never used for selection).
    fields : fields on the evaluation grid in physical units (EPSG:3031 x, y),
        e.g. ``qx``, ``qy``, ``speed``, ``divergence``, ``divergence_fd``, ``error``.
    points : per-test-point arrays (``x``, ``y``, ``error``) where truth is only at points.
    device : where it ran.
    final : True for the snapshot made after training ended.
    """

    model: str
    step: int
    epoch: int
    seconds: float
    progress: float
    losses: dict[str, float]
    metrics: dict[str, float] = field(default_factory=dict)
    fields: xr.Dataset | None = None
    points: dict[str, np.ndarray] | None = None
    device: str = "cpu"
    final: bool = False
