"""benchmarks/gpu_check.sh, the one command for a lent GPU, end to end on this CPU: every part runs with only the
packages the GPU image has plus the carried wheels (--emulate-image), and the one JSON holds a finite figure for
each; a part that fails or runs out of time is recorded and the others go on."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import gpu_check
from benchmarks.gpu_check import CARRIED, CARRIED_MODULES, PARTS, SITECUSTOMIZE, selected_tests

REPO = Path(__file__).resolve().parents[2]


def _check(tmp_path: Path, *args: str, timeout: float = 180) -> tuple[subprocess.CompletedProcess, dict]:
    env = {**os.environ, "PYTHON": sys.executable}
    env.pop("OUT", None)
    proc = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--device", "cpu", "--out", str(tmp_path), *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    path = tmp_path / "gpu_check.json"
    assert path.is_file(), proc.stdout + proc.stderr
    return proc, json.loads(path.read_text())


@pytest.mark.slow
def test_the_quick_check_on_the_cpu_reports_every_part(tmp_path, byrd_dir, diffice_dir):
    proc, report = _check(tmp_path, "--quick", "--emulate-image", "--data", str(byrd_dir.parent))
    parts = report["parts"]
    assert proc.returncode == 0, {n: p.get("error") for n, p in parts.items() if p["status"] != "ok"}
    assert list(parts) == [p.name for p in PARTS] and report["failed"] == []
    assert report["device"] == "cpu" and report["quick"] and report["emulate_image"]
    assert report["install"]["status"].startswith("skipped")  # the packages import here
    for name, part in parts.items():
        assert part["status"] == "ok", name
        assert math.isfinite(part["figure"]["value"]) and part["figure"]["unit"], name
        assert 0 < part["seconds"] <= part["budget_s"] + 5, name
    assert sum(p["budget_s"] for p in parts.values()) == report["budget_s"] <= 300
    assert report["wall_time"] <= report["budget_s"] + 10

    m = report["machine"]
    assert m["cuda_available"] is False and "cpu" in m["devices_offered"] and m["torch"]
    assert set(CARRIED) <= set(m["packages"]) and all(m["packages"][name] for name in CARRIED)
    assert parts["facts"]["figure"]["value"] > 0  # TFLOP/s of a matrix product

    tests = parts["tests"]
    assert "tests/training/test_device.py" in tests["files"]
    assert tests["passed"] >= 2 and tests["failures"] == tests["errors"] == 0
    assert (tmp_path / "pytest.log").is_file() and (tmp_path / "gpu_check.log").is_file()

    byrd = parts["byrd"]
    assert [r["seed"] for r in byrd["runs"]] == [0] and byrd["runs"][0]["epochs"] >= 1
    assert 0 < byrd["figure"]["value"] < 5 and byrd["figures"]["mad_mean"] < 1e-3  # divergence-free to rounding

    cli = parts["cli"]
    assert {"model.safetensors", "metrics.json", "prediction.nc"} <= set(cli["files"])
    assert cli["summary"]["device"] == "cpu" and cli["summary"]["epochs"] == 5
    assert cli["figures"]["reload_max_rel_difference"] < 1e-3

    visc = parts["viscosity"]
    assert visc["steps"] >= 1 and 0 < visc["figure"]["value"] < 10 and visc["ms_per_step"] > 0

    ensemble = parts["ensemble"]
    assert ensemble["figures"]["runs"] == 5 and ensemble["figures"]["failed"] == 0 and ensemble["nodes"] == 144

    emulator = parts["emulator"]
    assert emulator["epochs"] == 2 and emulator["runs"] == 5
    assert emulator["figure"]["value"] > 0 and emulator["metrics"]["speedup"] > 0


def test_a_failed_part_and_one_out_of_time_are_recorded_and_the_others_run(tmp_path):
    proc, report = _check(tmp_path, "--quick", "--parts", "byrd,facts", "--data", str(tmp_path / "nowhere"),
                          timeout=120)
    assert proc.returncode == 1 and report["failed"] == ["byrd"]
    assert report["parts"]["byrd"]["status"] == "failed" and "byrd-mcor" in report["parts"]["byrd"]["error"]
    assert report["parts"]["facts"]["status"] == "ok" and report["parts"]["facts"]["figure"]["value"] > 0

    proc, report = _check(tmp_path / "late", "--quick", "--parts", "viscosity,facts", "--budget", "3",
                          timeout=60)
    assert proc.returncode == 1 and report["failed"] == ["viscosity", "facts"]
    assert report["parts"]["viscosity"]["status"] == "timeout" and report["parts"]["viscosity"]["seconds"] < 10
    assert report["parts"]["facts"]["status"] == "skipped"


def test_the_emulated_image_hides_what_is_neither_on_it_nor_carried(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "GPU_CHECK_ALLOWED_MODULES": "numpy",
           "GPU_CHECK_HIDDEN_LOG": str(tmp_path / "hidden")}
    code = ("import importlib.util, json, numpy\n"
            "print(importlib.util.find_spec('param') is None)\n"
            "try:\n    import param\nexcept ModuleNotFoundError:\n    print('hidden')\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["True", "hidden"], out.stderr
    assert "param" in (tmp_path / "hidden").read_text().split()


def test_the_carried_wheels_and_the_selected_tests():
    assert set(CARRIED) == set(CARRIED_MODULES)
    lines = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--wheels"], cwd=REPO, capture_output=True,
                           text=True, timeout=60).stdout.split()
    assert lines == [f"{name}=={version}" for name, version in CARRIED.items()]
    assert not {gpu_check.re.sub(r"[-_.]+", "-", n).lower() for n in CARRIED} & set(gpu_check.IMAGE_PACKAGES)
    files = selected_tests()
    assert "tests/training/test_device.py" in files and not any(f.startswith("tests/benchmarks") for f in files)
    assert "tests/training/test_device.py" in selected_tests(quick=True)
