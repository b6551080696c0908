"""Jobs whose trainer runs in a worker process: same results, same controls, every ending reported."""

from __future__ import annotations

import dataclasses
import os
import signal
import time

import pytest

from iceviz.data.problem import FluxObservations
from iceviz.data.specs import load_problem
from iceviz.training.base import FitResult
from iceviz.runtime.job import JobStatus
from iceviz.runtime.worker import ProcessJob, warm_up
from tests.conftest import curve_job, wait_until


@pytest.fixture(scope="module", autouse=True)
def forkserver():
    warm_up("iceviz.training.trainers")


def test_process_job_matches_a_thread_job_with_the_same_seed(jobs):
    isolated = curve_job(jobs, isolate=True, epochs=8, seed=3).start()
    threaded = curve_job(jobs, epochs=8, seed=3).start()
    assert isinstance(isolated, ProcessJob) and not isinstance(threaded, ProcessJob)
    assert isolated.wait(60) is JobStatus.DONE, isolated.error
    assert threaded.wait(60) is JobStatus.DONE, threaded.error
    assert isinstance(isolated.result, FitResult) and isolated.trainer is None
    assert isolated.result.metrics["rmse"] == pytest.approx(threaded.result.metrics["rmse"], rel=1e-5)
    assert isolated.result.steps == threaded.result.steps
    # the history and the final snapshot came back through the pipe, complete and in order
    assert [r["step"] for r in isolated.history()] == [r["step"] for r in threaded.history()]
    assert len([r for r in isolated.history() if "phase" not in r]) == 8
    final = isolated.latest()
    assert final.final and final.fields is not None and "divergence" in final.fields
    assert isolated.device == "cpu"


def test_pause_stops_the_worker_and_the_clock_then_resume_finishes(jobs):
    job = curve_job(jobs, isolate=True, epochs=10**6, seconds=1.5).start()
    assert wait_until(lambda: job.latest() is not None and job.latest().step > 5, timeout=30)
    job.pause()
    time.sleep(0.5)  # let the step in flight finish and its records arrive
    step, seconds = job.history()[-1]["step"], job.history()[-1]["seconds"]
    time.sleep(1.0)
    assert job.history()[-1]["step"] == step, "the worker kept stepping while paused"
    assert job.status is JobStatus.PAUSED
    job.resume()
    assert job.wait(60).completed, job.error  # done, or cut short by its 1.5 s budget
    assert job.result.seconds < 1.5 + 0.5, "the pause counted against the time budget"
    assert job.history()[-1]["step"] > step and job.history()[-1]["seconds"] > seconds


def test_cancel_ends_the_worker_promptly(jobs):
    job = curve_job(jobs, isolate=True, epochs=10**6).start()
    assert wait_until(lambda: job.latest() is not None, timeout=30)
    pid = job.pid
    t0 = time.perf_counter()
    job.cancel()
    assert job.wait(10) is JobStatus.CANCELLED
    assert time.perf_counter() - t0 < 3.0
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_cancel_while_paused(jobs):
    job = curve_job(jobs, isolate=True, epochs=10**6).start()
    assert wait_until(lambda: job.latest() is not None, timeout=30)
    job.pause()
    job.cancel()
    assert job.wait(10) is JobStatus.CANCELLED


def test_bad_data_fails_with_the_workers_message_and_traceback(jobs):
    job = curve_job(jobs, isolate=True, data="synthetic:nope").start()
    assert job.wait(30) is JobStatus.FAILED
    assert job.error.startswith("DataError: synthetic:nope: unknown synthetic NAME 'nope'")
    assert "load_problem" in job.traceback  # the child's traceback, not the relay's


def test_nan_loss_message_comes_back_verbatim(jobs):
    problem = load_problem("synthetic:curve")
    q = problem.train.q.copy()
    q[:5] = 1e200  # overflows float32
    bad = dataclasses.replace(problem, train=FluxObservations(problem.train.xy, q))
    job = curve_job(jobs, isolate=True, data=bad, epochs=5).start()
    assert job.wait(30) is JobStatus.FAILED
    assert "nan" in job.error.lower() and "learning rate" in job.error
    assert not job.error.startswith("WorkerFailed")


def test_a_killed_worker_fails_its_job_with_the_exit_code(jobs):
    job = curve_job(jobs, isolate=True, epochs=10**6).start()
    assert wait_until(lambda: job.latest() is not None, timeout=30)
    os.kill(job.pid, signal.SIGKILL)
    assert job.wait(10) is JobStatus.FAILED
    assert "exit code -9" in job.error and "dfnn" in job.error


def test_a_worker_about_to_pause_sends_its_pending_records_first():
    import multiprocessing
    import threading

    from iceviz.runtime.worker import _RelayControl

    parent, child = multiprocessing.Pipe()
    resume, cancel = threading.Event(), threading.Event()
    control = _RelayControl(child.send, snapshot_every=None, events=(resume, cancel))
    control.record({"epoch": 7})  # younger than the flush period: held back
    assert not parent.poll(0.1)
    resume.clear()  # the parent paused the job
    worker = threading.Thread(target=control.tick)
    worker.start()
    assert parent.poll(2.0), "the last records did not reach the parent before the pause"
    kind, (records, snapshot) = parent.recv()
    assert kind == "progress" and records == [{"epoch": 7}] and snapshot is None
    assert worker.is_alive()  # and it is paused
    resume.set()
    worker.join(2.0)
    assert not worker.is_alive()


def test_a_call_task_runs_in_a_worker_process_and_its_result_comes_back(jobs):
    from iceviz.data.problem import DataError
    from iceviz.data.specs import load_problem
    from iceviz.runtime.job import CallTask

    good = ProcessJob("load", CallTask(load_problem, ("synthetic:curve",), (DataError,)), snapshot_every=None,
                      num_threads=None)
    bad = ProcessJob("load", CallTask(load_problem, ("nosuch:thing",), (DataError,)), snapshot_every=None,
                     num_threads=None)
    jobs += [good.start(), bad.start()]
    assert good.wait(60) is JobStatus.DONE, good.error
    assert len(good.result.train.xy) > 0 and good.result.spec == "synthetic:curve"
    assert bad.wait(60) is JobStatus.FAILED and not bad.error.startswith("DataError")
    assert "nosuch" in bad.error
