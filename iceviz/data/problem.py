"""The flux problem: train / test observations in physical units plus their scaling.

Everything a flux model needs travels in one :class:`FluxProblem`. Positions are
EPSG:3031 metres, flux is m²/yr, surface elevation is metres. The
:class:`FluxScale` beside them maps to the *scaled* units that the source
reports its metrics in (for ``byrd-mcor``: normalised coordinates and flux /
70 000 m²/yr, as in the paper; for ``synthetic:*``: the field's own units).
The scale is isotropic in x and y, so a field that is divergence-free in
scaled units is divergence-free in physical units too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np


class DataError(ValueError):
    """Bad input: a missing or malformed file, an unknown spec, no usable points.

    The message always names the source (file or spec) and what was wrong.
    """


@dataclass(frozen=True)
class FluxScale:
    """Affine, isotropic map between physical and scaled units.

    ``x_scaled = (x - x0) / length``, ``y_scaled = (y - y0) / length``,
    ``q_scaled = q / flux``, ``s_scaled = s / surface``.
    Divergence in scaled units times ``divergence`` (= flux / length) is m/yr.
    """

    x0: float
    y0: float
    length: float  # metres per scaled unit of x and y
    flux: float  # m²/yr per scaled unit of flux
    surface: float = 1000.0  # metres per scaled unit of surface elevation

    @property
    def divergence(self) -> float:
        """m/yr per scaled unit of divergence."""
        return self.flux / self.length

    def xy_to_scaled(self, xy: np.ndarray) -> np.ndarray:
        xy = np.asarray(xy, dtype=np.float64)
        return (xy - np.array([self.x0, self.y0])) / self.length

    def xy_to_phys(self, xy_scaled: np.ndarray) -> np.ndarray:
        return np.asarray(xy_scaled, dtype=np.float64) * self.length + np.array([self.x0, self.y0])


@dataclass
class FluxObservations:
    """Flux observations at points.

    Attributes
    ----------
    xy : (N, 2) float64, EPSG:3031 metres.
    q : (N, 2) float64, flux (qx, qy) in m²/yr.
    s : (N,) float64 surface elevation in metres, or None.
    line : (N,) flight-line label of each point (any hashable values; an empty string marks a point on
        no line, e.g. a gridded stand-in), or None when the source does not know its lines.
    """

    xy: np.ndarray
    q: np.ndarray
    s: np.ndarray | None = None
    line: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.xy.shape[0])

    def subset(self, mask: np.ndarray) -> "FluxObservations":
        """The observations where ``mask`` (boolean or integer index) selects them."""
        return FluxObservations(xy=self.xy[mask], q=self.q[mask], s=None if self.s is None else self.s[mask],
                                line=None if self.line is None else self.line[mask])


@dataclass
class DirectionGuidance:
    """Dense flow directions (unit vectors of surface velocity) for +dir models.

    Attributes
    ----------
    xy : (M, 2) float64, EPSG:3031 metres.
    unit : (M, 2) float64, unit vectors (exactly unit length).
    """

    xy: np.ndarray
    unit: np.ndarray


@dataclass
class FluxProblem:
    """Everything a flux model trains and is scored on.

    Attributes
    ----------
    spec : the data spec string that produced it (``synthetic:curve``, ...).
    train, test : observations; the test set is never used for training,
        model selection or early stopping.
    scale : physical <-> scaled units (see :class:`FluxScale`).
    bounds : (xmin, xmax, ymin, ymax) of the domain, metres.
    direction : dense direction guidance, or None when the source has none.
    truth : callable (N, 2) metres -> (N, 2) m²/yr, the exact field where it
        is known (synthetic sources), else None.
    surface_truth : callable (N, 2) metres -> (N,) metres where the surface
        elevation is known everywhere, else None.
    grid_shape : (ny, nx) of the default evaluation grid for maps.
    description : one line for humans.
    notes : caveats a comparison must state (e.g. guidance covering test tiles).
    hints : hyper-parameters that suit this source's size (e.g. a small batch for
        a few hundred points); they override the registry defaults, and the
        user's own settings override them.
    """

    spec: str
    train: FluxObservations
    test: FluxObservations
    scale: FluxScale
    bounds: tuple[float, float, float, float]
    direction: DirectionGuidance | None = None
    truth: Callable[[np.ndarray], np.ndarray] | None = None
    surface_truth: Callable[[np.ndarray], np.ndarray] | None = None
    grid_shape: tuple[int, int] = (100, 100)
    description: str = ""
    notes: list[str] = field(default_factory=list)
    hints: dict[str, Any] = field(default_factory=dict)
    kind: str = "flux"

    @property
    def has_surface(self) -> bool:
        return self.train.s is not None

    def grid(self, shape: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Cell-centre coordinates (x, y) in metres of a regular evaluation grid."""
        return regular_grid(self.bounds, shape or self.grid_shape)


def regular_grid(bounds: tuple[float, float, float, float], shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Cell-centre coordinates (x, y) in metres of a (ny, nx) grid over ``bounds`` = (xmin, xmax, ymin, ymax)."""
    ny, nx = shape
    xmin, xmax, ymin, ymax = bounds
    x = xmin + (xmax - xmin) / nx * (np.arange(nx) + 0.5)
    y = ymin + (ymax - ymin) / ny * (np.arange(ny) + 0.5)
    return x, y
