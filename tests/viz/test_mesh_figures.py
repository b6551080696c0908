"""Mesh figures: the exact P1 zero contour, the datashaded raster, in-place updates, the budget columns."""

import numpy as np
import pytest
from scipy.spatial import Delaunay

from iceviz.viz.live_figures import COLORBAR_SPACE, TITLE_SPACE
from iceviz.viz.mesh_figures import (AXIS_SPACE, SimulationMaps, budget_columns, frame_size, rasterize_triangles,
                                     segment_columns, zero_contour)

SQUARE = np.array([[0.0, 0.0], [2.0, 0.0], [2.0, 2.0], [0.0, 2.0]])
TWO_TRIANGLES = np.array([[0, 1, 2], [0, 2, 3]])


def as_set(segments):
    """Segments as a set of unordered pairs of rounded points (the order of points and segments is free)."""
    return {frozenset(tuple(np.round(p, 12)) for p in seg) for seg in segments}


def test_zero_contour_gives_the_exact_edge_crossings_on_a_hand_made_mesh():
    values = np.array([-1.0, 1.0, 3.0, -3.0])
    segments = zero_contour(SQUARE, TWO_TRIANGLES, values)
    assert segments.shape == (2, 2, 2)
    # triangle 0: edge 0-1 at t = 1/2 -> (1, 0); edge 2-0 at 3/4 of the way from (2, 2) -> (0.5, 0.5)
    # triangle 1: edge 0-2 at t = 1/4 -> (0.5, 0.5); edge 2-3 at t = 1/2 -> (1, 2)
    assert as_set(segments) == as_set([[(1.0, 0.0), (0.5, 0.5)], [(0.5, 0.5), (1.0, 2.0)]])


def test_zero_contour_of_a_linear_field_lies_exactly_on_its_zero_line():
    rng = np.random.default_rng(0)
    points = rng.uniform(0, 10, (200, 2))
    triangles = Delaunay(points).simplices
    f = lambda p: p[..., 0] - 4.0 - 0.3 * p[..., 1]  # noqa: E731
    segments = zero_contour(points, triangles, f(points))
    assert len(segments) > 5
    assert np.abs(f(segments)).max() < 1e-12
    crossed = f(points)[triangles]
    assert len(segments) == np.sum((crossed >= 0).any(axis=1) & (crossed < 0).any(axis=1))


def test_zero_contour_without_a_sign_change_is_empty_and_zero_counts_as_grounded():
    assert zero_contour(SQUARE, TWO_TRIANGLES, np.ones(4)).shape == (0, 2, 2)
    assert zero_contour(SQUARE, TWO_TRIANGLES, np.zeros(4)).shape == (0, 2, 2)
    # one node at exactly zero next to negative ones: the contour passes through that node
    segments = zero_contour(SQUARE, TWO_TRIANGLES, np.array([0.0, -1.0, -1.0, -1.0]))
    assert np.allclose(segments, 0.0)


def test_segment_columns_make_one_line_broken_by_nan():
    cols = segment_columns(np.array([[[0, 0], [1, 1]], [[2, 2], [3, 3]]], dtype=float))
    assert len(cols["xs"]) == 1 and len(cols["ys"]) == 1
    xs = cols["xs"][0]
    assert xs.tolist()[:2] == [0.0, 1.0] and np.isnan(xs[2]) and xs.tolist()[3:] == [2.0, 3.0]
    assert segment_columns(np.zeros((0, 2, 2))) == dict(xs=[], ys=[])


def test_the_raster_covers_the_asked_extent_interpolates_linearly_and_is_nan_outside():
    f = lambda x, y: 2.0 * x + 3.0 * y  # noqa: E731  (linear: P1 interpolation is exact)
    bounds = (-1.0, 3.0, -0.5, 2.5)
    x, y, image = rasterize_triangles(SQUARE, TWO_TRIANGLES, f(SQUARE[:, 0], SQUARE[:, 1]), bounds, 40, 30)
    assert image.shape == (30, 40) and image.dtype == np.float32
    assert np.allclose(np.diff(x), 0.1) and np.allclose(np.diff(y), 0.1)
    assert x[0] == pytest.approx(-0.95) and x[-1] == pytest.approx(2.95)
    assert y[0] == pytest.approx(-0.45) and y[-1] == pytest.approx(2.45)
    xx, yy = np.meshgrid(x, y)
    inside = (xx > 0.01) & (xx < 1.99) & (yy > 0.01) & (yy < 1.99)
    outside = (xx < -0.01) | (xx > 2.01) | (yy < -0.01) | (yy > 2.01)
    assert np.allclose(image[inside], f(xx, yy)[inside], atol=1e-4)
    assert np.isnan(image[outside]).all()


