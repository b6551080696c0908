"""What every family's trainer shares: how far a run is, its checks on itself, how a fit ends, what it reports.

A trainer (flux, viscosity, emulator) subclasses :class:`Trainer` and sets ``spec``, ``problem``, ``params``
(with ``lr`` and ``seconds``), ``model`` and :attr:`Trainer.headline`; it has its own ``fit(control)`` loop and
``snapshot(control, final)``, and ends its fit with :meth:`Trainer.finish`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from iceviz.runtime.job import Control
from iceviz.training.checks import check_finite_loss, check_finite_metrics, shortfall
from iceviz.training.snapshot import Snapshot


@dataclass
class FitResult:
    """What a finished run reports."""

    epochs: int
    steps: int
    seconds: float
    best_epoch: int
    metrics: dict[str, float]
    losses: dict[str, float] = field(default_factory=dict)
    stop_reason: str = ""
    refit: bool = False
    shortfall: str = ""
    """Why the run did not do the work it was asked for (see :func:`~iceviz.training.checks.shortfall`)."""


class Trainer:
    """The shared part of every family's trainer."""

    spec: Any
    problem: Any
    params: Any
    model: Any
    headline: tuple[str, ...] = ()
    """The scores a finished run must have finite (those the CLI's line reports; absent ones are skipped)."""

    @property
    def run_name(self) -> str:
        """'MODEL on DATA', as messages name the run."""
        return f"{self.spec.name} on {self.problem.spec}"

    def budget_progress(self, control: Control, done: float) -> float:
        """How far the run is, in [0, 1]: ``done`` (its share of its epoch or step budget) or its share of its time
        budget, whichever is further."""
        seconds = self.params.seconds
        by_time = control.elapsed() / seconds if seconds else 0.0
        return min(1.0, max(done, by_time))

    def check_loss(self, loss: Any, terms: dict[str, Any], where: str, lr: float | None = None) -> None:
        """Fail the run, naming ``where`` ('step 12'), every loss term and the learning rate (``lr``, else the
        configured one), when ``loss`` is not finite."""
        check_finite_loss(loss, terms, self.run_name, where, self.params.lr if lr is None else lr)

    def finish(self, control: Control, where: str, budget: float | None, work: str,
               useful: bool) -> tuple[Snapshot, str]:
        """The end of every fit: the model to eval mode, the final snapshot (its :attr:`headline` scores must be
        finite: ``where`` says how far the run got), published; and why the run fell short, if it did
        (``budget``: the time budget that ended it, None if something else did; ``work``: what it did;
        ``useful``: whether that reached its family's first useful result; see
        :func:`~iceviz.training.checks.shortfall`)."""
        self.model.eval()
        final = self.snapshot(control, final=True)
        check_finite_metrics(final.metrics, self.headline, self.run_name, where, self.params.lr)
        control.publish(final)
        return final, shortfall(control, budget, work, useful)
