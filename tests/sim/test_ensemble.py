"""Ensembles: value specs, the grid, one spin-up, parallel runs equal to serial ones, failures, the manifest."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest

from iceviz.sim.ensemble import forcing_values, grid_points, parse_values, read_manifest, run_ensemble
from iceviz.sim.model import FIELDS, RunSettings
from iceviz.sim.ssa import SimulationError
from iceviz.sim.ugrid import read_run

SCENARIO = "confined-shelf"
OVERRIDES = dict(resolution=8e3, refined_resolution=4e3, spin_up_years=5)
GRID = {"melt": [0.0, 30.0, 600.0], "retreat_rate": [0.0, 2000.0]}
"""Six runs; melt = 600 m/a is beyond the Forcing's bounds (500), so those two runs fail."""


def settings() -> RunSettings:
    return RunSettings(years=1, snapshot_every=0.5)


@pytest.fixture(scope="module")
def ensembles(tmp_path_factory):
    """The same ensemble with 1 and with 2 workers of a local pool, and on a local Dask cluster of 2 workers
    (sharing one spin-up cache): {1 | 2 | "dask": (dir, manifest, calls)}."""
    from iceviz.runtime.dask_job import local_client

    root = tmp_path_factory.mktemp("ensemble")
    out = {}
    with pytest.MonkeyPatch.context() as mp, local_client(2) as client:
        mp.setenv("ICEVIZ_CACHE", str(root / "cache"))
        for workers in (1, 2, "dask"):
            calls = []
            manifest = run_ensemble(SCENARIO, OVERRIDES, GRID, settings(), root / f"w{workers}",
                                    workers=2 if workers == "dask" else workers,
                                    client=client if workers == "dask" else None,
                                    progress=lambda done, total, record: calls.append((done, total, record)))
            out[workers] = root / f"w{workers}", manifest, calls
    return out


# --------------------------------------------------------------------------- value specs and the grid


@pytest.mark.parametrize("spec, values", [
    ("0:70:10", [0, 10, 20, 30, 40, 50, 60, 70]),
    ("0:0.3:0.1", [0, 0.1, 0.2, 0.3]),  # the stop survives float rounding (0.1 * 3 != 0.3)
    ("0:1:0.1", [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]),
    ("0:1:0.3", [0, 0.3, 0.6, 0.9]),  # stop not on the grid: not exceeded
    ("5:5:1", [5]),
    ("1e3:2e3:500", [1000, 1500, 2000]),
    ("5", [5]),
    ("0,30,60", [0, 30, 60]),
    (" 2.5 , -1 ", [2.5, -1]),
])
def test_parse_values(spec, values):
    assert parse_values(spec) == values  # exact: 0.3 is the float 0.3, not 0.30000000000000004


@pytest.mark.parametrize("spec", ["", "abc", "1:2", "1:2:3:4", "0:10:0", "0:10:-1", "10:0:1", "1,,2", "nan",
                                  "0:inf:1", "x:1:1", "0:1e9:1e-6"])
def test_bad_value_specs_quote_the_spec(spec):
    with pytest.raises(SimulationError, match="bad value spec") as err:
        parse_values(spec)
    assert repr(spec) in str(err.value)


def test_grid_points_are_the_cartesian_product():
    points = grid_points({"melt": [0, 10], "smb": [0.1, 0.2, 0.3]})
    assert len(points) == 6
    assert points[0] == {"melt": 0.0, "smb": 0.1} and points[1] == {"melt": 0.0, "smb": 0.2}
    assert points[-1] == {"melt": 10.0, "smb": 0.3}
    with pytest.raises(SimulationError, match=r"varies only melt, smb, retreat_rate.*'rate_factor'"):
        grid_points({"rate_factor": [1e-17]})
    with pytest.raises(SimulationError, match="no values given for smb"):
        grid_points({"melt": [1.0], "smb": []})


def test_positive_retreat_rate_means_a_retreating_front():
    assert forcing_values({"retreat_rate": 100.0}) == dict(melt=0.0, smb=0.3, calving="retreat", retreat_rate=100.0)
    assert forcing_values({"melt": 5.0})["calving"] == "fixed"


