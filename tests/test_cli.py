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
                "mad_phys", "val_rmse", "val_rmse_phys", "best_epoch", "train_points", "val_points", "refit"}



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
    assert summary["val_rmse_phys"] == pytest.approx(summary["val_rmse"] * 10_000, rel=1e-12)
    # whole flight lines held out of the 198 training points; the epoch cap bound before the plan
    assert summary["train_points"] + summary["val_points"] == 198 and 15 <= summary["val_points"] <= 60
    assert summary["stop_reason"] == "epochs" and 1 <= summary["best_epoch"] <= 20
    assert summary["refit"] is False  # the epoch cap cut the schedule short: the kept weights are those
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


def test_progress_bar_ends_at_100_percent_once_when_patience_stops_the_run():
    code, _, stderr = run_main("train", "dfnn", "--data", "synthetic:curve", "--set", "patience=5",
                               "--set", "planned_epochs=400", "--device", "cpu")
    assert code == 0, stderr
    assert "stopped by patience" in stderr
    lines = [line for line in stderr.replace("\r", "\n").splitlines() if "%|" in line]
    assert lines[-1].lstrip().startswith("100%") and sum(line.lstrip().startswith("100%") for line in lines) == 1
    assert len(lines) == len(set(lines))  # no line drawn twice


# --------------------------------------------------------------------------- data and models


def test_data_list_names_every_kind():
    code, stdout, _ = run_main("data", "list")
    assert code == 0
    first_words = {line.split()[0] for line in stdout.splitlines() if line.strip()}
    assert {"synthetic:curve", "synthetic:glacier", "byrd-mcor:DIR", "points:FILE"} <= first_words


def test_data_add_list_build_train_remove(glacier_products, data_home):
    folder = glacier_products["bedmap"].parent
    code, stdout, stderr = run_main("data", "add", str(folder))
    assert code == 0 and "measures-insar" in stdout and "BedMachineAntarctica-v3.nc" in stdout
    assert stderr.count("preparing the speed map") == 2  # both mosaics, for the app's continental map
    code, stdout, _ = run_main("data", "list", "--json")
    listed = json.loads(stdout)
    assert code == 0 and any(s["pattern"] == "region:NAME" for s in listed["specs"])
    assert sorted(p["product"] for p in listed["products"]) == [
        "bedmachine", "bedmap", "bedmap", "measures-insar", "measures-phase"]
    assert all(len(p["footprint_m"]) == 4 for p in listed["products"]) and listed["problems"] == []
    code, stdout, _ = run_main("data", "list")
    assert "Product files for region: specs" in stdout and "2900 x" not in stdout and "measures-phase" in stdout
    out = data_home / "byrd.csv"
    code, stdout, _ = run_main("data", "build", "region:byrd?spacing=2000", "--out", str(out), "--json")
    info = json.loads(stdout)
    assert code == 0 and info["spec_to_train"] == f"points:{out}" and info["counts"]["points"] > 500
    assert info["train_points"] + info["test_points"] == info["counts"]["points"]
    frame = __import__("pandas").read_csv(out)
    assert {"x", "y", "qx", "qy", "s", "vx", "vy", "split", "thickness", "source"} <= set(frame.columns)
    code, stdout, _ = run_main("train", "dfnn", "--data", "region:byrd?spacing=4000", "--epochs", "2", "--json",
                               "--quiet")
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert code == 0 and summary["data"] == "region:byrd?spacing=4000" and math.isfinite(summary["rmse"])
    code, stdout, _ = run_main("data", "remove", str(folder))
    assert code == 0 and "forgot" in stdout
    code, _, stderr = run_main("data", "build", "region:byrd", "--out", str(out))
    assert code == 2 and "no velocity (MEaSUREs) file covers the box" in stderr


def test_data_add_and_build_refuse_bad_input(tmp_path, data_home):
    code, _, stderr = run_main("data", "add", str(tmp_path / "nothing"))
    assert code == 2 and "no such file or folder" in stderr
    code, _, stderr = run_main("data", "build", "synthetic:curve", "--out", str(tmp_path / "x.csv"))
    assert code == 2 and "makes points files from region: specs" in stderr
    code, _, stderr = run_main("data", "remove", str(tmp_path / "never-added"))
    assert code == 2 and "is not in the data settings" in stderr


