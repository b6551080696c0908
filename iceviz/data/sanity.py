"""Physical sense of flux observations: the allowed ranges, as named constants, and pure checks.

A value outside these ranges is not ice: a wrong unit, a fill value, a swapped
column or coordinates in another projection. The bounds leave generous margins
over the most extreme Antarctic values, so real data always passes. Points
files (``points:FILE``) are checked on loading; the coordinate box applies only
to sources in EPSG:3031 (synthetic benchmark fields use their own units).

=============================  =====================  =========================================================
quantity                       allowed                why
=============================  =====================  =========================================================
x, y (``extent=antarctica``)   ±3,400 km              EPSG:3031 box of the project's base map: the continent,
                                                      its ice shelves and the Southern Ocean (BedMachine
                                                      Antarctica's grid spans ±3,333 km)
x, y (``extent=any``)          ±20,000 km             half of Earth's circumference: no projected coordinate
                                                      in metres lies farther from its origin
|q| = hypot(qx, qy)            ≤ 1e8 m²/yr            fastest Antarctic ice (~4 km/yr) × thickest (~4.8 km)
                                                      ≈ 2e7 m²/yr; Greenland's fastest outlet (~17 km/yr ×
                                                      ~2 km) ≈ 3e7 m²/yr
|v| = hypot(vx, vy)            ≤ 2e4 m/yr             fastest Antarctic ice ~4 km/yr, Greenland's ~17 km/yr
s                              −1,000 … 5,000 m       highest ice surface ~4,100 m (Dome A), sea level at
                                                      the coast
=============================  =====================  =========================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from iceviz.geo.basemap import DEFAULT_EXTENT_M

EARTH_EXTENT_M: float = 20_000_000.0
"""Largest |x|, |y| in metres of any projected coordinate on Earth (half its circumference), for ``extent=any``."""

EXTENTS: dict[str, float] = {"antarctica": DEFAULT_EXTENT_M, "any": EARTH_EXTENT_M}
"""Largest |x|, |y| in metres by the name of the ``extent`` option of ``points:FILE``."""

DEFAULT_EXTENT = "antarctica"

MAX_FLUX_M2_PER_YR: float = 1e8
"""Largest flux magnitude |q|, m²/yr."""

MAX_SPEED_M_PER_YR: float = 2e4
"""Largest ice speed |v|, m/yr."""

MIN_SURFACE_M: float = -1000.0
"""Lowest surface elevation s, metres."""

MAX_SURFACE_M: float = 5000.0
"""Highest surface elevation s, metres."""


@dataclass(frozen=True)
class Violation:
    """Rows whose values of one quantity lie outside its allowed range.

    Attributes
    ----------
    columns : the column(s) of the quantity, e.g. ``("x",)`` or ``("qx", "qy")``.
    positions : 0-based positions of the offending rows.
    example : the values of ``columns`` in the first offending row.
    allowed : the allowed range in words, with its unit.
    hint : why the range holds and how to fix the data.
    """

    columns: tuple[str, ...]
    positions: np.ndarray
    example: tuple[float, ...]
    allowed: str
    hint: str

    def describe(self, locate: Callable[[np.ndarray], str]) -> str:
        """One line: columns, row count, the rows (``locate`` turns positions into 'rows 3, 9'), an example,
        the allowed range and the hint."""
        names = ", ".join(self.columns)
        head = f"column {names}" if len(self.columns) == 1 else f"columns {names}"
        example = ", ".join(f"{c} = {v:g}" for c, v in zip(self.columns, self.example))
        return (f"{head}: {len(self.positions)} row(s) outside {self.allowed} at {locate(self.positions)} "
                f"(e.g. {locate(self.positions[:1])}: {example}); {self.hint}")


def outside(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """0-based positions where ``values`` lie outside [low, high] (NaN counts as outside)."""
    values = np.asarray(values, dtype=np.float64)
    return np.flatnonzero(~((values >= low) & (values <= high)))


def _violation(columns: Mapping[str, np.ndarray], names: tuple[str, ...], bad: np.ndarray, allowed: str,
               hint: str) -> Violation | None:
    if bad.size == 0:
        return None
    return Violation(names, bad, tuple(float(columns[n][bad[0]]) for n in names), allowed, hint)


def first_violation(columns: Mapping[str, np.ndarray], extent: str = DEFAULT_EXTENT,
                    override: str = "the option extent=any") -> Violation | None:
    """The first quantity of ``columns`` outside its allowed range, else None.

    Parameters
    ----------
    columns : column name -> 1-D float array; checks x, y (required), and qx, qy, vx, vy (as magnitudes of
        the pairs) and s where present.
    extent : a key of :data:`EXTENTS`: the largest |x|, |y| allowed.
    override : how the user lifts the Antarctic extent (named in the hint for coordinates).
    """
    limit = EXTENTS[extent]
    if extent == DEFAULT_EXTENT:
        region = "EPSG:3031 Antarctica"
        fix = ("x, y must be EPSG:3031 metres: fix or remove these rows, or for data in another polar projection "
               f"use {override}")
    else:
        region = f"extent={extent}"
        fix = "x, y must be projected coordinates in metres: fix or remove these rows"
    for name in ("x", "y"):
        found = _violation(columns, (name,), outside(columns[name], -limit, limit),
                           f"|{name}| ≤ {limit / 1000:,.0f} km ({region})", fix)
        if found:
            return found
    vectors = (("qx", "qy", "|q| = hypot(qx, qy)", MAX_FLUX_M2_PER_YR, "m²/yr",
                "the fastest Antarctic ice (~4 km/yr) times the thickest (~4.8 km) is ~2e7 m²/yr: check that the "
                "flux is thickness × velocity in m²/yr or remove these rows"),
               ("vx", "vy", "|v| = hypot(vx, vy)", MAX_SPEED_M_PER_YR, "m/yr",
                "the fastest Antarctic ice flows ~4 km/yr: check that the velocity is in m/yr or remove these rows"))
    for a, b, what, top, unit, hint in vectors:
        if a in columns and b in columns:
            speed = np.hypot(np.asarray(columns[a], dtype=np.float64), np.asarray(columns[b], dtype=np.float64))
            found = _violation(columns, (a, b), outside(speed, 0.0, top), f"{what} ≤ {top:g} {unit}", hint)
            if found:
                return found
    if "s" in columns:
        return _violation(columns, ("s",), outside(columns["s"], MIN_SURFACE_M, MAX_SURFACE_M),
                          f"{MIN_SURFACE_M:,.0f}..{MAX_SURFACE_M:,.0f} m",
                          "the highest ice surface is ~4,100 m (Dome A): check that s is the surface elevation in "
                          "metres (not the bed or the thickness) or remove these rows")
    return None
