"""Ensembles as learning problems: the split by forcing value, loading, and every inconsistency refused."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest

from iceviz.data.ensemble import load_ensemble, split_runs
from iceviz.data.problem import DataError
from iceviz.data.specs import load_problem


def values(split: dict, forcing: np.ndarray) -> dict:
    return {k: sorted(forcing[v, 0].tolist()) for k, v in split.items()}


def test_default_split_holds_out_interior_values_for_test_and_validation():
    forcing = np.arange(8.0)[:, None] * 10
    split = values(split_runs(forcing), forcing)
    assert split == {"train": [0.0, 10.0, 40.0, 60.0, 70.0], "val": [30.0], "test": [20.0, 50.0]}


def test_every_run_with_a_held_out_value_is_held_out_and_the_splits_are_disjoint():
    forcing = np.array([[0.0, 1], [0.0, 2], [10.0, 1], [10.0, 2], [20.0, 1], [20.0, 2], [30.0, 1], [30.0, 2]])
    split = split_runs(forcing, test=[10.0], val=[20.0])
    assert values(split, forcing) == {"train": [0.0, 0.0, 30.0, 30.0], "val": [20.0, 20.0], "test": [10.0, 10.0]}
    assert sorted(np.concatenate(list(split.values())).tolist()) == list(range(8))


def test_given_test_values_leave_validation_to_the_default_rule():
    forcing = np.arange(5.0)[:, None]
    split = values(split_runs(forcing, test=[2.0]), forcing)
    assert split["test"] == [2.0] and split["val"] == [1.0] and split["train"] == [0.0, 3.0, 4.0]


@pytest.mark.parametrize("kwargs, message", [
    (dict(test=[15.0]), r"test value\(s\) 15 are not among the ensemble.s 0, 10, 20, 30"),
    (dict(test=[10.0], val=[10.0]), "both test and val"),
])
def test_bad_split_values_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        split_runs(np.arange(4.0)[:, None] * 10, **kwargs)


def test_a_split_needs_three_distinct_values():
    with pytest.raises(ValueError, match="2 distinct values"):
        split_runs(np.array([[0.0], [10.0]]))


def test_loading_reads_every_run_on_the_shared_mesh(small_ensemble):
    p = load_problem(f"sim:{small_ensemble}")
    assert p.kind == "ensemble" and p.forcing_keys == ("melt",)
    assert p.forcing[:, 0].tolist() == [0.0, 20.0, 40.0, 60.0, 80.0]
    assert p.fields["h"].shape == (5, len(p.times), p.mesh.n_nodes)
    assert p.times[0] == 0 and p.times[-1] == pytest.approx(4.0)
    assert values(p.split, p.forcing) == {"train": [0.0, 60.0, 80.0], "val": [20.0], "test": [40.0]}
    # more melt, thinner ice: the ensemble differs by its forcing
    thinning = p.fields["h"][:, 0].sum(axis=1) - p.fields["h"][:, -1].sum(axis=1)
    assert np.all(np.diff(thinning) > 0)
    assert (p.wall_time > 0).all() and p.mean_dt > 0


def test_spec_options_choose_the_held_out_values(small_ensemble):
    p = load_problem(f"sim:{small_ensemble}?test=20,60&val=40")
    assert values(p.split, p.forcing) == {"train": [0.0, 80.0], "val": [40.0], "test": [20.0, 60.0]}


def copy_ensemble(src, tmp_path):
    dst = tmp_path / "e"
    shutil.copytree(src, dst)
    return dst, json.loads((dst / "manifest.json").read_text())


def write(dst, manifest):
    (dst / "manifest.json").write_text(json.dumps(manifest))


def test_missing_and_foreign_directories_are_named(tmp_path):
    with pytest.raises(DataError, match="no manifest.json"):
        load_problem(f"sim:{tmp_path}")
    with pytest.raises(DataError, match="sim needs an ensemble directory"):
        load_problem("sim:")
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(DataError, match="cannot read ensemble manifest"):
        load_problem(f"sim:{tmp_path}")


def test_failed_runs_are_skipped_and_too_few_refused(small_ensemble, tmp_path):
    dst, manifest = copy_ensemble(small_ensemble, tmp_path)
    manifest["runs"][4].update(status="failed", error="diverged", file=None)
    write(dst, manifest)
    p = load_ensemble(dst)
    assert p.n_runs == 4 and "diverged" in p.notes[0]
    for run in manifest["runs"][:3]:
        run.update(status="failed", error="diverged", file=None)
    write(dst, manifest)
    with pytest.raises(DataError, match="1 finished run.*at least 3"):
        load_ensemble(dst)


def test_a_missing_run_file_is_named(small_ensemble, tmp_path):
    dst, manifest = copy_ensemble(small_ensemble, tmp_path)
    (dst / manifest["runs"][2]["file"]).unlink()
    with pytest.raises(DataError, match="run file.*missing.*run-002.nc"):
        load_ensemble(dst)


def edit_runs(directory, manifest, indices, change) -> None:
    """Rewrite the given runs' files after ``change(run)``."""
    from iceviz.sim.ugrid import read_run, write_run

    for i in indices:
        path = directory / manifest["runs"][i]["file"]
        run = read_run(path)
        change(run)
        write_run(run, path)


def keep_snapshots(run, n: int) -> None:
    run.times = run.times[:n]
    run.fields = {k: v[:n] for k, v in run.fields.items()}
    run.diagnostics = {k: v[:n] for k, v in run.diagnostics.items()}


