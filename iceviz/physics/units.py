"""Physical constants and unit conversions used across iceviz."""

SECONDS_PER_YEAR: float = 31_556_926.0
"""One year in seconds (the convention of the DIFFICE data)."""

RHO_ICE: float = 917.0
"""Density of ice, kg/m³."""

RHO_WATER: float = 1030.0
"""Density of sea water, kg/m³."""

GRAVITY: float = 9.8
"""Gravitational acceleration, m/s²."""

EPSG_ANTARCTIC = 3031
"""Antarctic Polar Stereographic (true scale at 71°S), metres."""
