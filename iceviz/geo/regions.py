"""Preset regions of interest, as boxes in EPSG:3031 metres.

Every preset is a :class:`Region` with bounds ``(xmin, xmax, ymin, ymax)`` in
metres. The numbers below are literals (rounded outwards to whole km) so that
importing this module needs no projection; ``tests/geo/test_regions.py``
recomputes each box from the lon/lat it documents with pyproj and checks them.

How each box was obtained (pyproj, EPSG:4326 -> EPSG:3031, always_xy):

* ``byrd`` -- the Byrd Glacier box of the "Mass Conservation on Rails" tensors
  (``../shared/data/byrd_mcor``): x 400-600 km, y -950 to -750 km exactly.
  Its centre (500, -850) km is at 149.5°E, 80.9°S: the catchment upstream of
  Byrd Glacier's outlet through the Transantarctic Mountains.
* ``byrd-upper`` / ``byrd-mid`` / ``byrd-lower`` -- the Byrd box cut into three
  equal strips of x. Flow there is towards -x, -y (mean direction of the fast
  flow about (-0.79, -0.62)), and the surface falls along it: a least-squares
  plane through the data's surface elevation rises 5.8 m/km towards +x and
  4.5 m/km towards +y, so x is the dominant along-flow axis. Mean surface
  elevation of the data points is about 2080 m in the x 533-600 km strip
  (upper: polar plateau side), 1870 m in 467-533 km (mid) and 1250 m in
  400-467 km (lower: the fast, low trunk heading for the Ross Ice Shelf).
  Strip edges are 400 000, 466 667, 533 333, 600 000 m, so they tile the box.
* ``pine-island`` -- a 150 km square centred on Pine Island Glacier,
  75.1°S 100°W -> (-1603, -283) km, covering the fast trunk's lower part and
  its floating ice shelf.
* ``thwaites`` -- a 150 km square centred on Thwaites Glacier, 75.5°S 106.75°W
  -> (-1516, -456) km (grounding zone and the Thwaites tongue).
* ``amery`` -- lon/lat box 67-75°E, 73.5-69°S (Amery Ice Shelf and the lower
  Lambert Glacier), edges densified.
* ``larsen-c`` -- lon/lat box 65-59.5°W, 69.5-66.5°S (Larsen C Ice Shelf).
* ``ross`` -- lon/lat box 155°E-145°W across the antimeridian, 85.5-77.5°S
  (Ross Ice Shelf). The box also contains grounded ice (Siple Coast, the
  mountains' foot) and some open Ross Sea: "shelf" names the main feature.
"""

from __future__ import annotations

import dataclasses
import math

from iceviz.geo.crs import Bounds, box_size_km, format_bounds

__all__ = ["Region", "KINDS", "PRESET_REGIONS", "get_region", "region_keys", "subregions"]

KINDS = ("grounded", "shelf", "mixed")
"""Allowed values of :attr:`Region.kind`."""


@dataclasses.dataclass(frozen=True)
class Region:
    """A named box in EPSG:3031 metres.

    name : display name, e.g. "Byrd Glacier".
    key : short identifier used in specs and URLs, e.g. "byrd".
    bounds : (xmin, xmax, ymin, ymax) in metres.
    kind : "grounded", "shelf" or "mixed" (grounded trunk plus floating shelf).
    description : one or two sentences for tooltips.
    parent : key of the enclosing preset, or None.
    source : where the box comes from (lon/lat of the feature, data set).
    """

    name: str
    key: str
    bounds: Bounds
    kind: str
    description: str
    parent: str | None = None
    source: str = ""

    def __post_init__(self) -> None:
        try:
            b = tuple(float(v) for v in self.bounds)
        except (TypeError, ValueError):
            raise ValueError(f"region {self.key!r}: bounds must be four numbers, got {self.bounds!r}") from None
        if len(b) != 4 or not all(math.isfinite(v) for v in b) or not (b[0] < b[1] and b[2] < b[3]):
            raise ValueError(f"region {self.key!r}: need finite xmin < xmax, ymin < ymax, got {self.bounds!r}")
        if self.kind not in KINDS:
            raise ValueError(f"region {self.key!r}: kind must be one of {KINDS}, got {self.kind!r}")
        object.__setattr__(self, "bounds", b)

    @property
    def size_km(self) -> tuple[float, float]:
        """(width_km, height_km)."""
        return box_size_km(self.bounds)

    @property
    def centre(self) -> tuple[float, float]:
        """Box centre (x, y) in metres."""
        xmin, xmax, ymin, ymax = self.bounds
        return (xmin + xmax) / 2.0, (ymin + ymax) / 2.0

    @property
    def centre_lonlat(self) -> tuple[float, float]:
        """Box centre as (lon, lat) in degrees (needs pyproj)."""
        from iceviz.geo.crs import xy_to_lonlat

        return xy_to_lonlat(*self.centre)

    def contains(self, x, y):
        """True where (x, y) (scalars or arrays, metres) lies inside the closed box."""
        xmin, xmax, ymin, ymax = self.bounds
        return (x >= xmin) & (x <= xmax) & (y >= ymin) & (y <= ymax)

    def describe(self) -> str:
        """One line: name, kind and the bounds in km."""
        return f"{self.name} ({self.kind}): {format_bounds(self.bounds)}"


