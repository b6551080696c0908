"""The spec parser: kinds, options, bbox cropping, listing and describe()."""

from __future__ import annotations

import json

import numpy as np
import pytest

from iceviz.data import synthetic as syn
from iceviz.data.problem import DataError
from iceviz.data.region import crop, in_bounds
from iceviz.data.specs import describe, list_options, list_specs, load_problem, parse_spec


def test_parse_spec_parts():
    p = parse_spec("  synthetic:curve?noise=0.05&seed=3 ")
    assert (p.kind, p.arg, p.options) == ("synthetic", "curve", {"noise": "0.05", "seed": "3"})
    assert parse_spec("byrd-mcor").arg == "" and parse_spec("byrd-mcor:").arg == ""
    assert parse_spec("points:/a/b.csv?tile=100").arg == "/a/b.csv"


@pytest.mark.parametrize(
    "spec, pattern",
    [
        ("", "valid kinds: synthetic, byrd-mcor, points"),
        ("nope:thing", "nope:thing: unknown data kind 'nope'; valid kinds: synthetic, byrd-mcor, points"),
        ("synthetic:spiral", "valid: curve, branching, deflection, ridges, edge, glacier"),
        ("synthetic:", "unknown synthetic NAME nothing"),
        ("synthetic:curve?colour=red", "unknown option 'colour' for synthetic; valid options: noise .*seed .*bbox"),
        ("synthetic:curve?tile=100", "unknown option 'tile'"),
        ("synthetic:curve?noise=1.5", r"noise='1.5': must lie in \[0, 1\]"),
        ("synthetic:curve?noise=abc", "noise='abc'"),
        ("synthetic:curve?seed=-1", "non-negative"),
        ("synthetic:curve?seed=1.5", "seed='1.5'"),
        ("synthetic:curve?noise", "malformed option 'noise'"),
        ("synthetic:curve?seed=1&seed=2", "given twice"),
        ("synthetic:curve?bbox=1,2,3", "four numbers"),
        ("synthetic:curve?bbox=5,1,0,1", "xmin < xmax"),
        ("byrd-mcor:?noise=0.1", "unknown option 'noise' for byrd-mcor; valid options: bbox"),
        ("points:", "points needs a file"),
        ("points:x.csv?tile=0", "tile='0': must be a positive"),
    ],
)
def test_bad_specs(spec, pattern):
    with pytest.raises(DataError, match=pattern):
        load_problem(spec)


def test_options_reach_the_problem():
    base = load_problem("synthetic:ridges")
    assert base.spec == "synthetic:ridges"
    same = load_problem("synthetic:ridges?seed=0&noise=0.02")
    np.testing.assert_array_equal(same.train.q, base.train.q)
    clean = load_problem("synthetic:ridges?noise=0")
    np.testing.assert_allclose(clean.train.q, clean.truth(clean.train.xy), rtol=1e-12)
    other = load_problem("synthetic:ridges?seed=7")
    assert other.spec == "synthetic:ridges?seed=7"
    assert not np.allclose(other.train.q, base.train.q)
    np.testing.assert_array_equal(other.test.q, base.test.q)


def test_bbox_crops_everything():
    full = load_problem("synthetic:glacier")
    box = (450_000.0, 550_000.0, -900_000.0, -800_000.0)
    p = load_problem("synthetic:glacier?bbox=450000,550000,-900000,-800000")
    assert p.bounds == box and p.scale == full.scale
    for a, b in ((p.train, full.train), (p.test, full.test)):
        inside = in_bounds(b.xy, box)
        np.testing.assert_array_equal(a.xy, b.xy[inside])
        np.testing.assert_array_equal(a.q, b.q[inside])
        np.testing.assert_array_equal(a.s, b.s[inside])
    assert in_bounds(p.direction.xy, box).all()
    assert p.direction.xy.shape[0] == in_bounds(full.direction.xy, box).sum()
    np.testing.assert_allclose(p.truth(p.test.xy), p.test.q, rtol=1e-12)
    # a box reaching beyond the domain is clipped to it
    q = load_problem("synthetic:curve?bbox=0,1e6,0,1e6")
    assert q.bounds == (0.0, 50_000.0, 300_000.0, 400_000.0)


def test_bbox_without_points_says_why():
    with pytest.raises(DataError) as e:
        load_problem("synthetic:curve?bbox=45000,50000,395000,400000")
    msg = str(e.value)
    assert "synthetic:curve?bbox" in msg
    assert "of 198 train" in msg and "of 400 test" in msg
    assert "x -50000 to 50000 m, y 300000 to 400000 m" in msg


def test_crop_rejects_bad_boxes():
    p = syn.benchmark_problem("curve")
    with pytest.raises(DataError, match="xmin < xmax"):
        crop(p, (1.0, 0.0, 0.0, 1.0))
    with pytest.raises(DataError, match="leaves 0 of 198 train"):
        crop(p, (1e6, 2e6, 0.0, 1.0))


def test_list_specs():
    rows = list_specs()
    patterns = [r[0] for r in rows]
    for name in syn.SYNTHETIC_NAMES:
        assert f"synthetic:{name}" in patterns
    assert "byrd-mcor:DIR" in patterns and "points:FILE" in patterns and "sim:DIR" in patterns
    assert "region:NAME" in patterns
    assert all(isinstance(d, str) and d and "\n" not in d for _, d in rows)
    assert {o.split("=")[0] for o, _ in list_options()} == {
        "noise", "seed", "tile", "bbox", "test", "val", "spacing", "firn", "thickness", "gap", "split", "frame",
        "test_fraction", "velocity", "data", "min_points", "extent"}


def test_describe_is_json_and_right():
    p = load_problem("synthetic:glacier")
    d = json.loads(json.dumps(describe(p)))
    assert d["spec"] == "synthetic:glacier"
    assert (d["train_points"], d["test_points"]) == (len(p.train), len(p.test))
    assert d["bounds_m"] == [400_000.0, 600_000.0, -950_000.0, -750_000.0]
    assert d["size_km"] == [200.0, 200.0]
    assert d["fields"] == ["qx", "qy", "s", "direction", "truth", "surface_truth"]
    mag = np.linalg.norm(p.train.q, axis=1)
    stats = d["flux_magnitude_m2_per_yr"]["train"]
    assert stats["max"] == pytest.approx(mag.max()) and stats["median"] == pytest.approx(np.median(mag))
    assert d["scale"]["flux_m2_per_yr"] == p.scale.flux
    assert d["scale"]["divergence_m_per_yr"] == pytest.approx(p.scale.flux / p.scale.length)
    assert d["notes"] == p.notes and d["description"] == p.description
    bench = describe(load_problem("synthetic:edge"))
    assert bench["fields"] == ["qx", "qy", "direction", "truth"] and "surface_m" not in bench
