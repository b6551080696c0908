"""Checkpoints: safetensors weights plus a JSON description, never pickles.

A checkpoint holds the model's tensors and, in the safetensors metadata, what
is needed to rebuild and use it without the training data: the registry
name, the network config, the hyper-parameters, the data spec and its
scaling, and the final metrics. Loading never unpickles anything, so a
checkpoint from an untrusted source cannot run code.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from iceviz.data.problem import FluxScale
from iceviz.models.emulators import make_emulator
from iceviz.models.flux import make_flux_model
from iceviz.models.registry import get_model
from iceviz.models.viscosity import ViscosityPINN
from iceviz.training.emulator_data import EmulatorScales

FORMAT = "iceviz-checkpoint-1"
MESH_POINTS, MESH_EDGES = "mesh.points", "mesh.edges"
"""Extra tensors of an emulator checkpoint: its mesh's node coordinates [m] and edges."""


@dataclass
class Checkpoint:
    """A reloaded model with everything needed to predict in physical units."""

    model_name: str
    model: torch.nn.Module
    config: dict[str, Any]
    params: dict[str, Any]
    data: str
    metrics: dict[str, Any]
    scale: FluxScale | None = None  # flux family only
    scales: EmulatorScales | None = None  # emulator family only
    bounds: tuple[float, float, float, float] | None = None
    grid_shape: tuple[int, int] | None = None


def save_checkpoint(path: str | Path, trainer: Any, metrics: dict[str, Any] | None = None) -> Path:
    """Write ``trainer``'s model and description to ``path`` (a ``.safetensors`` file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    problem = trainer.problem
    meta = dict(
        format=FORMAT,
        model=trainer.spec.name,
        config=trainer.config,
        params={k: v for k, v in trainer.params.param.values().items() if k != "name"},
        data=problem.spec,
        metrics=metrics or {},
    )
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in trainer.model.state_dict().items()}
    if trainer.spec.family == "flux":
        meta.update(scale=asdict(problem.scale), bounds=list(problem.bounds), grid_shape=list(trainer.grid_shape))
    elif trainer.spec.family == "emulator":  # the mesh travels with the model: it is the model's graph
        meta.update(scales=trainer.scales.as_dict())
        tensors[MESH_POINTS] = torch.as_tensor(problem.mesh.points, dtype=torch.float64)
        tensors[MESH_EDGES] = torch.as_tensor(problem.mesh.edges, dtype=torch.int64)
    save_file(tensors, str(path), metadata={"iceviz": json.dumps(meta)})
    return path


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild the model saved at ``path``; ValueError naming the file when it is not a valid checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such checkpoint file")
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("iceviz")
        tensors = load_file(str(path), device=str(device))
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{path}: not a readable safetensors checkpoint ({err})") from err
    if raw is None:
        raise ValueError(f"{path}: a safetensors file, but without iceviz metadata")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: iceviz metadata is not valid JSON ({err})") from err
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: unsupported checkpoint format {meta.get('format')!r} (expected {FORMAT!r})")
    try:
        spec = get_model(meta.get("model"))  # the model must still be registered
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    scales = None
    if spec.family == "emulator":  # its inputs must be the ones this iceviz builds from the scales
        try:
            scales = EmulatorScales.from_dict(meta.get("scales", {}))
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from None
        for key, kind in (("n_scalars", "scalar"), ("n_vectors", "vector")):
            saved, built = meta.get("config", {}).get(key), getattr(scales, key)
            if saved != built:
                raise ValueError(f"{path}: the model takes {saved} {kind} inputs per node, this iceviz builds "
                                 f"{built} (saved by an older iceviz: retrain the model)")
    try:
        if spec.family == "viscosity":
            model = ViscosityPINN.from_config(meta["config"])
        elif spec.family == "emulator":
            points, edges = tensors.pop(MESH_POINTS).cpu().numpy(), tensors.pop(MESH_EDGES).cpu().numpy()
            model = make_emulator(meta["config"], points, edges)
        else:
            model = make_flux_model(meta["config"])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: cannot rebuild the model from its config ({type(err).__name__}: {err})") from None
    try:
        model.load_state_dict(tensors)
    except RuntimeError as err:
        raise ValueError(f"{path}: weights do not match the saved model config ({err})") from err
    model.to(device).eval()
    checkpoint = Checkpoint(model_name=meta["model"], model=model, config=meta["config"], params=meta["params"],
                            data=meta["data"], metrics=meta.get("metrics", {}))
    if spec.family == "flux":
        checkpoint.scale = FluxScale(**meta["scale"])
        checkpoint.bounds, checkpoint.grid_shape = tuple(meta["bounds"]), tuple(meta["grid_shape"])
    checkpoint.scales = scales
    return checkpoint
