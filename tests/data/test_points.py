"""points:FILE — CSV and NetCDF flux points, splits, scaling and error messages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from iceviz.data import synthetic as syn
from iceviz.data.points import (
    DEFAULT_TILE,
    checkerboard_split,
    glacier_points_frame,
    load_points,
    write_points_csv,
)
from iceviz.data.problem import DataError
from iceviz.data.sanity import MAX_FLUX_M2_PER_YR, first_violation
from iceviz.data.specs import load_problem

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "sample_data"
SAMPLE = SAMPLE_DIR / "glacier_points.csv"


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return glacier_points_frame(step=4)


def _csv(tmp_path: Path, df: pd.DataFrame, name: str = "pts.csv") -> Path:
    path = tmp_path / name
    df.to_csv(path, index=False)
    return path


def test_csv_with_split_column(tmp_path, frame):
    path = _csv(tmp_path, frame)
    p = load_points(path)
    is_test = frame["split"].to_numpy() == "test"
    np.testing.assert_array_equal(p.test.xy, frame[["x", "y"]].to_numpy()[is_test])
    np.testing.assert_array_equal(p.train.q, frame[["qx", "qy"]].to_numpy()[~is_test])
    np.testing.assert_array_equal(p.train.s, frame["s"].to_numpy()[~is_test])
    xy = frame[["x", "y"]].to_numpy()
    sc = p.scale
    assert (sc.x0, sc.y0) == (xy[:, 0].min(), xy[:, 1].min())
    assert sc.length == pytest.approx(max(np.ptp(xy[:, 0]), np.ptp(xy[:, 1])))
    assert sc.flux == pytest.approx(np.sqrt(np.mean(np.sum(p.train.q**2, axis=1))))
    assert sc.surface == 1000.0
    assert p.bounds == (xy[:, 0].min(), xy[:, 0].max(), xy[:, 1].min(), xy[:, 1].max())
    # direction guidance: unit velocity at every point (test included), flagged in the notes
    v = frame[["vx", "vy"]].to_numpy()
    assert p.direction.xy.shape[0] == len(frame)
    np.testing.assert_allclose(p.direction.unit, v / np.linalg.norm(v, axis=1)[:, None], rtol=1e-14)
    assert any("+dir" in n and "test" in n for n in p.notes)


def test_split_words_are_case_insensitive(tmp_path, frame):
    df = frame.copy()
    df["split"] = np.where(df["split"] == "test", " TEST", "Train ")
    p = load_points(_csv(tmp_path, df))
    assert len(p.test) == int((frame["split"] == "test").sum())


def test_checkerboard_split_without_split_column(tmp_path, frame):
    df = frame.drop(columns=["split", "vx", "vy", "s"])
    p = load_points(_csv(tmp_path, df), tile=20_000)
    xy = df[["x", "y"]].to_numpy()
    ij = np.floor((xy - xy.min(axis=0)) / 20_000).astype(int)
    is_test = (ij.sum(axis=1) % 2) == 0
    np.testing.assert_array_equal(p.test.xy, xy[is_test])
    np.testing.assert_array_equal(p.train.xy, xy[~is_test])
    assert p.direction is None and p.train.s is None and not p.has_surface
    # the default tile and the ?tile= option through the spec
    assert len(load_points(_csv(tmp_path, df)).test) == int(checkerboard_split(xy, DEFAULT_TILE).sum())
    q = load_problem(f"points:{tmp_path / 'pts.csv'}?tile=30000")
    assert len(q.test) == int(checkerboard_split(xy, 30_000).sum())


def test_checkerboard_too_coarse_suggests_a_tile(tmp_path, frame):
    path = _csv(tmp_path, frame.drop(columns=["split"]))
    with pytest.raises(DataError, match=r"0 train and \d+ test points.*tile=\d+"):
        load_points(path, tile=1e7)


def test_netcdf_matches_csv(tmp_path, frame):
    ds = xr.Dataset(
        {c: ("point", frame[c].to_numpy()) for c in ("x", "y", "qx", "qy", "s", "vx", "vy")}
        | {"split": ("point", frame["split"].to_numpy().astype(str))}
    )
    nc = tmp_path / "pts.nc"
    ds.to_netcdf(nc)
    a, b = load_points(nc), load_points(_csv(tmp_path, frame))
    for oa, ob in ((a.train, b.train), (a.test, b.test)):
        np.testing.assert_array_equal(oa.xy, ob.xy)
        np.testing.assert_array_equal(oa.q, ob.q)
        np.testing.assert_array_equal(oa.s, ob.s)
    assert a.scale == b.scale
    np.testing.assert_array_equal(a.direction.unit, b.direction.unit)


def test_netcdf_errors(tmp_path, frame):
    ds = xr.Dataset({c: ("point", frame[c].to_numpy()) for c in ("x", "y", "qx")})
    ds["qy"] = (("a", "b"), np.zeros((2, 3)))
    nc = tmp_path / "bad.nc"
    ds.to_netcdf(nc)
    with pytest.raises(DataError, match=r"bad\.nc.*qy.*1-D along 'point'"):
        load_points(nc)
    qx = frame["qx"].to_numpy().copy()
    qx[3] = np.nan
    ds = xr.Dataset({c: ("point", frame[c].to_numpy()) for c in ("x", "y", "qy")} | {"qx": ("point", qx)})
    ds.to_netcdf(tmp_path / "nan.nc")
    with pytest.raises(DataError, match=r"nan\.nc: column qx has 1 NaN.*index 3"):
        load_points(tmp_path / "nan.nc")
    (tmp_path / "junk.nc").write_text("not netcdf at all")
    with pytest.raises(DataError, match=r"junk\.nc: cannot read as NetCDF"):
        load_points(tmp_path / "junk.nc")


def test_file_errors(tmp_path):
    with pytest.raises(DataError, match=r"missing\.csv: no such file"):
        load_points(tmp_path / "missing.csv")
    (tmp_path / "a.txt").write_text("x,y\n")
    with pytest.raises(DataError, match=r"a\.txt: unsupported file type '\.txt'; supported: \.csv, \.nc"):
        load_points(tmp_path / "a.txt")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match=r"empty\.csv: the file is empty"):
        load_points(tmp_path / "empty.csv")
    (tmp_path / "ragged.csv").write_text("x,y,qx,qy\n1,2,3,4\n1,2,3,4,5,6,7\n")
    with pytest.raises(DataError, match=r"ragged\.csv: cannot parse as CSV"):
        load_points(tmp_path / "ragged.csv")
    (tmp_path / "binary.csv").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(DataError, match=r"binary\.csv"):
        load_points(tmp_path / "binary.csv")


def _rows(n: int = 8) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {"x": rng.uniform(0, 1e5, n), "y": rng.uniform(0, 1e5, n), "qx": rng.normal(size=n), "qy": rng.normal(size=n)}
    )


def test_column_errors(tmp_path):
    with pytest.raises(DataError, match=r"missing required column\(s\) qx, qy.*found: X, Y, flux"):
        load_points(_csv(tmp_path, pd.DataFrame({"X": [1.0], "Y": [2.0], "flux": [3.0]})))
    df = _rows().astype(object)
    df.loc[2, "qy"] = "abc"
    df.loc[5, "qy"] = "12x"
    with pytest.raises(DataError, match=r"column qy has 2 non-numeric value\(s\) at rows 3, 6 \(e\.g\. 'abc', '12x'\)"):
        load_points(_csv(tmp_path, df))
    df = _rows()
    df.loc[[1, 4], "qx"] = np.nan
    df.loc[6, "qx"] = np.inf
    with pytest.raises(DataError, match=r"column qx has 3 NaN, missing or infinite value\(s\) at rows 2, 5, 7"):
        load_points(_csv(tmp_path, df))
    df = _rows()
    df["s"] = 100.0
    df.loc[0, "s"] = np.nan
    with pytest.raises(DataError, match=r"column s has 1 NaN"):
        load_points(_csv(tmp_path, df))
    df = _rows()
    df["split"] = ["train", "test", "validation", "train", "test", "x", "train", "test"]
    with pytest.raises(DataError, match=r"split has 2 value\(s\) other than train/test at rows 3, 6"):
        load_points(_csv(tmp_path, df))
    df = _rows()
    df["vx"] = 1.0
    with pytest.raises(DataError, match="both vx and vy"):
        load_points(_csv(tmp_path, df))
    with pytest.raises(DataError, match=r"only 3 point\(s\); need at least 5"):
        load_points(_csv(tmp_path, _rows(3)))
    df = _rows()
    df["split"] = "train"
    with pytest.raises(DataError, match="split column leaves 8 train and 0 test"):
        load_points(_csv(tmp_path, df))


def test_case_insensitive_names_and_zero_speed(tmp_path):
    df = _rows()
    df.columns = ["X", "Y", "QX", "Qy"]
    df["VX"], df["vy"] = [0.0] + [1.0] * 7, [0.0] + [2.0] * 7
    p = load_points(_csv(tmp_path, df), tile=30_000)
    assert p.direction.xy.shape[0] == 7  # the zero-speed point gives no direction
    np.testing.assert_allclose(p.direction.unit[0], np.array([1.0, 2.0]) / np.sqrt(5))


def test_sample_file_is_the_glacier():
    assert SAMPLE.stat().st_size < 300_000
    p = load_problem(f"points:{SAMPLE}")
    df = pd.read_csv(SAMPLE)
    assert len(p.train) + len(p.test) == len(df) > 2000
    # test rows are the exact, divergence-free glacier flux at their coordinates
    np.testing.assert_allclose(p.test.q, syn.glacier_flux(p.test.xy), atol=0.051)
    np.testing.assert_allclose(p.test.s, syn.glacier_surface(p.test.xy), atol=0.0051)
    v = df[["vx", "vy"]].to_numpy()
    np.testing.assert_allclose(v, syn.glacier_velocity(df[["x", "y"]].to_numpy()), atol=5.1e-4)
    resid = p.train.q - syn.glacier_flux(p.train.xy)
    mean_q = np.mean(np.linalg.norm(p.test.q, axis=1))
    assert np.std(resid) == pytest.approx(0.02 * mean_q, rel=0.1)
    assert p.direction is not None and p.has_surface


def test_sample_file_regenerates(tmp_path):
    out = write_points_csv(glacier_points_frame(), tmp_path / "sub" / "g.csv")
    a, b = pd.read_csv(out), pd.read_csv(SAMPLE)
    assert list(a.columns) == list(b.columns)
    pd.testing.assert_frame_equal(a, b, rtol=1e-9)


def test_coordinates_outside_antarctica_are_refused(tmp_path):
    df = _rows()
    df.loc[2, "x"] = 1e30
    path = _csv(tmp_path, df)
    with pytest.raises(DataError, match=r"pts\.csv: column x: 1 row\(s\) outside \|x\| ≤ 3,400 km \(EPSG:3031 "
                                        r"Antarctica\) at row 3 \(e\.g\. row 3: x = 1e\+30\); x, y must be EPSG:3031 "
                                        r"metres: fix or remove these rows, or .* use points:.*pts\.csv\?extent=any$"):
        load_problem(f"points:{path}?tile=30000")
    # the override lifts the Antarctic box, not sense: 1e30 m is off the Earth
    with pytest.raises(DataError, match=r"column x: 1 row\(s\) outside \|x\| ≤ 20,000 km \(extent=any\) at row 3"):
        load_problem(f"points:{path}?extent=any")


def test_another_polar_projection_needs_extent_any(tmp_path):
    # Austfonna, Svalbard, in UTM zone 33N (EPSG:32633): y ≈ 8,850 km
    rng = np.random.default_rng(1)
    n = 40
    df = pd.DataFrame({"x": rng.uniform(620e3, 700e3, n), "y": rng.uniform(8.82e6, 8.9e6, n),
                       "qx": rng.normal(0, 5e4, n), "qy": rng.normal(0, 5e4, n)})
    path = _csv(tmp_path, df, "svalbard.csv")
    with pytest.raises(DataError, match=r"svalbard\.csv: column y: \d+ row\(s\) outside .*\?extent=any"):
        load_problem(f"points:{path}")
    p = load_problem(f"points:{path}?extent=any&tile=20000")
    assert len(p.train) + len(p.test) == n and p.bounds[2] > 8.8e6
    assert load_points(path, extent="any").scale.y0 == df["y"].min()
    with pytest.raises(DataError, match=r"extent='europe': must be one of antarctica, any"):
        load_problem(f"points:{path}?extent=europe")


@pytest.mark.parametrize(("column", "value", "expected"), [
    ("qx", 1e300, r"columns qx, qy: 1 row\(s\) outside \|q\| = hypot\(qx, qy\) ≤ 1e\+08 m²/yr at row 4 "
                  r"\(e\.g\. row 4: qx = 1e\+300, qy = .*\); the fastest Antarctic ice .* m²/yr or remove these rows"),
    ("qy", -2e8, r"columns qx, qy: 1 row\(s\) outside \|q\| .* at row 4 \(e\.g\. row 4: qx = .*, qy = -2e\+08\)"),
    ("vx", 3e4, r"columns vx, vy: 1 row\(s\) outside \|v\| = hypot\(vx, vy\) ≤ 20000 m/yr at row 4 .*in m/yr"),
    ("s", 8848.0, r"column s: 1 row\(s\) outside -1,000\.\.5,000 m at row 4 \(e\.g\. row 4: s = 8848\)"),
    ("s", -3000.0, r"column s: 1 row\(s\) outside -1,000\.\.5,000 m at row 4 .*not the bed"),
])
def test_values_beyond_physical_bounds_are_refused(tmp_path, column, value, expected):
    df = _rows()
    df["vx"], df["vy"], df["s"] = 100.0, -50.0, 1200.0
    df.loc[3, column] = value
    with pytest.raises(DataError, match=r"pts\.csv: " + expected):
        load_points(_csv(tmp_path, df), tile=30_000)


def test_several_bad_rows_are_counted_and_listed(tmp_path):
    df = _rows(12)
    df.loc[[1, 4, 5, 7, 9, 11], "qx"] = 5e8
    with pytest.raises(DataError, match=r"columns qx, qy: 6 row\(s\) outside .* at rows 2, 5, 6, 8, 10, … "
                                        r"\(e\.g\. row 2: qx = 5e\+08"):
        load_points(_csv(tmp_path, df), tile=30_000)


def test_infinite_values_are_refused(tmp_path):
    df = _rows().astype(object)
    df.loc[3, "qx"] = "1e400"  # overflows to inf
    with pytest.raises(DataError, match=r"column qx has 1 NaN, missing or infinite value\(s\) at row 4 "
                                        r"\(e\.g\. row 4: inf\); every numeric value must be a finite number"):
        load_points(_csv(tmp_path, df))
    df = _rows()
    df.loc[0, "x"] = -np.inf
    with pytest.raises(DataError, match=r"column x has 1 NaN, .* at row 1 \(e\.g\. row 1: -inf\)"):
        load_points(_csv(tmp_path, df))
    df = _rows()
    df.loc[2, "qy"] = np.inf
    ds = xr.Dataset({c: ("point", df[c].to_numpy()) for c in ("x", "y", "qx", "qy")})
    ds.to_netcdf(tmp_path / "inf.nc")
    with pytest.raises(DataError, match=r"inf\.nc: column qy has 1 NaN, missing or infinite value\(s\) at index 2"):
        load_points(tmp_path / "inf.nc")


def test_netcdf_missing_every_required_variable_lists_them_all(tmp_path):
    ds = xr.Dataset({"lon": ("point", np.zeros(6)), "lat": ("point", np.zeros(6)), "flux": ("point", np.ones(6))})
    ds.to_netcdf(tmp_path / "other.nc")
    with pytest.raises(DataError, match=r"other\.nc: missing required column\(s\) x, y, qx, qy; required: x, y, qx, "
                                        r"qy; found: lon, lat, flux$"):
        load_points(tmp_path / "other.nc")


def test_extreme_but_real_ice_is_accepted(tmp_path):
    df = _rows()
    # Pine Island-like trunk (4 km/yr through 2 km of ice), Dome A's surface, a coastal surface below the
    # ellipsoid (the geoid is ~50 m under it in places) and a corner of the ±3,400 km box
    df["vx"], df["vy"], df["s"] = 4000.0, 0.0, 4093.0
    df.loc[0, ["x", "y", "qx", "qy"]] = [-1.6e6, -3.3e5, 8e6, -1e6]
    df.loc[1, "s"] = -50.0
    df.loc[2, ["x", "y"]] = [3.399e6, -3.399e6]
    p = load_points(_csv(tmp_path, df), tile=30_000)
    assert len(p.train) + len(p.test) == len(df)


@pytest.mark.parametrize("path", sorted(SAMPLE_DIR.glob("*.csv")), ids=lambda p: p.name)
def test_sample_data_passes_the_checks(path):
    p = load_problem(f"points:{path}")
    assert len(p.train) and len(p.test)


def test_synthetic_glacier_passes_the_checks():
    p = load_problem("synthetic:glacier")  # the synthetic field placed in EPSG:3031
    for obs in (p.train, p.test):
        cols = {"x": obs.xy[:, 0], "y": obs.xy[:, 1], "qx": obs.q[:, 0], "qy": obs.q[:, 1], "s": obs.s}
        assert first_violation(cols) is None
        assert np.abs(obs.q).max() < MAX_FLUX_M2_PER_YR / 10
