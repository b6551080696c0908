"""Shelf problems for the viscosity inversion: the DIFFICE layout, our synthetic shelves, every bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.io import savemat

from iceviz.data.problem import DataError
from iceviz.data.shelf import MIN_POINTS, from_diffice, load_diffice, load_synthetic_shelf
from iceviz.data.specs import describe, load_problem
from iceviz.physics.units import SECONDS_PER_YEAR


def small_shelf(ny: int = 12, nx: int = 20, spacing: float = 500.0, descending: bool = False) -> dict:
    """A tiny shelf in the DIFFICE layout (SI): u grows downstream, front on the last column."""
    x = (np.arange(nx) + 0.5) * spacing
    y = (np.arange(ny) + 0.5) * spacing
    if descending:
        y = y[::-1]
    xd, yd = np.meshgrid(x, y)
    ud = (100.0 + 10.0 * xd / 1000.0) / SECONDS_PER_YEAR
    vd = np.zeros_like(ud)
    hd = 400.0 - xd / 100.0
    front_y = y[:, None]
    return dict(xd=xd, yd=yd, ud=ud, vd=vd, xd_h=xd.copy(), yd_h=yd.copy(), hd=hd,
                xct=np.full((ny, 1), x[-1]), yct=front_y.astype(np.int32), nnct=np.tile([1, 0], (ny, 1)).astype(np.uint8))


def test_small_shelf_reads_in_physical_units():
    p = from_diffice(small_shelf(), "test")
    xy, uv = p.velocity_points()
    assert len(xy) == 12 * 20
    np.testing.assert_allclose(uv[:, 0], 100.0 + 10.0 * xy[:, 0] / 1000.0)  # m/a
    assert p.velocity.spacing == 500.0 and not p.has_truth
    assert p.front.shape == (12, 2) and p.normals.dtype == np.float64


def test_descending_rows_and_nan_outside_give_the_same_points():
    a = small_shelf()
    b = small_shelf(descending=True)
    for d, rows in ((a, slice(0, 3)), (b, slice(-3, None))):  # the same physical corner (low y) in both
        for name in ("ud", "vd", "hd", "xd", "yd"):
            d[name][rows, :4] = np.nan  # outside the shelf, coordinates NaN too (as in Amery)
    pa, pb = from_diffice(a, "a"), from_diffice(b, "b")
    assert pb.velocity.y[0] > pb.velocity.y[-1]
    key = lambda xy, v: sorted(map(tuple, np.column_stack([xy, v]).round(6)))  # noqa: E731
    assert key(*pa.velocity_points()) == key(*pb.velocity_points())
    assert len(pa.velocity_points()[0]) == 12 * 20 - 12


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("hd"), "missing variable"),
    (lambda d: d.pop("nnct"), "nnct"),
    (lambda d: d.update(ud=d["ud"][:, :-1]), "misaligned"),
    (lambda d: d.update(hd=d["hd"][:-2]), "misaligned"),
    (lambda d: d.update(xct=np.zeros((0, 1)), yct=np.zeros((0, 1)), nnct=np.zeros((0, 2))), "no calving-front"),
    (lambda d: d.update(yct=d["yct"][:-1]), "different lengths"),
    (lambda d: d.update(nnct=np.tile([2.0, 0.0], (12, 1))), "unit vectors"),
    (lambda d: d.update(nnct=np.ones((12, 3))), "n×2"),
    (lambda d: d["nnct"].__setitem__((0, 0), 255), "unit vectors"),
    (lambda d: d.update(hd=-d["hd"]), "thickness must be positive"),
    (lambda d: d.update(ud=np.full_like(d["ud"], np.nan)), "too little shelf data"),
    (lambda d: d.update(xd=d["xd"] + 0.1 * d["yd"]), "axis-aligned"),  # a sheared grid
    (lambda d: d.update(xd=d["xd"] ** 1.2), "regular grid"),
    (lambda d: d.update(xd_h=d["xd_h"][:, :1].repeat(20, axis=1)), "regular grid"),
])
def test_bad_files_are_refused_naming_the_problem(mutate, message):
    d = small_shelf()
    if isinstance(d.get("nnct"), np.ndarray):
        d["nnct"] = d["nnct"].astype(np.float64)
    mutate(d)
    with pytest.raises(DataError, match=message):
        from_diffice(d, "bad.mat")


def test_too_few_points_names_the_minimum():
    d = small_shelf(ny=4, nx=10)
    with pytest.raises(DataError, match=f"need at least {MIN_POINTS}"):
        from_diffice(d, "tiny")


def test_file_round_trip_and_bad_files(tmp_path):
    path = tmp_path / "shelf.mat"
    savemat(path, small_shelf())
    p = load_problem(f"diffice:{path}")
    assert p.kind == "shelf" and p.spec == f"diffice:{path}"
    with pytest.raises(DataError, match="no such file"):
        load_problem(f"diffice:{tmp_path / 'missing.mat'}")
    junk = tmp_path / "junk.mat"
    junk.write_bytes(b"this is not a MATLAB file at all" * 10)
    with pytest.raises(DataError, match="not a readable MATLAB"):
        load_diffice(junk)
    with pytest.raises(DataError, match="needs a .mat file"):
        load_problem("diffice:")


def test_bbox_keeps_the_front_inside_and_refuses_a_box_without_front(tmp_path):
    path = tmp_path / "shelf.mat"
    savemat(path, small_shelf())
    p = load_problem(f"diffice:{path}?bbox=4000,10000,0,6000")
    assert p.front[:, 0].min() >= 4000 and len(p.front) == 12
    assert p.bounds[0] >= 4000
    with pytest.raises(DataError, match="no calving-front points.*identifiable"):
        load_problem(f"diffice:{path}?bbox=0,6000,0,6000")


def test_synthetic_shelves_carry_their_true_viscosity():
    p = load_problem("shelf:margins")
    assert p.has_truth and p.kind == "shelf"
    mu = p.velocity.fields["mu"]
    centre, margin = mu[125, 200], mu[1, 200]
    assert centre > 5 * margin > 0  # soft margins, stiff centre
    info = describe(p)
    assert info["front_points"] == len(p.front) and "mu_true" in info["fields"]
    with pytest.raises(DataError, match="unknown shelf 'nope'; valid: analytic, margins"):
        load_synthetic_shelf("nope")


def test_reference_files(diffice_dir):
    syn = load_diffice(diffice_dir / "SynData_exp1.mat")
    assert syn.has_truth and syn.velocity.shape == (250, 400) and len(syn.front) == 500
    np.testing.assert_allclose(syn.normals, np.tile([1.0, 0.0], (500, 1)))
    amery = load_problem("diffice:data_pinns_Amery.mat")  # a bare name is found in the data directory
    assert amery.velocity.shape == (370, 903) and amery.thickness.shape == (332, 811)
    assert amery.velocity.y[0] > amery.velocity.y[-1]  # north-up raster
    assert len(amery.velocity_points()[0]) == 194_565 and len(amery.thickness_points()[0]) == 158_563
    assert any("offset" in n for n in amery.notes)
