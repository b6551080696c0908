"""Unstructured triangular meshes of a domain outline, with boundary tags and graph edges.

An outline is a closed polygon given counter-clockwise as vertices, with one
tag per side (side i joins vertex i to vertex i + 1): ``inflow`` (or
``divide``), ``wall`` and ``front`` (the calving front). ``triangle`` meshes
it with a minimum angle and a maximum area, then refines where a target size
function asks for smaller cells (fast ice, the grounding line).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import triangle

BOUNDARY_TAGS = ("inflow", "divide", "wall", "front")
"""The boundary kinds an outline side may have."""
MIN_ANGLE = 30
"""Smallest triangle angle (degrees) asked of the mesher."""


class MeshError(ValueError):
    """An outline that cannot be meshed (open, degenerate, badly tagged), with the reason."""


@dataclass(frozen=True)
class IceMesh:
    """A P1 triangle mesh in metres with tagged boundary edges.

    Attributes
    ----------
    points : (N, 2) node coordinates [m].
    triangles : (M, 3) node indices, counter-clockwise.
    boundary : tag -> (K, 2) node index pairs of the boundary edges with that tag.
    """

    points: np.ndarray
    triangles: np.ndarray
    boundary: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_nodes(self) -> int:
        return len(self.points)

    @property
    def edges(self) -> np.ndarray:
        """(E, 2) unique undirected edges (i < j), sorted: the graph an emulator learns on."""
        t = self.triangles
        pairs = np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]])
        return np.unique(np.sort(pairs, axis=1), axis=0)

    def areas(self) -> np.ndarray:
        """Signed areas of the triangles [m²] (positive: counter-clockwise)."""
        p = self.points[self.triangles]
        d1, d2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
        return 0.5 * (d1[:, 0] * d2[:, 1] - d1[:, 1] * d2[:, 0])

    def boundary_nodes(self, *tags: str) -> np.ndarray:
        """Sorted unique nodes on the boundary edges of the given tags."""
        parts = [self.boundary[t].ravel() for t in tags if t in self.boundary]
        return np.unique(np.concatenate(parts)) if parts else np.array([], dtype=int)


def check_outline(vertices: np.ndarray, tags: Sequence[str]) -> np.ndarray:
    """The outline as a float (V, 2) array, counter-clockwise; MeshError when it cannot be meshed."""
    v = np.asarray(vertices, dtype=float)
    if v.ndim != 2 or v.shape[1] != 2 or len(v) < 3:
        raise MeshError(f"an outline needs at least 3 vertices as (x, y) pairs, got shape {v.shape}")
    if not np.isfinite(v).all():
        raise MeshError("the outline has non-finite coordinates")
    if np.allclose(v[0], v[-1]):
        raise MeshError("give the outline's vertices once each: it is closed from the last back to the first")
    if len(tags) != len(v):
        raise MeshError(f"{len(v)} outline sides need {len(v)} boundary tags, got {len(tags)}")
    unknown = sorted(set(tags) - set(BOUNDARY_TAGS))
    if unknown:
        raise MeshError(f"unknown boundary tags {unknown}; valid: {', '.join(BOUNDARY_TAGS)}")
    sides = np.linalg.norm(np.roll(v, -1, axis=0) - v, axis=1)
    if (sides <= 1e-9 * sides.max()).any():
        raise MeshError("the outline has repeated consecutive vertices (a side of zero length)")
    crossing = _first_crossing(v)
    if crossing is not None:
        raise MeshError(f"the outline crosses itself (sides {crossing[0]} and {crossing[1]}): it must be a simple "
                        "polygon")
    x, y = v[:, 0], v[:, 1]
    area = 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
    if abs(area) <= 1e-12 * sides.max() ** 2:
        raise MeshError("the outline encloses no area")
    if area < 0:
        raise MeshError("list the outline's vertices counter-clockwise (its signed area is negative)")
    return v


def _first_crossing(v: np.ndarray) -> tuple[int, int] | None:
    """The first pair of non-adjacent sides of the closed polygon ``v`` that touch or cross, if any."""
    a, b = v, np.roll(v, -1, axis=0)
    n = len(v)

    def orient(p, q, r):
        cross = (q[..., 0] - p[..., 0]) * (r[..., 1] - p[..., 1]) - (q[..., 1] - p[..., 1]) * (r[..., 0] - p[..., 0])
        return np.sign(cross)

    for i in range(n):
        j = np.arange(i + 2, n if i > 0 else n - 1)  # skip the side itself and its two neighbours
        if len(j) == 0:
            continue
        d1, d2 = orient(a[i], b[i], a[j]), orient(a[i], b[i], b[j])
        d3, d4 = orient(a[j], b[j], a[i]), orient(a[j], b[j], b[i])
        hit = (d1 * d2 <= 0) & (d3 * d4 <= 0)
        # collinear sides that do not overlap satisfy the signs too: check their extents
        collinear = (d1 == 0) & (d2 == 0)
        if collinear.any():
            lo, hi = np.minimum(a[j], b[j]), np.maximum(a[j], b[j])
            overlap = (np.maximum(lo, np.minimum(a[i], b[i])) <= np.minimum(hi, np.maximum(a[i], b[i]))).all(axis=1)
            hit &= ~collinear | overlap
        if hit.any():
            return i, int(j[np.argmax(hit)])
    return None


def mesh_outline(vertices: np.ndarray, tags: Sequence[str], max_area: float,
                 size: Callable[[np.ndarray], np.ndarray] | None = None, refine_passes: int = 3) -> IceMesh:
    """Mesh a tagged outline.

    Parameters
    ----------
    vertices : (V, 2) outline corners [m], counter-clockwise, not repeating the first.
    tags : boundary tag of each side (side i runs from vertex i to vertex i + 1).
    max_area : largest triangle area anywhere [m²].
    size : optional target edge length [m] at given (K, 2) points; triangles larger than an
        equilateral one of that size are refined (``refine_passes`` times).
    """
    v = check_outline(vertices, tags)
    if not (np.isfinite(max_area) and max_area > 0):
        raise MeshError(f"max_area must be a positive area in m², got {max_area}")
    codes = {tag: i + 1 for i, tag in enumerate(BOUNDARY_TAGS)}
    n = len(v)
    segments = np.column_stack([np.arange(n), (np.arange(n) + 1) % n])
    geometry = dict(vertices=v, segments=segments, segment_markers=np.array([[codes[t]] for t in tags]))
    # the area goes in as a fixed-point number: triangle misreads exponents ("2e+07") as a tiny area
    out = triangle.triangulate(geometry, f"pq{MIN_ANGLE}ea{max_area:.6f}")
    for _ in range(refine_passes if size is not None else 0):
        p, t = out["vertices"], out["triangles"]
        target = np.sqrt(3) / 4 * np.asarray(size(p[t].mean(axis=1)), dtype=float) ** 2
        current = np.abs(IceMesh(p, t).areas())
        if (current <= 1.05 * target).all():
            break
        out = triangle.triangulate(dict(out, triangle_max_area=np.minimum(target, max_area)),
                                   f"rpq{MIN_ANGLE}ea")
    points, tri = out["vertices"], out["triangles"].astype(np.int64)
    edges, markers = out["edges"], out["edge_markers"].ravel()
    boundary = {tag: edges[markers == code].astype(np.int64) for tag, code in codes.items() if (markers == code).any()}
    mesh = IceMesh(points, tri, boundary)
    if (mesh.areas() <= 0).any():
        raise MeshError("the mesher returned degenerate or clockwise triangles")
    return mesh


def rectangle(xmin: float, xmax: float, ymin: float, ymax: float,
              tags: tuple[str, str, str, str] = ("wall", "front", "wall", "inflow")) -> tuple[np.ndarray, list[str]]:
    """A rectangular outline, counter-clockwise from (xmin, ymin); tags of the bottom, right, top and left sides."""
    return np.array([[xmin, ymin], [xmax, ymin], [xmax, ymax], [xmin, ymax]]), list(tags)
