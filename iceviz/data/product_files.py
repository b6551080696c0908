"""Files in the exact layouts of the real products, filled with a known field.

Tests, the benchmark and the teaching demo need MEaSUREs, BedMachine and
Bedmap files without the multi-gigabyte downloads. The writers here copy the
distributed layouts (dimension order, variable and coordinate names, dtypes,
units, grid-mapping variables, sentinels; see ``iceviz.data.products``) and
fill them with the synthetic outlet glacier of ``synthetic:glacier``: velocity
= its flux / thickness, thickness and surface its design, flight lines its
survey lines. A region built from these files must therefore recover the
glacier's divergence-free flux (up to interpolation error), which the tests
check.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import xarray as xr

from iceviz.data import synthetic as syn
from iceviz.data.region import Bounds

FIRN_AIR = 12.0
"""Firn air content of the synthetic BedMachine file (m, uniform)."""
NO_DATA = -9999
BEDMAP_COLUMNS = (
    "trajectory_id", "trace_number", "longitude (degree_east)", "latitude (degree_north)", "date", "time_UTC",
    "surface_altitude (m)", "land_ice_thickness (m)", "bedrock_altitude (m)", "two_way_travel_time (m)",
    "aircraft_altitude (m)", "along_track_distance (m)",
)
BEDMAP_HEADER = (
    ("project", "iceviz synthetic survey"), ("time_coverage_start", "2010-01-01"),
    ("time_coverage_end", "2010-12-31"), ("creator_name", "iceviz"), ("institution", "iceviz, synthetic data"),
    ("acknowledgement", "none"), ("source", "synthetic:glacier flight lines"), ("references", "none"),
    ("platform", "airborne radar."), ("instrument", "synthetic radar"), ("history", "written by iceviz tests"),
    ("electromagnetic_wave_speed_in_ice", "168.0 (meters/microseconds)"), ("firn_correction", "0 (m)"),
    ("centre_frequency", "150 (MHz)"), ("comment", "Part of Bedmap3 (layout only)"),
    ("metadata_link", "none"), ("license", "CC BY 4.0"), ("Conventions", "ACDD-1.3, CF-1.8"),
)
MEASURES_ATTRS = {
    "VX": ("Ice velocity in x direction", "land_ice_x_velocity", "meter/year"),
    "VY": ("Ice velocity in y direction", "land_ice_y_velocity", "meter/year"),
    "STDX": ("Std velocity in x direction", "std_ice_x_velocity", "meter/year"),
    "STDY": ("Std velocity in y direction", "std_ice_y_velocity", "meter/year"),
    "ERRX": ("Err velocity in x direction", "err_ice_x_velocity", "meter/year"),
    "ERRY": ("Err velocity in y direction", "err_ice_y_velocity", "meter/year"),
    "CNT": ("Cnt velocity", "cnt_ice_velocity", "Count"),
}
MEASURES_TITLES = {
    "insar": "MEaSURES Antarctica Ice Velocity Map 450m spacing",
    "phase": "MEaSUREs Phase-Based Antarctica Ice Velocity Map 450m spacing",
}


def _axis(name: str, values: np.ndarray, units: str) -> xr.DataArray:
    return xr.DataArray(values, dims=(name,), attrs={
        "long_name": f"Cartesian {name}-coordinate", "standard_name": f"projection_{name}_coordinate",
        "axis": name.upper(), "units": units,
    })


def measures_axes(bounds: Bounds, spacing: float = 450.0) -> tuple[np.ndarray, np.ndarray]:
    """x increasing, y decreasing, on whole multiples of ``spacing`` covering ``bounds`` (as the mosaic does)."""
    xmin, xmax, ymin, ymax = bounds
    x = np.arange(np.floor(xmin / spacing), np.ceil(xmax / spacing) + 1) * spacing
    y = np.arange(np.ceil(ymax / spacing), np.floor(ymin / spacing) - 1, -1) * spacing
    return x.astype(np.float64), y.astype(np.float64)


def _encoding(names, shape: tuple[int, int], chunk: int | None, compress: bool) -> dict:
    enc = {}
    for n in names:
        e: dict = {"zlib": compress, "complevel": 1} if compress else {}
        if chunk:
            e["chunksizes"] = (min(chunk, shape[0]), min(chunk, shape[1]))
        enc[n] = e
    return enc


def write_measures(path: str | os.PathLike, x: np.ndarray, y: np.ndarray, vx: np.ndarray, vy: np.ndarray,
                   kind: str = "insar", latlon: bool = True, chunk: int | None = None,
                   compress: bool = True) -> Path:
    """A MEaSUREs velocity mosaic (NSIDC-0484 v2 / NSIDC-0754 layout): VX, VY, STDX, STDY, ERRX, ERRY (float32),
    CNT (int32) on (y, x), y decreasing, grid mapping ``coord_system``, 2-D lat / lon.

    NaN velocities are written as the product's no-data: 0 with errors and count 0.
    """
    path = Path(path)
    valid = np.isfinite(vx) & np.isfinite(vy)
    fields = {
        "VX": np.where(valid, vx, 0.0).astype(np.float32),
        "VY": np.where(valid, vy, 0.0).astype(np.float32),
        "STDX": np.where(valid, 2.0, 0.0).astype(np.float32),
        "STDY": np.where(valid, 2.0, 0.0).astype(np.float32),
        "ERRX": np.where(valid, 3.0, 0.0).astype(np.float32),
        "ERRY": np.where(valid, 3.0, 0.0).astype(np.float32),
        "CNT": np.where(valid, 7, 0).astype(np.int32),
    }
    data = {}
    for name, values in fields.items():
        long_name, standard_name, units = MEASURES_ATTRS[name]
        data[name] = xr.DataArray(values, dims=("y", "x"), attrs={
            "long_name": long_name, "standard_name": standard_name, "units": units, "grid_mapping": "coord_system"})
    data["coord_system"] = xr.DataArray(np.array(b"", dtype="S1"), attrs={
        "ellipsoid": "WGS84", "false_easting": 0.0, "false_northing": 0.0,
        "grid_mapping_name": "polar_stereographic", "longitude_of_projection_origin": 0.0,
        "latitude_of_projection_origin": -90.0, "standard_parallel": -71.0,
        "straight_vertical_longitude_from_pole": 0.0})
    coords = {"x": _axis("x", x, "m"), "y": _axis("y", y, "m")}
    if latlon:
        from iceviz.geo.crs import xy_to_lonlat

        lon, lat = xy_to_lonlat(*np.meshgrid(x, y))
        coords["lat"] = xr.DataArray(lat, dims=("y", "x"), attrs={
            "units": "degrees_north", "long_name": "latitude coordinate", "standard_name": "latitude"})
        coords["lon"] = xr.DataArray(lon, dims=("y", "x"), attrs={
            "units": "degrees_east", "long_name": "longitude coordinate", "standard_name": "longitude"})
    ds = xr.Dataset(data, coords=coords, attrs={
        "Conventions": "CF-1.6", "title": MEASURES_TITLES[kind], "institution":
        "Department of Earth System Science, University of California, Irvine", "cdm_data_type": "Grid",
        "spatial_resolution": "450m", "project": "NASA/MEaSUREs", "creator_name": "J. Mouginot",
        "license": "No restrictions on access or use", "comment": "synthetic field written by iceviz"})
    ds.to_netcdf(path, engine="netcdf4", encoding=_encoding(list(fields), vx.shape, chunk, compress))
    return path


def bedmachine_axes(bounds: Bounds, spacing: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """int32 x increasing, y decreasing, whole multiples of ``spacing`` covering ``bounds``."""
    xmin, xmax, ymin, ymax = bounds
    x = np.arange(int(np.floor(xmin / spacing)), int(np.ceil(xmax / spacing)) + 1) * spacing
    y = np.arange(int(np.ceil(ymax / spacing)), int(np.floor(ymin / spacing)) - 1, -1) * spacing
    return x.astype(np.int32), y.astype(np.int32)


def write_bedmachine(path: str | os.PathLike, x: np.ndarray, y: np.ndarray, thickness: np.ndarray,
                     surface: np.ndarray, firn: float | np.ndarray = FIRN_AIR, chunk: int | None = None,
                     compress: bool = True) -> Path:
    """A BedMachine Antarctica file (NSIDC-0756 layout): int32 x, y (y decreasing), mask (int8 flags), firn,
    surface, thickness, bed, errbed (float32), source (int8), geoid (int16), grid mapping ``mapping``.

    ``thickness`` and ``surface`` are ice equivalent, as in the product; NaN thickness is open ocean
    (mask 0, thickness 0, bed -9999 no-data).
    """
    path = Path(path)
    ice = np.isfinite(thickness) & (thickness > 0)
    shape = thickness.shape
    firn_a = np.broadcast_to(np.asarray(firn, dtype=np.float32), shape)
    h = np.where(ice, thickness, 0.0).astype(np.float32)
    s = np.where(ice, surface, 0.0).astype(np.float32)
    fields = {
        "mask": (np.where(ice, 2, 0).astype(np.int8), {
            "long_name": "mask", "flag_values": np.array([0, 1, 2, 3, 4], dtype=np.int8),
            "flag_meanings": "ocean ice_free_land grounded_ice floating_ice lake_vostok",
            "valid_range": np.array([0, 4], dtype=np.int8)}),
        "firn": (np.where(ice, firn_a, 0.0).astype(np.float32), {"long_name": "firn air content", "units": "meters"}),
        "surface": (s, {"long_name": "ice surface elevation", "standard_name": "surface_altitude", "units": "meters"}),
        "thickness": (h, {"long_name": "ice thickness", "standard_name": "land_ice_thickness", "units": "meters"}),
        "bed": (np.where(ice, s - h, NO_DATA).astype(np.float32), {
            "long_name": "bed topography", "standard_name": "bedrock_altitude", "units": "meters"}),
        "errbed": (np.full(shape, 50.0, np.float32), {"long_name": "bed topography/ice thickness error",
                                                     "units": "meters"}),
        "source": (np.where(ice, 3, 1).astype(np.int8), {
            "long_name": "data source", "flag_values": np.array([1, 2, 3, 4, 5, 6, 7, 10], dtype=np.int8),
            "flag_meanings": "REMA_IBCSO mass_conservation interpolation hydrostatic streamline_diffusion gravity "
                             "seismic multibeam"}),
        "geoid": (np.full(shape, -50, np.int16), {
            "long_name": "EIGEN-EC4 Geoid - WGS84 Ellipsoid difference",
            "standard_name": "geoid_height_above_reference_ellipsoid", "units": "meters"}),
    }
    data = {n: xr.DataArray(v, dims=("y", "x"), attrs={**a, "grid_mapping": "mapping"}) for n, (v, a) in fields.items()}
    data["mapping"] = xr.DataArray(np.array(b"", dtype="S1"), attrs={
        "grid_mapping_name": "polar_stereographic", "latitude_of_projection_origin": -90.0,
        "standard_parallel": -71.0, "straight_vertical_longitude_from_pole": 0.0, "false_easting": 0.0,
        "false_northing": 0.0, "semi_major_axis": 6378273.0, "inverse_flattening": 298.2794050428205})
    coords = {"x": _axis("x", x, "meter"), "y": _axis("y", y, "meter")}
    spacing = int(abs(int(x[1]) - int(x[0]))) if len(x) > 1 else 500
    ds = xr.Dataset(data, coords=coords, attrs={
        "Author": "Mathieu Morlighem", "Conventions": "CF-1.7", "Title": "BedMachine Antarctica",
        "Projection": "Polar Stereographic South (71S,0E)", "proj4": "+init=epsg:3031",
        "ice_density (kg m-3)": 917.0, "sea_water_density (kg m-3)": 1027.0, "no_data": float(NO_DATA),
        "nx": float(len(x)), "ny": float(len(y)), "spacing": spacing, "xmin": int(x[0]), "ymax": int(y[0]),
        "version": "synthetic (iceviz)", "license": "No restrictions on access or use"})
    encoding = _encoding(list(fields), shape, chunk, compress)
    for n in ("x", "y"):
        encoding[n] = {"dtype": "int32"}
    ds.to_netcdf(path, engine="netcdf4", encoding=encoding)
    return path


def write_bedmap_csv(path: str | os.PathLike, frame: pd.DataFrame,
                     header: tuple[tuple[str, str], ...] = BEDMAP_HEADER) -> Path:
    """A Bedmap standardised CSV: ``#key: value`` metadata lines, then the 12 standard columns.

    ``frame`` holds the columns of :data:`BEDMAP_COLUMNS`; NaN is written as -9999.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        for key, value in header:
            fh.write(f"#{key}: {value}\n")
        frame.loc[:, list(BEDMAP_COLUMNS)].fillna(NO_DATA).to_csv(fh, index=False)
    return path


