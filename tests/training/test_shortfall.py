"""A run its time budget ends before it did its work says so: status 'cut short', with why, in the job, the CLI
and the app's card; runs that did their work, and epoch budgets, stay 'done'."""

from __future__ import annotations

import json
import threading
import time

import pytest

from iceviz.app.live import JobCard
from iceviz.cli import main
from iceviz.runtime.job import Control, Job, JobStatus
from iceviz.training.checks import STARVED_SHARE, shortfall
from iceviz.training.base import FitResult
from iceviz.training.trainers import make_trainer


def _busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


class _Clock:
    """What :func:`shortfall` reads of a control: the CPU share (a test may not depend on how busy the machine
    is), and an elapsed time past the budget (scoring after the budget ended), which the text must not quote."""

    def __init__(self, share: float):
        self.share = share

    def elapsed(self) -> float:
        return 61.7

    def cpu_share(self) -> float:
        return self.share


def test_only_a_time_limited_run_can_fall_short():
    starved = _Clock(0.0)
    assert shortfall(starved, budget=None, work="3 epochs", useful=False) == ""
    text = shortfall(starved, budget=30.0, work="3 of 400 planned epochs", useful=False)
    assert text.startswith("its 30 s budget ended it before its first useful result and with 0% of a CPU core "
                           "(the machine was busy), after 3 of 400 planned epochs: its scores are not meaningful")


@pytest.mark.parametrize("share, useful, reason", [
    (1.0, True, None), (STARVED_SHARE, True, None),
    (1.0, False, "before its first useful result,"),
    (0.3, True, "with 30% of a CPU core (the machine was busy),"),
])
def test_a_run_is_short_when_it_did_nothing_useful_or_was_starved(share, useful, reason):
    text = shortfall(_Clock(share), budget=60.0, work="400 epochs", useful=useful)
    assert text == "" if reason is None else f"its 60 s budget ended it {reason} after 400 epochs" in text


def test_cpu_share_counts_the_calling_threads_time_only():
    control = Control(snapshot_every=None)
    control.start_clock()
    time.sleep(0.2)  # waiting: no CPU time
    assert control.cpu_share() < 0.2
    worker = threading.Thread(target=_busy, args=(0.2,))
    worker.start()
    worker.join()
    assert control.cpu_share() < 0.2  # another thread's work is not this one's


class _Finished:
    """A trainer whose fit returns a result with the given shortfall."""

    def __init__(self, short: str):
        self.short = short

    def fit(self, control: Control) -> FitResult:
        return FitResult(epochs=3, steps=3, seconds=0.1, best_epoch=3, metrics={"rmse": 0.5}, shortfall=self.short)


def test_the_job_is_cut_short_with_its_result_and_the_card_says_why():
    short = Job("dfnn", lambda: _Finished("its 30 s budget ended it before its first useful result"))
    assert short.start().wait(10) is JobStatus.SHORT
    assert short.status.finished and short.status.completed and short.result.metrics["rmse"] == 0.5
    assert short.shortfall.startswith("its 30 s budget") and short.error is None
    card = JobCard(short, "dfnn")
    assert "cut short" in card.info.object and "Cut short: its 30 s budget ended it" in card.info.object
    assert card.progress.bar_color == "warning" and card.progress.value == 1000

    done = Job("dfnn", lambda: _Finished(""))
    assert done.start().wait(10) is JobStatus.DONE and done.shortfall == ""


def test_a_flux_run_its_budget_ends_early_in_its_plan_is_cut_short_an_epoch_budget_never():
    trainer = make_trainer("dfnn", "synthetic:curve", device="cpu", seed=0, planned_epochs=100_000, seconds=0.5)
    result = trainer.fit(Control(snapshot_every=None))
    assert result.stop_reason == "seconds"
    assert "budget ended it before its first useful result" in result.shortfall
    assert f"after {result.epochs} of 100000 planned epochs" in result.shortfall

    capped = make_trainer("dfnn", "synthetic:curve", device="cpu", seed=0, planned_epochs=100_000, epochs=3)
    assert capped.fit(Control(snapshot_every=None)).shortfall == ""


def test_the_cli_says_cut_short_and_keeps_its_scores(capsys):
    code = main(["train", "dfnn", "--data", "synthetic:curve", "--seconds", "0.5", "--set", "planned_epochs=100000",
                 "--device", "cpu", "--quiet", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["status"] == "cut short" and "before its first useful result" in summary["shortfall"]
    assert summary["rmse"] > 0  # the scores are there, marked as not meaningful
    assert "iceviz train: dfnn on synthetic:curve cut short: its" in captured.err


@pytest.mark.parametrize("budget", [dict(epochs=2), dict(seconds=60.0, epochs=2)])
def test_a_viscosity_run_that_ends_by_its_steps_is_never_short(budget):
    trainer = make_trainer("viscosity-pinn", "shelf:analytic?bbox=40000,80000,0,50000", device="cpu", seed=0,
                           **budget)
    assert trainer.fit(Control(snapshot_every=None)).shortfall == ""
