"""Shared test fixtures: where the real data lives, and a skip when it does not."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
