"""A simulation run on disk: NetCDF4 following the CF-1.8 and UGRID-1.0 conventions.

One file holds one :class:`~iceviz.sim.model.SimRun`:

* ``mesh``, the UGRID mesh topology (``cf_role = "mesh_topology"``, 2-D) naming the node
  coordinates ``mesh_node_x`` / ``mesh_node_y`` [m], the triangles ``mesh_face_nodes``, the
  mesh's unique edges ``mesh_edge_nodes`` and the boundary edges ``mesh_boundary_nodes``
  (all 0-based), with ``mesh_boundary_tag`` giving each boundary edge's side
  (``flag_values`` / ``flag_meanings``: inflow, wall, front, ...);
* the per-node fields (:data:`~iceviz.sim.model.FIELDS`) on ``(time, nMesh_node)`` and the bed
  on ``(nMesh_node)``, each with ``mesh = "mesh"`` and ``location = "node"``;
* the per-snapshot diagnostics on ``(time)``, ``time`` being model years;
* the per-step records (solver statistics and mass-budget terms) as ``step_<key>`` on ``(step)``;
* the run's parameters as a JSON string (``params``) plus flat readable attributes
  (``scenario``, ``scenario_length``, ``forcing_melt``, ``settings_years``, ...) and ``wall_time`` [s].

Reading gives back the very same arrays, parameters and boundary tags.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import xarray as xr

from iceviz.files import backend_failure
from iceviz.sim.mesh import IceMesh
from iceviz.sim.model import DIAGNOSTICS, FIELDS, STEP_KEYS, SimRun
from iceviz.sim.ssa import SimulationError

CONVENTIONS = "CF-1.8 UGRID-1.0"
MESH = "mesh"
NODE, FACE, EDGE, BOUNDARY = "nMesh_node", "nMesh_face", "nMesh_edge", "nMesh_boundary"
NODE_X, NODE_Y = "mesh_node_x", "mesh_node_y"
FACE_NODES, EDGE_NODES = "mesh_face_nodes", "mesh_edge_nodes"
BOUNDARY_NODES, BOUNDARY_TAG = "mesh_boundary_nodes", "mesh_boundary_tag"

FIELD_META = {
    "vx": ("m yr-1", "ice velocity along x", "land_ice_x_velocity"),
    "vy": ("m yr-1", "ice velocity along y", "land_ice_y_velocity"),
    "h": ("m", "ice thickness", "land_ice_thickness"),
    "surface": ("m", "ice surface elevation above sea level", None),
    "base": ("m", "ice base elevation above sea level", None),
    "floating": ("1", "floating mask (1 where the ice floats, 0 where grounded)", None),
}
"""Per-node field -> (units, long_name, CF standard_name or None)."""
DIAGNOSTIC_META = {
    "volume": ("m3", "ice volume"),
    "volume_above_flotation": ("m3", "grounded ice volume above flotation"),
    "grounded_area": ("m2", "grounded area"),
    "grounding_line": ("m", "grounding-line position along the centreline"),
    "front": ("m", "calving-front position along x"),
}
STEP_META = {
    "t": ("yr", "model time at the end of the step"),
    "dt": ("yr", "time step"),
    "iterations": ("1", "momentum solver iterations"),
    "converged": ("1", "1 if the momentum solve converged, else 0"),
    "volume_change": ("m3", "ice volume change over the step"),
    "smb": ("m3", "volume gained by surface mass balance"),
    "melt": ("m3", "volume lost to basal melt"),
    "inflow": ("m3", "net volume entering through the inflow sides"),
    "outflow": ("m3", "net volume leaving through the other sides"),
    "floor": ("m3", "volume created by the thickness floor"),
    "calved": ("m3", "volume removed by a retreating calving front"),
}
REQUIRED = (MESH, NODE_X, NODE_Y, FACE_NODES, EDGE_NODES, BOUNDARY_NODES, BOUNDARY_TAG, "time", "bed",
            *FIELDS, *DIAGNOSTICS, *(f"step_{k}" for k in STEP_KEYS))
"""Variables every run file has."""


def write_run(run: SimRun | xr.Dataset, path: str | os.PathLike) -> Path:
    """Write ``run`` (or its dataset, as :func:`run_dataset` makes it) to ``path`` (parent folders created, the file
    replaced atomically); the path written."""
    p = Path(path).expanduser()
    ds = run if isinstance(run, xr.Dataset) else run_dataset(run)
    encoding = {name: {"zlib": True, "complevel": 4} for name in (*FIELDS, "bed")}
    tmp = None
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=p.name + ".", suffix=".tmp", dir=p.parent)
        os.close(fd)
        ds.to_netcdf(tmp, format="NETCDF4", encoding=encoding)
        os.replace(tmp, p)
    except Exception as exc:  # noqa: BLE001 - OSError, ValueError, backend errors alike
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        raise SimulationError(f"cannot write simulation run {p}: {type(exc).__name__}: {exc}") from None
    return p


def run_dataset(run: SimRun) -> xr.Dataset:
    """The UGRID dataset of ``run`` (what :func:`write_run` writes)."""
    mesh = run.mesh
    tags = list(mesh.boundary)
    if any(not tag or tag.split() != [tag] for tag in tags):
        raise SimulationError(f"boundary tags must be single words to be written as flag_meanings, got {tags}")
    b_nodes = np.concatenate([mesh.boundary[t] for t in tags]) if tags else np.zeros((0, 2), dtype=np.int64)
    b_tags = np.concatenate([np.full(len(mesh.boundary[t]), i, dtype=np.int32) for i, t in enumerate(tags)]) \
        if tags else np.zeros(0, dtype=np.int32)
    on_node = {"mesh": MESH, "location": "node"}
    data = {
        MESH: ((), np.int32(0), {
            "cf_role": "mesh_topology", "long_name": "topology of the 2-D triangular mesh",
            "topology_dimension": np.int32(2), "node_coordinates": f"{NODE_X} {NODE_Y}",
            "face_node_connectivity": FACE_NODES, "edge_node_connectivity": EDGE_NODES,
            "boundary_node_connectivity": BOUNDARY_NODES, "face_dimension": FACE, "edge_dimension": EDGE}),
        FACE_NODES: ((FACE, "Three"), mesh.triangles, {
            "cf_role": "face_node_connectivity", "start_index": np.int32(0),
            "long_name": "nodes of each triangle, counter-clockwise"}),
        EDGE_NODES: ((EDGE, "Two"), mesh.edges, {
            "cf_role": "edge_node_connectivity", "start_index": np.int32(0),
            "long_name": "the two nodes of each unique undirected edge (i < j)"}),
        BOUNDARY_NODES: ((BOUNDARY, "Two"), b_nodes, {
            "cf_role": "boundary_node_connectivity", "start_index": np.int32(0),
            "long_name": "the two nodes of each boundary edge"}),
        BOUNDARY_TAG: ((BOUNDARY,), b_tags, {
            "long_name": "side of each boundary edge", "flag_values": np.arange(len(tags), dtype=np.int32),
            "flag_meanings": " ".join(tags)}),
        "bed": ((NODE,), run.bed, {"units": "m", "long_name": "bed elevation above sea level",
                                   "standard_name": "bedrock_altitude", **on_node}),
    }
    for name in FIELDS:
        units, long_name, standard = FIELD_META[name]
        attrs = {"units": units, "long_name": long_name, **on_node}
        if standard:
            attrs["standard_name"] = standard
        data[name] = (("time", NODE), run.fields[name], attrs)
    for name in DIAGNOSTICS:
        units, long_name = DIAGNOSTIC_META[name]
        data[name] = (("time",), run.diagnostics[name], {"units": units, "long_name": long_name})
    for key in STEP_KEYS:
        units, long_name = STEP_META[key]
        data[f"step_{key}"] = (("step",), run.steps[key], {"units": units, "long_name": long_name})
    coords = {
        "time": ("time", run.times, {"units": "yr", "long_name": "model time", "axis": "T"}),
        NODE_X: (NODE, mesh.points[:, 0], {"units": "m", "long_name": "x of the mesh nodes (along flow)"}),
        NODE_Y: (NODE, mesh.points[:, 1], {"units": "m", "long_name": "y of the mesh nodes (across flow)"}),
    }
    ds = xr.Dataset(data, coords=coords)
    ds.attrs.update(flat_attributes(run.params))
    ds.attrs.update(Conventions=CONVENTIONS, title="iceviz simulation run",
                    source="iceviz finite-element shallow-shelf simulator",
                    params=json.dumps(run.params, sort_keys=True), wall_time=float(run.wall_time))
    return ds


def flat_attributes(params: dict, prefix: str = "") -> dict:
    """Readable attributes of nested ``params``: ``{"forcing": {"melt": 10}}`` -> ``{"forcing_melt": 10}``.

    Scalars only (booleans as 0 / 1); a key equal to its section's name is the section itself
    (``{"scenario": {"scenario": "confined-shelf"}}`` -> ``{"scenario": "confined-shelf"}``).
    """
    out: dict = {}
    section = prefix.rsplit("_", 1)[-1]
    for key, value in params.items():
        name = prefix if key == section else f"{prefix}_{key}" if prefix else key
        if isinstance(value, dict):
            out.update(flat_attributes(value, name))
        elif isinstance(value, (bool, np.bool_)):
            out[name] = int(value)
        elif isinstance(value, (int, float, str, np.integer, np.floating)):
            out[name] = value
    return out


def read_run(path: str | os.PathLike) -> SimRun:
    """The run written to ``path`` by :func:`write_run`; SimulationError naming the file and what is wrong."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise SimulationError(f"cannot read simulation run {p}: no such file")
    try:
        with xr.open_dataset(p, decode_times=False, decode_timedelta=False) as opened:
            ds = opened.load()
    except Exception as exc:  # noqa: BLE001 - truncated or foreign files fail in many ways
        raise SimulationError(f"cannot read simulation run {p}: {backend_failure(exc)}") from None
    missing = [name for name in REQUIRED if name not in ds.variables]
    missing += [f"attribute {a!r}" for a in ("params", "wall_time") if a not in ds.attrs]
    missing += [f"attribute {BOUNDARY_TAG}:{a}" for a in ("flag_values", "flag_meanings")
                if BOUNDARY_TAG in ds.variables and a not in ds[BOUNDARY_TAG].attrs]
    if missing:
        raise SimulationError(f"{p} is not an iceviz simulation run: missing {', '.join(missing)}")
    try:
        params = json.loads(ds.attrs["params"])
    except json.JSONDecodeError as exc:
        raise SimulationError(f"{p}: the 'params' attribute is not valid JSON ({exc})") from None
    tag_attrs = ds[BOUNDARY_TAG].attrs
    tags = str(tag_attrs["flag_meanings"]).split()
    codes = np.atleast_1d(tag_attrs["flag_values"])
    if len(tags) != len(codes):
        raise SimulationError(f"{p}: {BOUNDARY_TAG} has {len(codes)} flag_values but {len(tags)} flag_meanings")
    b_nodes, b_tags = ds[BOUNDARY_NODES].values, ds[BOUNDARY_TAG].values
    mesh = IceMesh(points=np.column_stack([ds[NODE_X].values, ds[NODE_Y].values]),
                   triangles=ds[FACE_NODES].values,
                   boundary={tag: b_nodes[b_tags == code] for tag, code in zip(tags, codes)})
    if not np.array_equal(mesh.edges, ds[EDGE_NODES].values):
        raise SimulationError(f"{p}: {EDGE_NODES} are not the unique edges of {FACE_NODES}")
    return SimRun(mesh=mesh, bed=ds["bed"].values, times=ds["time"].values,
                  fields={name: ds[name].values for name in FIELDS},
                  diagnostics={name: ds[name].values for name in DIAGNOSTICS},
                  steps={key: ds[f"step_{key}"].values for key in STEP_KEYS},
                  params=params, wall_time=float(ds.attrs["wall_time"]))
