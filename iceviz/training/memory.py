"""How much memory a training job may take, from its hyper-parameters alone (before any data is loaded).

An upper estimate, for admission (:class:`iceviz.runtime.queue.JobQueue`), not
a measurement: a worker process (Python, torch, the data) plus, per step, the
activations of every point through every layer, with room for the gradient
graph (first derivatives for the flux models' divergence, second ones for the
viscosity PINN's stresses) and the optimiser's three copies of the weights.
A job the estimate says cannot fit is refused before it starts, with the
numbers; one that fits may still take less.
"""

from __future__ import annotations

from typing import Any

from iceviz.models.emulators import mlp_parameters
from iceviz.models.registry import get_model

WORKER_BASE_BYTES = 400 * 2**20
"""A worker process before its model: interpreter, torch, numpy, the data (measured ~385 MB resident)."""
FLOAT_BYTES = 4
GRAPH_FACTOR = {"flux": 8, "viscosity": 24, "emulator": 6}
"""Stored values per activation for the backward pass: the flux models differentiate the network once
(divergence, stream function), the viscosity PINN twice (strain rates, then stresses)."""
OPTIMISER_COPIES = 4
"""Weights, gradients and Adam's two moments."""
EMULATOR_NODES = 20_000
"""Mesh nodes an emulator job is sized for before its ensemble is read (the default glacier has 2,345)."""


def job_memory(model: str, overrides: dict[str, Any] | None = None) -> int:
    """Bytes a training job of ``model`` with ``overrides`` may take at most (see the module notes)."""
    spec = get_model(model)
    try:
        p = spec.make_params(**{k: v for k, v in (overrides or {}).items() if k in spec.make_params().param})
    except (ValueError, TypeError):  # the job itself fails on them, with the message; here: the base alone
        return WORKER_BASE_BYTES
    family = spec.family
    if family == "flux":
        weights = mlp_parameters([4] + [p.width] * p.depth + [3])
        points = p.batch_size + p.collocation
        activations = points * p.width * p.depth
    elif family == "viscosity":
        flows = 2 if p.separate_thickness else 1  # a thickness network as large as the flow's
        weights = p.subdomains * (flows * mlp_parameters([4] + [p.width] * p.depth + [3])
                                  + mlp_parameters([4] + [p.mu_width] * p.mu_depth + [1]))
        points = p.batch_size + p.collocation + p.front_points + p.interface_points * (p.subdomains - 1)
        activations = points * (flows * p.width * p.depth + p.mu_width * p.mu_depth)
    else:  # emulators: every node of every graph in a batch, through every layer (a grid CNN: its cells)
        weights = p.layers * p.width * p.width * 9
        nodes = max(EMULATOR_NODES, p.cells)
        activations = p.batch_size * nodes * p.width * p.layers
    return int(WORKER_BASE_BYTES + FLOAT_BYTES * (OPTIMISER_COPIES * weights
                                                  + GRAPH_FACTOR[family] * activations))
