"""Device choice: only what this machine has is offered; asking for a missing one is a clear error."""

from __future__ import annotations

import pytest
import torch

from iceviz.training.device import available_devices, resolve_device


def test_only_present_devices_are_offered():
    found = available_devices()
    assert found[:2] == ["auto", "cpu"]
    assert ("cuda" in found) == torch.cuda.is_available()
    for name in found:
        resolve_device(name)  # every offered choice resolves


def test_a_missing_or_unknown_device_is_refused_by_name():
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="'cuda' requested but CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        resolve_device("tpu")