def test_data_download_fetches_checks_and_records(glacier_products, data_home):
    from tests.data.test_download import Server

    body = glacier_products["measures-insar"].read_bytes()
    server = Server({"antarctica_ice_velocity_450m_v2.nc": body})
    try:
        code, stdout, stderr = run_main("data", "download", "measures-insar", "--url",
                                        server.url("antarctica_ice_velocity_450m_v2.nc"), "--dest",
                                        str(data_home / "dl"), "--quiet")
    finally:
        server.close()
    target = data_home / "dl" / "antarctica_ice_velocity_450m_v2.nc"
    assert code == 0 and target.read_bytes() == body and "SHA-256 recorded" in stdout
    code, stdout, _ = run_main("data", "list", "--json")
    assert [p["path"] for p in json.loads(stdout)["products"]] == [str(target)]
    code, _, stderr = run_main("data", "download", "bedmap")
    assert code == 2 and "give each file's address with --url" in stderr


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
    assert names == ["ssa-ramp-glen", "ssa-ramp-convergence", "transport-steady-convergence", "mass-conservation"]
    for case in report["cases"]:
        assert set(case) >= {"name", "error", "tolerance", "passed"} and case["error"] <= case["tolerance"]
    assert report["cases"][1]["rate"] > 1.7 and report["cases"][2]["rate"] > 1.7


# --------------------------------------------------------------------------- sim run / sim ensemble

TINY_SHELF = ("confined-shelf", "--set", "resolution=8e3", "--set", "refined_resolution=4e3",
              "--set", "spin_up_years=5", "--years", "1", "--snapshot-every", "0.5")
SIM_RUN_KEYS = {"scenario", "out", "wall_time", "steps", "snapshots", "nodes", "grounding_line_start",
                "grounding_line_end", "volume_change", "budget_residual"}


