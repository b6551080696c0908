"""Sweeps: the runs of a product of choices, and their rows after training on a local Dask cluster."""

from __future__ import annotations

import pytest

from iceviz.training.sweep import sweep_runs


def test_the_runs_are_the_product_in_a_fixed_order():
    runs = sweep_runs(["dfnn", "pinn"], ["synthetic:curve", "synthetic:edge"], [0, 1], {"lr": [0.01, 0.001]})
    assert len(runs) == 2 * 2 * 2 * 2
    assert runs[0] == {"model": "dfnn", "data": "synthetic:curve", "seed": 0, "lr": 0.01}
    assert runs[1] == {"model": "dfnn", "data": "synthetic:curve", "seed": 1, "lr": 0.01}  # seed innermost
    assert runs[-1] == {"model": "pinn", "data": "synthetic:edge", "seed": 1, "lr": 0.001}  # data outermost
    assert len({tuple(sorted(r.items())) for r in runs}) == len(runs)


def test_a_value_a_model_refuses_stops_the_sweep_before_any_training():
    with pytest.raises(ValueError, match="width"):
        sweep_runs(["dfnn"], ["synthetic:curve"], [0], {"width": [64, 100000]})
    with pytest.raises(ValueError):
        sweep_runs(["no-such-model"], ["synthetic:curve"], [0])
