"""Recognising product files, the settings file, environment variables and the catalogue."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from iceviz.data import settings
from iceviz.data.problem import DataError
from iceviz.data.products import Catalog, add_paths, identify, remove_paths


def test_products_are_recognised_by_content(glacier_products, tmp_path, data_home):
    for key in ("measures-insar", "measures-phase", "bedmachine"):
        assert identify(glacier_products[key]) == key
    renamed = tmp_path / "velocity.nc"
    renamed.write_bytes(glacier_products["measures-insar"].read_bytes())
    assert identify(renamed) == "measures-insar"
    assert {identify(p) for p in glacier_products["bedmap"].glob("*.csv")} == {"bedmap"}
    other = tmp_path / "other.nc"
    xr.Dataset({"temperature": (("y", "x"), np.zeros((2, 2)))}).to_netcdf(other)
    with pytest.raises(DataError, match="not a recognised product: found variables temperature"):
        identify(other)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(DataError, match="expected a NetCDF"):
        identify(text)


def test_add_list_remove(glacier_products, data_home):
    folder = glacier_products["bedmap"].parent
    found, problems = add_paths([folder])
    assert problems == []
    assert sorted(f.product for f in found) == ["bedmachine", "bedmap", "bedmap", "measures-insar", "measures-phase"]
    doc = json.loads(settings.settings_path().read_text())
    assert doc["paths"] == [str(folder.resolve())]
    cat = Catalog.discover()
    assert len(cat.files) == 5 and cat.problems == []
    bm = cat.of("bedmachine")[0]
    assert bm.shape == (205, 205) and bm.spacing_m == 1000.0 and bm.origin == "settings"
    assert bm.footprint[0] < 400_000 and bm.footprint[1] > 600_000
    survey = cat.of("bedmap")
    assert all(f.points > 2000 and "firn correction 0 (m)" in f.detail for f in survey)
    add_paths([folder])  # recording twice keeps one entry
    assert json.loads(settings.settings_path().read_text())["paths"] == [str(folder.resolve())]
    assert remove_paths([folder]) == [folder.resolve()]
    assert Catalog.discover().files == []


def test_bad_paths_are_reported_not_recorded(tmp_path, data_home):
    found, problems = add_paths([tmp_path / "nowhere"])
    assert found == [] and "no such file or folder" in problems[0]
    empty = tmp_path / "empty"
    empty.mkdir()
    found, problems = add_paths([empty])
    assert found == [] and "no MEaSUREs, BedMachine or Bedmap file in this folder" in problems[0]
    assert not settings.settings_path().exists()


def test_environment_variables_and_unusable_entries(glacier_products, data_home, monkeypatch, tmp_path):
    monkeypatch.setenv("ICEVIZ_MEASURES_INSAR", str(glacier_products["measures-insar"]))
    monkeypatch.setenv("ICEVIZ_BEDMAP", str(glacier_products["bedmap"]) + ":" + str(tmp_path / "gone"))
    monkeypatch.setenv("ICEVIZ_BEDMACHINE", str(glacier_products["measures-phase"]))  # the wrong product
    cat = Catalog.discover()
    assert sorted(f.product for f in cat.files) == ["bedmap", "bedmap", "measures-insar"]
    assert {f.origin for f in cat.files} == {"ICEVIZ_MEASURES_INSAR", "ICEVIZ_BEDMAP"}
    assert any("gone" in p and "ICEVIZ_BEDMAP" in p for p in cat.problems)
    assert any("given as bedmachine but it is a measures-phase file" in p for p in cat.problems)


def test_a_malformed_settings_file_is_a_problem_not_a_crash(data_home):
    path = settings.settings_path()
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    cat = Catalog.discover()
    assert cat.files == [] and "cannot read the iceviz data settings" in cat.problems[0]
    with pytest.raises(DataError, match="fix or delete the file"):
        settings.read_paths()