def test_sim_run_json_contract(tmp_path, monkeypatch):
    from iceviz.sim.ugrid import read_run

    monkeypatch.setenv("ICEVIZ_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run.nc"
    code, stdout, stderr = run_main("sim", "run", *TINY_SHELF, "--melt", "20", "--retreat-rate", "1000",
                                    "--json", "--out", str(out))
    assert code == 0, stderr
    summary = one_json_line(stdout)
    assert SIM_RUN_KEYS <= set(summary) and SIM_RUN_KEYS - {"scenario", "out"} <= set(summary["units"])
    assert summary["scenario"] == "confined-shelf" and Path(summary["out"]) == out
    assert summary["spin_up_cached"] is False and "spin-up" in stderr  # progress went to stderr
    run = read_run(out)
    assert summary["nodes"] == run.mesh.n_nodes and summary["steps"] == len(run.steps["t"]) > 0
    assert summary["snapshots"] == len(run.times) == 3
    assert run.params["forcing"] == summary["forcing"] == dict(melt=20.0, smb=0.3, calving="retreat",
                                                                retreat_rate=1000.0)
    assert run.params["scenario"]["resolution"] == 8e3 and run.params["settings"]["years"] == 1
    assert summary["grounding_line_end"] == run.diagnostics["grounding_line"][-1]
    assert summary["volume_change"] == pytest.approx(run.budget.volume_change, rel=1e-9)
    assert summary["volume_change"] < 0 and 0 <= summary["budget_residual"] < 1e-8
    # the second run takes the spin-up from the cache; --quiet leaves stderr empty
    code, stdout, stderr = run_main("sim", "run", *TINY_SHELF, "--json", "--quiet", "--calving", "fixed",
                                    "--out", str(out))
    assert code == 0 and stderr == ""
    assert one_json_line(stdout)["spin_up_cached"] is True


def test_sim_ensemble_json_contract(tmp_path, monkeypatch):
    from iceviz.sim.ensemble import read_manifest

    monkeypatch.setenv("ICEVIZ_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "ensemble"
    code, stdout, stderr = run_main("sim", "ensemble", *TINY_SHELF, "--melt", "0:20:10", "--smb", "0.3",
                                    "--json", "--out", str(out))
    assert code == 0, stderr
    summary = one_json_line(stdout)
    assert summary["runs"] == 3 and summary["failed"] == 0 and summary["workers"] == 1
    assert Path(summary["out"]) == out and summary["wall_time"] > 0
    manifest = read_manifest(out)
    assert [r["forcing"]["melt"] for r in manifest["runs"]] == [0.0, 10.0, 20.0]
    assert manifest["overrides"] == {"resolution": 8e3, "refined_resolution": 4e3, "spin_up_years": 5}
    progress = [line for line in stderr.splitlines() if line.startswith("[")]
    assert len(progress) == 3 and progress[-1].startswith("[3/3]") and "melt=" in progress[-1]


def test_sim_ensemble_with_a_failed_run_exits_1(tmp_path, monkeypatch):
    monkeypatch.setenv("ICEVIZ_CACHE", str(tmp_path / "cache"))
    code, stdout, stderr = run_main("sim", "ensemble", *TINY_SHELF, "--melt", "0,600", "--json",
                                    "--out", str(tmp_path / "e"))
    assert code == 1
    summary = one_json_line(stdout)
    assert summary["runs"] == 2 and summary["failed"] == 1
    assert "FAILED" in stderr and "600" in stderr


@pytest.mark.parametrize("command", ["run", "ensemble"])
def test_sim_unknown_scenario_lists_the_valid_ones(command, tmp_path):
    code, stdout, stderr = run_main("sim", command, "nope", "--melt", "1", "--out", str(tmp_path / "x"))
    assert code == 2 and stdout == ""
    assert "unknown scenario 'nope'" in stderr and "marine-glacier" in stderr and "confined-shelf" in stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("argv, message", [
    (("ensemble", "confined-shelf", "--melt", "0:70"), "bad value spec '0:70'"),
    (("ensemble", "confined-shelf"), "give --melt, --smb and/or --retreat-rate"),
    (("run", "confined-shelf", "--set", "nonsense=1"), "nonsense"),
    (("run", "confined-shelf", "--melt", "-5"), "Forcing.melt"),
])
def test_sim_bad_arguments_exit_2(argv, message, tmp_path):
    code, stdout, stderr = run_main("sim", *argv, "--out", str(tmp_path / "x"))
    assert code == 2 and stdout == "" and message in stderr


def test_sim_shelf_writes_the_diffice_layout(tmp_path, capsys):
    from scipy.io import loadmat

    from iceviz.cli import main

    assert main(["sim", "shelf"]) == 0
    assert "analytic" in capsys.readouterr().out
    out = tmp_path / "shelf.mat"
    assert main(["sim", "shelf", "analytic", "--out", str(out), "--resolution", "4000", "--json"]) == 0
    summary = one_json_line(capsys.readouterr().out)
    assert summary["shelf"] == "analytic" and summary["out"] == str(out)
    data = loadmat(out)
    assert {"xd", "yd", "ud", "vd", "xd_h", "yd_h", "hd", "mud", "xct", "yct", "nnct"} <= set(data)
    assert 2.5e-5 < data["ud"].max() < 7e-5  # m/s, as DIFFICE: about 1-2 km/a
    assert main(["sim", "shelf", "nope", "--out", str(out)]) == 2
    assert "unknown shelf 'nope'" in capsys.readouterr().err


def test_sim_run_sizes_the_scenario_to_a_region(tmp_path, monkeypatch, capsys):
    from iceviz.cli import main
    from iceviz.geo import get_region
    from iceviz.sim.ugrid import read_run

    monkeypatch.setenv("ICEVIZ_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "pig.nc"
    assert main(["sim", "run", "confined-shelf", "--region", "pine-island", "--set", "spin_up_years=0", "--years", "0.5",
                 "--quiet", "--json", "--out", str(out)]) == 0
    run = read_run(out)
    xmin, xmax, ymin, ymax = get_region("pine-island").bounds
    extent = np.ptp(run.mesh.points, axis=0)
    assert np.allclose(sorted(extent), sorted((xmax - xmin, ymax - ymin)))
    assert main(["sim", "run", "confined-shelf", "--region", "atlantis", "--out", str(out)]) == 2
    assert "unknown region 'atlantis'" in capsys.readouterr().err


VISCOSITY_SMALL = ["--set", "width=12", "--set", "depth=2", "--set", "mu_width=12", "--set", "mu_depth=2",
                   "--set", "collocation=100", "--set", "front_points=30", "--set", "batch_size=100"]


def test_viscosity_pinn_json_contract_and_outputs(tmp_path):
    out = tmp_path / "shelf"
    code, stdout, stderr = run_main("train", "viscosity-pinn", "--data", "shelf:analytic", "--epochs", "60",
                                    "--json", "--quiet", "--out", str(out), *VISCOSITY_SMALL)
    assert code == 0, stderr
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert {"model", "data", "epochs", "seconds", "device", "mu_rel_error", "mu_rel_error_interior",
            "mu_rel_error_boundary", "u_rel_error", "v_rel_error", "h_rel_error", "residual"} <= set(summary)
    assert summary["model"] == "viscosity-pinn" and summary["epochs"] == 60
    assert all(0 <= summary[k] < 10 for k in ("mu_rel_error", "u_rel_error", "v_rel_error", "h_rel_error"))
    assert summary["units"]["viscosity_scale_pa_s"] > 0
    assert json.loads((out / "metrics.json").read_text())["mu_rel_error"] == summary["mu_rel_error"]
    ds = xr.open_dataset(out / "prediction.nc")
    assert ds["mu"].attrs["units"] == "Pa s" and float(ds["mu"].min()) > 0
    assert {"mu", "mu_true", "mu_error", "residual", "strain_rate", "u_misfit", "v_misfit", "h_misfit"} <= set(ds)
    assert ds.attrs["mu_rel_error"] == pytest.approx(summary["mu_rel_error"])
    checkpoint = load_checkpoint(out / "model.safetensors")
    assert checkpoint.model_name == "viscosity-pinn" and checkpoint.scale is None


def test_viscosity_pinn_on_real_data_has_no_truth_keys(diffice_dir, tmp_path):
    code, stdout, stderr = run_main("train", "viscosity-pinn", "--data", f"diffice:{diffice_dir / 'data_pinns_Amery.mat'}",
                                    "--epochs", "20", "--json", "--quiet", *VISCOSITY_SMALL)
    assert code == 0, stderr
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert "mu_rel_error" not in summary and {"u_rel_error", "v_rel_error", "h_rel_error", "residual"} <= set(summary)


@pytest.mark.parametrize("spec, message", [
    ("diffice:/nonexistent/shelf.mat", "no such file"),
    ("shelf:nowhere", "unknown shelf"),
    ("shelf:analytic?bbox=0,20000,0,50000", "no calving-front points"),
])
def test_viscosity_pinn_bad_data_exits_2_naming_it(spec, message):
    code, _, stderr = run_main("train", "viscosity-pinn", "--data", spec, "--epochs", "5", "--quiet")
    assert code == 2 and message in stderr


@pytest.mark.parametrize("model, spec, kind", [("dfnn", "shelf:analytic", "flux"),
                                               ("viscosity-pinn", "synthetic:curve", "shelf")])
def test_a_model_on_the_wrong_kind_of_data_fails_clearly(model, spec, kind):
    code, _, stderr = run_main("train", model, "--data", spec, "--epochs", "5", "--quiet")
    assert code == 1 and f"trains on '{kind}' problems" in stderr and spec in stderr


EMULATOR_KEYS = {"rmse_h", "rmse_v", "rmse_vx", "rmse_vy", "r", "r_change_h", "r_change_v", "gl_error_final",
                 "vaf_rel_error_final", "speedup", "emulator_seconds", "simulator_seconds", "simulator_dt",
                 "break_even_rollouts", "per_forcing"}


def test_emulator_json_contract_and_outputs(small_ensemble, tmp_path):
    out = tmp_path / "egcn"
    code, stdout, stderr = run_main("train", "egcn", "--data", f"sim:{small_ensemble}", "--epochs", "8", "--json",
                                    "--quiet", "--out", str(out), "--device", "cpu", "--set", "width=16")
    assert code == 0, stderr
    summary = one_json_line(stdout)
    assert {"model", "data", "epochs", "seconds", "device"} | EMULATOR_KEYS <= set(summary)
    assert summary["model"] == "egcn" and summary["epochs"] == 8 and summary["data"] == f"sim:{small_ensemble}"
    assert 0 < summary["rmse_h"] < 1000 and summary["speedup"] > 0 and -1 <= summary["r"] <= 1
    assert set(summary["per_forcing"]) == {"melt=40"} and summary["units"]["rmse_h"] == "m"
    assert json.loads((out / "metrics.json").read_text())["rmse_h"] == summary["rmse_h"]
    with xr.open_dataset(out / "prediction.nc") as ds:
        assert ds["h"].dims == ("run", "time", "node") and ds.sizes["time"] == 9
        assert {"h_true", "vx_true", "h_error", "speed_error", "rmse_h_t", "triangles"} <= set(ds)
        np.testing.assert_allclose(float(np.sqrt((ds["h_error"][:, 1:] ** 2).mean())), summary["rmse_h"], rtol=1e-6)
    checkpoint = load_checkpoint(out / "model.safetensors")
    assert checkpoint.model_name == "egcn" and checkpoint.scales is not None


@pytest.mark.parametrize("spec, message", [
    ("sim:/nonexistent/ensemble", "no manifest.json"),
    ("sim:", "sim needs an ensemble directory"),
])
def test_emulator_bad_data_exits_2_naming_it(spec, message):
    code, _, stderr = run_main("train", "egcn", "--data", spec, "--epochs", "1", "--quiet")
    assert code == 2 and message in stderr


def test_emulator_test_values_must_exist_in_the_ensemble(small_ensemble):
    code, _, stderr = run_main("train", "mlp", "--data", f"sim:{small_ensemble}?test=25", "--epochs", "1", "--quiet")
    assert code == 2 and "25 are not among" in stderr


def test_data_info_describes_an_ensemble(small_ensemble):
    code, stdout, stderr = run_main("data", "info", f"sim:{small_ensemble}")
    assert code == 0, stderr
    info = json.loads(stdout)
    assert info["kind"] == "ensemble" and info["runs"] == 5 and info["snapshots"] == 9
    assert info["forcing"] == {"melt": [0.0, 20.0, 40.0, 60.0, 80.0]} and info["split"]["test"] == ["melt=40"]
