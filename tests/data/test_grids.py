"""Gridded products: the fixtures' layouts, lazy box reads, no-data, bilinear sampling, bad files."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from dask.callbacks import Callback

from iceviz.data.grids import BEDMACHINE, MEASURES_INSAR, MEASURES_PHASE, GridFile
from iceviz.data.problem import DataError
from iceviz.data.product_files import bedmachine_axes, measures_axes, write_bedmachine, write_measures


def test_measures_fixture_has_the_distributed_layout(glacier_products):
    with xr.open_dataset(glacier_products["measures-insar"], decode_coords=False) as ds:
        for name in ("VX", "VY", "STDX", "STDY", "ERRX", "ERRY"):
            assert ds[name].dims == ("y", "x") and ds[name].dtype == np.float32
            assert ds[name].attrs["units"] == "meter/year" and ds[name].attrs["grid_mapping"] == "coord_system"
        assert ds["CNT"].dtype == np.int32
        assert ds["VX"].attrs["standard_name"] == "land_ice_x_velocity"
        cs = ds["coord_system"].attrs
        assert cs["grid_mapping_name"] == "polar_stereographic" and cs["standard_parallel"] == -71.0
        assert ds["lat"].dims == ("y", "x") and ds["lat"].attrs["units"] == "degrees_north"
        y = ds["y"].values
        assert np.all(np.diff(y) < 0) and np.all(np.diff(ds["x"].values) > 0)
        assert np.all(ds["x"].values % 450 == 0) and ds["x"].attrs["units"] == "m"


def test_bedmachine_fixture_has_the_distributed_layout(glacier_products):
    with xr.open_dataset(glacier_products["bedmachine"], mask_and_scale=False) as ds:
        assert ds["x"].dtype == np.int32 and ds["y"].dtype == np.int32 and np.all(np.diff(ds["y"].values) < 0)
        assert ds["mask"].dtype == np.int8 and ds["mask"].attrs["flag_meanings"].split()[2] == "grounded_ice"
        assert ds["source"].dtype == np.int8 and ds["geoid"].dtype == np.int16
        for name in ("firn", "surface", "thickness", "bed", "errbed"):
            assert ds[name].dtype == np.float32 and ds[name].attrs["grid_mapping"] == "mapping"
        assert ds["mapping"].attrs["semi_major_axis"] == 6378273.0  # BedMachine's Hughes ellipsoid
        assert ds.attrs["no_data"] == -9999.0 and ds.attrs["spacing"] == 1000


def linear_file(path, n=300, chunk=50, spacing=450.0):
    """A MEaSUREs file whose VX = x / 1000 + 2, VY = -y / 500 (exact under bilinear interpolation)."""
    x, y = measures_axes((0.0, (n - 1) * spacing, 0.0, (n - 1) * spacing), spacing)
    xx, yy = np.meshgrid(x, y)
    write_measures(path, x, y, xx / 1000 + 2, -yy / 500, latlon=False, chunk=chunk)
    return x, y


class Materialised(Callback):
    """Bytes of every array a dask task produced while computing."""

    def __init__(self):
        super().__init__()
        self.nbytes = 0

    def _posttask(self, key, result, dsk, state, id):
        if isinstance(result, np.ndarray):
            self.nbytes += result.nbytes


@pytest.mark.parametrize("chunk", [50, None], ids=["chunked", "contiguous"])
def test_only_the_box_is_loaded(tmp_path, chunk):
    path = tmp_path / "v.nc"
    linear_file(path, n=300, chunk=chunk)
    with GridFile(path, MEASURES_INSAR) as g:
        assert g.shape == (300, 300)
        full = 2 * 300 * 300 * 4
        probe = Materialised()
        with probe:
            ds = g.read((20_000.0, 30_000.0, 40_000.0, 52_000.0), ("VX", "VY"))
    box = 2 * ds["VX"].size * 4
    assert box < full / 50
    # the tasks produced the box (its pieces per chunk, then the pieces joined), never whole variables
    assert 0 < probe.nbytes <= 4 * box < full / 10


def test_read_matches_the_file_with_y_increasing_and_no_data_nan(tmp_path):
    path = tmp_path / "v.nc"
    x, y = measures_axes((0.0, 45_000.0, 0.0, 45_000.0))
    xx, yy = np.meshgrid(x, y)
    vx, vy = xx / 1000 + 2, -yy / 500
    vx[10:12, 20:25] = np.nan  # written as the product's no-data: 0, 0
    write_measures(path, x, y, vx, vy, latlon=False)
    with GridFile(path, MEASURES_INSAR) as g:
        ds = g.read((0.0, 45_000.0, 0.0, 45_000.0), ("VX", "VY", "ERRX"))
    assert np.all(np.diff(ds["y"].values) > 0)
    got = ds["VX"].values[::-1]  # back to the file's order
    assert np.array_equal(np.isnan(got), np.isnan(vx))
    np.testing.assert_allclose(got[~np.isnan(vx)], vx[~np.isnan(vx)].astype(np.float32))
    with xr.open_dataset(path) as raw:
        assert float(raw["VX"][10, 20]) == 0.0 and float(raw["ERRX"][10, 20]) == 0.0


def test_bedmachine_no_data_is_nan(tmp_path):
    x, y = bedmachine_axes((0, 20_000, 0, 20_000))
    h = np.full((len(y), len(x)), 1000.0)
    h[:3] = np.nan  # open ocean
    path = write_bedmachine(tmp_path / "bm.nc", x, y, h, h + 100.0)
    with GridFile(path, BEDMACHINE) as g:
        ds = g.read((0, 20_000, 0, 20_000), ("bed", "thickness", "mask"))
    top = ds.sel(y=ds["y"].values[-3:])
    assert np.isnan(top["bed"].values).all() and (top["mask"].values == 0).all()
    assert (top["thickness"].values == 0).all()
    assert np.allclose(ds["bed"].values[:-3], 100.0)


def test_bilinear_sampling_is_exact_for_a_linear_field(tmp_path):
    path = tmp_path / "v.nc"
    linear_file(path, n=120)
    rng = np.random.default_rng(0)
    xy = rng.uniform(1_000, 50_000, size=(200, 2))
    with GridFile(path, MEASURES_PHASE) as g:
        v = g.sample(xy, ("VX", "VY"))
        off = g.sample(np.array([[1e7, 1e7], [10_000.0, 10_000.0]]), ("VX",))
    np.testing.assert_allclose(v["VX"], xy[:, 0] / 1000 + 2, rtol=1e-5)
    np.testing.assert_allclose(v["VY"], -xy[:, 1] / 500, rtol=1e-5, atol=1e-3)
    assert np.isnan(off["VX"][0]) and np.isfinite(off["VX"][1])


def test_footprint_and_a_box_outside_it(tmp_path):
    path = tmp_path / "v.nc"
    linear_file(path, n=100)
    with GridFile(path, MEASURES_INSAR) as g:
        assert g.footprint == (-225.0, 99 * 450 + 225.0, -225.0, 99 * 450 + 225.0)
        with pytest.raises(DataError, match="lies outside the file's grid"):
            g.read((1e6, 1.1e6, 1e6, 1.1e6), ("VX",))


def test_bad_files_get_clear_errors(tmp_path, glacier_products):
    with pytest.raises(DataError, match="no such file"):
        GridFile(tmp_path / "missing.nc", MEASURES_INSAR)
    truncated = tmp_path / "truncated.nc"
    truncated.write_bytes(glacier_products["measures-insar"].read_bytes()[:5000])
    with pytest.raises(DataError, match="cannot read as NetCDF"):
        GridFile(truncated, MEASURES_INSAR)
    with pytest.raises(DataError, match=r"not a MEaSUREs InSAR-based velocity .* missing variable\(s\) VX, VY"):
        GridFile(glacier_products["bedmachine"], MEASURES_INSAR)
    foreign = tmp_path / "foreign.nc"
    xr.Dataset({"VX": (("x", "y"), np.zeros((3, 3))), "VY": (("x", "y"), np.zeros((3, 3)))},
               coords={"x": [0.0, 1.0, 2.0], "y": [0.0, 1.0, 2.0]}).to_netcdf(foreign)
    with pytest.raises(DataError, match=r"dimensions \('x', 'y'\), expected \(y, x\)"):
        GridFile(foreign, MEASURES_PHASE)