def test_bad_arguments_fail_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setenv("ICEVIZ_CACHE", str(tmp_path / "cache"))
    with pytest.raises(SimulationError, match="workers must be a positive integer"):
        run_ensemble(SCENARIO, OVERRIDES, {"melt": [0.0]}, settings(), tmp_path / "e", workers=0)
    with pytest.raises(SimulationError, match="unknown scenario 'nope'; choose one of: marine-glacier"):
        run_ensemble("nope", {}, {"melt": [0.0]}, settings(), tmp_path / "e")
    assert not (tmp_path / "e").exists() and not (tmp_path / "cache").exists()


# --------------------------------------------------------------------------- running


def test_manifest_records_the_ensemble(ensembles):
    directory, manifest, _ = ensembles[1]
    assert manifest == json.loads((directory / "manifest.json").read_text())
    assert manifest == read_manifest(directory)
    assert manifest["scenario"] == SCENARIO and manifest["overrides"] == OVERRIDES
    assert manifest["scenario_key"]["scenario"] == SCENARIO and manifest["scenario_key"]["resolution"] == 8e3
    assert manifest["scenario_key"]["length"] == 80e3  # the full key, defaults included
    assert manifest["settings"] == settings().key()
    assert manifest["grid"] == GRID and manifest["workers"] == 1 and manifest["wall_time"] > 0
    assert manifest["spin_up"]["cache_hit"] is False and ensembles[2][1]["spin_up"]["cache_hit"] is True
    assert manifest["spin_up"]["key"] == ensembles[2][1]["spin_up"]["key"]
    assert [r["index"] for r in manifest["runs"]] == list(range(6))
    assert [(r["forcing"]["melt"], r["forcing"]["retreat_rate"]) for r in manifest["runs"]] == \
        [(m, r) for m in GRID["melt"] for r in GRID["retreat_rate"]]
    assert [r["forcing"]["calving"] for r in manifest["runs"]] == ["fixed", "retreat"] * 3


def test_manifest_matches_the_run_files(ensembles):
    directory, manifest, _ = ensembles[1]
    done = [r for r in manifest["runs"] if r["status"] == "done"]
    assert len(done) == 4
    assert sorted(p.name for p in (directory / "runs").iterdir()) == [f"run-00{i}.nc" for i in range(4)]
    for record in done:
        assert record["file"] == f"runs/run-{record['index']:03d}.nc"
        run = read_run(directory / record["file"])
        assert run.params["forcing"] == record["forcing"]
        assert run.params["scenario"] == manifest["scenario_key"] and run.params["settings"] == manifest["settings"]
        assert record["wall_time"] == run.wall_time and record["steps"] == len(run.steps["t"]) > 0
        assert record["snapshots"] == len(run.times) == 3
        assert record["iterations"] == run.steps["iterations"].sum()
        assert record["budget_residual"] == run.budget.relative_residual < 1e-8
        assert record["grounding_line"] == run.diagnostics["grounding_line"][-1]
        assert run.times[0] == 0.0 and run.times[-1] == pytest.approx(1.0)  # from the spun-up state, reset to t = 0


def test_failed_runs_are_recorded_and_the_others_finish(ensembles):
    for directory, manifest, _ in ensembles.values():
        failed = [r for r in manifest["runs"] if r["status"] == "failed"]
        assert [r["index"] for r in failed] == [4, 5]
        for record in failed:
            assert record["file"] is None and "melt" in record["error"] and "600" in record["error"]
        assert not (directory / "runs" / "run-004.nc").exists()


def test_progress_is_called_once_per_run(ensembles):
    for _, manifest, calls in ensembles.values():
        assert [(done, total) for done, total, _ in calls] == [(i, 6) for i in range(1, 7)]
        assert sorted((r for _, _, r in calls), key=lambda r: r["index"]) == manifest["runs"]


@pytest.mark.parametrize("workers", [2, "dask"])
def test_two_workers_give_the_same_runs_as_one(ensembles, workers):
    (serial, m1, _), (parallel, m2, _) = ensembles[1], ensembles[workers]
    assert m2["workers"] == 2
    strip = ("wall_time",)
    assert [{k: v for k, v in r.items() if k not in strip} for r in m1["runs"]] == \
        [{k: v for k, v in r.items() if k not in strip} for r in m2["runs"]]
    for record in m1["runs"]:
        if record["status"] == "done":
            a, b = read_run(serial / record["file"]), read_run(parallel / record["file"])
            for name in FIELDS:
                np.testing.assert_array_equal(a.fields[name], b.fields[name])
            for key in a.steps:
                np.testing.assert_array_equal(a.steps[key], b.steps[key])


