"""CF-1.8 NetCDF on the EPSG:3031 grid: attributes, CRS and round trips."""

from __future__ import annotations

import numpy as np
import pytest
from pyproj import CRS, Transformer

from iceviz.data.netcdf import grid_dataset, read_netcdf, write_netcdf
from iceviz.data.problem import DataError


@pytest.fixture
def ds():
    x = np.linspace(400_000.0, 600_000.0, 5)
    y = np.linspace(-950_000.0, -750_000.0, 4)
    speed = np.arange(20, dtype=np.float32).reshape(4, 5)
    div = np.linspace(-1, 1, 20).reshape(4, 5)
    return grid_dataset(
        x,
        y,
        {"speed": (speed, "m/yr", "ice speed"), "divergence": (div, "m/yr", "flux divergence")},
        attrs={"title": "test grid", "source": "iceviz tests"},
    )


def test_structure_and_attributes(ds):
    assert ds.attrs["Conventions"] == "CF-1.8" and ds.attrs["title"] == "test grid"
    assert ds["x"].attrs["standard_name"] == "projection_x_coordinate" and ds["x"].attrs["units"] == "m"
    assert ds["y"].attrs["standard_name"] == "projection_y_coordinate" and ds["y"].attrs["units"] == "m"
    assert ds["x"].ndim == 1 and ds["y"].ndim == 1
    for name in ("speed", "divergence"):
        assert ds[name].dims == ("y", "x")
        assert ds[name].attrs["grid_mapping"] == "crs"
        assert ds[name].attrs["units"] == "m/yr"
    assert ds["speed"].attrs["long_name"] == "ice speed"
    crs = ds["crs"]
    assert crs.ndim == 0
    a = crs.attrs
    assert a["grid_mapping_name"] == "polar_stereographic"
    assert a["straight_vertical_longitude_from_pole"] == 0
    assert a["standard_parallel"] == -71
    assert a["latitude_of_projection_origin"] == -90
    assert a["false_easting"] == 0 and a["false_northing"] == 0
    assert a["semi_major_axis"] == 6378137.0 and a["inverse_flattening"] == pytest.approx(298.257223563)
    assert a["crs_wkt"] == a["spatial_ref"] == CRS.from_epsg(3031).to_wkt()


def test_crs_parses_back_to_epsg_3031(ds, tmp_path):
    back = read_netcdf(write_netcdf(ds, tmp_path / "g.nc"))
    a = dict(back["crs"].attrs)
    assert CRS.from_wkt(a["crs_wkt"]).to_epsg() == 3031
    assert CRS.from_cf(a).to_epsg() == 3031
    # the CF parameters alone (without WKT) describe the same projection
    params = {k: v for k, v in a.items() if k not in ("crs_wkt", "spatial_ref")}
    ours = Transformer.from_crs(4326, CRS.from_cf(params), always_xy=True)
    epsg = Transformer.from_crs(4326, 3031, always_xy=True)
    lon, lat = np.array([0.0, 45.0, 160.0, -100.0]), np.array([-71.0, -80.0, -83.0, -65.0])
    np.testing.assert_allclose(np.array(ours.transform(lon, lat)), np.array(epsg.transform(lon, lat)), atol=1e-3)


def test_round_trip(ds, tmp_path):
    path = write_netcdf(ds, tmp_path / "deep" / "er" / "grid.nc")  # parents are created
    assert path.is_file()
    back = read_netcdf(path)
    np.testing.assert_array_equal(back["x"].values, ds["x"].values)
    np.testing.assert_array_equal(back["y"].values, ds["y"].values)
    np.testing.assert_array_equal(back["speed"].values, ds["speed"].values)
    assert back["speed"].dtype == np.float32
    np.testing.assert_array_equal(back["divergence"].values, ds["divergence"].values)
    assert back["divergence"].attrs["grid_mapping"] == "crs"
    assert back["x"].attrs["standard_name"] == "projection_x_coordinate"
    assert back.attrs["Conventions"] == "CF-1.8" and back.attrs["source"] == "iceviz tests"
    # fully loaded and closed: the file can be replaced while the dataset stays usable
    path.unlink()
    write_netcdf(ds.assign(speed=ds["speed"] * 2), path)
    assert float(back["speed"].max()) == 19.0
    assert float(read_netcdf(path)["speed"].max()) == 38.0


def test_shape_checks():
    with pytest.raises(ValueError, match=r"expected \(ny, nx\) = \(2, 3\)"):
        grid_dataset(np.arange(3.0), np.arange(2.0), {"a": (np.zeros((3, 2)), "m", "a")})
    with pytest.raises(ValueError, match="1-D"):
        grid_dataset(np.zeros((2, 2)), np.arange(2.0), {})
    with pytest.raises(ValueError, match="reserved"):
        grid_dataset(np.arange(3.0), np.arange(2.0), {"crs": (np.zeros((2, 3)), "m", "a")})


def test_errors_name_the_path(ds, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a directory")
    with pytest.raises(DataError, match=str(blocker / "out.nc")):
        write_netcdf(ds, blocker / "out.nc")
    with pytest.raises(DataError, match="missing.nc: no such file"):
        read_netcdf(tmp_path / "missing.nc")
    blocker.rename(tmp_path / "junk.nc")
    with pytest.raises(DataError, match="junk.nc"):
        read_netcdf(tmp_path / "junk.nc")


def test_a_file_too_big_is_refused_before_it_is_read_and_errors_are_one_line(ds, tmp_path):
    path = write_netcdf(ds, tmp_path / "g.nc")
    with pytest.raises(DataError, match=r"g\.nc: its variables take .* MiB, more than the .* MiB allowed"):
        read_netcdf(path, max_bytes=ds.nbytes // 2)
    assert read_netcdf(path, max_bytes=ds.nbytes + 10_000).sizes == ds.sizes
    junk = tmp_path / "junk.nc"
    junk.write_text("plain text")
    with pytest.raises(DataError) as err:
        read_netcdf(junk)
    assert "\n" not in str(err.value) and "engine" not in str(err.value) and "not a NetCDF file" in str(err.value)