def channel():
    """A 100 km × 20 km channel meshed by Delaunay, grounded upstream of x = 60 km."""
    x, y = np.meshgrid(np.linspace(0, 100e3, 21), np.linspace(0, 20e3, 5))
    points = np.column_stack([x.ravel(), y.ravel()])
    tri = Delaunay(points).simplices
    edges = np.unique(np.sort(np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]]), axis=1), axis=0)
    return points, tri, edges


def test_simulation_maps_update_in_place_and_share_the_zoom():
    points, tri, edges = channel()
    maps = SimulationMaps(points, tri, edges, frame_width=400)
    frame = maps.thickness.frame
    assert frame == (400, 80)  # the domain's aspect
    fig = maps.thickness.figure
    assert (fig.width, fig.height) == (400 + COLORBAR_SPACE + AXIS_SPACE[0], 80 + TITLE_SPACE + AXIS_SPACE[1])
    assert all(m.figure.x_range is maps.ranges[0] and m.figure.y_range is maps.ranges[1] for m in maps.maps)
    assert not maps.thickness.mesh_lines.visible  # the mesh overlay starts hidden
    haf = 60e3 - points[:, 0]  # grounded upstream of x = 60 km
    h = 100 + points[:, 0] / 100
    speed = points[:, 0] / 50
    before = {m.id for m in fig.references()}
    maps.update(h, speed, haf, history=None)
    image = maps.thickness.source.data["image"][0]
    assert image.shape == (80, 400)
    x0, x1, y0, y1 = maps.window()
    assert maps.thickness.source.data["x"] == [pytest.approx(x0)]
    assert maps.thickness.source.data["dw"] == [pytest.approx(x1 - x0)]
    assert maps.thickness.mapper.high == 1100.0  # 2 significant digits of the largest thickness
    mask = maps.floating.source.data["image"][0]
    assert set(np.unique(mask[np.isfinite(mask)])) == {0.0, 1.0}
    line = maps.speed.grounding_line.data["xs"][0]
    assert np.allclose(line[np.isfinite(line)], 60e3)  # the exact grounding line
    assert maps.speed.source.data["image"][0][np.isfinite(maps.speed.source.data["image"][0])].min() >= 1.0
    assert {m.id for m in fig.references()} == before  # data and limits changed; no new models
    # a zoom (the browser moves the shared ranges) is re-rasterised at full resolution
    assert not maps.refresh()
    maps.ranges[0].start, maps.ranges[0].end = 50e3, 70e3
    assert maps.refresh()
    assert maps.thickness.source.data["x"] == [pytest.approx(50e3)]
    assert maps.thickness.source.data["dw"] == [pytest.approx(20e3)]
    assert maps.speed.source.data["dw"] == [pytest.approx(20e3)]
    assert maps.thickness.mesh.data["xs"] == []  # not sent until shown
    maps.show_mesh(True)
    assert all(m.mesh_lines.visible for m in maps.maps)
    assert np.isnan(maps.thickness.mesh.data["xs"][0]).sum() == len(edges) - 1


def test_budget_columns_compare_the_volume_change_with_the_fluxes():
    history = dict(t=np.array([0.0, 1.0, 2.0]), volume=np.array([10e9, 12e9, 13e9]), grounding_line=np.zeros(3),
                   budget_smb=np.array([0.0, 1e9, 2e9]), budget_melt=np.array([0.0, 0.5e9, 1e9]),
                   budget_inflow=np.array([0.0, 2e9, 3e9]), budget_outflow=np.array([0.0, 0.5e9, 1e9]),
                   budget_floor=np.zeros(3), budget_calved=np.zeros(3), budget_volume_change=np.array([0, 2e9, 3e9]))
    cols = budget_columns(history)
    assert np.allclose(cols["volume_change"], [0, 2, 3])
    assert np.allclose(cols["explained"], cols["volume_change"])
    assert np.allclose(cols["melt"], [0, -0.5, -1]) and np.allclose(cols["boundary"], [0, 1.5, 2])
    assert np.allclose(cols["floor_calved"], 0)
    assert all(len(v) == 0 for v in budget_columns({}).values())


def test_frame_size_keeps_the_aspect_within_limits():
    assert frame_size((0, 100, 0, 50), 300) == (300, 150)
    assert frame_size((0, 640e3, 0, 80e3), 860) == (860, 108)
    assert frame_size((0, 1000, 0, 1), 300) == (300, 60)
