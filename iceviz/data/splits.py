"""Spatially blocked splits of observations: whole flight lines, or whole tiles where lines are unknown.

A validation set carved from the training observations must measure
interpolation between surveys, not memorisation of neighbouring points on the
same line: points 300 m apart along a flight line are near copies of each
other. So whole groups are held out, never single points: whole flight lines
where the source knows them (a ``line`` label per point), else whole square
tiles of the training area, each about ten point spacings across
(:func:`block_size`), so that a held-out tile is a stretch of several
consecutive survey points whose nearest training neighbours lie beyond it.
"""

from __future__ import annotations

import weakref

import numpy as np

from iceviz.data.problem import FluxObservations

VALIDATION_FRACTION = 0.15
"""Default share of the training points held out for validation [fraction]."""
VALIDATION_MAX_POINTS = 2000
"""... but no more points than this: 2,000 points measure an RMSE to about 2 %, and beyond ~13,000 training
points a larger share only takes data from the fit (Byrd, 3 seeds at 20 s: 15 % held out gave a test RMSE of
0.376 ± 0.026, 2,000 points 0.365 ± 0.003)."""
TILES_PER_SIDE = 10
"""Tiles along the longer side of a shelf's raster (gridded observations), and the fewest along the longer
side of a flux domain."""
BLOCK_SPACINGS = 10
"""A validation tile of scattered or line observations is this many median point spacings across."""
MIN_VALIDATION_GROUPS = 3
"""Fewer lines than this (or tiles with points) and the split falls back to tiles, then to none."""


def split_lines(line: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """'Held out' mask of whole lines, taken in a seeded random order until ``fraction`` of the points.

    Points labelled with an empty string belong to no line and are never held out; at least one
    line always stays in.
    """
    labels = np.asarray(line).astype(str)
    names, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    eligible = np.flatnonzero(names != "")
    if len(eligible) < 2:
        return np.zeros(len(labels), dtype=bool)
    order = np.random.default_rng(seed).permutation(eligible)
    held = np.zeros(len(names), dtype=bool)
    taken = 0
    for k in order[:-1]:
        if taken >= fraction * len(labels):
            break
        held[k] = True
        taken += counts[k]
    return held[inverse]


def tile_labels(xy: np.ndarray, bounds: tuple[float, float, float, float], tile: float | None = None) -> np.ndarray:
    """Label 'i,j' of the square tile of side ``tile`` metres (default: 1/:data:`TILES_PER_SIDE` of the longer
    side of ``bounds``) from the lower-left corner of ``bounds``, for each point."""
    xmin, xmax, ymin, ymax = bounds
    tile = tile or max(xmax - xmin, ymax - ymin) / TILES_PER_SIDE
    ij = np.floor((np.asarray(xy) - np.array([xmin, ymin])) / tile).astype(np.int64)
    return np.char.add(np.char.add(ij[:, 0].astype(str), ","), ij[:, 1].astype(str))


def block_size(xy: np.ndarray, bounds: tuple[float, float, float, float]) -> float:
    """Side of a validation tile [m]: :data:`BLOCK_SPACINGS` median nearest-neighbour spacings, within 1/100 and
    1/:data:`TILES_PER_SIDE` of the longer side of ``bounds``.

    On the Byrd tile (points 290 m apart along its survey lines) that is 2.9 km; on a window thinned to one
    point every 2 km, 21 km, held to a tenth of the window.
    """
    from scipy.spatial import cKDTree

    extent = max(bounds[1] - bounds[0], bounds[3] - bounds[2])
    xy = np.unique(np.asarray(xy), axis=0)
    spacing = float(np.median(cKDTree(xy).query(xy, k=2)[0][:, 1])) if len(xy) > 1 else extent
    return float(np.clip(BLOCK_SPACINGS * spacing, extent / 100, extent / TILES_PER_SIDE))


_recent: dict[tuple, tuple[weakref.ref, np.ndarray, str]] = {}
"""The splits of observations still alive, by (their identity, bounds, fraction, seed): a run asks twice (for
its size-aware defaults, then its trainer), and tiling Byrd's 27,172 points takes ~0.3 s."""


def validation_mask(obs: FluxObservations, bounds: tuple[float, float, float, float],
                    fraction: float = VALIDATION_FRACTION, seed: int = 0) -> tuple[np.ndarray, str]:
    """Which training points to hold out for validation, and how they were chosen (one line for humans).

    About ``fraction`` of the points, at most :data:`VALIDATION_MAX_POINTS`. Whole flight lines when
    ``obs.line`` names at least :data:`MIN_VALIDATION_GROUPS` lines, else whole tiles of :func:`block_size`;
    no point at all when ``fraction`` is 0 or there are too few groups. The same ``seed`` gives the same split.
    The same observations (the same objects) are split once: later calls get a copy of that split.
    """
    key = (id(obs), id(obs.xy), id(obs.line), tuple(float(b) for b in bounds), float(fraction), int(seed))
    hit = _recent.get(key)
    if hit is not None and hit[0]() is obs:
        return hit[1].copy(), hit[2]
    held, how = _validation_mask(obs, bounds, fraction, seed)
    for stale in [k for k, (ref, _, _) in _recent.items() if ref() is None]:
        del _recent[stale]
    _recent[key] = (weakref.ref(obs), held.copy(), how)
    return held, how


def _validation_mask(obs: FluxObservations, bounds: tuple[float, float, float, float], fraction: float,
                     seed: int) -> tuple[np.ndarray, str]:
    n = len(obs)
    none = np.zeros(n, dtype=bool)
    if fraction <= 0 or n == 0:
        return none, "no validation split"
    fraction = min(fraction, VALIDATION_MAX_POINTS / n)
    if obs.line is not None:
        lines = np.unique(np.asarray(obs.line).astype(str))
        if (lines != "").sum() >= MIN_VALIDATION_GROUPS:
            held = split_lines(obs.line, fraction, seed)
            return held, f"{int(held.sum())} points on whole flight lines (about {fraction:.0%}, seed {seed})"
    tile = block_size(obs.xy, bounds)
    tiles = tile_labels(obs.xy, bounds, tile)
    if len(np.unique(tiles)) < MIN_VALIDATION_GROUPS:
        return none, f"no validation split (the points fill fewer than {MIN_VALIDATION_GROUPS} tiles)"
    held = split_lines(tiles, fraction, seed)
    return held, f"{int(held.sum())} points in whole {tile / 1000:.3g} km tiles (about {fraction:.0%}, seed {seed})"