def survey_frame(xy: np.ndarray, line: np.ndarray, thickness: np.ndarray, surface: np.ndarray,
                 prefix: str = "2010") -> pd.DataFrame:
    """Bedmap columns for survey points at EPSG:3031 ``xy`` (lon/lat computed), one trajectory per ``line``."""
    from iceviz.geo.crs import xy_to_lonlat

    lon, lat = xy_to_lonlat(xy[:, 0], xy[:, 1])
    n = len(xy)
    trace = np.zeros(n, dtype=np.int64)
    for k in np.unique(line):
        sel = line == k
        trace[sel] = np.arange(1, int(sel.sum()) + 1)
    step = np.r_[0.0, np.hypot(*np.diff(xy, axis=0).T)]
    return pd.DataFrame({
        "trajectory_id": [f"{prefix}_{int(k):02d}" for k in line],
        "trace_number": trace,
        "longitude (degree_east)": np.round(lon, 7),
        "latitude (degree_north)": np.round(lat, 7),
        "date": "2010-12-15",
        "time_UTC": "12:00:00",
        "surface_altitude (m)": np.round(surface, 2),
        "land_ice_thickness (m)": np.round(thickness, 2),
        "bedrock_altitude (m)": np.round(surface - thickness, 2),
        "two_way_travel_time (m)": np.round(2.0 * thickness / 1.68e8, 9),
        "aircraft_altitude (m)": np.round(surface + 500.0, 1),
        "along_track_distance (m)": np.round(np.cumsum(step), 1),
    })


