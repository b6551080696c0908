"""Memory estimates of training jobs, from their settings alone: what the server's queue admits by."""

from __future__ import annotations

import pytest

from iceviz.models.registry import REGISTRY
from iceviz.training.memory import WORKER_BASE_BYTES, job_memory
from iceviz.training.trainers import training_job

GiB = 2**30


@pytest.mark.parametrize("model", list(REGISTRY))
def test_every_default_job_is_a_worker_and_well_under_two_gib(model):
    assert WORKER_BASE_BYTES < job_memory(model) < 2 * GiB


def test_the_estimate_grows_with_what_a_step_holds():
    assert job_memory("dfnn", {"width": 256}) > job_memory("dfnn") > job_memory("dfnn", {"width": 16})
    assert job_memory("pinn", {"collocation": 100_000}) > job_memory("pinn")
    assert job_memory("viscosity-pinn", {"subdomains": 4}) > job_memory("viscosity-pinn")
    assert job_memory("egcn", {"batch_size": 64}) > job_memory("egcn")


def test_the_settings_that_asked_for_forty_gigabytes_are_seen_as_huge():
    # the registry's bounds allow these (found by a session: a ~40 GB allocation attempt)
    assert job_memory("pinn", {"collocation": 10_000_000, "width": 1024}) > 100 * GiB


def test_bad_settings_leave_the_message_to_the_job():
    assert job_memory("dfnn", {"width": "abc"}) == WORKER_BASE_BYTES
    assert training_job("dfnn", "synthetic:curve", width=64).memory == job_memory("dfnn", {"width": 64})
