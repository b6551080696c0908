"""Checkpoints: safetensors weights plus a JSON description, never pickles.

A checkpoint holds the model's tensors and, in the safetensors metadata, what
is needed to rebuild and use it without the training data: the registry
name, the network config, the hyper-parameters, the data spec and its
scaling, and the final metrics. Loading never unpickles anything, so a
checkpoint from an untrusted source cannot run code, and it checks what the
file says before it allocates anything from it, so such a checkpoint cannot
make a server that loads it allocate more than :data:`MAX_CHECKPOINT_BYTES`
(and a few times that while the network is built) either.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file, save_file

from iceviz.data.problem import FluxScale
from iceviz.data.region import check_bounds
from iceviz.models.emulators import make_emulator, mlp_parameters
from iceviz.models.ensemble import make_model
from iceviz.models.registry import ModelSpec, get_model
from iceviz.models.viscosity import ViscosityPINN
from iceviz.training.emulator_data import EmulatorScales

FORMAT = "iceviz-checkpoint-1"
MESH_POINTS, MESH_EDGES = "mesh.points", "mesh.edges"
"""Extra tensors of an emulator checkpoint: its mesh's node coordinates [m] and edges."""

MAX_CHECKPOINT_BYTES = 512 * 2**20
"""The most a checkpoint may take, each of: its file, the tensors its header declares, and the weights its
config implies [bytes]. The largest network the registry's bounds allow, a viscosity PINN of 8 sub-domains of
12 layers of 512 units, holds 185 MB of weights; the iceviz defaults hold well under 1 MB."""
MAX_HEADER_BYTES = 16 * 2**20
"""The most a checkpoint's JSON header (its tensor table and metadata) may take [bytes]."""
MAX_GRID_CELLS = 2000 * 2000
"""The most cells a flux checkpoint's map grid may have (the data sets' grids have 100 a side)."""
MAX_MESH_NODES = 1_000_000
"""The most nodes an emulator checkpoint's mesh may have."""
DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
               "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}
"""Bytes per element of each safetensors dtype."""
FLUX_POSITIVE = ("length", "flux", "surface")
SHELF_POSITIVE = ("x_r", "y_r", "u_r", "v_r", "h0")
EMULATOR_POSITIVE = ("length", "speed", "slope", "bed_slope", "h_std", "bed_std", "forcing_std", "forcing_rms",
                     "duration", "dv", "dh")
