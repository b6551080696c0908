"""Validation splits: whole lines or whole tiles, carved from training points only, the same for the same seed."""

import numpy as np
import pytest

from iceviz.data.points import load_points
from iceviz.data.problem import FluxObservations
from iceviz.data.specs import describe, load_problem
from iceviz.data.splits import block_size, split_lines, tile_labels, validation_mask

BOX = (0.0, 100_000.0, 0.0, 50_000.0)


def _obs(n=600, lines=None, seed=0):
    rng = np.random.default_rng(seed)
    xy = rng.uniform([0, 0], [100_000, 50_000], size=(n, 2))
    return FluxObservations(xy=xy, q=rng.normal(size=(n, 2)), line=lines)


@pytest.mark.parametrize("name", ["curve", "glacier"])
def test_synthetic_lines_are_held_out_whole_and_only_from_training(name):
    p = load_problem(f"synthetic:{name}")
    held, how = validation_mask(p.train, p.bounds, 0.15, seed=3)
    assert "flight lines" in how
    lines = np.asarray(p.train.line)
    held_lines = set(lines[held])
    assert held_lines and not held_lines & set(lines[~held])  # no line is split between the two
    assert 0.05 < held.mean() < 0.35  # about 15 %, give or take one line
    assert len(held) == len(p.train)  # the test set is never touched
    again, _ = validation_mask(p.train, p.bounds, 0.15, seed=3)
    other, _ = validation_mask(p.train, p.bounds, 0.15, seed=4)
    assert np.array_equal(held, again) and not np.array_equal(held, other)


def test_without_lines_whole_tiles_are_held_out():
    obs = _obs()
    held, how = validation_mask(obs, BOX, 0.15, seed=0)
    assert "tiles" in how
    tiles = tile_labels(obs.xy, BOX, block_size(obs.xy, BOX))
    assert not set(tiles[held]) & set(tiles[~held])
    assert 0.1 <= held.mean() < 0.25


def test_tiles_are_ten_point_spacings_across_within_bounds():
    along = np.column_stack([np.arange(0, 100_000, 300.0), np.zeros(334)])  # one line, 300 m spacing
    lines = np.concatenate([along + [0, k * 5_000.0] for k in range(10)])
    assert block_size(lines, BOX) == pytest.approx(3_000.0)
    assert block_size(lines[::20], BOX) == pytest.approx(10_000.0)  # 6 km spacing: capped at a tenth
    dense = np.random.default_rng(0).uniform(0, 100_000, size=(400_000, 2))  # 80 m apart
    assert block_size(dense, BOX) == pytest.approx(1_000.0)  # at least a hundredth of the domain


def test_points_on_no_line_are_never_held_out_and_one_line_stays():
    lines = np.array(["a"] * 100 + ["b"] * 100 + ["c"] * 100 + [""] * 300, dtype=object)
    held, _ = validation_mask(_obs(lines=lines), BOX, 0.5, seed=1)
    assert not held[300:].any()
    assert len(set(lines[:300][~held[:300]])) >= 1
    assert not split_lines(np.array(["a"] * 5 + [""] * 5, dtype=object), 0.3, 0).any()


def test_too_few_lines_fall_back_to_tiles_and_zero_fraction_holds_nothing():
    held, how = validation_mask(_obs(lines=np.array(["a"] * 300 + ["b"] * 300)), BOX, 0.15, 0)
    assert "tiles" in how and held.any()
    held, how = validation_mask(_obs(), BOX, 0.0, 0)
    assert not held.any() and how == "no validation split"


@pytest.mark.parametrize("columns", [(), ("line",), ("split",), ("line", "split")])
def test_points_files_with_and_without_line_and_split_columns(tmp_path, columns):
    rng = np.random.default_rng(2)
    n = 400
    line = np.repeat(np.arange(8), n // 8)
    t = np.tile(np.linspace(0, 1, n // 8), 8)
    x = 10_000 * line + 2_000 * t
    y = 60_000 * t
    rows = {"x": x, "y": y, "qx": rng.normal(size=n), "qy": rng.normal(size=n)}
    if "line" in columns:
        rows["line"] = [f"L{k}" for k in line]
    if "split" in columns:
        rows["split"] = np.where(line % 4 == 0, "test", "train")
    path = tmp_path / "points.csv"
    import pandas as pd

    pd.DataFrame(rows).to_csv(path, index=False)
    p = load_points(path)
    held, how = validation_mask(p.train, p.bounds, 0.15, 0)
    assert held.any() and not held.all()
    if "line" in columns:
        assert "flight lines" in how
        assert not set(p.train.line[held]) & set(p.train.line[~held])
        assert set(p.test.line).isdisjoint(p.train.line) if "split" in columns else True
    else:
        assert p.train.line is None and "tiles" in how
    info = describe(p)
    assert info["validation_points"] == int(held.sum()) and info["train_points"] == len(p.train)


def test_large_sets_hold_out_at_most_about_two_thousand_points():
    lines = np.repeat(np.arange(200), 150).astype(str)  # 30,000 points on 200 lines of 150
    held, _ = validation_mask(_obs(n=30_000, lines=lines), BOX, 0.15, seed=0)
    assert 2000 <= held.sum() <= 2150  # whole lines up to the cap: one line over it at most
    small, _ = validation_mask(_obs(n=3000, lines=lines[:3000]), BOX, 0.15, seed=0)
    assert 0.15 * 3000 <= small.sum() <= 0.15 * 3000 + 150  # below the cap, the share


def test_the_same_observations_are_split_once_and_callers_get_their_own_copy(monkeypatch):
    import iceviz.data.splits as splits

    p = load_problem("synthetic:glacier")
    calls = []
    original = splits._validation_mask
    monkeypatch.setattr(splits, "_validation_mask", lambda *a: calls.append(a) or original(*a))
    first, how = validation_mask(p.train, p.bounds, 0.15, 0)
    first[:] = True  # a caller's copy: changing it changes nobody else's
    second, again = validation_mask(p.train, p.bounds, 0.15, 0)
    assert len(calls) == 1 and again == how and 0 < second.sum() < len(second)
    validation_mask(p.train, p.bounds, 0.15, 1)  # another seed, another split
    fresh = load_problem("synthetic:glacier")  # equal observations, other objects: split afresh, alike
    np.testing.assert_array_equal(validation_mask(fresh.train, fresh.bounds, 0.15, 0)[0], second)
    assert len(calls) == 3
