"""The Sweep tab's state (no Panel here): what is swept over the explorer's region, its jobs, rows and summary.

A sweep trains the product of the chosen flux models, up to two hyper-parameters with a list of values each
and 1-5 seeds (:func:`~iceviz.training.sweep.sweep_runs`) on the explorer's current problem. Each run starts
from the Training tab's hyper-parameters for its model (the registry's, those the region sets, the user's
edits, as :meth:`~iceviz.app.state.ExplorerState.start` passes them), then takes the swept values, its seed
and the sweep's budget (seconds and / or epochs per run).

Runs wait in the session's view of the server's one queue, like every job of the app, and are **submitted
progressively**: at most :data:`SWEEP_WAITING` of them wait in the queue at a time (half of what a session
may have waiting, :data:`~iceviz.runtime.queue.PER_SESSION`, so Start training and the lesson still find
room); each :meth:`SweepState.poll` tops them up as runs start. A sweep larger than :data:`MAX_RUNS` runs is
refused with a message before anything trains. A run that fails, or that the queue refuses (too much
memory), is a row with its error; it never ends the sweep.

:func:`parallel_axes` turns the rows into the axes of a parallel-coordinates plot (settings, then test RMSE
and MAD), normalised to [0, 1] with their tick labels, for the view to draw.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
import param

from iceviz.app.state import ExplorerState
from iceviz.models.registry import REGISTRY, FluxParams, model_names
from iceviz.runtime.job import Job, JobStatus
from iceviz.runtime.queue import PER_SESSION, JobQueue, JobTooLarge, QueueFull, SessionQueue
from iceviz.training.sweep import run_row, sweep_runs
from iceviz.training.trainers import training_job

NONE = "(none)"
"""The hyper-parameter choice that sweeps nothing."""
MAX_SEEDS = 5
MAX_RUNS = 40
"""The most runs one sweep may have (a sweep in the app is meant to be small: the CLI's `iceviz sweep` is not)."""
SWEEP_WAITING = PER_SESSION // 2
"""The most runs of a sweep waiting in the server's queue at once (the rest are submitted as runs start)."""
NOT_SWEPT = ("name", "epochs", "seconds", "seed")
"""Hyper-parameters never offered as a swept knob: the budget and the seed have their own controls."""
PENDING, REFUSED = "pending", "refused"
"""Statuses of a run that is not a job of the queue: not submitted yet, or refused by the queue."""
FINISHED = {JobStatus.DONE.value, JobStatus.SHORT.value, JobStatus.FAILED.value, JobStatus.CANCELLED.value, REFUSED}
RUN_SCORES = ("rmse", "mad", "val_rmse")
"""The scores the tables show and aggregate (scaled units, :data:`~iceviz.training.sweep.SCORES`)."""
SCORE_AXES = {"rmse": "test RMSE", "mad": "mean |∇·q|"}
"""The parallel-coordinates plot's score axes, after the settings'."""
LOG_SPAN = 10.0
"""A positive numeric axis whose largest value is at least this many times its smallest is drawn in log scale."""


def knob_choices(models: Sequence[str]) -> list[str]:
    """The hyper-parameters that every model of ``models`` has and uses (in their class's order), the budget
    and seed excepted; none without models."""
    if not models:
        return []
    first = REGISTRY[models[0]].params
    return [k for k in first.param if k not in NOT_SWEPT
            and all(k in REGISTRY[m].params.param and REGISTRY[m].uses(k) for m in models)]


def example_values(model: str, knob: str) -> str:
    """Two values of ``knob`` that ``model`` accepts, as a user would type them (e.g. '64, 128')."""
    p = REGISTRY[model].params.param[knob]
    default = REGISTRY[model].make_params().param.values()[knob]
    if isinstance(p, param.Boolean):
        return "true, false"
    if isinstance(p, param.Selector):
        return ", ".join(str(v) for v in list(p.objects)[:2])
    lo, hi = p.bounds or (None, None)
    if isinstance(p, param.Integer):
        other = default * 2 if hi is None or default * 2 <= hi else default // 2
        return f"{default}, {other}"
    other = default / 10 if default else (hi or 1.0) / 10
    if lo is not None and other < lo:
        other = min(default * 2, hi if hi is not None else default * 2)
    return f"{default:g}, {other:g}"


def parse_values(models: Sequence[str], knob: str, text: str) -> list[Any]:
    """The values typed for ``knob`` (separated by commas), each checked against every model's bounds.

    Raises
    ------
    ValueError
        Naming the hyper-parameter, the value and what it accepts (none given, a repeat, a value that is not
        a number, outside the bounds, not one of the choices).
    """
    tokens = [t.strip() for t in text.split(",") if t.strip()]
    if not tokens:
        raise ValueError(f"give {knob} at least one value, e.g. {example_values(models[0], knob)}")
    p = REGISTRY[models[0]].params.param[knob]
    values = [_parse_one(p, knob, t) for t in tokens]
    repeated = sorted({str(v) for v in values if values.count(v) > 1})
    if repeated:
        raise ValueError(f"{knob}: {', '.join(repeated)} is given twice")
    for model in models:
        for value in values:
            REGISTRY[model].make_params(**{knob: value})  # the registry's message names the bounds and the doc
    return values


def _parse_one(p: param.Parameter, knob: str, token: str) -> Any:
    """One typed value as the parameter's type (a bound is checked by the registry after)."""
    if isinstance(p, param.Boolean):
        words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
        if token.lower() not in words:
            raise ValueError(f"{knob} is true or false, not {token!r}")
        return words[token.lower()]
    if isinstance(p, param.Selector):
        if token not in p.objects:
            raise ValueError(f"{knob} is one of {', '.join(map(str, p.objects))}, not {token!r}")
        return token
    try:
        number = float(token)
    except ValueError:
        raise ValueError(f"{knob} takes numbers: {token!r} is not one") from None
    if isinstance(p, param.Integer):
        if not number.is_integer():
            raise ValueError(f"{knob} takes whole numbers: {token!r} is not one")
        return int(number)
    return number


def _jobless_row(run: dict[str, Any], status: str, error: str = "") -> dict[str, Any]:
    """The row of a run that is not a job of the queue (pending, refused, cancelled before it was submitted),
    with the columns of :func:`~iceviz.training.sweep.run_row`'s."""
    return {**run, "status": status, "error": error, "epochs": None, "seconds": None}


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


class SweepState(param.Parameterized):
    """One browser session's sweep: its choices, its runs and their jobs, its rows.

    Parameters
    ----------
    explorer : the session's explorer state: the problem (region and data), the Training tab's
        hyper-parameters and device the runs start from.
    queue : where the runs wait (the session's view of the server's queue); a private queue by default.
    """

    models = param.ListSelector(default=["dfnn", "pinn"], objects=model_names("flux"),
                                doc="Models swept: each trains every combination of the values and seeds.")
    seeds = param.Integer(2, bounds=(1, MAX_SEEDS),
                          doc="Seeds per setting (0, 1, ...): their spread is the noise a difference must beat.")
    knob_1 = param.Selector(default=NONE, objects=[NONE, *(k for k in FluxParams.param if k not in NOT_SWEPT)],
                            doc="The first hyper-parameter swept (those every chosen model uses are offered).")
    values_1 = param.String("", doc="Its values, separated by commas.")
    knob_2 = param.Selector(default=NONE, objects=[NONE, *(k for k in FluxParams.param if k not in NOT_SWEPT)],
                            doc="The second hyper-parameter swept (optional).")
    values_2 = param.String("", doc="Its values, separated by commas.")
    seconds = param.Number(20.0, bounds=(0.0, 600.0), inclusive_bounds=(False, True), allow_None=True,
                           doc="Wall-clock budget per run [s]; empty for none.")
    epochs = param.Integer(None, bounds=(1, 1_000_000), allow_None=True,
                           doc="Epoch budget per run [epochs]; empty for none (the run's plan and patience end it).")
    plan = param.String("", doc="What a launch would run, in words (how many runs, of what, how long).")
    invalid = param.String("", doc="Why the sweep as chosen cannot be launched ('' when it can).")
    message = param.String("", doc="The latest message for the user about the sweep.")
    rows = param.List([], doc="One row per run of the launched sweep (settings, status, error, scores), in order.")

    def __init__(self, explorer: ExplorerState, queue: JobQueue | SessionQueue | None = None, **params: Any):
        super().__init__(**params)
        self.explorer = explorer
        self.queue = queue or JobQueue()
        self.runs: list[dict[str, Any]] = []
        """The launched sweep's runs (:func:`~iceviz.training.sweep.sweep_runs`)."""
        self.levels: dict[str, list[Any]] = {}
        """The launched sweep's settings: ``model`` and each swept knob, with their values in order."""
        self.jobs: list[Job | None] = []
        """Per run, its job once submitted (None before)."""
        self._overrides: list[dict[str, Any]] = []
        self._pending: deque[int] = deque()
        self._ended: dict[int, dict[str, Any]] = {}
        """Rows of the runs that never became a job of the queue (refused, or cancelled before)."""
        self._problem: Any = None
        self._nice, self._isolate = 0, True
        self._options()
        self._replan()
        explorer.param.watch(lambda event: self._replan(), ["problem"])

    # -- choosing ------------------------------------------------------------------------------------
    @param.depends("models", watch=True)
    def _options(self) -> None:
        """The knobs offered follow the models: a knob a model lacks or ignores is dropped, with a note."""
        choices = [NONE, *knob_choices(self.models)]
        dropped = [k for k in (self.knob_1, self.knob_2) if k not in choices]
        self.param.knob_1.objects = choices
        self.param.knob_2.objects = choices
        self.param.update(**{k: NONE for k in ("knob_1", "knob_2") if getattr(self, k) not in choices})
        if dropped:
            self.message = (f"{', '.join(dropped)} is no longer swept: not every chosen model uses it "
                            f"({', '.join(self.models) or 'no model chosen'}).")

    def grid(self) -> dict[str, list[Any]]:
        """The swept knobs and their values; ValueError with what is wrong."""
        out: dict[str, list[Any]] = {}
        if not self.models:  # no model, no knob (the knobs follow the models)
            return out
        for knob, text in ((self.knob_1, self.values_1), (self.knob_2, self.values_2)):
            if knob == NONE:
                continue
            if knob in out:
                raise ValueError(f"{knob} is chosen twice: pick two different hyper-parameters")
            out[knob] = parse_values(self.models, knob, text)
        return out

    def planned(self) -> list[dict[str, Any]]:
        """The runs a launch would train, in order; ValueError saying why none can be launched."""
        s = self.explorer
        if s.problem is None:
            raise ValueError("load a region with data first (pick a preset or drag a box on the map)")
        if not self.models:
            raise ValueError("choose at least one model")
        cannot = [f"{m} ({s.compatible(m)})" for m in self.models if s.compatible(m)]
        if cannot:
            raise ValueError(f"this region's data cannot serve {', '.join(cannot)}")
        if self.seconds is None and self.epochs is None:
            raise ValueError("give each run a budget: seconds, epochs or both")
        runs = sweep_runs(self.models, [s.spec], list(range(self.seeds)), self.grid())
        if len(runs) > MAX_RUNS:
            raise ValueError(f"{len(runs)} runs is more than a sweep in the app may have ({MAX_RUNS}): fewer "
                             f"models, values or seeds (or `iceviz sweep` on the command line)")
        return runs

    @param.depends("models", "seeds", "knob_1", "values_1", "knob_2", "values_2", "seconds", "epochs",
                   watch=True)
    def _replan(self) -> None:
        try:
            runs = self.planned()
        except ValueError as err:
            self.param.update(plan="", invalid=str(err))
            return
        factors = [_plural(len(self.models), "model")]
        factors += [f"{len(v)} value{'' if len(v) == 1 else 's'} of {k}" for k, v in self.grid().items()]
        factors.append(_plural(self.seeds, "seed"))
        text = f"**{_plural(len(runs), 'run')}** = {' × '.join(factors)}"
        if self.seconds is not None:
            slots = self.queue.slots
            total = math.ceil(len(runs) / slots) * self.seconds
            length = f"{total / 60:.1f} min" if total >= 90 else f"{total:.0f} s"
            text += (f"; {'at most' if self.epochs is not None else 'about'} {length} of training on "
                     f"{_plural(slots, 'worker')} at {self.seconds:g} s a run, more while other jobs of the "
                     f"server train")
        self.param.update(plan=text, invalid="")

    # -- running ---------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """Whether a launched run has not finished yet."""
        return any(row["status"] not in FINISHED for row in self.rows)

    def launch(self, nice: int = 0, isolate: bool = True) -> int:
        """Plan the chosen sweep and submit its first runs; returns how many runs it has (0, with
        :attr:`message` saying why, when nothing was launched).

        ``isolate`` trains each run in a worker process (what a server wants); ``nice`` lowers its priority.
        """
        if self.running:
            self.message = "A sweep is running: cancel it, or wait until it ends."
            return 0
        try:
            runs = self.planned()
        except ValueError as err:
            self.message = f"The sweep did not start: {err}."
            return 0
        grid = self.grid()
        s = self.explorer
        budget = {k: v for k, v in (("seconds", self.seconds), ("epochs", self.epochs)) if v is not None}
        bases = {m: {k: v for k, v in s.hyper[m].param.values().items() if k != "name"} for m in self.models}
        self.runs, self.levels = runs, {"model": list(self.models), **grid}
        self._overrides = [{**bases[r["model"]], "seconds": None, **budget,
                            **{k: v for k, v in r.items() if k not in ("model", "data")}} for r in runs]
        self._problem, self._nice, self._isolate = s.problem, nice, isolate
        self.jobs = [None] * len(runs)
        self._pending = deque(range(len(runs)))
        self._ended = {}
        self.message = ""
        self.rows = [self._row(i) for i in range(len(runs))]
        self.poll()
        return len(runs)

    def _row(self, i: int) -> dict[str, Any]:
        job = self.jobs[i]
        if job is not None:
            return run_row(self.runs[i], job)
        return self._ended.get(i, _jobless_row(self.runs[i], PENDING))

    def _submit(self) -> None:
        """Top up this sweep's runs waiting in the queue to :data:`SWEEP_WAITING` (the queue may refuse more)."""
        waiting = sum(job is not None and job.status is JobStatus.QUEUED for job in self.jobs)
        while self._pending and waiting < SWEEP_WAITING:
            i = self._pending[0]
            run = self.runs[i]
            job = training_job(run["model"], self._problem, device=self.explorer.device, snapshot_every=None,
                               nice=self._nice, isolate=self._isolate, **self._overrides[i])
            try:
                self.queue.submit(job)
            except JobTooLarge as err:  # this run alone: the others may fit
                self._ended[i] = _jobless_row(run, REFUSED, str(err))
            except QueueFull:  # the session's other tabs fill its line: the next poll tries again
                return
            else:
                self.jobs[i] = job
                waiting += job.status is JobStatus.QUEUED  # (it may have started at once)
            self._pending.popleft()

    def poll(self) -> bool:
        """Submit the next runs when there is room and refresh :attr:`rows`; True when a row changed."""
        self._submit()
        rows = [self._row(i) for i in range(len(self.runs))]
        changed = [r["status"] for r in rows] != [r["status"] for r in self.rows]
        if changed:
            self.rows = rows
        return changed

    def cancel(self) -> None:
        """Cancel the sweep: its runs in training or in the queue stop, those not yet submitted never start."""
        for i in self._pending:
            self._ended[i] = _jobless_row(self.runs[i], JobStatus.CANCELLED.value)
        self._pending.clear()
        for job in self.jobs:
            if job is not None:
                job.cancel()
        self.poll()

    def progress(self) -> tuple[int, int, str]:
        """(runs finished, runs, the state of the sweep in words: '3 of 8 done · 1 failed · 1 running · ...')."""
        counts: dict[str, int] = {}
        for row in self.rows:
            counts[row["status"]] = counts.get(row["status"], 0) + 1
        finished = sum(counts.get(s, 0) for s in FINISHED)
        parts = [f"**{finished} of {len(self.rows)} done**"]
        parts += [f"{counts[s]} {s}" for s in (JobStatus.SHORT.value, JobStatus.FAILED.value, REFUSED,
                                               JobStatus.CANCELLED.value,
                                               JobStatus.RUNNING.value, JobStatus.PAUSED.value) if counts.get(s)]
        queued = counts.get(JobStatus.QUEUED.value, 0) + counts.get(PENDING, 0)
        if queued:
            parts.append(f"{queued} waiting for a free worker")
        return finished, len(self.rows), " · ".join(parts)

    # -- results ---------------------------------------------------------------------------------------
    @property
    def setting_keys(self) -> list[str]:
        """The columns that tell one setting from another: ``model`` and the swept knobs."""
        return list(self.levels)

    def table(self) -> pd.DataFrame:
        """One row per run: its settings and seed, status, the scores (scaled units), epochs, seconds, error."""
        columns = [*self.setting_keys, "seed", "status", *RUN_SCORES, "epochs", "seconds", "error"]
        frame = pd.DataFrame(self.rows, columns=columns)
        for score in RUN_SCORES:
            frame[score] = pd.to_numeric(frame[score], errors="coerce")
        return frame

    def aggregate(self) -> pd.DataFrame:
        """One row per setting: how many of its seeds are done, and the mean and the sample standard deviation
        (n - 1; NaN with one seed) of each score and of the seconds over its finished runs; best mean RMSE
        first."""
        return aggregate(self.table(), self.setting_keys)


def aggregate(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Mean and spread over seeds of a sweep's :meth:`SweepState.table`, one row per setting of ``keys``.

    Columns: ``keys``, ``done`` (runs done), ``runs``, then ``SCORE_mean`` and ``SCORE_std`` for each of
    :data:`RUN_SCORES` and ``seconds_mean``. The standard deviation is the sample one (n - 1): NaN with a
    single run. Only runs whose status is ``done`` count towards the scores. Best mean RMSE first.
    """
    columns = [*keys, "done", "runs", *(f"{s}_{a}" for s in RUN_SCORES for a in ("mean", "std")), "seconds_mean"]
    if table.empty or not keys:
        return pd.DataFrame(columns=columns)
    table = table.assign(done=table["status"] == JobStatus.DONE.value,
                         seconds=pd.to_numeric(table["seconds"], errors="coerce"))
    groups = table.groupby(keys, sort=False, dropna=False)
    out = groups.agg(done=("done", "sum"), runs=("status", "size")).reset_index()
    finished = table[table["done"]].groupby(keys, sort=False, dropna=False)
    stats = finished.agg(**{f"{s}_{a}": (s, a) for s in RUN_SCORES for a in ("mean", "std")},
                         seconds_mean=("seconds", "mean")).reset_index()
    out = out.merge(stats, on=keys, how="left")
    out["done"] = out["done"].astype(int)
    return out[columns].sort_values("rmse_mean", na_position="last", kind="stable").reset_index(drop=True)


@dataclass
class Axis:
    """One vertical axis of a parallel-coordinates plot.

    Attributes
    ----------
    name : the column it shows (a setting, or a score).
    positions : per plotted run, where its line crosses this axis, in [0, 1].
    ticks : (position, label) pairs to write beside the axis.
    log : whether the axis is in log scale.
    """

    name: str
    positions: np.ndarray
    ticks: list[tuple[float, str]] = field(default_factory=list)
    log: bool = False


def _label(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _numeric_axis(name: str, values: np.ndarray, span: np.ndarray, tick_values: np.ndarray | None) -> Axis:
    """An axis of numbers, normalised over ``span`` (log scale when it covers a decade or more of positive
    numbers); ticks at ``tick_values``, else five evenly spaced ones."""
    span = span[np.isfinite(span)]
    log = bool(span.size) and bool((span > 0).all()) and span.max() >= LOG_SPAN * span.min()
    f = np.log10 if log else (lambda v: np.asarray(v, dtype=float))
    lo, hi = (f(span.min()), f(span.max())) if span.size else (0.0, 1.0)

    def norm(v: Any) -> np.ndarray:
        v = f(np.asarray(v, dtype=float))
        return np.full(np.shape(v), 0.5) if hi == lo else (v - lo) / (hi - lo)

    if tick_values is None and not span.size:
        tick_values = np.array([])
    elif tick_values is None:
        grid = np.linspace(lo, hi, 5) if hi > lo else np.array([lo])
        tick_values = 10 ** grid if log else grid
    ticks = [(float(norm(t)), f"{t:.3g}") for t in tick_values]
    return Axis(name, norm(values), ticks, log)


def parallel_axes(table: pd.DataFrame, levels: dict[str, list[Any]],
                  scores: Sequence[str] = tuple(SCORE_AXES)) -> tuple[list[Axis], pd.DataFrame]:
    """The axes of a parallel-coordinates plot of a sweep, and the runs it draws (those done with finite
    scores).

    One axis per setting of ``levels`` (its values in the sweep's order: categories, such as the model,
    evenly spaced; numbers at their value, in log scale over a decade or more, ticked at each value), then
    one per score of ``scores`` (ticked at five values over the plotted runs' range). Every position lies in
    [0, 1].
    """
    done = table[table["status"] == JobStatus.DONE.value] if len(table) else table
    if len(done):
        drawn = done[np.isfinite(done[list(scores)].to_numpy(dtype=float)).all(axis=1)].reset_index(drop=True)
    else:  # nothing to draw (before a launch the table has no setting columns yet)
        drawn = pd.DataFrame(columns=[*levels, "seed", *scores])
    axes = []
    for key, values in levels.items():
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        if numeric:
            axes.append(_numeric_axis(key, drawn[key].to_numpy(dtype=float), np.asarray(values, dtype=float),
                                      np.asarray(sorted(values), dtype=float)))
            axes[-1].ticks = [(pos, _label(v)) for (pos, _), v in zip(axes[-1].ticks, sorted(values))]
            continue
        where = {v: (i / (len(values) - 1) if len(values) > 1 else 0.5) for i, v in enumerate(values)}
        axes.append(Axis(key, np.array([where[v] for v in drawn[key]], dtype=float),
                         [(where[v], _label(v)) for v in values]))
    for score in scores:
        vals = drawn[score].to_numpy(dtype=float) if len(drawn) else np.array([])
        axes.append(_numeric_axis(score, vals, vals, None))
    return axes, drawn