"""The fields of each family's scales that divide (or are divided into), so must be above zero."""


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
    extra_meta, extra_tensors = _hooks(trainer.spec).save(trainer)
    meta.update(extra_meta)
    tensors.update(extra_tensors)
    save_file(tensors, str(path), metadata={"iceviz": json.dumps(meta)})
    return path


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild the model saved at ``path``.

    Everything the file says is checked before anything is allocated from it: its size, the tensors its
    header declares (:data:`MAX_CHECKPOINT_BYTES`), the metadata's hyper-parameters and network sizes
    (against the registry's bounds), the weights the config implies, and the scales, bounds and grid.

    Parameters
    ----------
    path : a ``.safetensors`` file written by :func:`save_checkpoint`.
    device : where the model goes.

    Returns
    -------
    Checkpoint
        the model, in eval mode, with its description.

    Raises
    ------
    ValueError
        naming the file and what is wrong, whatever went wrong (a caller need catch nothing else).
    """
    path = Path(path)
    try:
        return _load(path, device)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err
    except KeyError as err:
        raise ValueError(f"{path}: the checkpoint lacks {err} (written by another program, or edited)") from err
    except Exception as err:  # noqa: BLE001 - torch, safetensors, json and the OS raise many kinds
        raise ValueError(f"{path}: not a loadable checkpoint ({type(err).__name__}: {err})") from err


def _load(path: Path, device: str | torch.device) -> Checkpoint:
    """:func:`load_checkpoint` with messages that do not name the file yet."""
    if not path.is_file():
        raise ValueError("no such checkpoint file")
    size = path.stat().st_size
    if size > MAX_CHECKPOINT_BYTES:
        raise ValueError(f"the file holds {size:,} bytes, more than a checkpoint may ({MAX_CHECKPOINT_BYTES:,})")
    header = read_header(path, size)
    _check_declared_tensors(header)
    meta = _iceviz_metadata(header)
    spec = get_model(meta["model"])  # the model must still be registered
    fields = check_metadata(spec, meta, header)
    tensors = load_file(str(path), device=str(device))
    model = _rebuild(spec, meta["config"], tensors)
    try:
        model.load_state_dict(tensors)
    except RuntimeError as err:
        raise ValueError(f"weights do not match the saved model config ({err})") from err
    model.to(device).eval()
    return Checkpoint(model_name=spec.name, model=model, config=meta["config"], params=meta["params"],
                      data=meta["data"], metrics=meta["metrics"], **fields)


def _rebuild(spec: ModelSpec, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> torch.nn.Module:
    """The (untrained) network ``config`` describes (its family's extra tensors taken out of ``tensors``)."""
    try:
        return _hooks(spec).rebuild(config, tensors)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"cannot rebuild the model from its config ({type(err).__name__}: {err})") from None


def _hooks(spec: ModelSpec) -> "CheckpointHooks":
    """The checkpoint hooks of ``spec``'s family, from its registration."""
    from iceviz.training.families import get_family  # the families name their hooks, defined below

    return get_family(spec.family).checkpoint


# -- checks of what a file says, before anything is allocated from it ----------------------------------------------
def read_header(path: Path, size: int) -> dict[str, Any]:
    """The JSON header of the safetensors file at ``path`` (``size`` bytes): its tensor table and ``__metadata__``,
    read without the tensors (8 bytes of little-endian header length, then that many bytes of JSON)."""
    with path.open("rb") as f:
        head = f.read(8)
        length = struct.unpack("<Q", head)[0] if len(head) == 8 else None
        if length is None or length > min(size - 8, MAX_HEADER_BYTES):
            raise ValueError(f"not a readable safetensors checkpoint (a file of {size} bytes whose first 8 do not "
                             f"give the length of a header it holds, of at most {_mib(MAX_HEADER_BYTES)})")
        raw = f.read(length)
    try:
        header = json.loads(raw)
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError
        raise ValueError(f"not a readable safetensors checkpoint (its header is not JSON: {err})") from None
    if not isinstance(header, dict):
        raise ValueError("not a readable safetensors checkpoint (its header is not a JSON object)")
    return header


def _declared_bytes(header: dict[str, Any]) -> dict[str, int]:
    """Bytes of each tensor a safetensors ``header`` declares, from its dtype and shape (none is read)."""
    sizes = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        dtype, shape = (entry.get("dtype"), entry.get("shape")) if isinstance(entry, dict) else (None, None)
        known = isinstance(dtype, str) and dtype in DTYPE_BYTES
        if not (known and isinstance(shape, list) and all(_is_count(n) for n in shape)):
            raise ValueError(f"not a readable safetensors checkpoint (tensor {name!r}: {entry!r:.100})")
        sizes[name] = DTYPE_BYTES[dtype] * math.prod(shape)
    return sizes


def _check_declared_tensors(header: dict[str, Any]) -> None:
    """ValueError when the tensors the header declares would take more than :data:`MAX_CHECKPOINT_BYTES`."""
    sizes = _declared_bytes(header)
    total = sum(sizes.values())
    if total > MAX_CHECKPOINT_BYTES:
        largest = max(sizes, key=sizes.__getitem__)
        raise ValueError(f"its header declares {_mib(total)} of tensors (the largest, {largest!r}, of shape "
                         f"{header[largest]['shape']}), more than a checkpoint may hold ({_mib(MAX_CHECKPOINT_BYTES)})")


def _iceviz_metadata(header: dict[str, Any]) -> dict[str, Any]:
    """The iceviz description in a safetensors header: of this format, with the keys every family has."""
    metadata = header.get("__metadata__")
    raw = metadata.get("iceviz") if isinstance(metadata, dict) else None
    if not isinstance(raw, str):
        raise ValueError("a safetensors file, but without iceviz metadata")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ValueError(f"iceviz metadata is not valid JSON ({err})") from None
    if not isinstance(meta, dict):
        raise ValueError("iceviz metadata is not a JSON object")
    if meta.get("format") != FORMAT:
        raise ValueError(f"unsupported checkpoint format {meta.get('format')!r} (expected {FORMAT!r})")
    missing = [key for key in ("model", "config", "params", "data") if key not in meta]
    if missing:
        raise ValueError(f"iceviz metadata lacks {', '.join(missing)}")
    if not isinstance(meta["model"], str) or not isinstance(meta["data"], str):
        raise ValueError(f"model and data must be names, got {meta['model']!r:.60} and {meta['data']!r:.60}")
    meta.setdefault("metrics", {})
    for key in ("config", "params", "metrics"):
        _section(meta, key)
    return meta


def check_metadata(spec: ModelSpec, meta: dict[str, Any], header: dict[str, Any]) -> dict[str, Any]:
    """Check ``meta`` (a checkpoint's description of a ``spec`` model) before anything is built from it:
    hyper-parameters and network sizes within the registry's bounds, numbers finite, the weights the config
    implies within :data:`MAX_CHECKPOINT_BYTES`, and the family's own fields. Returns those fields, parsed
    (the :class:`Checkpoint` attributes ``scale``, ``bounds``, ``grid_shape`` or ``scales``)."""
    params, config = meta["params"], meta["config"]
    _check_finite("params", params)
    _check_finite("config", config)
    known = {key: value for key, value in params.items() if key in spec.params.param and key != "name"}
    _check_registry_bounds(spec, "params", known)  # entries this iceviz no longer knows are kept as they are
    hooks = _hooks(spec)
    _check_registry_bounds(spec, "config", hooks.hyperparameters(config))
    fields = hooks.fields(meta, header)
    estimate = hooks.config_bytes(config)
    if estimate > MAX_CHECKPOINT_BYTES:
        raise ValueError(f"config: the network it describes would take about {_mib(estimate)}, more than a "
                         f"checkpoint may hold ({_mib(MAX_CHECKPOINT_BYTES)})")
    return fields


def _config_entries(config: dict[str, Any], paths: dict[tuple[str, ...], str]) -> dict[str, Any]:
    """The entries of ``config`` at ``paths`` (keys into nested objects) that are there, by their registry
    names."""
    out = {}
    for keys, name in paths.items():
        value: Any = config
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if value is not None:
            out[name] = value
    return out


def _check_registry_bounds(spec: ModelSpec, where: str, values: dict[str, Any]) -> None:
    """ValueError naming the key, the value and what the registry allows when one of ``values`` is out of bounds."""
    try:
        spec.make_params(**values)
    except ValueError as err:
        raise ValueError(f"{where}: {err}") from None


def _check_grid_shape(value: Any) -> tuple[int, int]:
    """A flux checkpoint's map grid (ny, nx): two positive integers with at most :data:`MAX_GRID_CELLS` cells."""
    if not (isinstance(value, list) and len(value) == 2 and all(_is_count(n) and n > 0 for n in value)):
        raise ValueError(f"grid_shape must be two positive integers (ny, nx), got {value!r:.60}")
    if value[0] * value[1] > MAX_GRID_CELLS:
        raise ValueError(f"grid_shape {value} has {value[0] * value[1]:,} cells, more than {MAX_GRID_CELLS:,}")
    return value[0], value[1]


def _check_mesh(header: dict[str, Any]) -> None:
    """An emulator checkpoint's mesh, from the header: [N, 2] points, N at most :data:`MAX_MESH_NODES`, and
    [E, 2] edges, E at most 3 N (a triangulation's)."""
    shapes = {name: header.get(name, {}).get("shape") for name in (MESH_POINTS, MESH_EDGES)}
    if not all(isinstance(s, list) and len(s) == 2 and s[1] == 2 for s in shapes.values()):
        raise ValueError(f"an emulator checkpoint needs its mesh as [N, 2] tensors {MESH_POINTS!r} and "
                         f"{MESH_EDGES!r}, got shapes {shapes}")
    nodes, edges = shapes[MESH_POINTS][0], shapes[MESH_EDGES][0]
    if nodes > MAX_MESH_NODES or edges > 3 * nodes:
        raise ValueError(f"a mesh of {nodes:,} nodes and {edges:,} edges: at most {MAX_MESH_NODES:,} nodes "
                         "and three edges a node")


def config_bytes(family: str, config: dict[str, Any]) -> int:
    """An upper bound [bytes] on the weights (and, for a grid CNN, its interpolation matrices) of the network a
    ``family`` model's ``config`` describes, from its sizes alone (sizes already within the registry's bounds)."""
    from iceviz.training.families import get_family

    return get_family(family).checkpoint.config_bytes(config)


# -- each family's part: what its checkpoints hold beyond the common keys, how that is checked and rebuilt ---------
@dataclass(frozen=True)
class CheckpointHooks:
    """A family's part of its checkpoints (registered with the family, :mod:`iceviz.training.families`)."""

    save: Callable[[Any], tuple[dict[str, Any], dict[str, torch.Tensor]]]
    """trained trainer -> (metadata, tensors) to store beside the common ones."""
    rebuild: Callable[[dict[str, Any], dict[str, torch.Tensor]], torch.nn.Module]
    """(config, tensors) -> the untrained network, its extra tensors taken out of ``tensors``."""
    hyperparameters: Callable[[dict[str, Any]], dict[str, Any]]
    """config -> its entries that are registry hyper-parameters, by their registry names (held to its bounds)."""
    fields: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]
    """(metadata, safetensors header) -> the family's :class:`Checkpoint` attributes, checked."""
    config_bytes: Callable[[dict[str, Any]], int]
    """config -> an upper bound on the bytes of the network it describes."""


