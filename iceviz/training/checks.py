"""Checks a training run makes on itself: a loss or a final score that is not finite ends it as failed; a run its
time budget ended before it did its work says so."""

from __future__ import annotations

import math
from typing import Any, Iterable

from iceviz.runtime.job import Control, JobFailed

STARVED_SHARE = 0.5
"""A run its time budget ended with less than this share of one CPU core (its training thread's CPU time over
its wall time) was starved by load: its scores say more about the machine than about the model."""


class TrainingFailed(JobFailed):
    """A training run that cannot go on (a NaN loss, a diverging fit); the message says why and what to try."""


def check_finite_loss(loss: Any, terms: dict[str, Any], run: str, where: str, lr: float) -> None:
    """Raise :class:`TrainingFailed` when ``loss`` is not finite, naming ``run`` ('MODEL on DATA'), ``where``
    ('step 12'), every loss term's value, and what to try."""
    value = float(loss.detach())
    if math.isfinite(value):
        return
    detail = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in terms.items())
    raise TrainingFailed(f"{run}: the loss became {value} at {where} ({detail}). Try a lower learning rate "
                         f"(now {lr:g}) or check the data for extreme values.")


def check_finite_metrics(metrics: dict[str, Any], keys: Iterable[str], run: str, where: str, lr: float) -> None:
    """Raise :class:`TrainingFailed` when a headline score of a finished run is NaN or infinite.

    Parameters
    ----------
    metrics : the run's final scores (other entries, such as per-forcing tables, are not looked at).
    keys : its family's headline scores, those the CLI's summary line reports; absent ones are skipped
        (a validation score without a validation set, the viscosity error without a true viscosity).
    run : 'MODEL on DATA', named in the message with every score that is not finite.
    where : how far it got ('after 12 epochs').
    lr : the learning rate, for the advice.
    """
    bad = {key: metrics[key] for key in keys if key in metrics and not math.isfinite(metrics[key])}
    if not bad:
        return
    detail = ", ".join(f"{key}={value}" for key, value in bad.items())
    what = f"scores {detail} are" if len(bad) > 1 else f"score {detail} is"
    raise TrainingFailed(f"{run}: the final {what} not finite ({where}). The fit diverged or the data hold "
                         f"extreme values: try a lower learning rate (now {lr:g}) or check the data for "
                         "extreme values.")


def shortfall(control: Control, budget: float | None, work: str, useful: bool) -> str:
    """Why a finished run did not do the work it was asked for, in words; "" when it did.

    Only a run that its time budget ended can fall short (``budget``: that budget [s]; None when its plan, an
    epoch or step budget, or its patience ended it): when it stopped before its first useful result
    (``useful`` False: each family says what that is), or with less than :data:`STARVED_SHARE` of a CPU core.
    ``work`` says what it did ("17 of 400 planned epochs"). Call it in the training thread (the CPU share is
    that thread's).
    """
    if not budget:
        return ""
    share = control.cpu_share()
    reasons = ([] if useful else ["before its first useful result"]) + \
        ([f"with {share:.0%} of a CPU core (the machine was busy)"] if share < STARVED_SHARE else [])
    if not reasons:
        return ""
    return (f"its {budget:g} s budget ended it {' and '.join(reasons)}, after {work}: its scores are not "
            "meaningful. Give it a larger budget, or run it when the machine is less busy")