def glacier_grid(x: np.ndarray, y: np.ndarray, f: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """A synthetic:glacier function evaluated on the (y, x) grid (vector functions give (ny, nx, 2))."""
    xx, yy = np.meshgrid(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    out = f(np.column_stack([xx.ravel(), yy.ravel()]))
    return out.reshape(xx.shape + out.shape[1:])


def write_glacier_products(directory: str | os.PathLike, bounds: Bounds = syn.GLACIER_BOUNDS,
                           velocity_spacing: float = 900.0, bedmachine_spacing: int = 1000,
                           survey_spacing: float = syn.GLACIER_SPACING, n_files: int = 2) -> dict[str, Path]:
    """The synthetic glacier as a small set of product files in ``directory``.

    A MEaSUREs InSAR and a phase-based mosaic, a BedMachine file (thickness, surface, firn air content
    :data:`FIRN_AIR`) and ``n_files`` Bedmap CSVs sharing the flight lines. The grids cover ``bounds`` padded
    by two cells, at coarse spacings (multiples of the products' own) so that the files stay small.
    Returns product key -> path (the Bedmap entry is the folder of the CSVs).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    xmin, xmax, ymin, ymax = bounds
    pad = 2 * max(velocity_spacing, bedmachine_spacing)
    padded = (xmin - pad, xmax + pad, ymin - pad, ymax + pad)
    x, y = measures_axes(padded, velocity_spacing)
    v = glacier_grid(x, y, syn.glacier_velocity)
    out = {
        "measures-insar": write_measures(directory / "antarctica_ice_velocity_450m_v2.nc", x, y, v[..., 0], v[..., 1]),
        "measures-phase": write_measures(directory / "antarctic_ice_vel_phase_map_v01.nc", x, y, v[..., 0], v[..., 1],
                                         kind="phase"),
    }
    bx, by = bedmachine_axes(padded, bedmachine_spacing)
    h = glacier_grid(bx, by, syn.glacier_thickness)
    s = glacier_grid(bx, by, syn.glacier_surface)
    out["bedmachine"] = write_bedmachine(directory / "BedMachineAntarctica-v3.nc", bx, by, h - FIRN_AIR,
                                         s - FIRN_AIR)
    xy, line = syn.glacier_flight_lines(spacing=survey_spacing, bounds=bounds)
    frame = survey_frame(xy, line, syn.glacier_thickness(xy), syn.glacier_surface(xy))
    bedmap = directory / "bedmap"
    lines = np.unique(line)
    for i in range(n_files):
        keep = np.isin(line, lines[i::n_files])
        write_bedmap_csv(bedmap / f"ICEVIZ_2010_GLACIER{i + 1}_AIR_BM3.csv", frame[keep])
    out["bedmap"] = bedmap
    return out
