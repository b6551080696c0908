"""Where a server's jobs run: the embedded Dask cluster (the app's default), an existing cluster, and the
fall-back to worker processes."""

from __future__ import annotations

import math
import os
import time

import pytest

distributed = pytest.importorskip("distributed")

from iceviz.data.specs import DataError, load_problem  # noqa: E402
from iceviz.runtime import executor  # noqa: E402
from iceviz.runtime.dask_job import DaskJob, local_client  # noqa: E402
from iceviz.runtime.job import CallTask, JobStatus  # noqa: E402
from iceviz.runtime.queue import default_slots  # noqa: E402
from iceviz.runtime.worker import ProcessJob  # noqa: E402
from iceviz.sim.job import SimulationDaskJob, simulation_job_class  # noqa: E402
from iceviz.training.trainers import training_job  # noqa: E402


@pytest.fixture
def dask_executor(monkeypatch):
    """This process's executor set to Dask (the app's default), closed again afterwards."""
    monkeypatch.setenv(executor.EXECUTOR_VAR, "dask")
    monkeypatch.delenv("ICEVIZ_SCHEDULER", raising=False)
    executor.shutdown()
    yield executor
    executor.shutdown()


@pytest.fixture(scope="module")
def embedded():
    """One embedded cluster for the tests that run jobs on it (starting one takes seconds)."""
    saved = os.environ.get(executor.EXECUTOR_VAR)
    os.environ[executor.EXECUTOR_VAR] = "dask"
    executor.shutdown()
    client = executor.server_client()
    yield client
    executor.shutdown()
    os.environ[executor.EXECUTOR_VAR] = saved or "processes"


def _thread_niceness() -> int:
    import threading

    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_the_default_executor_is_dask_and_a_wrong_name_is_refused(monkeypatch):
    monkeypatch.delenv(executor.EXECUTOR_VAR)
    assert executor.executor_name() == "dask"
    monkeypatch.setenv(executor.EXECUTOR_VAR, "threads")
    with pytest.raises(ValueError, match="ICEVIZ_EXECUTOR='threads': use one of dask, processes"):
        executor.executor_name()


def test_the_embedded_cluster_has_a_worker_per_slot_and_one_for_short_jobs_at_a_lower_priority(embedded):
    workers = embedded.scheduler_info()["workers"].values()
    assert len(workers) == executor.cluster_workers() == max(2, default_slots()) + 1
    assert all(w["nthreads"] == 1 for w in workers)
    assert executor.describe() == f"an embedded Dask cluster of {len(workers)} worker processes"
    assert executor.isolated_job_class() is DaskJob and simulation_job_class(True) is SimulationDaskJob
    # a task runs in a thread the worker made after it was niced: below the server's priority
    assert embedded.submit(_thread_niceness, pure=False).result(60) >= executor.WORKER_NICE


def test_a_training_an_app_starts_runs_on_a_worker_and_says_which(embedded):
    job = training_job("dfnn", "synthetic:curve", device="cpu", snapshot_every=0.1, epochs=30, isolate=True)
    assert isinstance(job, DaskJob)
    assert job.start().wait(120) is JobStatus.DONE, job.error
    assert job.worker.startswith("Dask worker ") and job.device == "cpu"
    assert len(job.history()) == 30 and job.latest().final and job.result.epochs == 30
    assert job.trainer is None  # not sent back: the app never saves it from here


def test_a_region_build_and_a_simulation_run_on_the_cluster_too(embedded):
    build = DaskJob("region build", CallTask(load_problem, ("synthetic:curve",), (DataError,)), snapshot_every=None,
                    num_threads=None).start()
    bad = DaskJob("region build", CallTask(load_problem, ("synthetic:nope",), (DataError,)), snapshot_every=None,
                  num_threads=None).start()
    sim = simulation_job_class(True)("marine-glacier", None, None, {"years": 1}, snapshot_every=0.2).start()
    assert build.wait(120) is JobStatus.DONE, build.error
    assert build.result.train.xy.shape[0] > 100  # the problem came back, to be shown
    assert bad.wait(60) is JobStatus.FAILED and bad.error.startswith("synthetic:nope: unknown synthetic NAME")
    assert sim.wait(300) is JobStatus.DONE, sim.error
    assert sim.run is not None and sim.run.times[-1] == pytest.approx(1.0) and sim.worker.startswith("Dask worker")


def test_a_cluster_that_cannot_start_leaves_the_jobs_to_worker_processes(dask_executor, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("no free port")

    monkeypatch.setattr(distributed, "LocalCluster", refuse)
    assert executor.server_client() is None
    assert executor.executor_name() == "processes" and executor.isolated_job_class() is ProcessJob
    assert executor.describe() == ("worker processes of this server (an embedded Dask cluster could not start "
                                   "(OSError: no free port))")


def test_an_existing_cluster_gives_the_slots_and_an_unreachable_one_is_named(dask_executor):
    with local_client(2) as client:
        executor.configure(client.scheduler.address)
        assert executor.server_slots() == 2
        assert executor.describe() == f"the Dask cluster at {client.scheduler.address} (2 workers)"
        with pytest.raises(RuntimeError, match="configure it before the first job"):
            executor.configure("tcp://127.0.0.1:1")
    executor.shutdown()
    executor.configure("tcp://127.0.0.1:1")
    with pytest.raises(ValueError, match="no Dask scheduler answered at tcp://127.0.0.1:1"):
        executor.server_client()
    assert executor.server_slots() is None  # the queue still works; every job fails with the reason


def test_the_server_queue_follows_an_existing_cluster_as_it_loses_a_worker(dask_executor, monkeypatch):
    from iceviz.runtime import queue

    monkeypatch.setattr(queue, "_process_queues", {})
    with local_client(2) as client:
        executor.configure(client.scheduler.address)
        assert queue.server_queue().slots == 2
        client.cluster.scale(1)
        deadline = time.monotonic() + 30
        while len(client.scheduler_info()["workers"]) > 1:
            assert time.monotonic() < deadline, "the worker did not leave"
            time.sleep(0.1)
        monkeypatch.setattr(executor, "_described", (-math.inf, ""))  # the next look asks the scheduler
        assert executor.describe().endswith("(1 workers)") and queue.server_queue().slots == 1
    executor.shutdown()


def test_the_workers_take_the_gpus_in_turn():
    assert [executor.gpu_lane(w, 2) for w in range(5)] == [0, 1, 0, 1, 0]
    assert executor.gpu_lane(3, 1) == 0 and executor.gpu_lane(0, 0) is None


def _gpu_of(dask_worker=None) -> tuple[int, int]:
    import torch

    return int(dask_worker.name), torch.cuda.current_device()


def test_on_a_gpu_machine_each_worker_holds_its_lane_and_an_auto_job_trains_there(embedded):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device on this machine (benchmarks/gpu_check.sh runs this where one is lent)")
    count = torch.cuda.device_count()
    for name, device in embedded.run(_gpu_of).values():
        assert device == executor.gpu_lane(name, count)
    job = training_job("dfnn", "synthetic:curve", device="auto", snapshot_every=None, epochs=5, isolate=True)
    assert job.start().wait(300) is JobStatus.DONE, job.error
    assert job.device.startswith("cuda")
