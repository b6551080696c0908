"""Bedmap standardised CSVs: header, projection, sentinels, the columnar index, box queries, bad files."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from iceviz.data import bedmap
from iceviz.data.problem import DataError
from iceviz.data.product_files import BEDMAP_COLUMNS, survey_frame, write_bedmap_csv


def small_survey(n=50):
    x = np.linspace(450_000.0, 550_000.0, n)
    xy = np.column_stack([x, np.full(n, -850_000.0)])
    line = np.repeat([3, 7], [n // 2, n - n // 2])
    return xy, line, survey_frame(xy, line, np.linspace(1000.0, 2000.0, n), np.full(n, 1500.0))


def test_header_and_columns_as_distributed(glacier_products):
    path = next(glacier_products["bedmap"].glob("*.csv"))
    lines = path.read_text().splitlines()
    assert lines[0].startswith("#project: ") and sum(line.startswith("#") for line in lines) == 18
    assert lines[18] == ",".join(BEDMAP_COLUMNS)
    head = bedmap.read_header(path)
    assert head.skip == 18 and head.firn_correction == "0 (m)" and head.metadata["Conventions"] == "ACDD-1.3, CF-1.8"


def test_points_in_a_box_are_projected_and_sentinels_are_missing(tmp_path, data_home):
    xy, line, frame = small_survey()
    frame.loc[4, "land_ice_thickness (m)"] = np.nan  # written as -9999
    frame.loc[5, "surface_altitude (m)"] = 9999  # Bedmap1's other sentinel
    path = write_bedmap_csv(tmp_path / "A_2010_X_AIR_BM2.csv", frame)
    assert "-9999" in path.read_text().splitlines()[18 + 5]
    box = (460_000.0, 540_000.0, -900_000.0, -800_000.0)
    pts = bedmap.read_box([path], box)
    inside = (xy[:, 0] >= box[0]) & (xy[:, 0] <= box[1])
    assert len(pts) == inside.sum()
    np.testing.assert_allclose(pts.xy, xy[inside], atol=0.05)  # lon/lat rounded to 1e-7 degree
    idx = np.nonzero(inside)[0]
    assert np.isnan(pts.thickness[idx == 4]).all() and np.isnan(pts.surface[idx == 5]).all()
    assert set(pts.labels()) == {"A_2010_X_AIR_BM2/2010_03", "A_2010_X_AIR_BM2/2010_07"}
    assert pts.files == [path]


def test_index_is_built_once_and_rebuilt_when_the_file_changes(tmp_path, data_home):
    _, _, frame = small_survey()
    path = write_bedmap_csv(tmp_path / "B.csv", frame)
    first = bedmap.build_index(path)
    assert bedmap.build_index(path) == first
    assert bedmap.index_meta(path)["points"] == 50
    write_bedmap_csv(path, frame.iloc[:20])
    os.utime(path, ns=(1, 1))
    second = bedmap.build_index(path)
    assert second != first and bedmap.index_meta(path)["points"] == 20


def test_files_whose_footprint_misses_the_box_are_skipped(tmp_path, data_home, monkeypatch):
    xy, line, frame = small_survey()
    near = write_bedmap_csv(tmp_path / "near.csv", frame)
    far = write_bedmap_csv(tmp_path / "far.csv", survey_frame(xy - [0.0, 1e6], line, xy[:, 0] * 0 + 900, xy[:, 0]))
    far_index = bedmap.build_index(far)
    loaded = []
    real_load = np.load
    monkeypatch.setattr(bedmap.np, "load", lambda f, **kw: loaded.append(str(f)) or real_load(f, **kw))
    pts = bedmap.read_box([near, far], (400_000.0, 600_000.0, -900_000.0, -800_000.0))
    assert len(pts) == 50 and pts.files == [near]
    assert loaded and not any(p.startswith(str(far_index)) for p in loaded)


def test_xy_columns_are_read_too(tmp_path, data_home):
    path = tmp_path / "xy.csv"
    pd.DataFrame({"trajectory_id": ["a"] * 3, "x": [1.0, 2.0, 3.0], "y": [4.0, 5.0, 6.0],
                  "land_ice_thickness (m)": [10.0, 20.0, -9999.0]}).to_csv(path, index=False)
    pts = bedmap.read_box([path], (0, 10, 0, 10))
    np.testing.assert_array_equal(pts.xy, [[1, 4], [2, 5], [3, 6]])
    assert np.isnan(pts.thickness[2]) and np.isnan(pts.surface).all()


def test_bad_csvs_get_clear_errors(tmp_path, data_home):
    other = tmp_path / "other.csv"
    other.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(DataError, match=r"not a Bedmap standardised CSV: missing column\(s\) .*land_ice_thickness"):
        bedmap.read_header(other)
    empty = tmp_path / "empty.csv"
    empty.write_text("#project: x\n#comment: y\n")
    with pytest.raises(DataError, match="no column line after 2 metadata line"):
        bedmap.read_header(empty)
    header_only = tmp_path / "header_only.csv"
    header_only.write_text(",".join(BEDMAP_COLUMNS) + "\n")
    with pytest.raises(DataError, match="no data rows"):
        bedmap.build_index(header_only)
    with pytest.raises(DataError, match="no such file"):
        bedmap.read_header(tmp_path / "missing.csv")


def test_box_queries_read_only_the_blocks_that_meet_the_box(tmp_path, data_home, monkeypatch):
    monkeypatch.setattr(bedmap, "BLOCK_ROWS", 10)
    xy, _, frame = small_survey(100)  # one straight line along x, 450 to 550 km
    path = write_bedmap_csv(tmp_path / "D.csv", frame)
    blocks = np.load(bedmap.build_index(path) / "blocks.npy")
    assert blocks.shape == (10, 4) and np.all(np.diff(blocks[:, 0]) > 0)  # one short stretch of line each
    read = []
    real_nonzero = np.nonzero
    monkeypatch.setattr(bedmap.np, "nonzero", lambda a: read.append(len(a)) or real_nonzero(a))
    box = (455_000.0, 470_000.0, -900_000.0, -800_000.0)
    pts = bedmap.read_box([path], box)
    assert len(pts) == ((xy[:, 0] >= box[0]) & (xy[:, 0] <= box[1])).sum()
    assert sum(read[1:]) <= 30  # the blocks meeting the box (2 or 3 of 10), not the 100 rows
