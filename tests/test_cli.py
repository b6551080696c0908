"""The ``iceviz`` command end to end: train (JSON line, outputs on disk), data list / info, errors."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from iceviz.cli import main
from iceviz.data.specs import load_problem
from iceviz.training.checkpoint import load_checkpoint

SUMMARY_KEYS = {"model", "data", "epochs", "seconds", "device", "rmse", "mae", "mad", "rmse_phys", "mae_phys",
                "mad_phys"}



def run_main(*argv: str) -> tuple[int, str, str]:
    """``main(argv)`` in-process: (exit code, stdout, stderr); argparse's SystemExit becomes its code."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exc:
            code = exc.code
    return code, out.getvalue(), err.getvalue()


def one_json_line(stdout: str) -> dict:
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected exactly one line on stdout, got {lines!r}"
    return json.loads(lines[0])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One `iceviz train dfnn --data synthetic:curve --epochs 20 --json --out DIR` (progress bar on)."""
    out = tmp_path_factory.mktemp("cli") / "run"
    code, stdout, stderr = run_main("train", "dfnn", "--data", "synthetic:curve", "--epochs", "20", "--json",
                                    "--out", str(out), "--device", "cpu")
    assert code == 0, stderr
    return out, one_json_line(stdout), stderr


# --------------------------------------------------------------------------- train


def test_train_prints_one_json_summary(trained):
    _, summary, stderr = trained
    assert SUMMARY_KEYS <= set(summary)
    assert summary["model"] == "dfnn" and summary["data"] == "synthetic:curve"
    assert summary["epochs"] == 20 and summary["device"] == "cpu" and summary["status"] == "done"
    assert summary["seconds"] > 0
    for key in SUMMARY_KEYS - {"model", "data", "device"}:
        assert isinstance(summary[key], (int, float)) and math.isfinite(summary[key]), key
    assert summary["rmse"] > 0 and summary["mae"] > 0
    # synthetic fields: flux scale 10 000 m²/yr over a 100 km box, so divergence scale 0.1 m/yr
    assert summary["rmse_phys"] == pytest.approx(summary["rmse"] * 10_000, rel=1e-12)
    assert summary["mae_phys"] == pytest.approx(summary["mae"] * 10_000, rel=1e-12)
    assert summary["mad_phys"] == pytest.approx(summary["mad"] * 0.1, rel=1e-12)
    assert "%" in stderr  # the progress bar went to stderr, not into the JSON line


def test_train_writes_checkpoint_metrics_and_prediction(trained):
    out, summary, _ = trained
    assert {p.name for p in out.iterdir()} >= {"model.safetensors", "metrics.json", "prediction.nc"}
    assert Path(summary["out"]) == out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == {k: v for k, v in summary.items() if k != "out"}
    ck = load_checkpoint(out / "model.safetensors")
    assert ck.model_name == "dfnn" and ck.data == "synthetic:curve"
    assert ck.metrics["rmse"] == summary["rmse"]


def test_prediction_netcdf_is_georeferenced_and_matches_the_checkpoint(trained):
    from pyproj import CRS

    out, summary, _ = trained
    with xr.open_dataset(out / "prediction.nc") as ds:
        ds = ds.load()
    assert ds["x"].attrs["units"] == "m" and ds["y"].attrs["units"] == "m"
    xmin, xmax, ymin, ymax = load_problem("synthetic:curve").bounds
    assert xmin < ds["x"].values.min() < ds["x"].values.max() < xmax  # metres, not scaled units
    assert ymin < ds["y"].values.min() < ds["y"].values.max() < ymax
    assert "crs" in ds.variables
    assert CRS.from_wkt(ds["crs"].attrs["crs_wkt"]).to_epsg() == 3031
    for name in ("qx", "qy"):
        assert ds[name].dims == ("y", "x")
        assert ds[name].attrs["units"] == "m2 yr-1"
        assert ds[name].attrs["grid_mapping"] == "crs"
    # the field is the saved model's prediction, in m²/yr
    ck = load_checkpoint(out / "model.safetensors")
    xx, yy = np.meshgrid(ds["x"].values, ds["y"].values)
    xs = torch.as_tensor(ck.scale.xy_to_scaled(np.column_stack([xx.ravel(), yy.ravel()])), dtype=torch.float32)
    with torch.no_grad():
        q = ck.model(xs).double().numpy() * ck.scale.flux
    tol = 1e-5 * np.abs(q).max()
    np.testing.assert_allclose(ds["qx"].values.ravel(), q[:, 0], rtol=1e-5, atol=tol)
    np.testing.assert_allclose(ds["qy"].values.ravel(), q[:, 1], rtol=1e-5, atol=tol)


def test_seconds_budget_stops_in_time():
    t0 = time.perf_counter()
    code, stdout, stderr = run_main("train", "dfnn", "--data", "synthetic:curve", "--seconds", "1", "--json",
                                    "--quiet", "--device", "cpu")
    wall = time.perf_counter() - t0
    assert code == 0, stderr
    summary = one_json_line(stdout)
    assert 1.0 <= summary["seconds"] < 3.0
    assert 1 <= summary["epochs"] < 1_000_000  # the time budget bound, not the epochs
    assert wall < 8.0


def test_train_without_json_prints_a_human_summary_on_stderr():
    code, stdout, stderr = run_main("train", "dfnn", "--data", "synthetic:curve", "--epochs", "2", "--quiet",
                                    "--device", "cpu")
    assert code == 0, stderr
    assert stdout == ""
    assert "dfnn on synthetic:curve" in stderr and "RMSE" in stderr and "m²/yr" in stderr


# --------------------------------------------------------------------------- data and models


def test_data_list_names_every_kind():
    code, stdout, _ = run_main("data", "list")
    assert code == 0
    first_words = {line.split()[0] for line in stdout.splitlines() if line.strip()}
    assert {"synthetic:curve", "synthetic:glacier", "byrd-mcor:DIR", "points:FILE"} <= first_words


def test_data_info_glacier_counts():
    code, stdout, _ = run_main("data", "info", "synthetic:glacier")
    assert code == 0
    info = json.loads(stdout)
    problem = load_problem("synthetic:glacier")
    assert info["spec"] == "synthetic:glacier"
    assert info["train_points"] == len(problem.train) > 0
    assert info["test_points"] == len(problem.test) > 0
    assert info["direction_points"] > 0
    assert "s" in info["fields"] and "truth" in info["fields"]
    assert info["surface_m"]["max"] > info["surface_m"]["min"]


def test_models_lists_the_registry():
    from iceviz.models.registry import REGISTRY

    code, stdout, _ = run_main("models")
    assert code == 0
    assert [line.split()[0] for line in stdout.splitlines()] == list(REGISTRY)


# --------------------------------------------------------------------------- errors


def test_unknown_model_is_a_usage_error():
    code, stdout, stderr = run_main("train", "nosuchmodel", "--data", "synthetic:curve")
    assert code == 2
    assert "nosuchmodel" in stderr and stdout == ""


def test_unknown_data_spec_exits_2_naming_it():
    code, stdout, stderr = run_main("train", "dfnn", "--data", "synthetic:nope", "--epochs", "1", "--json")
    assert code == 2
    assert "synthetic:nope" in stderr and "curve" in stderr  # the spec and the valid names
    assert stdout == ""


def test_data_info_of_an_unknown_spec_exits_2():
    code, _, stderr = run_main("data", "info", "nokind:x")
    assert code == 2 and "nokind" in stderr


@pytest.mark.parametrize("setting, name", [("nonsense=1", "nonsense"), ("lr=5", "lr"), ("width", "width")])
def test_bad_hyper_parameter_exits_2_naming_it(setting, name):
    t0 = time.perf_counter()
    code, stdout, stderr = run_main("train", "dfnn", "--data", "synthetic:curve", "--set", setting, "--quiet")
    assert code == 2, stderr
    assert name in stderr
    assert stdout == ""
    assert time.perf_counter() - t0 < 5.0  # rejected up front, no training


def test_set_overrides_reach_the_trainer(tmp_path):
    code, stdout, stderr = run_main("train", "dfnn", "--data", "synthetic:curve", "--epochs", "2", "--json",
                                    "--quiet", "--device", "cpu", "--set", "width=8", "--set", "depth=1",
                                    "--out", str(tmp_path))
    assert code == 0, stderr
    ck = load_checkpoint(tmp_path / "model.safetensors")
    assert ck.params["width"] == 8 and ck.params["depth"] == 1 and ck.config["width"] == 8


def test_aux_model_on_data_without_surface_fails_clearly():
    code, stdout, stderr = run_main("train", "dfnn-aux", "--data", "synthetic:curve", "--epochs", "1", "--quiet")
    assert code == 1
    assert "surface elevation" in stderr and "synthetic:curve" in stderr
    assert stdout == ""


def test_aux_model_on_data_without_surface_json_line():
    code, stdout, stderr = run_main("train", "dfnn-aux", "--data", "synthetic:curve", "--epochs", "1", "--json",
                                    "--quiet")
    assert code == 1
    line = one_json_line(stdout)
    assert line["status"] == "failed" and line["model"] == "dfnn-aux" and line["data"] == "synthetic:curve"
    assert "surface elevation" in line["error"]


# --------------------------------------------------------------------------- real data, entry point


def test_byrd_physical_units(byrd_dir):
    code, stdout, stderr = run_main("train", "dfnn", "--data", f"byrd-mcor:{byrd_dir}", "--epochs", "1", "--json",
                                    "--quiet", "--device", "cpu")
    assert code == 0, stderr
    summary = one_json_line(stdout)
    assert summary["epochs"] == 1
    assert summary["rmse_phys"] == pytest.approx(summary["rmse"] * 70_000, rel=1e-12)
    assert summary["mae_phys"] == pytest.approx(summary["mae"] * 70_000, rel=1e-12)
    assert summary["mad_phys"] == pytest.approx(summary["mad"] * 0.35, rel=1e-12)


def test_installed_entry_point_trains(tmp_path):
    exe = shutil.which("iceviz") or str(Path(sys.executable).with_name("iceviz"))
    command = [exe] if os.access(exe, os.X_OK) else [sys.executable, "-m", "iceviz.cli"]
    proc = subprocess.run(
        [*command, "train", "dfnn", "--data", "synthetic:curve", "--epochs", "2", "--json", "--quiet",
         "--device", "cpu", "--out", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    summary = one_json_line(proc.stdout)
    assert summary["model"] == "dfnn" and summary["epochs"] == 2
    assert (tmp_path / "run" / "model.safetensors").is_file()


def test_sim_verify_json_contract(capsys):
    from iceviz.cli import main

    code = main(["sim", "verify", "--json"])
    out = capsys.readouterr().out.strip().splitlines()
    report = json.loads(out[-1])
    assert code == 0 and report["passed"] is True
    names = [c["name"] for c in report["cases"]]
    assert names == ["ssa-ramp-glen", "ssa-ramp-convergence"]
    for case in report["cases"]:
        assert set(case) >= {"name", "error", "tolerance", "passed"} and case["error"] <= case["tolerance"]
    assert report["cases"][1]["rate"] > 1.7