_BYRD_X = (400_000.0, 466_667.0, 533_333.0, 600_000.0)
_BYRD_Y = (-950_000.0, -750_000.0)

_PRESETS = [
    Region(
        name="Byrd Glacier",
        key="byrd",
        bounds=(_BYRD_X[0], _BYRD_X[3], *_BYRD_Y),
        kind="grounded",
        description="200 km x 200 km over the Byrd Glacier catchment, East Antarctica, draining towards the "
                    "Ross Ice Shelf; the domain of the byrd_mcor flux tensors.",
        source="byrd_mcor tensors: x 400-600 km, y -950 to -750 km (centre 149.5°E, 80.9°S)",
    ),
    Region(
        name="Byrd Glacier (upper)",
        key="byrd-upper",
        bounds=(_BYRD_X[2], _BYRD_X[3], *_BYRD_Y),
        kind="grounded",
        description="Upstream third of the Byrd box (high x): slow ice on the polar plateau side, "
                    "surface around 2100 m.",
        parent="byrd",
        source="x strip 533.3-600 km of the byrd box; mean data surface ~2080 m",
    ),
    Region(
        name="Byrd Glacier (middle)",
        key="byrd-mid",
        bounds=(_BYRD_X[1], _BYRD_X[2], *_BYRD_Y),
        kind="grounded",
        description="Middle third of the Byrd box: tributaries converging, surface around 1900 m.",
        parent="byrd",
        source="x strip 466.7-533.3 km of the byrd box; mean data surface ~1870 m",
    ),
    Region(
        name="Byrd Glacier (lower)",
        key="byrd-lower",
        bounds=(_BYRD_X[0], _BYRD_X[1], *_BYRD_Y),
        kind="grounded",
        description="Downstream third of the Byrd box (low x): the fast, low trunk heading for the "
                    "Transantarctic Mountains and the Ross Ice Shelf.",
        parent="byrd",
        source="x strip 400-466.7 km of the byrd box; mean data surface ~1250 m",
    ),
    Region(
        name="Pine Island Glacier",
        key="pine-island",
        bounds=(-1_678_000.0, -1_528_000.0, -358_000.0, -208_000.0),
        kind="mixed",
        description="150 km square over Pine Island Glacier's fast trunk and its ice shelf, "
                    "Amundsen Sea Embayment, West Antarctica.",
        source="centre 75.1°S, 100°W -> (-1603, -283) km, ±75 km",
    ),
    Region(
        name="Thwaites Glacier",
        key="thwaites",
        bounds=(-1_591_000.0, -1_441_000.0, -531_000.0, -381_000.0),
        kind="mixed",
        description="150 km square over Thwaites Glacier's grounding zone and tongue, "
                    "Amundsen Sea Embayment, West Antarctica.",
        source="centre 75.5°S, 106.75°W -> (-1516, -456) km, ±75 km",
    ),
    Region(
        name="Amery Ice Shelf",
        key="amery",
        bounds=(1_661_000.0, 2_228_000.0, 467_000.0, 902_000.0),
        kind="shelf",
        description="Amery Ice Shelf and the lower Lambert Glacier, East Antarctica (the box also holds "
                    "grounded ice and Prydz Bay).",
        source="lon/lat box 67-75°E, 73.5-69°S, edges densified",
    ),
    Region(
        name="Larsen C Ice Shelf",
        key="larsen-c",
        bounds=(-2_346_000.0, -1_939_000.0, 951_000.0, 1_314_000.0),
        kind="shelf",
        description="Larsen C Ice Shelf on the east side of the Antarctic Peninsula (the box also holds "
                    "the Peninsula's grounded ice and the Weddell Sea).",
        source="lon/lat box 65-59.5°W, 69.5-66.5°S, edges densified",
    ),
    Region(
        name="Ross Ice Shelf",
        key="ross",
        bounds=(-782_000.0, 577_000.0, -1_364_000.0, -400_000.0),
        kind="shelf",
        description="The Ross Ice Shelf, the largest ice shelf, fed by the Siple Coast ice streams and the "
                    "Transantarctic Mountains' outlet glaciers (the box also holds grounded ice and Ross Sea).",
        source="lon/lat box 155°E-145°W (across the antimeridian), 85.5-77.5°S, edges densified",
    ),
]

PRESET_REGIONS: dict[str, Region] = {r.key: r for r in _PRESETS}
"""Preset regions keyed by short key, in display order."""


def region_keys() -> list[str]:
    """The preset keys, in display order."""
    return list(PRESET_REGIONS)


def get_region(key: str) -> Region:
    """The preset region for ``key`` (case-insensitive; '_' and ' ' read as '-')."""
    norm = str(key).strip().lower().replace("_", "-").replace(" ", "-")
    try:
        return PRESET_REGIONS[norm]
    except KeyError:
        raise ValueError(f"unknown region {key!r}; known regions: {', '.join(PRESET_REGIONS)}") from None


def subregions(key: str) -> list[Region]:
    """The presets whose parent is ``key`` (e.g. the three Byrd strips)."""
    parent = get_region(key).key
    return [r for r in PRESET_REGIONS.values() if r.parent == parent]
