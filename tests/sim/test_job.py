"""Simulation jobs: snapshots while spinning up and running, pause / resume / cancel, clean failures."""

import time

import numpy as np
import pytest

from iceviz.sim.job import HISTORY_KEYS, SimSnapshot, SimulationJob, wait_for_snapshot
from iceviz.sim.ssa import height_above_flotation
from iceviz.sim.model import SimRun
from iceviz.sim.ssa import SSASolver
from iceviz.runtime.job import JobStatus

TINY = dict(resolution=8e3, refined_resolution=4e3, spin_up_years=2.0)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ICEVIZ_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def collect(job: SimulationJob, timeout: float = 30.0) -> list[SimSnapshot]:
    """Every distinct snapshot the job published while it ran (polled like the app does, but faster)."""
    seen: list[SimSnapshot] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        snap = job.latest()
        if snap is not None and (not seen or snap is not seen[-1]):
            seen.append(snap)
        if job.status.finished:
            break
        time.sleep(0.002)
    last = job.latest()
    if last is not None and (not seen or last is not seen[-1]):
        seen.append(last)
    return seen


def test_a_job_spins_up_then_runs_and_publishes_plain_snapshots():
    job = SimulationJob("confined-shelf", TINY, dict(melt=5.0), dict(years=3.0, snapshot_every=1.0)).start()
    snaps = collect(job)
    assert job.wait(30) is JobStatus.DONE, job.error
    assert job.spun_up_from_cache is False
    phases = [s.phase for s in snaps]
    assert phases[0] == "spin-up" and phases[-1] == "run"
    assert phases == sorted(phases, key=("spin-up", "run").index)  # never back to the spin-up
    final = snaps[-1]
    assert final.final and final.progress == 1.0 and final.time == pytest.approx(3.0)
    n = final.nodes
    assert n == final.mesh.n_nodes and final.h.shape == final.speed.shape == final.haf.shape == (n,)
    assert np.allclose(final.haf, height_above_flotation(final.h, final.bed))
    assert set(np.unique(final.floating)) <= {0.0, 1.0}
    assert final.seconds > 0
    # every saved snapshot (each model year) was published, times increase within the run
    run_times = [s.time for s in snaps if s.phase == "run"]
    assert all(any(abs(t - year) < 1e-6 for t in run_times) for year in (1.0, 2.0, 3.0))
    assert run_times == sorted(run_times)
    # the history: the start plus one row per step; the volumes agree with the cumulative budget
    h = final.history
    assert set(h) == set(HISTORY_KEYS)
    run_steps = [r for r in job.history() if r["phase"] == "run"]
    assert h["t"][0] == 0.0 and h["t"][-1] == pytest.approx(3.0) and len(h["t"]) == len(run_steps) + 1
    assert np.allclose(h["t"][1:], [r["t"] for r in run_steps])
    assert h["volume"][-1] - h["volume"][0] == pytest.approx(h["budget_volume_change"][-1], rel=1e-9)
    assert final.budget.relative_residual < 1e-6
    assert final.budget.melt > 0
    # the finished run is kept, as the model returns it
    assert isinstance(job.run, SimRun) and job.run is job.result
    assert np.allclose(job.run.times, [0, 1, 2, 3])
    assert np.allclose(job.run.fields["h"][-1], final.h)


def test_snapshots_are_copies_the_job_never_changes():
    job = SimulationJob("confined-shelf", TINY, None, dict(years=2.0, snapshot_every=0.5)).start()
    first = wait_for_snapshot(job, lambda s: s.phase == "run")
    kept = first.h.copy(), {k: v.copy() for k, v in first.history.items()}
    assert job.wait(30) is JobStatus.DONE
    assert np.array_equal(first.h, kept[0])
    assert all(np.array_equal(first.history[k], kept[1][k]) for k in kept[1])


def test_the_second_run_takes_the_spin_up_from_the_cache():
    first = SimulationJob("confined-shelf", TINY, None, dict(years=0.5)).start()
    assert first.wait(30) is JobStatus.DONE
    second = SimulationJob("confined-shelf", TINY, None, dict(years=0.5)).start()
    snaps = collect(second)
    assert second.status is JobStatus.DONE and second.spun_up_from_cache is True
    assert {s.phase for s in snaps} == {"run"}
    assert np.allclose(second.run.fields["h"][0], first.run.fields["h"][0])  # the same spun-up start


def test_pause_blocks_between_steps_then_resume_and_cancel():
    job = SimulationJob("confined-shelf", TINY, None, dict(years=500.0, snapshot_every=1.0)).start()
    wait_for_snapshot(job, lambda s: s.phase == "run" and len(s.history["t"]) > 2)
    job.pause()
    assert job.status is JobStatus.PAUSED
    time.sleep(0.3)  # the step under way ends, then tick() blocks
    paused = job.latest()
    steps = len(job.history())
    time.sleep(0.5)
    assert len(job.history()) == steps and job.latest() is paused
    assert paused.history["t"][-1] == job.history()[-1]["t"]  # the paused view shows the last step
    job.resume()
    wait_for_snapshot(job, lambda s: len(s.history["t"]) > len(paused.history["t"]), timeout=10)
    assert job.status is JobStatus.RUNNING
    start = time.monotonic()
    job.cancel()
    assert job.wait(5) is JobStatus.CANCELLED
    assert time.monotonic() - start < 2
    assert job.run is None and job.error is None