def _flux_save(trainer: Any) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    problem = trainer.problem
    return dict(scale=asdict(problem.scale), bounds=list(problem.bounds), grid_shape=list(trainer.grid_shape)), {}


def _flux_fields(meta: dict[str, Any], header: dict[str, Any]) -> dict[str, Any]:
    """A flux model's scale, bounds and map grid."""
    scale = _section(meta, "scale")
    _check_scale("scale", scale, FLUX_POSITIVE)
    return dict(scale=FluxScale(**scale), bounds=check_bounds(_as_list("bounds", meta["bounds"])),
                grid_shape=_check_grid_shape(meta["grid_shape"]))


def _flux_bytes(config: dict[str, Any]) -> int:
    surface = config.get("surface") or {}
    features = _count("config.surface.features", surface.get("features", 0))
    members = _count("config.members", config.get("members", 1))
    return 4 * members * mlp_parameters([3] + [config["width"]] * config["depth"] + [2]) + 32 * features


FLUX_CHECKPOINT = CheckpointHooks(
    save=_flux_save, rebuild=lambda config, tensors: make_model(config),
    hyperparameters=lambda config: _config_entries(config, {
        ("members",): "members", ("width",): "width", ("depth",): "depth", ("activation",): "activation",
        ("aux_derivative",): "aux_derivative", ("surface", "length_scale"): "surface_length",
        ("surface", "seed"): "seed"}),
    fields=_flux_fields, config_bytes=_flux_bytes)


