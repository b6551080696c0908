"""byrd-mcor: physical units in, paper's scaled units back out, and clear errors."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from iceviz.data import byrd
from iceviz.data.problem import DataError
from iceviz.data.specs import load_problem


@functools.lru_cache(maxsize=1)
def _load(directory: Path):
    raw = {
        name: torch.load(directory / f, weights_only=True).double().numpy()
        for name, f in (("train", byrd.TRAIN_FILE), ("test", byrd.TEST_FILE), ("guide", byrd.GUIDANCE_FILE))
    }
    return byrd.load_byrd(directory), raw


@pytest.fixture
def problem_and_tensors(byrd_dir):
    """The loaded problem and the raw tensors (float64), loaded once per session."""
    return _load(Path(byrd_dir))


def test_counts_and_domain(problem_and_tensors):
    p, _ = problem_and_tensors
    assert (len(p.train), len(p.test), p.direction.xy.shape[0]) == (27172, 22045, 160000)
    assert p.bounds == (400_000.0, 600_000.0, -950_000.0, -750_000.0)
    assert p.grid_shape == (100, 100)
    sc = p.scale
    assert (sc.x0, sc.y0, sc.length, sc.flux, sc.surface) == (400_000, -950_000, 200_000, 70_000, 2000)
    assert sc.divergence == pytest.approx(0.35)  # MAD × 0.35 -> m/yr
    for obs in (p.train, p.test):
        assert np.all((obs.xy[:, 0] >= 400e3) & (obs.xy[:, 0] <= 600e3))
        assert np.all((obs.xy[:, 1] >= -950e3) & (obs.xy[:, 1] <= -750e3))
    # test points lie in the checkerboard interior, normalised 0.05-0.95
    assert p.test.xy[:, 0].min() >= 410e3 and p.test.xy[:, 0].max() <= 590e3


def test_scaled_units_round_trip_to_the_tensors(problem_and_tensors):
    p, raw = problem_and_tensors
    for obs, t in ((p.train, raw["train"]), (p.test, raw["test"])):
        scaled = p.scale.xy_to_scaled(obs.xy)
        # exact at the tensors' own (float32) precision, and to an ulp or two in float64
        np.testing.assert_array_equal(scaled.astype(np.float32), t[:2].T.astype(np.float32))
        assert np.abs(scaled - t[:2].T).max() <= 4.5e-16
        np.testing.assert_array_equal(obs.q / p.scale.flux, t[5:7].T)
        np.testing.assert_array_equal(obs.s / p.scale.surface, t[2])
    np.testing.assert_allclose(p.scale.xy_to_scaled(p.direction.xy), raw["guide"][:, :2], atol=4.5e-16)


def test_flux_magnitude_and_sign(problem_and_tensors):
    p, _ = problem_and_tensors
    mag = np.hypot(p.train.q[:, 0], p.train.q[:, 1])
    assert 1.9e6 < mag.max() < 2.3e6  # README: maximum about 2.1e6 m²/yr
    assert 3e4 < np.median(mag) < 3e5  # typical magnitude 1e5
    assert p.train.q[:, 0].mean() < 0 and p.train.q[:, 1].mean() < 0  # towards −x, −y
    assert 0 < np.median(p.train.s) < 3000


def test_mean_predictor_rmse_is_the_papers(problem_and_tensors):
    p, _ = problem_and_tensors
    mean = p.train.q.mean(axis=0) / p.scale.flux
    rmse = np.sqrt(np.mean((p.test.q / p.scale.flux - mean) ** 2))
    assert rmse == pytest.approx(2.02, abs=0.01)


def test_direction_guidance_covers_test_directions(problem_and_tensors):
    p, _ = problem_and_tensors
    d = p.direction
    np.testing.assert_allclose(np.linalg.norm(d.unit, axis=1), 1.0, atol=1e-14)
    _, idx = cKDTree(d.xy).query(p.test.xy)
    q = p.test.q
    cos = np.sum(q * d.unit[idx], axis=1) / np.linalg.norm(q, axis=1)
    assert np.median(cos) > 0.999
    assert any("test" in n and "+dir" in n for n in p.notes)


def test_spec_and_bbox(byrd_dir):
    p = load_problem(f"byrd-mcor:{byrd_dir}?bbox=450000,550000,-900000,-800000")
    assert 0 < len(p.train) < 27172 and 0 < len(p.test) < 22045
    assert p.bounds == (450_000.0, 550_000.0, -900_000.0, -800_000.0)
    assert p.scale.flux == 70_000  # scaled units unchanged by cropping
    with pytest.raises(DataError, match="leaves 0 of 27172 train"):
        load_problem(f"byrd-mcor:{byrd_dir}?bbox=0,1000,0,1000")


def test_search_order(byrd_dir, tmp_path, monkeypatch):
    env_root = tmp_path / "env"
    (env_root / "byrd_mcor").mkdir(parents=True)
    for f in (byrd.TRAIN_FILE, byrd.TEST_FILE, byrd.GUIDANCE_FILE):
        (env_root / "byrd_mcor" / f).symlink_to(byrd_dir / f)
    monkeypatch.setenv("ICEVIZ_DATA", str(env_root))
    assert byrd.resolve_dir("") == env_root / "byrd_mcor"
    assert len(load_problem("byrd-mcor:").train) == 27172


def test_missing_directory_names_paths_tried(tmp_path, monkeypatch):
    monkeypatch.setenv("ICEVIZ_DATA", str(tmp_path / "nowhere"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as e:
        load_problem("byrd-mcor:")
    msg = str(e.value)
    assert str(tmp_path / "nowhere" / "byrd_mcor") in msg
    assert str(tmp_path.parent / "shared" / "data" / "byrd_mcor") in msg
    with pytest.raises(DataError, match="nonexistent"):
        load_problem(f"byrd-mcor:{tmp_path / 'nonexistent'}")


def _write_fake(root, train=None, test=None, guide=None):
    rng = np.random.default_rng(0)
    train = torch.tensor(rng.random((9, 20)), dtype=torch.float32) if train is None else train
    test = torch.tensor(rng.random((9, 10)), dtype=torch.float32) if test is None else test
    guide = torch.tensor(rng.random((16, 4)), dtype=torch.float32) if guide is None else guide
    root.mkdir(parents=True, exist_ok=True)
    torch.save(train, root / byrd.TRAIN_FILE)
    torch.save(test, root / byrd.TEST_FILE)
    torch.save(guide, root / byrd.GUIDANCE_FILE)
    return root


def test_fake_tensors_convert_to_physical_units(tmp_path):
    root = _write_fake(tmp_path / "ok")
    p = byrd.load_byrd(root)
    t = torch.load(root / byrd.TRAIN_FILE, weights_only=True).double().numpy()
    np.testing.assert_allclose(p.train.xy[:, 0], 400_000 + 200_000 * t[0], rtol=1e-15)
    np.testing.assert_allclose(p.train.xy[:, 1], -950_000 + 200_000 * t[1], rtol=1e-15)
    np.testing.assert_allclose(p.train.q, 70_000 * t[5:7].T, rtol=1e-15)
    np.testing.assert_allclose(p.train.s, 2000 * t[2], rtol=1e-15)
    np.testing.assert_allclose(np.linalg.norm(p.direction.unit, axis=1), 1.0, atol=1e-15)


def test_bad_tensors_name_the_file(tmp_path):
    rng = np.random.default_rng(1)
    root = _write_fake(tmp_path / "rows", train=torch.tensor(rng.random((20, 9)), dtype=torch.float32))
    with pytest.raises(DataError, match=r"train_tensor\.pt.*channels-first"):
        byrd.load_byrd(root)
    bad = torch.tensor(rng.random((9, 10)), dtype=torch.float32)
    bad[5, 3] = float("nan")
    root = _write_fake(tmp_path / "nan", test=bad)
    with pytest.raises(DataError, match=r"test_tensor\.pt has 1 NaN"):
        byrd.load_byrd(root)
    root = _write_fake(tmp_path / "guide", guide=torch.tensor(rng.random((16, 3)), dtype=torch.float32))
    with pytest.raises(DataError, match=r"velocity_unit_norm\.pt.*\(M, 4\)"):
        byrd.load_byrd(root)
    root = _write_fake(tmp_path / "dict")
    torch.save({"a": torch.zeros(3)}, root / byrd.TRAIN_FILE)
    with pytest.raises(DataError, match=r"train_tensor\.pt holds a dict"):
        byrd.load_byrd(root)
    (root / byrd.TEST_FILE).write_bytes(b"not a tensor")
    (root / byrd.TRAIN_FILE).unlink()
    with pytest.raises(DataError, match=r"missing file .*train_tensor\.pt"):
        byrd.load_byrd(root)
    _write_fake(root)
    (root / byrd.TEST_FILE).write_bytes(b"not a tensor")
    with pytest.raises(DataError, match=r"cannot read .*test_tensor\.pt"):
        byrd.load_byrd(root)
