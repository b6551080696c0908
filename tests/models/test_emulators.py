"""Mesh emulators: exact E(2) equivariance of the EGCN (and its absence in the seed's layer and the baselines),
mesh <-> raster interpolation, persistence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from iceviz.models.emulators import ARCHITECTURES, make_emulator
from iceviz.models.graph import (IncomingSum, batch_edges, mesh_to_raster, node_gradients, raster_centres,
                                 raster_to_mesh)
from iceviz.sim.mesh import mesh_outline

N_SCALARS = 7
N_VECTORS = 2


@pytest.fixture(scope="module")
def mesh():
    return mesh_outline(np.array([[0.0, 0], [60e3, 0], [60e3, 20e3], [0, 20e3]]), ["wall", "front", "wall", "inflow"],
                        max_area=4e7)


def inputs(mesh, batch=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = mesh.n_nodes
    pos = torch.as_tensor((mesh.points - mesh.points.mean(0)) / 2e4, dtype=torch.float32)
    return (torch.randn(batch, n, N_SCALARS, generator=g), torch.randn(batch, n, N_VECTORS, 2, generator=g),
            pos.expand(batch, -1, -1).clone())


def transforms():
    """(name, 2 x 2 orthogonal matrix, translation) in the scaled units."""
    rotation = lambda a: torch.tensor([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]], dtype=torch.float32)
    mirror = torch.tensor([[1.0, 0.0], [0.0, -1.0]])
    return [("rotation", rotation(0.9), torch.zeros(2)), ("reflection", mirror @ rotation(0.3), torch.zeros(2)),
            ("translation", torch.eye(2), torch.tensor([4.0, -2.5])),
            ("all three", mirror @ rotation(2.0), torch.tensor([-1.0, 7.0]))]


def trained_like(model: torch.nn.Module) -> torch.nn.Module:
    """Gives the parameters that start at zero (the EGCN's node-wise velocity weights) random values, as training
    would, so that the symmetry checks cover them too."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return model


def transformed_error(model, mesh, matrix, shift):
    scalars, vectors, pos = inputs(mesh)
    with torch.no_grad():
        out = model(scalars, vectors, pos)
        moved = model(scalars, vectors @ matrix.T, pos @ matrix.T + shift)
    velocity = (moved[..., :2] - out[..., :2] @ matrix.T).abs().max() / out[..., :2].abs().max()  # Δv turns
    thickness = (moved[..., 2] - out[..., 2]).abs().max() / out[..., 2].abs().max()
    return float(velocity), float(thickness)


@pytest.mark.parametrize("name, matrix, shift", transforms(), ids=[t[0] for t in transforms()])
def test_egcn_velocity_turns_with_the_mesh_and_thickness_does_not_change(mesh, name, matrix, shift):
    torch.manual_seed(1)
    model = trained_like(make_emulator(dict(architecture="egcn", n_scalars=N_SCALARS, n_vectors=N_VECTORS, width=16,
                                            layers=3, channels=3), mesh.points, mesh.edges))
    velocity, thickness = transformed_error(model, mesh, matrix, shift)
    assert velocity < 1e-5 and thickness < 1e-5


def test_egcn_does_not_see_the_size_of_the_mesh(mesh):
    """Edge lengths enter relative to their mean: the same glacier drawn 3.7 times larger gives the same output
    (the input scalars and vectors unchanged)."""
    torch.manual_seed(2)
    model = trained_like(make_emulator(dict(architecture="egcn", n_scalars=N_SCALARS, n_vectors=N_VECTORS, width=16,
                                            layers=3), mesh.points, mesh.edges))
    scalars, vectors, pos = inputs(mesh)
    with torch.no_grad():
        out, larger = model(scalars, vectors, pos), model(scalars, vectors, 3.7 * pos)
        stretched = model(scalars, vectors, pos * torch.tensor([3.7, 1.0]))
    assert float((larger - out).abs().max() / out.abs().max()) < 1e-5
    assert float((stretched - out).abs().max() / out.abs().max()) > 1e-3  # a change of shape is seen


@pytest.mark.parametrize("architecture", ["egcn-seed", "gcn", "mlp", "cnn"])
def test_the_seed_layer_and_the_baselines_are_not_equivariant(mesh, architecture):
    """The same check fails for models that take velocity or positions as plain numbers (the test can fail)."""
    torch.manual_seed(1)
    model = make_emulator(dict(architecture=architecture, n_scalars=N_SCALARS, n_vectors=N_VECTORS, width=16, layers=2),
                          mesh.points, mesh.edges)
    _, matrix, shift = transforms()[0]
    velocity, thickness = transformed_error(model, mesh, matrix, shift)
    assert max(velocity, thickness) > 1e-2


@pytest.mark.parametrize("architecture", sorted(ARCHITECTURES))
def test_every_emulator_maps_a_batch_to_three_outputs_per_node(mesh, architecture):
    model = make_emulator(dict(architecture=architecture, n_scalars=N_SCALARS, n_vectors=N_VECTORS, width=8, layers=2), mesh.points, mesh.edges)
    out = model(*inputs(mesh, batch=2))
    assert out.shape == (2, mesh.n_nodes, 3) and torch.isfinite(out).all()
    if architecture == "persistence":
        assert not any(True for _ in model.parameters()) and (out == 0).all()


def test_graphs_of_a_batch_do_not_exchange_messages(mesh):
    """Changing one graph of a batch leaves the others' outputs as they were."""
    torch.manual_seed(2)
    model = make_emulator(dict(architecture="egcn", n_scalars=N_SCALARS, n_vectors=N_VECTORS, width=8, layers=2, channels=2),
                          mesh.points, mesh.edges)
    scalars, vectors, pos = inputs(mesh)
    with torch.no_grad():
        out = model(scalars, vectors, pos)
        scalars[1] += 1.0
        again = model(scalars, vectors, pos)
    assert torch.equal(out[0], again[0]) and torch.equal(out[2], again[2]) and not torch.equal(out[1], again[1])


@pytest.mark.parametrize("trained", [False, True], ids=["initial", "trained-like"])
def test_egcn_computes_shared_vectors_once_with_the_same_result(mesh, trained):
    """Vector inputs and positions shared by the batch (stride-0 views, as for the snapshots of one run) take
    the shortcut that computes the geometry and the first layer's vector terms on one graph; the output is
    the one of separate copies."""
    torch.manual_seed(4)
    model = make_emulator(dict(architecture="egcn", n_scalars=N_SCALARS, n_vectors=N_VECTORS, width=16, layers=3,
                               channels=3), mesh.points, mesh.edges)
    model = trained_like(model) if trained else model
    scalars, vectors, pos = inputs(mesh, batch=4)
    shared_vectors, shared_pos = vectors[:1].expand(4, -1, -1, -1), pos[:1].expand(4, -1, -1)
    assert shared_vectors.stride(0) == 0 and shared_pos.stride(0) == 0
    with torch.no_grad():
        copies = model(scalars, shared_vectors.clone(), shared_pos.clone())
        shared = model(scalars, shared_vectors, shared_pos)
    torch.testing.assert_close(shared, copies, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(shared[0], shared[1])  # the graphs' scalars differ, and so do their outputs


def test_incoming_sums_equal_index_add_and_pass_gradients_back():
    g = torch.Generator().manual_seed(5)
    dst = torch.sort(torch.randint(0, 50, (400,), generator=g)).values
    dst[dst == 7] = 8  # a node with no incoming edge sums to zero
    values = torch.randn(400, 3, generator=g, requires_grad=True)
    weights = torch.randn(50, 3, generator=g)
    total = IncomingSum(dst, 50)(values)
    expected = torch.zeros(50, 3).index_add_(0, dst, values)
    torch.testing.assert_close(total, expected)
    assert torch.equal(total[7], torch.zeros(3))
    (grad,) = torch.autograd.grad((total * weights).sum(), values)
    (expected_grad,) = torch.autograd.grad((expected * weights).sum(), values)
    torch.testing.assert_close(grad, expected_grad)
    with pytest.raises(ValueError, match="sorted by destination"):
        IncomingSum(dst.flip(0), 50)


def test_batched_edges_number_copies_one_after_another():
    src, dst = batch_edges(torch.tensor([0, 1]), torch.tensor([1, 2]), n=3, copies=2)
    assert src.tolist() == [0, 1, 3, 4] and dst.tolist() == [1, 2, 4, 5]


def test_node_gradients_are_exact_for_linear_fields(mesh):
    f = 3.0 + 2e-3 * mesh.points[:, 0] - 5e-3 * mesh.points[:, 1]
    np.testing.assert_allclose(node_gradients(mesh.points, mesh.triangles, f), np.tile([2e-3, -5e-3], (mesh.n_nodes, 1)),
                               atol=1e-15)
    both = node_gradients(mesh.points, mesh.triangles, np.stack([f, -f]))
    assert both.shape == (2, mesh.n_nodes, 2) and np.allclose(both[1], [-2e-3, 5e-3])


def test_raster_interpolation_is_exact_for_linear_fields(mesh):
    """Mesh -> raster is barycentric, raster -> mesh bilinear: both reproduce a linear field exactly."""
    shape = (8, 20)
    f = lambda x, y: 3.0 + 2e-4 * x - 5e-4 * y
    to_grid = mesh_to_raster(mesh.points, shape)
    x, y = raster_centres(mesh.points, shape)
    xx, yy = np.meshgrid(x, y)
    nodes = torch.as_tensor(f(mesh.points[:, 0], mesh.points[:, 1]), dtype=torch.float32)[:, None]
    grid = torch.sparse.mm(to_grid, nodes).numpy().reshape(shape)
    np.testing.assert_allclose(grid, f(xx, yy), rtol=1e-5)
    inside = (mesh.points[:, 0] >= x[0]) & (mesh.points[:, 0] <= x[-1]) & (mesh.points[:, 1] >= y[0]) & (mesh.points[:, 1] <= y[-1])
    back = torch.sparse.mm(raster_to_mesh(mesh.points, shape), torch.as_tensor(f(xx, yy).ravel(), dtype=torch.float32)[:, None])
    np.testing.assert_allclose(back.numpy()[inside, 0], f(mesh.points[inside, 0], mesh.points[inside, 1]), rtol=1e-5)
