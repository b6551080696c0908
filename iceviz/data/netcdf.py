"""CF-1.8 gridded NetCDF in Antarctic Polar Stereographic (EPSG:3031)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from iceviz.data.problem import DataError
from iceviz.files import backend_failure
from iceviz.physics.units import EPSG_ANTARCTIC

CRS_VAR = "crs"
CONVENTIONS = "CF-1.8"
WGS84_SEMI_MAJOR_AXIS = 6_378_137.0
WGS84_INVERSE_FLATTENING = 298.257223563


def crs_attributes() -> dict[str, Any]:
    """CF grid-mapping attributes of EPSG:3031 (polar stereographic, true scale at 71°S, WGS84)."""
    from pyproj import CRS

    wkt = CRS.from_epsg(EPSG_ANTARCTIC).to_wkt()
    return {
        "grid_mapping_name": "polar_stereographic",
        "straight_vertical_longitude_from_pole": 0.0,
        "standard_parallel": -71.0,
        "latitude_of_projection_origin": -90.0,
        "false_easting": 0.0,
        "false_northing": 0.0,
        "semi_major_axis": WGS84_SEMI_MAJOR_AXIS,
        "inverse_flattening": WGS84_INVERSE_FLATTENING,
        "long_name": "Antarctic Polar Stereographic (EPSG:3031)",
        "crs_wkt": wkt,
        "spatial_ref": wkt,
    }


def grid_dataset(
    x: np.ndarray,
    y: np.ndarray,
    fields: Mapping[str, tuple[np.ndarray, str, str]],
    attrs: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """A CF-style dataset of 2-D fields on an EPSG:3031 grid.

    Parameters
    ----------
    x, y : 1-D cell-centre coordinates in metres (nx,), (ny,).
    fields : name -> (array (ny, nx), units, long_name).
    attrs : extra global attributes (``Conventions`` is always CF-1.8).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.ndim != 1 or y.ndim != 1:
        raise ValueError(f"x and y must be 1-D, got shapes {x.shape} and {y.shape}")
    data_vars: dict[str, Any] = {}
    for name, (values, units, long_name) in fields.items():
        if name in ("x", "y", CRS_VAR):
            raise ValueError(f"field name {name!r} is reserved")
        a = np.asarray(values)
        if a.shape != (y.size, x.size):
            raise ValueError(f"field {name!r} has shape {a.shape}, expected (ny, nx) = {(y.size, x.size)}")
        data_vars[name] = (("y", "x"), a, {"units": units, "long_name": long_name, "grid_mapping": CRS_VAR})
    data_vars[CRS_VAR] = ((), np.int32(0), crs_attributes())
    ds = xr.Dataset(
        data_vars,
        coords={
            "x": ("x", x, {"standard_name": "projection_x_coordinate", "long_name": "x coordinate of projection", "units": "m", "axis": "X"}),
            "y": ("y", y, {"standard_name": "projection_y_coordinate", "long_name": "y coordinate of projection", "units": "m", "axis": "Y"}),
        },
    )
    ds.attrs.update(dict(attrs or {}))
    ds.attrs["Conventions"] = CONVENTIONS
    return ds


def fields_dataset(fields: xr.Dataset, attrs: Mapping[str, Any] | None = None) -> xr.Dataset:
    """:func:`grid_dataset` of a run's map fields (an ``xarray.Dataset`` on ``x``, ``y`` whose variables carry
    ``units`` and ``long_name``)."""
    return grid_dataset(fields["x"].values, fields["y"].values,
                        {name: (var.values, var.attrs["units"], var.attrs["long_name"])
                         for name, var in fields.data_vars.items()}, attrs)


def write_netcdf(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write ``ds`` to ``path`` (parent directories created); DataError naming the path on failure."""
    p = Path(path).expanduser()
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        ds.to_netcdf(p)
    except Exception as exc:  # noqa: BLE001 - OSError, ValueError, backend errors alike
        raise DataError(f"cannot write NetCDF {p}: {type(exc).__name__}: {exc}") from None
    return p


def read_netcdf(path: str | os.PathLike, max_bytes: int | None = None, **open_kwargs: Any) -> xr.Dataset:
    """Read a NetCDF file fully into memory and close it.

    DataError naming the path for a missing, truncated or foreign file, and (before anything is read into
    memory) for one whose variables would take more than ``max_bytes``.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"{p}: no such file")
    try:
        with xr.open_dataset(p, **open_kwargs) as ds:
            if max_bytes is not None and ds.nbytes > max_bytes:
                raise DataError(f"{p}: its variables take {ds.nbytes / 2**20:.3g} MiB, more than the "
                                f"{max_bytes / 2**20:.3g} MiB allowed here")
            return ds.load()
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - every backend raises its own type for a bad file
        raise DataError(f"{p}: cannot read as NetCDF (truncated or not a NetCDF file?): "
                        f"{backend_failure(exc)}") from None
