"""The Sweep tab: what is swept and how many runs, refusals in words, the summary over seeds, the parallel-
coordinates axes, progressive submission and cancel, failed and refused runs, and a real tiny sweep."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from iceviz.app import sweep_state
from iceviz.app.state import ExplorerState
from iceviz.app.sweep_state import NONE, SweepState, aggregate, knob_choices, parallel_axes
from iceviz.runtime.job import Job, JobFailed
from iceviz.runtime.queue import JobQueue, server_queue
from tests.app.conftest import poll_until


def _explorer(spec: str = "synthetic:curve") -> ExplorerState:
    state = ExplorerState()
    state.source = next(k for k, v in state._sources.items() if v == spec)
    assert state.problem is not None
    return state


def _sweep(queue=None, **params) -> SweepState:
    return SweepState(_explorer(), queue=queue or JobQueue(slots=1), **params)


def test_the_plan_is_the_product_of_models_values_and_seeds(data_home):
    s = _sweep(models=["dfnn", "pinn"], seeds=3)
    assert s.plan.startswith("**6 runs** = 2 models × 3 seeds") and s.invalid == ""
    s.param.update(knob_1="width", values_1="16, 32", knob_2="lr", values_2="0.01,0.001")
    runs = s.planned()
    assert len(runs) == 24
    assert s.plan.startswith("**24 runs** = 2 models × 2 values of width × 2 values of lr × 3 seeds")
    assert runs[0] == {"model": "dfnn", "data": "synthetic:curve", "seed": 0, "width": 16, "lr": 0.01}
    assert [r["seed"] for r in runs[:3]] == [0, 1, 2] and runs[-1]["model"] == "pinn"
    s.param.update(seconds=20.0, epochs=None)
    assert "about 8.0 min of training on 1 worker" in s.plan  # 24 runs one after the other, 20 s each


def test_the_knobs_offered_are_those_every_chosen_model_uses(data_home):
    assert "div_weight" in knob_choices(["pinn", "pinn-dir"]) and "div_weight" not in knob_choices(["dfnn", "pinn"])
    assert {"seed", "seconds", "epochs", "name"}.isdisjoint(knob_choices(["dfnn"])) and "width" in knob_choices(["nn"])
    s = _sweep(models=["pinn"])
    s.param.update(knob_1="div_weight", values_1="0.02, 0.2")
    assert s.invalid == "" and s.plan.startswith("**4 runs**")
    s.models = ["pinn", "dfnn"]  # the dfNN has no penalty weight: the knob is dropped, and the user told
    assert s.knob_1 == NONE and "div_weight is no longer swept" in s.message
    assert "div_weight" not in s.param.knob_1.objects and s.plan.startswith("**4 runs** = 2 models × 2 seeds")


@pytest.mark.parametrize("knob, text, words", [
    ("width", "2000", "width=2000 is not allowed: an integer from 4 to 1024"),
    ("width", "abc", "width takes numbers: 'abc' is not one"),
    ("width", "3.5", "width takes whole numbers"),
    ("width", " , ", "give width at least one value, e.g. 64, 128"),
    ("width", "32, 32", "32 is given twice"),
    ("lr", "0.01, 5", "lr=5.0 is not allowed: a number from 1e-06 to 1"),
    ("activation", "tanh, swish", "activation is one of"),
    ("refit", "maybe", "refit is true or false"),
])
def test_a_bad_value_is_refused_with_what_the_knob_accepts(data_home, knob, text, words):
    s = _sweep(knob_1=knob, values_1=text)
    assert words in s.invalid and s.plan == ""
    assert s.launch() == 0 and words in s.message and s.message.startswith("The sweep did not start")
    assert not s.rows and not s.queue.jobs


def test_other_refusals_say_what_to_change(data_home):
    s = _sweep(knob_1="width", values_1="16, 32", knob_2="width", values_2="64")
    assert "width is chosen twice" in s.invalid
    s.param.update(knob_2=NONE, seconds=None, epochs=None)
    assert "give each run a budget" in s.invalid
    s.param.update(seconds=10.0, models=["dfnn", "pinn", "nn"], seeds=5, values_1="8, 16, 32")
    assert "45 runs is more than a sweep in the app may have (40)" in s.invalid
    s.param.update(models=[])
    assert s.invalid == "choose at least one model" and s.knob_1 == NONE
    s.param.update(models=["dfnn-aux"], seeds=1)
    assert "cannot serve dfnn-aux (needs surface elevation" in s.invalid


def test_the_summary_gives_mean_and_sample_spread_over_seeds_of_the_runs_done():
    """By hand: dfNN at width 32 has RMSE 1, 2, 3 (mean 2, sample std 1) and MAD 0.1, 0.3, 0.2 (mean 0.2,
    std 0.1); the NN's second seed failed, so it has one run: its mean is that run's and its spread NaN."""
    rows = [dict(model="dfnn", width=32, seed=k, status="done", rmse=r, mad=m, val_rmse=r / 2, seconds=s)
            for k, (r, m, s) in enumerate([(1.0, 0.1, 10.0), (2.0, 0.3, 12.0), (3.0, 0.2, 14.0)])]
    rows += [dict(model="nn", width=32, seed=0, status="done", rmse=0.5, mad=4.0, val_rmse=0.4, seconds=9.0),
             dict(model="nn", width=32, seed=1, status="failed", rmse=np.nan, mad=np.nan, val_rmse=np.nan,
                  seconds=np.nan)]
    out = aggregate(pd.DataFrame(rows), ["model", "width"])
    assert list(out["model"]) == ["nn", "dfnn"]  # best mean RMSE first
    nn, dfnn = out.iloc[0], out.iloc[1]
    assert (dfnn["done"], dfnn["runs"], nn["done"], nn["runs"]) == (3, 3, 1, 2)
    assert dfnn["rmse_mean"] == pytest.approx(2.0) and dfnn["rmse_std"] == pytest.approx(1.0)
    assert dfnn["mad_mean"] == pytest.approx(0.2) and dfnn["mad_std"] == pytest.approx(0.1)
    assert dfnn["val_rmse_mean"] == pytest.approx(1.0) and dfnn["val_rmse_std"] == pytest.approx(0.5)
    assert dfnn["seconds_mean"] == pytest.approx(12.0)
    assert nn["rmse_mean"] == 0.5 and math.isnan(nn["rmse_std"]) and nn["mad_mean"] == 4.0


def test_parallel_axes_put_each_setting_and_score_on_its_own_normalised_axis():
    """Categories evenly spaced, a learning rate over two decades in log scale, scores over the runs drawn."""
    rows = [dict(model=m, lr=lr, seed=0, status="done", rmse=r, mad=d)
            for m, lr, r, d in [("dfnn", 1e-2, 0.1, 1e-7), ("dfnn", 1e-4, 0.3, 2e-7), ("pinn", 1e-3, 0.2, 1e-2)]]
    rows.append(dict(model="nn", lr=1e-2, seed=0, status="failed", rmse=np.nan, mad=np.nan))
    axes, drawn = parallel_axes(pd.DataFrame(rows), {"model": ["dfnn", "pinn", "nn"], "lr": [1e-2, 1e-3, 1e-4]})
    assert [a.name for a in axes] == ["model", "lr", "rmse", "mad"] and len(drawn) == 3  # the failed run: no line
    model, lr, rmse, mad = axes
    assert list(model.positions) == [0.0, 0.0, 0.5] and model.ticks == [(0.0, "dfnn"), (0.5, "pinn"), (1.0, "nn")]
    assert lr.log and np.allclose(lr.positions, [1.0, 0.0, 0.5])
    assert [t for _, t in lr.ticks] == ["0.0001", "0.001", "0.01"]
    assert not rmse.log and np.allclose(rmse.positions, [0.0, 1.0, 0.5]) and rmse.ticks[0] == (0.0, "0.1")
    assert mad.log and mad.positions.min() == 0.0 and mad.positions.max() == 1.0  # 1e-7 to 1e-2: five decades
    for axis in axes:
        assert all(0.0 <= p <= 1.0 for p, _ in axis.ticks)
    axes, drawn = parallel_axes(pd.DataFrame(columns=["status"]), {"model": ["dfnn"]})  # nothing finished yet
    assert len(drawn) == 0 and axes[0].ticks == [(0.5, "dfnn")] and axes[1].ticks == []


def _failing_job(model: str, data, **kwargs) -> Job:
    def trainer():
        raise JobFailed(f"{model}: the loss became NaN at epoch 3; try a smaller learning rate")

    return Job(model, trainer)


def test_runs_are_submitted_a_few_at_a_time_and_cancel_stops_them_all(data_home, monkeypatch, jobs):
    monkeypatch.setattr(sweep_state, "SWEEP_WAITING", 1)
    s = _sweep(models=["dfnn", "nn"], seeds=2, seconds=600.0)
    assert s.launch(isolate=False) == 4
    jobs.extend(j for j in s.jobs if j is not None)
    # one slot: one run trains, one waits in the queue, two are not submitted yet
    assert [r["status"] for r in s.rows] == ["running", "queued", "pending", "pending"]
    assert len(s.queue.jobs) == 2 and s.running and "3 waiting for a free worker" in s.progress()[2]
    assert s.launch() == 0 and "A sweep is running" in s.message
    s.cancel()
    poll_until(s, lambda: not s.running, timeout=20)
    assert [r["status"] for r in s.rows] == ["cancelled"] * 4 and not s.queue.jobs
    assert s.progress()[:2] == (4, 4) and "4 cancelled" in s.progress()[2]
    s.poll()
    assert sum(j is not None for j in s.jobs) == 2  # the pending ones were never submitted


def test_failed_and_refused_runs_are_rows_with_their_error(data_home, monkeypatch):
    monkeypatch.setattr(sweep_state, "training_job", _failing_job)
    s = _sweep(models=["dfnn"], seeds=2, epochs=2)
    assert s.launch() == 2
    poll_until(s, lambda: not s.running)
    table = s.table()
    assert list(table["status"]) == ["failed", "failed"] and "the loss became NaN" in table["error"].iloc[0]
    assert table["rmse"].isna().all() and "2 failed" in s.progress()[2]
    summary = s.aggregate()
    assert summary["done"].tolist() == [0] and summary["runs"].tolist() == [2] and summary["rmse_mean"].isna().all()
    monkeypatch.undo()
    tight = _sweep(queue=JobQueue(slots=1, memory=1), models=["nn"], seeds=1, epochs=2)  # no job fits in 1 byte
    assert tight.launch() == 1
    assert tight.rows[0]["status"] == "refused" and "more than this server lets" in tight.rows[0]["error"]
    assert not tight.running and tight.progress()[:2] == (1, 1)


def test_a_real_tiny_sweep_trains_in_worker_processes_through_the_servers_queue(data_home):
    """Two models × two seeds at two epochs each, through the session's view of the server's queue (as the app
    does): four rows with finite scores, and a summary of two settings over two seeds each."""
    s = SweepState(_explorer(), queue=server_queue().session("test-sweep"), models=["dfnn", "nn"], seeds=2,
                   epochs=2, seconds=None)
    assert s.launch() == 4
    poll_until(s, lambda: not s.running, timeout=180)
    table = s.table()
    assert list(table["status"]) == ["done"] * 4, table["error"].tolist()
    assert list(table["epochs"]) == [2] * 4 and np.isfinite(table[["rmse", "mad", "val_rmse"]].to_numpy()).all()
    assert (table.loc[table["model"] == "dfnn", "mad"] < 1e-4).all()  # divergence-free by construction
    assert all(r["data"] == "synthetic:curve" for r in s.rows)
    summary = s.aggregate()
    assert sorted(summary["model"]) == ["dfnn", "nn"] and summary["done"].tolist() == [2, 2]
    assert np.isfinite(summary[["rmse_mean", "rmse_std"]].to_numpy()).all()
    axes, drawn = parallel_axes(table, s.levels)
    assert len(drawn) == 4 and [a.name for a in axes] == ["model", "rmse", "mad"]


def test_the_view_draws_the_planned_axes_then_one_line_per_run_done(data_home):
    from iceviz.app.sweep_view import SweepView

    view = SweepView(_sweep(models=["dfnn", "pinn"], knob_1="width", values_1="16, 32"))
    fig = view.plot
    assert fig.spines.data["x"] == [0, 1, 2, 3] and not fig.lines.data["xs"]  # model, width, RMSE, MAD
    assert "dfnn" in fig.ticks.data["text"] and "32" in fig.ticks.data["text"]
    assert "**8 runs**" in view.plan.object and not view.launch_button.disabled and view.cancel_button.disabled
    assert view.values[0].name == "Values of Width [units]" and view.values[1].disabled
    s = view.state
    s.levels = {"model": ["dfnn", "pinn"], "width": [16, 32]}
    s.rows = [dict(model="dfnn", width=16, seed=0, status="done", error="", rmse=0.2, mad=1e-7, val_rmse=0.2,
                   epochs=5, seconds=3.0),
              dict(model="pinn", width=32, seed=0, status="failed", error="the loss became NaN", rmse=None,
                   mad=None, val_rmse=None, epochs=None, seconds=None)]
    view._refresh()
    assert fig.lines.data["run"] == ["dfnn · width 16 · seed 0"] and fig.lines.data["ys"][0][:2] == [0.0, 0.0]
    assert view.table.value["status"].tolist() == ["done", "failed"]
    assert view.summary.value["done"].tolist() == ["1 of 1", "0 of 1"]
    assert "2 of 2 done" in view.progress_text.object and "1 failed" in view.progress_text.object
    view.values[0].value = "16, 5000"
    assert "not allowed" in view.invalid.object and view.launch_button.disabled
