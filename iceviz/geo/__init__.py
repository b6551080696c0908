"""Geography for iceviz: EPSG:3031 helpers, preset regions, offline base map, graticule.

Pure numpy / pyproj / PIL (plus cartopy's bundled raster file, read without
importing cartopy). Nothing here imports torch, panel, holoviews, geoviews or
bokeh. All coordinates are EPSG:3031 metres; bounds are (xmin, xmax, ymin, ymax).

The base map function is not re-exported here, because its name would
shadow the ``iceviz.geo.basemap`` module: use
``from iceviz.geo.basemap import basemap``.
"""

from iceviz.geo.basemap import BaseMap  # the function: ``from iceviz.geo.basemap import basemap``
from iceviz.geo.crs import (
    EPSG3031,
    EPSG3031_WKT,
    Bounds,
    bounds_from_lonlat_box,
    box_size_km,
    format_bounds,
    lonlat_to_xy,
    xy_to_lonlat,
)
from iceviz.geo.graticule import GraticuleLine, graticule, graticule_labels
from iceviz.geo.regions import PRESET_REGIONS, Region, get_region, region_keys, subregions

__all__ = [
    "EPSG3031",
    "EPSG3031_WKT",
    "Bounds",
    "lonlat_to_xy",
    "xy_to_lonlat",
    "bounds_from_lonlat_box",
    "box_size_km",
    "format_bounds",
    "Region",
    "PRESET_REGIONS",
    "get_region",
    "region_keys",
    "subregions",
    "BaseMap",
    "GraticuleLine",
    "graticule",
    "graticule_labels",
]
