"""Training on a Dask cluster: a local scheduler and one worker process on 127.0.0.1, like a real cluster."""

from __future__ import annotations

import json
import time

import pytest

distributed = pytest.importorskip("distributed")

from iceviz.cli import main  # noqa: E402
from iceviz.runtime.dask_job import CachedEvent, local_client  # noqa: E402
from iceviz.runtime.job import JobStatus  # noqa: E402
from iceviz.training.trainers import training_job  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    """A scheduler and one single-threaded worker process on localhost (no dashboard)."""
    with local_client(1) as client:
        yield client


def wait_until(predicate, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def test_a_job_trains_on_a_dask_worker_and_streams_its_progress_back(cluster):
    client = cluster
    job = training_job("dfnn", "synthetic:curve", snapshot_every=0.1, epochs=40, client=client).start()
    assert job.wait(120) is JobStatus.DONE, job.error
    assert len(job.history()) == 40 and job.latest().final and job.latest().epoch == 40
    assert job.device == "cpu" and job.result.epochs == 40
    assert job.trainer is not None and job.trainer.epoch == 40  # the trained model came back, to be saved


def test_pause_resume_and_cancel_reach_the_task_within_a_second(cluster):
    client = cluster
    job = training_job("dfnn", "synthetic:curve", snapshot_every=0.1, epochs=1_000_000, client=client).start()
    wait_until(lambda: len(job.history()) > 5)
    job.pause()
    time.sleep(1.0)
    paused_at = len(job.history())
    time.sleep(1.0)
    assert len(job.history()) == paused_at and job.status is JobStatus.PAUSED
    job.resume()
    wait_until(lambda: len(job.history()) > paused_at + 5, 10)
    start = time.monotonic()
    job.cancel()
    assert job.wait(10) is JobStatus.CANCELLED and time.monotonic() - start < 1.0


def test_a_click_never_waits_on_the_scheduler_and_its_events_arrive_in_order(cluster):
    """set / clear hold at once on the job's side and reach the scheduler in the order they were made."""
    here = CachedEvent("iceviz-test-order", lambda: cluster)
    there = distributed.Event("iceviz-test-order", client=cluster)
    for _ in range(20):
        here.set()
        assert here.is_set()
        here.clear()
        assert not here.is_set()
    here.set()
    wait_until(there.is_set, 10)
    here.clear()
    wait_until(lambda: not there.is_set(), 10)


def test_a_failure_on_the_worker_is_the_jobs_message(cluster):
    client = cluster
    job = training_job("dfnn", "synthetic:nonsense", client=client).start()
    assert job.wait(60) is JobStatus.FAILED and "nonsense" in job.error


def test_the_cli_trains_on_a_scheduler_by_address_and_saves_the_run(cluster, tmp_path, capsys):
    client = cluster
    out = tmp_path / "run"
    code = main(["train", "dfnn", "--data", "synthetic:curve", "--epochs", "5", "--json", "--quiet",
                 "--scheduler", client.scheduler.address, "--out", str(out)])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and summary["epochs"] == 5 and (out / "model.safetensors").is_file()


def test_an_unreachable_scheduler_is_a_clear_error(capsys):
    code = main(["train", "dfnn", "--data", "synthetic:curve", "--epochs", "1", "--scheduler", "tcp://127.0.0.1:9"])
    assert code == 2 and "no Dask scheduler answered at tcp://127.0.0.1:9" in capsys.readouterr().err


def test_killing_the_busy_worker_reruns_the_job_on_the_other(command_line_cluster):
    import os
    import signal

    client = command_line_cluster
    job = training_job("dfnn", "synthetic:curve", snapshot_every=0.2, epochs=400, client=client).start()
    wait_until(lambda: len(job.history()) > 20)
    busy = [worker for worker, tasks in client.processing().items() if tasks]
    assert len(busy) == 1
    os.kill(client.run(os.getpid, workers=busy)[busy[0]], signal.SIGKILL)
    assert job.wait(120) is JobStatus.DONE, job.error
    epochs = [record["epoch"] for record in job.history() if "epoch" in record]
    assert job.restarts == 1 and epochs == sorted(epochs) and epochs[-1] == 400  # the second attempt, whole
    assert len(client.scheduler_info()["workers"]) == 1