def _viscosity_hyperparameters(config: dict[str, Any]) -> dict[str, Any]:
    out = _config_entries(config, {("width",): "width", ("depth",): "depth", ("mu_width",): "mu_width",
                                   ("mu_depth",): "mu_depth"})
    out["subdomains"] = len(_as_list("config.edges", config.get("edges", []))) + 1
    return out


def _viscosity_fields(meta: dict[str, Any], header: dict[str, Any]) -> dict[str, Any]:
    """A viscosity PINN's shelf scales (in its config), checked; nothing more to parse."""
    _check_scale("config.scales", _section(meta["config"], "scales"), SHELF_POSITIVE)
    return {}


def _viscosity_bytes(config: dict[str, Any]) -> int:
    parts = len(config.get("edges", [])) + 1
    flow = mlp_parameters([2] + [config["width"]] * config["depth"] + [3])
    if config.get("separate_thickness"):
        flow += mlp_parameters([2] + [config["width"]] * config["depth"] + [1])
    log_mu = mlp_parameters([2] + [config["mu_width"]] * config["mu_depth"] + [1])
    return 4 * parts * (flow + log_mu)


VISCOSITY_CHECKPOINT = CheckpointHooks(
    save=lambda trainer: ({}, {}), rebuild=lambda config, tensors: ViscosityPINN.from_config(config),
    hyperparameters=_viscosity_hyperparameters, fields=_viscosity_fields, config_bytes=_viscosity_bytes)