def test_a_run_whose_dask_worker_dies_runs_again_on_the_other(command_line_cluster, tmp_path, monkeypatch):
    import os
    import signal
    import threading

    client = command_line_cluster
    monkeypatch.setenv("ICEVIZ_CACHE", str(tmp_path / "cache"))
    grid = {"melt": [0.0, 10.0, 20.0, 30.0]}
    killed = []

    def kill_a_busy_worker() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            busy = [worker for worker, tasks in client.processing().items() if tasks]
            if busy:
                os.kill(client.run(os.getpid, workers=busy[:1])[busy[0]], signal.SIGKILL)
                killed.append(busy[0])
            time.sleep(0.05)

    threading.Thread(target=kill_a_busy_worker, daemon=True).start()
    manifest = run_ensemble(SCENARIO, OVERRIDES, grid, RunSettings(years=8, snapshot_every=2), tmp_path / "e",
                            client=client)
    assert killed and [r["status"] for r in manifest["runs"]] == ["done"] * 4, manifest["runs"]
    assert len(client.scheduler_info()["workers"]) == 1 and manifest["workers"] == 1
    read_manifest(tmp_path / "e")  # every run file is there


# --------------------------------------------------------------------------- reading a manifest


def test_read_manifest_errors(ensembles, tmp_path):
    source = ensembles[1][0]
    with pytest.raises(SimulationError, match="is not an ensemble: no manifest.json"):
        read_manifest(tmp_path / "nowhere")

    broken = tmp_path / "broken"
    shutil.copytree(source, broken)
    (broken / "manifest.json").write_text("{not json")
    with pytest.raises(SimulationError, match=r"cannot read ensemble manifest .*broken/manifest\.json"):
        read_manifest(broken)

    (broken / "manifest.json").write_text("[1, 2]")
    with pytest.raises(SimulationError, match="is not a JSON object"):
        read_manifest(broken)

    manifest = json.loads((source / "manifest.json").read_text())
    (broken / "manifest.json").write_text(json.dumps({k: v for k, v in manifest.items() if k != "grid"}))
    with pytest.raises(SimulationError, match="malformed: missing grid"):
        read_manifest(broken)

    del manifest["runs"][0]["status"]
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SimulationError, match=r"malformed: missing runs\[\]\.status"):
        read_manifest(broken)

    shutil.copy(source / "manifest.json", broken / "manifest.json")
    (broken / "runs" / "run-002.nc").unlink()
    with pytest.raises(SimulationError, match=r"1 run file\(s\) missing: runs/run-002\.nc"):
        read_manifest(broken)


def test_cached_ensembles_run_once_and_a_failed_build_leaves_nothing(tmp_path, monkeypatch):
    from iceviz.sim.ensemble import cached_ensemble, cached_ensemble_dir

    monkeypatch.setenv("ICEVIZ_CACHE", str(tmp_path / "cache"))
    calls = []
    grid = {"melt": [0.0, 30.0]}
    out = cached_ensemble(SCENARIO, OVERRIDES, grid, dict(years=1, snapshot_every=0.5), workers=1,
                          progress=lambda *a: calls.append(a), root=tmp_path / "sim")
    assert out == cached_ensemble_dir(SCENARIO, OVERRIDES, grid, dict(years=1, snapshot_every=0.5), tmp_path / "sim")
    assert len(calls) == 2 and len(read_manifest(out)["runs"]) == 2
    again = cached_ensemble(SCENARIO, OVERRIDES, grid, dict(years=1, snapshot_every=0.5), workers=1,
                            progress=lambda *a: calls.append(a), root=tmp_path / "sim")
    assert again == out and len(calls) == 2  # from the cache: nothing ran
    with pytest.raises(SimulationError, match="failed in 1 run"):
        cached_ensemble(SCENARIO, OVERRIDES, {"melt": [0.0, 600.0]}, dict(years=1, snapshot_every=0.5), workers=1,
                        root=tmp_path / "sim")
    assert sorted(p.name for p in (tmp_path / "sim").iterdir()) == [out.name]