def test_runs_on_different_meshes_are_refused(small_ensemble, tmp_path):
    def move_a_node(run) -> None:
        run.mesh.points[0] += 100.0

    dst, manifest = copy_ensemble(small_ensemble, tmp_path)
    edit_runs(dst, manifest, [1], move_a_node)
    with pytest.raises(DataError, match="different meshes"):
        load_ensemble(dst)


def test_runs_with_different_snapshot_times_are_refused(small_ensemble, tmp_path):
    dst, manifest = copy_ensemble(small_ensemble, tmp_path)
    edit_runs(dst, manifest, [3], lambda run: keep_snapshots(run, -1))
    with pytest.raises(DataError, match="different snapshot times"):
        load_ensemble(dst)


def test_an_ensemble_without_varying_forcing_is_refused(small_ensemble, tmp_path):
    dst, manifest = copy_ensemble(small_ensemble, tmp_path)
    manifest["grid"] = {"melt": [0.0]}
    write(dst, manifest)
    with pytest.raises(DataError, match="do not differ in any forcing"):
        load_ensemble(dst)


def test_a_truncated_run_file_is_named(small_ensemble, tmp_path):
    dst, manifest = copy_ensemble(small_ensemble, tmp_path)
    path = dst / manifest["runs"][0]["file"]
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(DataError, match="cannot read simulation run.*run-000.nc"):
        load_ensemble(dst)


def test_runs_without_later_snapshots_are_refused(small_ensemble, tmp_path):
    dst, manifest = copy_ensemble(small_ensemble, tmp_path)
    edit_runs(dst, manifest, range(len(manifest["runs"])), lambda run: keep_snapshots(run, 1))
    with pytest.raises(DataError, match="1 snapshot.*at least one later one"):
        load_ensemble(dst)


@pytest.mark.parametrize("name", ["../outside.nc", "/etc/hostname", "runs/../../x.nc", "", 7])
def test_run_files_must_stay_in_the_ensemble_directory(small_ensemble, tmp_path, name):
    dst, manifest = copy_ensemble(small_ensemble, tmp_path)
    (tmp_path / "outside.nc").write_bytes((dst / manifest["runs"][0]["file"]).read_bytes())  # a real run file
    manifest["runs"][0]["file"] = name
    write(dst, manifest)
    with pytest.raises(DataError, match="lie outside the ensemble directory"):
        load_ensemble(dst)


def test_a_link_out_of_the_ensemble_directory_is_refused(small_ensemble, tmp_path):
    dst, manifest = copy_ensemble(small_ensemble, tmp_path)
    first = dst / manifest["runs"][0]["file"]
    moved = tmp_path / "elsewhere.nc"
    first.rename(moved)
    first.symlink_to(moved)
    with pytest.raises(DataError, match="lie outside the ensemble directory"):
        load_ensemble(dst)


def test_a_build_job_runs_the_ensemble_with_progress_loads_it_and_caches_it(tmp_path, monkeypatch):
    from iceviz.data.ensemble import BuildProgress, EnsembleTask
    from iceviz.runtime.job import Job, JobStatus
    from iceviz.runtime.worker import ProcessJob, warm_up

    monkeypatch.setenv("ICEVIZ_CACHE", str(tmp_path / "cache"))
    task = EnsembleTask(scenario="marine-glacier", overrides=dict(resolution=40e3, refined_resolution=20e3,
                                                                   spin_up_years=5), grid={"melt": [0.0, 30.0, 60.0]},
                        settings=dict(years=1.0, snapshot_every=0.5), root=str(tmp_path / "ensembles"))
    job = Job("build", task, snapshot_every=None, num_threads=None).start()
    assert job.wait(120) is JobStatus.DONE, job.error
    assert job.result.n_runs == 3 and [r["done"] for r in job.history()] == [1, 2, 3]
    assert job.latest() == BuildProgress(3, 3)
    folder = job.result.directory
    assert folder.parent == tmp_path / "ensembles" and (folder / "manifest.json").is_file()

    warm_up("iceviz.data.ensemble")
    again = ProcessJob("load", EnsembleTask(directory=str(folder)), snapshot_every=None, num_threads=None).start()
    assert again.wait(120) is JobStatus.DONE, again.error  # loaded in a worker process, brought back whole
    np.testing.assert_array_equal(again.result.fields["h"], job.result.fields["h"])
    missing = Job("load", EnsembleTask(directory=str(tmp_path / "nothing")), snapshot_every=None).start()
    assert missing.wait(30) is JobStatus.FAILED and missing.error.endswith("is not an ensemble: no manifest.json")


def test_a_cancelled_build_leaves_nothing_in_the_cache(tmp_path, monkeypatch):
    from iceviz.data.ensemble import EnsembleTask
    from iceviz.runtime.job import Job, JobStatus

    monkeypatch.setenv("ICEVIZ_CACHE", str(tmp_path / "cache"))
    tiny = dict(resolution=40e3, refined_resolution=20e3, spin_up_years=5)
    task = EnsembleTask(scenario="marine-glacier", overrides=tiny, grid={"melt": [0.0, 10.0, 20.0, 30.0]},
                        settings=dict(years=1.0, snapshot_every=0.5), root=str(tmp_path / "ensembles"))
    job = Job("build", task, snapshot_every=None, num_threads=None).start()
    deadline = time.monotonic() + 120
    while not job.history() and time.monotonic() < deadline:  # the first run is done
        time.sleep(0.01)
    job.cancel()
    assert job.wait(60) is JobStatus.CANCELLED
    assert not any((tmp_path / "ensembles").iterdir())  # no half-made ensemble, not even its temporary folder
