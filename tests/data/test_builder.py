"""The region builder: flux = thickness × velocity, recovery of the known glacier, thinning, splits, firn,
BedMachine stand-ins, round trip through a points file, and every bad box."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from iceviz.data import synthetic as syn
from iceviz.data.builder import RegionRecipe, build_region, split_lines, thin
from iceviz.data.points import load_points
from iceviz.data.problem import DataError
from iceviz.data.product_files import FIRN_AIR
from iceviz.data.products import Catalog
from iceviz.data.specs import load_problem

BYRD = syn.GLACIER_BOUNDS


@pytest.fixture
def catalog(glacier_products, data_home) -> Catalog:
    return Catalog.discover({k: [v] for k, v in glacier_products.items()})


def build(catalog, **recipe):
    return build_region(BYRD, RegionRecipe(**recipe), catalog)


def test_flux_is_thickness_times_velocity_and_recovers_the_glacier(catalog):
    b = build(catalog)
    t = b.table
    np.testing.assert_allclose(t["qx"], t["thickness"] * t["vx"], rtol=1e-12)
    np.testing.assert_allclose(t["qy"], t["thickness"] * t["vy"], rtol=1e-12)
    xy = t[["x", "y"]].to_numpy()
    np.testing.assert_allclose(t["thickness"], syn.glacier_thickness(xy), atol=0.01)  # surveyed values
    truth = syn.glacier_flux(xy)
    q = t[["qx", "qy"]].to_numpy()
    rel = np.sqrt(np.mean(np.sum((q - truth) ** 2, axis=1)) / np.mean(np.sum(truth ** 2, axis=1)))
    assert rel < 0.01  # only the bilinear velocity interpolation (900 m grid) stands between them
    p = b.problem
    assert len(p.train) + len(p.test) == len(t) and p.has_surface and p.direction is not None
    assert p.scale.x0 == BYRD[0] and p.scale.y0 == BYRD[2] and p.scale.length == 200_000.0
    assert np.isclose(p.scale.flux, np.sqrt(np.mean(np.sum(p.train.q ** 2, axis=1))))
    assert np.allclose(np.hypot(*p.direction.unit.T), 1.0) and len(p.direction.xy) == 400 * 400


def test_thinning_keeps_no_two_points_closer_than_the_spacing():
    rng = np.random.default_rng(1)
    xy = np.concatenate([np.column_stack([np.arange(0, 50_000, 30.0), np.zeros(1667)]),
                         rng.uniform(0, 50_000, size=(3000, 2))])
    keep = thin(xy, 1000.0)
    kept = xy[keep]
    assert cKDTree(kept).query_pairs(1000.0 * (1 - 1e-9)) == set()
    dist, _ = cKDTree(kept).query(xy)
    assert dist.max() < 2000.0
    assert np.array_equal(keep, np.sort(keep)) and keep[0] == 0  # greedy in input order
    assert len(thin(xy, 0.0)) == len(xy)


def test_built_points_are_thinned(catalog):
    b = build(catalog, spacing=3000.0)
    observed = b.table[b.table["source"] == "observed"][["x", "y"]].to_numpy()
    assert cKDTree(observed).query_pairs(3000.0 * (1 - 1e-9)) == set()
    assert b.counts["dropped_thinning"] > 0


def test_checkerboard_split_from_the_box_corner(catalog):
    b = build(catalog, tile=20_000.0)
    p = b.problem
    assert syn.checkerboard_is_test(p.test.xy, 20_000.0, (BYRD[0], BYRD[2])).all()
    assert not syn.checkerboard_is_test(p.train.xy, 20_000.0, (BYRD[0], BYRD[2])).any()


def test_split_by_flight_line_never_shares_a_line(catalog):
    t = build(catalog, split="lines", test_fraction=0.3, seed=2).table
    test_lines = set(t.loc[t["split"] == "test", "line"])
    train_lines = set(t.loc[t["split"] == "train", "line"])
    assert test_lines and train_lines and not test_lines & train_lines
    share = (t["split"] == "test").mean()
    assert 0.2 < share < 0.5
    other = build(catalog, split="lines", test_fraction=0.3, seed=3).table
    assert set(other.loc[other["split"] == "test", "line"]) != test_lines
    assert not split_lines(np.array(["a"] * 5, dtype=object), 0.3, 0).any()


def test_firn_subtract_gives_ice_equivalent_thickness(catalog):
    plain = build(catalog).table
    ice = build(catalog, firn="subtract").table
    np.testing.assert_allclose(plain["thickness"] - ice["thickness"], FIRN_AIR, atol=1e-3)
    np.testing.assert_allclose(ice["qx"], ice["thickness"] * ice["vx"], rtol=1e-12)


def test_bedmachine_stands_in_away_from_the_survey(catalog):
    b = build(catalog, thickness="bedmap+bedmachine", gap=8_000.0)
    t = b.table
    grid = t[t["source"] == "gridded"]
    obs = t[t["source"] == "observed"]
    assert len(grid) > 50 and (grid["split"] == "train").all() and b.counts["gridded"] == len(grid)
    d, _ = cKDTree(obs[["x", "y"]].to_numpy()).query(grid[["x", "y"]].to_numpy())
    assert d.min() > 8_000.0 * 0.9  # the gap is measured to the survey before thinning, a few points more
    # BedMachine is ice equivalent: + firn gives the surveyed (physical) thickness back, to grid interpolation
    expected = syn.glacier_thickness(grid[["x", "y"]].to_numpy())
    assert np.median(np.abs(grid["thickness"] - expected) / expected) < 0.01
    only = build(catalog, thickness="bedmachine", spacing=5000.0).table
    assert (only["source"] == "gridded").all() and len(only) > 1000 and (only["split"] == "test").any()
    with pytest.raises(DataError, match="split=lines needs survey lines"):
        build(catalog, thickness="bedmachine", split="lines")


def test_phase_velocity_can_be_chosen(catalog):
    b = build(catalog, velocity="measures-phase")
    assert "antarctic_ice_vel_phase_map_v01.nc" in b.problem.description


def test_points_file_round_trip(catalog, tmp_path):
    b = build(catalog)
    path = tmp_path / "byrd_points.csv"
    b.write(path)
    p = load_points(path)
    assert (len(p.train), len(p.test)) == (len(b.problem.train), len(b.problem.test))
    np.testing.assert_allclose(p.train.q, b.problem.train.q, rtol=1e-9)
    np.testing.assert_allclose(p.test.xy, b.problem.test.xy)
    assert np.isclose(p.scale.flux, b.problem.scale.flux)


def test_region_spec_builds_the_same_problem(glacier_products, data_home):
    folder = glacier_products["bedmap"].parent
    p = load_problem(f"region:byrd?data={folder}&spacing=2000&split=lines")
    assert p.spec.startswith("region:byrd?") and p.bounds == BYRD and p.kind == "flux"
    box = load_problem(f"region:box?bbox=450000,550000,-900000,-800000&data={folder}")
    assert box.bounds == (450_000.0, 550_000.0, -900_000.0, -800_000.0)
    assert all(box.bounds[0] <= x <= box.bounds[1] for x in box.train.xy[:, 0])


def test_bad_boxes_and_missing_products(catalog, glacier_products, data_home):
    with pytest.raises(DataError, match="no velocity .* file covers the box .* 'iceviz data add"):
        build_region((-2e6, -1.9e6, 0.0, 1e5), RegionRecipe(), catalog)
    tiny = (500_000.0, 502_000.0, -850_000.0, -848_000.0)
    with pytest.raises(DataError, match="fewer than min_points=50|no usable Bedmap survey point"):
        build_region(tiny, RegionRecipe(), catalog)
    no_survey = Catalog.discover({"measures-insar": [glacier_products["measures-insar"]]})
    with pytest.raises(DataError, match="no Bedmap survey file covers the box"):
        build_region(BYRD, RegionRecipe(), no_survey)
    with pytest.raises(DataError, match="no BedMachine file covers the box .*firn=subtract"):
        build_region(BYRD, RegionRecipe(firn="subtract"),
                     Catalog.discover({"measures-insar": [glacier_products["measures-insar"]],
                                       "bedmap": [glacier_products["bedmap"]]}))
    with pytest.raises(DataError, match="the split .* leaves"):
        build_region(BYRD, RegionRecipe(tile=500_000.0), catalog)
    with pytest.raises(DataError, match="region:box needs bbox"):
        load_problem("region:box")
    with pytest.raises(DataError, match="unknown region 'atlantis'"):
        load_problem("region:atlantis")
    with pytest.raises(DataError, match="bad value firn='some'"):
        load_problem("region:byrd?firn=some")


def test_tile_split_with_a_frame_reproduces_the_byrd_tensors_split(byrd_dir):
    from iceviz.data.builder import split_tiles

    p = load_problem(f"byrd-mcor:{byrd_dir}")
    assert split_tiles(p.test.xy, BYRD, 15_000.0, frame=10_000.0).all()
    assert not split_tiles(p.train.xy, BYRD, 15_000.0, frame=10_000.0).any()
    # without the frame the tiles are offset by 10 km: about half the points change sides
    assert 0.3 < split_tiles(p.test.xy, BYRD, 15_000.0).mean() < 0.7


def test_frame_keeps_the_border_for_training(catalog):
    t = build(catalog, frame=10_000.0).table
    test = t[t["split"] == "test"]
    assert test["x"].min() >= BYRD[0] + 10_000 and test["x"].max() < BYRD[1] - 10_000
    assert test["y"].min() >= BYRD[2] + 10_000 and test["y"].max() < BYRD[3] - 10_000