def test_cancel_while_paused_and_before_start():
    job = SimulationJob("confined-shelf", TINY, None, dict(years=500.0)).start()
    wait_for_snapshot(job, lambda s: s.phase == "run")
    job.pause()
    time.sleep(0.2)
    job.cancel()
    assert job.wait(5) is JobStatus.CANCELLED
    queued = SimulationJob("confined-shelf", TINY)
    queued.cancel()
    assert queued.start().status is JobStatus.CANCELLED


@pytest.mark.parametrize("overrides, forcing, scenario, words", [
    (dict(resolution=4e3, refined_resolution=8e3), None, "confined-shelf",
     "refined_resolution (8000 m) must not exceed resolution (4000 m)"),
    (TINY, dict(melt=-1.0), "confined-shelf", "Forcing.melt"),
    (dict(depth=1.0), None, "confined-shelf", "depth"),
    (None, None, "atlantis", "unknown scenario 'atlantis'"),
])
def test_bad_parameters_fail_cleanly_with_a_message(overrides, forcing, scenario, words):
    job = SimulationJob(scenario, overrides, forcing).start()
    assert job.wait(30) is JobStatus.FAILED
    assert job.error.startswith("Cannot set up the simulation: ") and words in job.error
    assert job.run is None


def test_a_diverging_solve_fails_with_the_phase_and_year(monkeypatch):
    solve = SSASolver.solve
    calls = []

    def diverging(self, *args, **kwargs):
        result = solve(self, *args, **kwargs)
        calls.append(1)
        if len(calls) > 6:
            result.u[:] = np.nan
        return result

    monkeypatch.setattr(SSASolver, "solve", diverging)
    job = SimulationJob("confined-shelf", dict(TINY, spin_up_years=0.0), None, dict(years=20.0)).start()
    assert job.wait(30) is JobStatus.FAILED
    assert job.error.startswith("The run failed at model year ")
    assert "non-finite velocities" in job.error
    assert job.latest() is not None and job.latest().phase == "run"  # what was shown before stays


def test_a_process_job_runs_the_simulation_outside_this_process_and_brings_it_back(cache):
    from iceviz.runtime.worker import warm_up
    from iceviz.sim.job import SimulationProcessJob, simulation_memory
    from iceviz.sim.scenarios import get_scenario

    warm_up("iceviz.sim.job")
    job = SimulationProcessJob("confined-shelf", TINY, dict(melt=5.0), dict(years=2.0, snapshot_every=1.0),
                               cache_root=cache)
    assert job.memory == simulation_memory(get_scenario("confined-shelf", **TINY)) > 0
    job.start()
    snaps = collect(job, timeout=120)
    assert job.wait(60) is JobStatus.DONE, job.error
    assert job.trainer is None and job.pid is None  # it ran, and ended, in a worker process
    assert snaps[-1].final and snaps[-1].mesh is not None and snaps[-1].spun_up_from_cache is False
    assert job.spun_up_from_cache is False and isinstance(job.run, SimRun) and np.allclose(job.run.times, [0, 1, 2])
    again = SimulationProcessJob("confined-shelf", TINY, None, dict(years=0.5), cache_root=cache).start()
    assert again.wait(120) is JobStatus.DONE and again.spun_up_from_cache is True  # the worker's cached spin-up


def test_a_process_job_reports_where_the_simulation_failed():
    from iceviz.sim.job import SimulationProcessJob

    job = SimulationProcessJob("confined-shelf", dict(TINY, refined_resolution=9e3), None, dict(years=1.0)).start()
    assert job.wait(120) is JobStatus.FAILED
    assert job.error.startswith("Cannot set up the simulation: refined_resolution (9000 m) must not exceed")


def test_the_memory_estimate_bounds_the_mesh_before_it_is_built():
    from iceviz.sim.job import estimated_nodes
    from iceviz.sim.model import Simulator
    from iceviz.sim.scenarios import get_scenario

    coarse_glacier = dict(resolution=20e3, refined_resolution=8e3)
    for name, overrides in (("confined-shelf", TINY), ("marine-glacier", coarse_glacier)):
        scenario = get_scenario(name, **overrides)
        nodes = Simulator(scenario).mesh.n_nodes
        assert nodes <= estimated_nodes(scenario) <= 3 * nodes  # an upper estimate, of the right size
    huge = SimulationJob("marine-glacier", dict(resolution=500.0, refined_resolution=100.0))
    assert huge.memory > 2**38  # millions of nodes at 100 m: hundreds of GiB, refused by any real budget
