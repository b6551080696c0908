"""How much memory a training job may take, from its hyper-parameters alone (before any data is loaded).

An upper estimate, for admission (:class:`iceviz.runtime.queue.JobQueue`), not
a measurement: a worker process (Python, torch, the data) plus, per step, the
activations of every point through every layer, with room for the gradient
graph (first derivatives for the flux models' divergence, second ones for the
viscosity PINN's stresses) and the optimiser's three copies of the weights.
A job the estimate says cannot fit is refused before it starts, with the
numbers; one that fits may still take less. Each family says what its networks
store (:class:`iceviz.training.families.Family`, ``memory``).
"""

from __future__ import annotations

from typing import Any

from iceviz.models.registry import get_model
from iceviz.training.families import get_family

WORKER_BASE_BYTES = 400 * 2**20
"""A worker process before its model: interpreter, torch, numpy, the data (measured ~385 MB resident)."""
FLOAT_BYTES = 4
OPTIMISER_COPIES = 4
"""Weights, gradients and Adam's two moments."""


def job_memory(model: str, overrides: dict[str, Any] | None = None) -> int:
    """Bytes a training job of ``model`` with ``overrides`` may take at most (see the module notes)."""
    spec = get_model(model)
    try:
        p = spec.make_params(**{k: v for k, v in (overrides or {}).items() if k in spec.make_params().param})
    except (ValueError, TypeError):  # the job itself fails on them, with the message; here: the base alone
        return WORKER_BASE_BYTES
    weights, stored = get_family(spec.family).memory(p)
    return int(WORKER_BASE_BYTES + FLOAT_BYTES * (OPTIMISER_COPIES * weights + stored))
