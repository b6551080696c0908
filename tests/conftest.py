"""Shared test fixtures: where the real data lives (and a skip when it does not); jobs that never outlive their
test, and small helpers for them."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

# Jobs that a test isolates run in worker processes forked here (and so do those of the servers the browser
# tests start): the embedded Dask cluster, the app's default, is tested on its own (tests/runtime/test_executor.py,
# tests/browser/test_dask_app.py), and starting one inside every test process would cost each seconds.
os.environ.setdefault("ICEVIZ_EXECUTOR", "processes")

from iceviz.runtime.job import Job  # noqa: E402
from iceviz.runtime.worker import ProcessJob  # noqa: E402
from iceviz.training.trainers import training_job  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ICEVIZ_SHARED_DATA", REPO.parent / "shared" / "data"))
BYRD_DIR = SHARED_DATA / "byrd_mcor"
DIFFICE_DIR = SHARED_DATA / "diffice"


@pytest.fixture
def byrd_dir() -> Path:
    if not (BYRD_DIR / "train_tensor.pt").exists():
        pytest.skip(f"Byrd tensors not found under {BYRD_DIR} (../shared/data is absent)")
    return BYRD_DIR


@pytest.fixture
def diffice_dir() -> Path:
    if not (DIFFICE_DIR / "SynData_exp1.mat").exists():
        pytest.skip(f"DIFFICE data not found under {DIFFICE_DIR} (../shared/data is absent)")
    return DIFFICE_DIR


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """One intra-op thread for every test: on a small shared CPU, oversubscribed torch threads crawl."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


SMALL_ENSEMBLE = dict(scenario="marine-glacier", overrides=dict(resolution=40e3, refined_resolution=20e3, spin_up_years=20),
                      grid={"melt": [0.0, 20.0, 40.0, 60.0, 80.0]}, years=4.0, snapshot_every=0.5)
"""A 144-node marine glacier, five melt rates, 4 years (9 snapshots): about 6 s to run."""


@pytest.fixture(scope="session")
def small_ensemble(tmp_path_factory) -> Path:
    """The directory of :data:`SMALL_ENSEMBLE`, run once per test session (its spin-up cached in a temporary folder)."""
    from iceviz.sim.ensemble import run_ensemble
    from iceviz.sim.model import RunSettings

    root = tmp_path_factory.mktemp("small-ensemble")
    e = SMALL_ENSEMBLE
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ICEVIZ_CACHE", str(root / "cache"))
        run_ensemble(e["scenario"], e["overrides"], e["grid"],
                     RunSettings(years=e["years"], snapshot_every=e["snapshot_every"]), root / "ensemble")
    return root / "ensemble"


@pytest.fixture(autouse=True, scope="session")
def no_user_data_settings(tmp_path_factory):
    """No test reads or writes the user's data settings or follows their product environment variables."""
    from iceviz.data.settings import ENV_VARS

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ICEVIZ_CONFIG_DIR", str(tmp_path_factory.mktemp("config")))
        for var in ENV_VARS.values():
            mp.delenv(var, raising=False)
        yield


@pytest.fixture(scope="session")
def glacier_products(tmp_path_factory) -> dict[str, Path]:
    """The synthetic glacier written as MEaSUREs (InSAR and phase), BedMachine and two Bedmap files, in the
    products' layouts (iceviz.data.product_files); about 1 s."""
    from iceviz.data.product_files import write_glacier_products

    return write_glacier_products(tmp_path_factory.mktemp("products") / "files")


@pytest.fixture
def data_home(tmp_path, monkeypatch) -> Path:
    """A fresh settings folder and cache (Bedmap indexes) for one test."""
    monkeypatch.setenv("ICEVIZ_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("ICEVIZ_CACHE", str(tmp_path / "cache"))
    return tmp_path

@pytest.fixture
def jobs():
    """Collects jobs; any still alive at teardown is cancelled and joined (no thread or worker outlives
    its test). A worker process gets longer to end than a thread."""
    started: list[Job] = []
    yield started
    for job in started:
        job.cancel()
    for job in started:
        job.wait(15 if isinstance(job, ProcessJob) else 5)
        assert not job.alive, f"job {job.name} still running after cancel"
        assert getattr(job, "pid", None) is None, "worker process left behind"


def wait_until(predicate, timeout: float = 10.0, every: float = 0.005) -> bool:
    end = time.perf_counter() + timeout
    while time.perf_counter() < end:
        if predicate():
            return True
        time.sleep(every)
    return predicate()


def curve_job(jobs: list[Job], model: str = "dfnn", data="synthetic:curve", **overrides) -> Job:
    """A job on ``synthetic:curve`` (fast epochs) with frequent snapshots, registered for teardown."""
    overrides.setdefault("snapshot_every", 0.05)
    job = training_job(model, data, device="cpu", **overrides)
    jobs.append(job)
    return job


@pytest.fixture
def command_line_cluster(tmp_path):
    """``dask scheduler`` and two ``dask worker`` processes (no nanny) on 127.0.0.1, as a user would start them."""
    import shutil

    from benchmarks.common import command_line_cluster

    if shutil.which("dask") is None:
        pytest.skip("the dask command-line tool is not on PATH")
    with command_line_cluster(2, tmp_path / "cluster.log", nanny=False) as client:
        yield client