def _emulator_save(trainer: Any) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Its scales, and its mesh: the model's graph travels with it."""
    mesh = trainer.problem.mesh
    return dict(scales=trainer.scales.as_dict()), {
        MESH_POINTS: torch.as_tensor(mesh.points, dtype=torch.float64),
        MESH_EDGES: torch.as_tensor(mesh.edges, dtype=torch.int64)}


def _emulator_rebuild(config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> torch.nn.Module:
    points, edges = tensors.pop(MESH_POINTS).cpu().numpy(), tensors.pop(MESH_EDGES).cpu().numpy()
    return make_emulator(config, points, edges)


def _emulator_fields(meta: dict[str, Any], header: dict[str, Any]) -> dict[str, Any]:
    """An emulator's scales (the inputs this iceviz builds from them must be those its network takes) and mesh
    size, checked."""
    raw = _section(meta, "scales")
    _check_scale("scales", raw, EMULATOR_POSITIVE)
    scales = EmulatorScales.from_dict(raw)
    for key, kind in (("n_scalars", "scalar"), ("n_vectors", "vector")):
        saved, built = meta["config"].get(key), getattr(scales, key)
        if saved != built:
            raise ValueError(f"the model takes {saved} {kind} inputs per node, this iceviz builds "
                             f"{built} (saved by an older iceviz: retrain the model)")
    _check_mesh(header)
    return dict(scales=scales)


def _emulator_bytes(config: dict[str, Any]) -> int:
    layers, channels = config.get("layers", 0), config.get("channels", 0)
    width = max(config.get("width", 0), _count("config.hidden", config.get("hidden", 0)))  # EGCN: node-wise width
    inputs = config["n_scalars"] + 2 * config["n_vectors"] + 3 * channels + 2
    return 4 * 10 * (layers + 3) * (width + inputs) ** 2 + 256 * config.get("cells", 0)


EMULATOR_CHECKPOINT = CheckpointHooks(
    save=_emulator_save, rebuild=_emulator_rebuild,
    hyperparameters=lambda config: _config_entries(config, {
        ("width",): "width", ("layers",): "layers", ("channels",): "channels", ("cells",): "cells"}),
    fields=_emulator_fields, config_bytes=_emulator_bytes)


def _check_scale(where: str, values: dict[str, Any], positive: tuple[str, ...]) -> None:
    """ValueError naming the field of a scales record that is not a finite number, or not above zero where
    it divides (``positive``; each number of a listed field)."""
    _check_finite(where, values)
    for key in positive:
        if key in values:
            numbers = values[key] if isinstance(values[key], list) else [values[key]]
            if not all(isinstance(x, (int, float)) and x > 0 for x in numbers):
                raise ValueError(f"{where}.{key} is {values[key]!r:.60}: it must be above zero")


def _check_finite(where: str, value: Any) -> None:
    """ValueError naming the first number in ``value`` (nested in objects and lists) that is NaN or infinite."""
    if isinstance(value, dict):
        for key, item in value.items():
            _check_finite(f"{where}.{key}", item)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_finite(f"{where}[{i}]", item)
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where} is {value}: it must be a finite number")


def _section(meta: dict[str, Any], key: str) -> dict[str, Any]:
    """``meta[key]``, which must be a JSON object."""
    value = meta[key]
    if not isinstance(value, dict):
        raise ValueError(f"{key} must be a JSON object, got {value!r:.60}")
    return value


def _as_list(where: str, value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"{where} must be a list, got {value!r:.60}")
    return value


def _count(where: str, value: Any) -> int:
    if not _is_count(value):
        raise ValueError(f"{where} must be a whole number of at least 0, got {value!r:.60}")
    return value


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB"
