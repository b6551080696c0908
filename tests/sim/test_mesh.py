"""Meshes of tagged outlines: topology, tags, local refinement, and clear errors for bad outlines."""

import numpy as np
import pytest

from iceviz.sim.mesh import MeshError, mesh_outline, rectangle


def test_rectangle_mesh_topology_tags_and_edges():
    mesh = mesh_outline(*rectangle(0, 40e3, 0, 10e3), max_area=4e6)
    assert (mesh.areas() > 0).all() and mesh.areas().max() <= 4e6 * 1.0001
    assert mesh.areas().sum() == pytest.approx(40e3 * 10e3)
    # Euler: a triangulated disc has E = N + T - 1 edges
    assert len(mesh.edges) == mesh.n_nodes + len(mesh.triangles) - 1
    assert (mesh.edges[:, 0] < mesh.edges[:, 1]).all()
    x, y = mesh.points.T
    assert np.allclose(x[mesh.boundary_nodes("inflow")], 0)
    assert np.allclose(x[mesh.boundary_nodes("front")], 40e3)
    walls = mesh.boundary_nodes("wall")
    assert np.isin(y[walls], [0.0, 10e3]).all()
    assert set(mesh.boundary) == {"inflow", "front", "wall"}


def test_local_refinement_follows_the_size_function():
    fine_near_front = lambda p: np.where(p[:, 0] > 30e3, 400.0, 4000.0)  # noqa: E731
    mesh = mesh_outline(*rectangle(0, 40e3, 0, 10e3), max_area=1e7, size=fine_near_front)
    centres = mesh.points[mesh.triangles].mean(axis=1)
    area = mesh.areas()
    fine, coarse = area[centres[:, 0] > 31e3], area[centres[:, 0] < 25e3]
    assert np.median(fine) < 0.05 * np.median(coarse)
    assert np.median(fine) < 1.5 * np.sqrt(3) / 4 * 400.0**2


@pytest.mark.parametrize("vertices, tags, message", [
    (np.zeros((0, 2)), [], "at least 3 vertices"),
    ([[0, 0], [1, 0]], ["wall", "wall"], "at least 3 vertices"),
    ([[0, 0], [1, 0], [1, 1], [0, 0]], ["wall"] * 4, "closed from the last back to the first"),
    ([[0, 0], [1, 0], [1, 1]], ["wall", "wall"], "need 3 boundary tags"),
    ([[0, 0], [1, 0], [1, 1]], ["wall", "wall", "beach"], "unknown boundary tags"),
    ([[0, 0], [1, 1], [1, 0]], ["wall"] * 3, "counter-clockwise"),
    ([[0, 0], [1, 0], [2, 0]], ["wall"] * 3, "encloses no area"),
    ([[0, 0], [1, 0], [1, 0], [0, 1]], ["wall"] * 4, "zero length"),
    ([[0, 0], [1, np.nan], [0, 1]], ["wall"] * 3, "non-finite"),
    ([[0, 0], [2, 2], [2, 0], [0, 2]], ["wall"] * 4, "crosses itself"),  # a bow tie
    ([[0, 0], [4, 0], [4, 2], [1, 0], [0, 2]], ["wall"] * 5, "crosses itself"),  # a vertex on another side
])
def test_bad_outlines_are_refused_with_the_reason(vertices, tags, message):
    with pytest.raises(MeshError, match=message):
        mesh_outline(vertices, tags, max_area=0.1)


def test_max_area_must_be_positive():
    with pytest.raises(MeshError, match="max_area"):
        mesh_outline(*rectangle(0, 1, 0, 1), max_area=-1.0)
