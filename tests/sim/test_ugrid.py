"""Runs on disk as UGRID NetCDF: exact round trip, the conventions' attributes, and clear errors for bad files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from iceviz.data.netcdf import grid_dataset, write_netcdf
from iceviz.sim.model import DIAGNOSTICS, FIELDS, STEP_KEYS, Forcing, RunSettings, SimRun, Simulator
from iceviz.sim.scenarios import get_scenario
from iceviz.sim.ssa import SimulationError
from iceviz.sim.ugrid import read_run, write_run


@pytest.fixture(scope="module")
def simulator() -> Simulator:
    return Simulator(get_scenario("confined-shelf", resolution=8e3, refined_resolution=4e3, spin_up_years=5))


@pytest.fixture(scope="module")
def run(simulator) -> SimRun:
    """A year with melt and a retreating front (so every budget term is exercised), from the initial state."""
    return simulator.run(Forcing(melt=20.0, calving="retreat", retreat_rate=3000.0),
                         RunSettings(years=1, snapshot_every=0.5))


@pytest.fixture(scope="module")
def written(run, tmp_path_factory):
    return write_run(run, tmp_path_factory.mktemp("ugrid") / "nested" / "run.nc")


def assert_same_run(a: SimRun, b: SimRun) -> None:
    pairs = [(a.mesh.points, b.mesh.points), (a.mesh.triangles, b.mesh.triangles), (a.bed, b.bed),
             (a.times, b.times), *((a.fields[k], b.fields[k]) for k in FIELDS),
             *((a.diagnostics[k], b.diagnostics[k]) for k in DIAGNOSTICS),
             *((a.steps[k], b.steps[k]) for k in STEP_KEYS)]
    for x, y in pairs:
        assert x.dtype == y.dtype and x.shape == y.shape
        np.testing.assert_array_equal(x, y)
    assert list(a.fields) == list(b.fields) and list(a.diagnostics) == list(b.diagnostics)
    assert list(a.steps) == list(b.steps)
    assert list(a.mesh.boundary) == list(b.mesh.boundary)
    for tag in a.mesh.boundary:
        assert a.mesh.boundary[tag].dtype == b.mesh.boundary[tag].dtype
        np.testing.assert_array_equal(a.mesh.boundary[tag], b.mesh.boundary[tag])
    assert a.params == b.params and a.wall_time == b.wall_time


def test_round_trip_is_exact(run, written):
    assert written.is_file() and written.name == "run.nc"
    back = read_run(written)
    assert_same_run(run, back)
    assert back.budget == run.budget
    assert run.steps["calved"].sum() > 0 and run.steps["melt"].sum() > 0  # a non-trivial run
    assert not list(written.parent.glob("*.tmp"))  # the temporary file was renamed into place


def test_a_run_without_steps_round_trips(simulator, tmp_path):
    run = simulator.run(Forcing(), RunSettings(years=0))
    assert len(run.steps["t"]) == 0
    assert_same_run(run, read_run(write_run(run, tmp_path / "zero.nc")))


def test_ugrid_topology_and_attributes(run, written):
    with xr.open_dataset(written) as ds:
        ds = ds.load()
    n, mesh = run.mesh.n_nodes, run.mesh
    assert ds.attrs["Conventions"] == "CF-1.8 UGRID-1.0"
    topo = ds["mesh"].attrs
    assert topo["cf_role"] == "mesh_topology" and topo["topology_dimension"] == 2
    x_name, y_name = topo["node_coordinates"].split()
    np.testing.assert_array_equal(np.column_stack([ds[x_name].values, ds[y_name].values]), mesh.points)
    faces = ds[topo["face_node_connectivity"]]
    assert faces.attrs["cf_role"] == "face_node_connectivity" and faces.attrs["start_index"] == 0
    assert faces.shape == (len(mesh.triangles), 3)
    assert faces.values.min() == 0 and faces.values.max() == n - 1  # valid, 0-based node indices
    edges = ds[topo["edge_node_connectivity"]]
    assert edges.attrs["cf_role"] == "edge_node_connectivity" and edges.attrs["start_index"] == 0
    np.testing.assert_array_equal(edges.values, mesh.edges)
    # boundary edges and their tags
    nodes, tags = ds[topo["boundary_node_connectivity"]].values, ds["mesh_boundary_tag"]
    meanings = tags.attrs["flag_meanings"].split()
    assert meanings == list(mesh.boundary) and list(tags.attrs["flag_values"]) == list(range(len(meanings)))
    for code, tag in enumerate(meanings):
        np.testing.assert_array_equal(nodes[tags.values == code], mesh.boundary[tag])
    # node data, time, diagnostics and steps
    for name in (*FIELDS, "bed"):
        var = ds[name]
        assert var.attrs["mesh"] == "mesh" and var.attrs["location"] == "node"
        assert var.attrs["units"] and var.attrs["long_name"]
    for name in FIELDS:
        assert ds[name].dims == ("time", "nMesh_node") and ds[name].shape == (len(run.times), n)
    assert ds["vx"].attrs["units"] == "m yr-1" and ds["h"].attrs["units"] == "m"
    assert ds["time"].attrs["units"] == "yr"
    np.testing.assert_array_equal(ds["time"].values, [0.0, 0.5, 1.0])
    for name in DIAGNOSTICS:
        assert ds[name].dims == ("time",) and ds[name].attrs["units"]
    for key in STEP_KEYS:
        assert ds[f"step_{key}"].dims == ("step",) and ds[f"step_{key}"].size == len(run.steps["t"])
    # parameters: the exact JSON, and flat readable attributes
    assert json.loads(ds.attrs["params"]) == run.params
    assert ds.attrs["scenario"] == "confined-shelf" and ds.attrs["scenario_resolution"] == 8e3
    assert ds.attrs["forcing_melt"] == 20.0 and ds.attrs["forcing_calving"] == "retreat"
    assert ds.attrs["settings_years"] == 1 and ds.attrs["wall_time"] == run.wall_time


def test_missing_file(tmp_path):
    with pytest.raises(SimulationError, match=r"nope\.nc: no such file"):
        read_run(tmp_path / "nope.nc")


def test_foreign_netcdf_names_what_is_missing(tmp_path):
    path = write_netcdf(grid_dataset(np.arange(3.0), np.arange(2.0), {"q": (np.zeros((2, 3)), "m", "q")}),
                        tmp_path / "grid.nc")
    with pytest.raises(SimulationError) as err:
        read_run(path)
    message = str(err.value)
    assert str(path) in message and "not an iceviz simulation run" in message
    assert "mesh" in message and "mesh_face_nodes" in message and "params" in message


def test_truncated_and_garbage_files(written, tmp_path):
    truncated = tmp_path / "truncated.nc"
    truncated.write_bytes(written.read_bytes()[: written.stat().st_size // 2])
    garbage = tmp_path / "garbage.nc"
    garbage.write_text("not a netcdf file\n")
    for path in (truncated, garbage):
        with pytest.raises(SimulationError, match="cannot read simulation run") as err:
            read_run(path)
        assert str(path) in str(err.value)


def test_inconsistent_edges_are_rejected(written, tmp_path):
    with xr.open_dataset(written) as ds:
        ds = ds.load()
    ds["mesh_edge_nodes"].values[0] = [0, 0]
    path = tmp_path / "edited.nc"
    ds.to_netcdf(path)
    with pytest.raises(SimulationError, match="mesh_edge_nodes are not the unique edges"):
        read_run(path)


def test_unwritable_path_names_the_file(run, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SimulationError, match=r"cannot write simulation run .*file/run\.nc"):
        write_run(run, blocker / "run.nc")
