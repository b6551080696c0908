"""Training the flux family (dfNN, PINN, NN and their +dir / +aux variants).

Losses, in the problem's scaled units:

- data: MSE over both flux components on a mini-batch of observations;
- PINN: (1 - div_weight) · data + div_weight · mean |∇·q| on the batch, plus
  once per epoch a step on div_weight · mean |∇·q| at fresh uniform
  collocation points;
- +dir: (1 - dir_weight) · (the above) + dir_weight · (1 - mean cosine
  similarity between q and the velocity direction) on a random batch of
  guidance points.

Model selection and stopping use a validation set carved from the training
observations (whole flight lines, else whole tiles: :mod:`iceviz.data.splits`),
never the test set. After every epoch the validation RMSE is measured; the
weights with the lowest one are kept, and from half-way through the schedule
the run stops after ``patience`` epochs without a new lowest. The learning
rate is warmed up, then cosine-annealed to zero over ``planned_epochs`` (a
length set by the number of training points,
:func:`iceviz.models.registry.flux_size_defaults`), where the run ends at the
latest.

Then, with ``refit`` on, when the schedule ended by its plan or the patience
and the time budget leaves room for it, the run trains again from the same
initial weights on every training point, the validation ones included, for as
many epochs as validation chose, on the same schedule compressed to that
length: the held-out points chose *how long* to train, and then they are used
as data. On sparse surveys that matters: with five flight lines the validation
line is a fifth of the data. The reported validation RMSE stays the held-out
one of the chosen epoch.

The budgets are caps, never targets. An epoch cap cuts the planned schedule
short, so a run with a larger cap follows the same trajectory further and keeps
the best validation epoch of a longer stretch of it. A wall-clock budget that
would end the run before its plan anneals the schedule sooner (progress is the
larger of the epoch fraction and the wall-time fraction), so a short budget
still ends on a cold learning rate. A run that ends by its plan or its patience
gives the same weights whatever the budget and however busy the machine.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Callable

import numpy as np
import torch
import xarray as xr

from iceviz.data.problem import FluxProblem
from iceviz.data.splits import validation_mask
from iceviz.models.activations import SMOOTH_ACTIVATIONS
from iceviz.models.ensemble import FluxEnsemble, make_model
from iceviz.models.flux import FluxNet
from iceviz.models.registry import ModelSpec
from iceviz.training.device import as_tensor, resolve_device
from iceviz.training.fields import flux_grid_fields
from iceviz.runtime.job import Control
from iceviz.training.base import FitResult, Trainer
from iceviz.training.metrics import flux_scores, in_chunks, rmse
from iceviz.training.snapshot import Snapshot

PATIENCE_FROM = 0.5
"""Patience ends a run only from this fraction of the schedule on: before it the learning rate is too high
for a pause in the validation error to mean the fit is done."""
LIVE_TEST_POINTS = 4000
"""Live snapshots score a fixed random subset of this many test points (the final one scores all)."""
LIVE_MAD_POINTS = 2000
"""... and the divergence on this many of them (it needs a backward pass)."""
USEFUL_PLAN_SHARE = 0.25
"""A run its time budget ends before this share of its planned epochs is cut short: the rate is still high, the
weights far from what the plan reaches (the lesson's dfNN at 9-17 of its 400 epochs under classroom load)."""
REFIT_SAFETY = 1.25
"""A refit starts only if this many times its estimated duration (the first phase's seconds per epoch, scaled by
the point count, up to the kept epoch) fits in what is left of the time budget."""
LIVE_GRID_MAX = 50
"""Live snapshots map the fields on at most this many cells a side (the final one on the full grid),
so that making them costs a few per cent of training time."""
HEADLINE_METRICS = ("rmse", "mae", "mad", "rmse_phys", "mae_phys", "mad_phys", "val_rmse", "val_rmse_phys")
"""The scores a flux run reports (the CLI's summary line): a run ends failed unless every one is finite."""


def check_compatible(spec: ModelSpec, problem: FluxProblem, params: Any) -> None:
    """Raise ValueError when ``spec`` cannot train on ``problem`` with ``params``."""
    if spec.options.get("aux") and not problem.has_surface:
        raise ValueError(f"{spec.name} needs surface elevation (s), but {problem.spec} has none; use a model without -aux")
    if spec.options.get("direction") and problem.direction is None:
        raise ValueError(f"{spec.name} needs direction guidance (velocity), but {problem.spec} has none; "
                         "use a model without -dir")
    if spec.options.get("constraint") == "hard" and params.activation not in SMOOTH_ACTIVATIONS:
        raise ValueError(f"{spec.name} differentiates a stream function twice: activation must be one of "
                         f"{sorted(SMOOTH_ACTIVATIONS)}, not {params.activation!r}")


class FluxTrainer(Trainer):
    """Trains one flux model on one problem; makes snapshots and predictions in physical units.

    Parameters
    ----------
    spec : the registered model.
    problem : train / test observations and their scaling.
    params : hyper-parameters (``spec.make_params(...)``).
    device : ``auto``, ``cpu``, ``cuda``...
    grid_shape : evaluation grid for snapshot maps, default the problem's.
    """

    headline = HEADLINE_METRICS

    def __init__(self, spec: ModelSpec, problem: FluxProblem, params: Any, device: str = "auto",
                 grid_shape: tuple[int, int] | None = None):
        check_compatible(spec, problem, params)
        self.spec, self.problem, self.params = spec, problem, params
        self.device = resolve_device(device)
        self.grid_shape = grid_shape or problem.grid_shape
        torch.manual_seed(params.seed)
        self._rng = torch.Generator().manual_seed(params.seed)
        scale, dev = problem.scale, self.device
        self.val_mask, self.val_description = validation_mask(problem.train, problem.bounds, params.val_fraction,
                                                              params.seed)
        # every training point (the refit's), those the first phase fits, those held out to validate it
        xy, q = scale.xy_to_scaled(problem.train.xy), problem.train.q / scale.flux
        keep, held = ~self.val_mask, self.val_mask
        self.x_all, self.q_all = as_tensor(xy, dev), as_tensor(q, dev)
        self.x_train, self.q_train = as_tensor(xy[keep], dev), as_tensor(q[keep], dev)
        self.x_val, self.q_val = as_tensor(xy[held], dev), q[held]
        self.x_test = as_tensor(scale.xy_to_scaled(problem.test.xy), dev)
        self.q_test = problem.test.q / scale.flux
        self.direction = None
        if spec.options.get("direction"):
            d = problem.direction
            self.direction = (as_tensor(scale.xy_to_scaled(d.xy), dev), as_tensor(d.unit, dev))
        self.config = self._model_config()
        self.model: FluxNet = make_model(self.config)
        if self.model.surface is not None:  # s is an input known at every training point, validation ones too
            self.model.surface.fit(self.x_all, as_tensor(problem.train.s / scale.surface, dev))
        self.model.to(dev)
        self.surface_train = self.surface_all = self.surface_direction = None
        if self.model.surface is not None:  # the fitted surface is frozen: evaluate it once at fixed points
            self.surface_all = self._surface_at(self.x_all)
            fitted = torch.as_tensor(keep, device=dev)
            self.surface_train = (self.surface_all[0][fitted], self.surface_all[1][fitted])
            if self.direction is not None:
                self.surface_direction = self._surface_at(self.direction[0])
        self._initial_state = copy.deepcopy(self.model.state_dict())
        self._data = (self.x_train, self.q_train, self.surface_train)  # what the current phase fits
        self.optimizer = self._make_optimizer()
        n_test = len(self.q_test)
        self._live_test = np.sort(np.random.default_rng(params.seed).permutation(n_test)[:LIVE_TEST_POINTS])
        self.epoch = 0
        self.step = 0
        self.best_epoch = 0
        self.best_val = math.inf
        self.stop_reason = ""
        self.refitted = False
        self.losses: dict[str, float] = {}

    # -- set-up ---------------------------------------------------------------
    def _make_optimizer(self) -> torch.optim.Optimizer:
        p = self.params
        return torch.optim.AdamW(self.model.parameters(), lr=p.lr, weight_decay=p.weight_decay,
                                 **({"fused": True} if self.device.type in ("cpu", "cuda") else {}))

    def _scaled_corners(self) -> tuple[np.ndarray, np.ndarray]:
        """Lower-left and upper-right corners of the domain in scaled units."""
        xmin, xmax, ymin, ymax = self.problem.bounds
        corners = self.problem.scale.xy_to_scaled(np.array([[xmin, ymin], [xmax, ymax]]))
        return corners[0], corners[1]

    def _model_config(self) -> dict[str, Any]:
        p, problem, scale = self.params, self.problem, self.problem.scale
        lo, hi = self._scaled_corners()
        center = (lo + hi) / 2
        half = float(max(hi - lo) / 2)
        q_std = float(self.q_train.std().item()) or 1.0
        constraint = self.spec.options["constraint"]
        config: dict[str, Any] = dict(
            constraint=constraint, members=p.members, width=p.width, depth=p.depth, activation=p.activation,
            aux_derivative=p.aux_derivative, center=[float(c) for c in center], half=half,
            amplitude=q_std * half if constraint == "hard" else q_std,
        )
        if self.spec.options.get("aux"):
            s = problem.train.s / scale.surface
            config.update(surface=dict(features=800, length_scale=p.surface_length, ridge=1e-4, seed=p.seed),
                          surface_mean=float(s.mean()), surface_std=float(s.std()) or 1.0)
        return config

    def _surface_at(self, xy: torch.Tensor, chunk: int = 8192) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [self.model.surface.value_and_gradient(xy[i:i + chunk]) for i in range(0, len(xy), chunk)]
        return torch.cat([p[0] for p in parts]).detach(), torch.cat([p[1] for p in parts]).detach()

    # -- losses -----------------------------------------------------------------
    def _batch_loss(self, idx: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        p, options = self.params, self.spec.options
        x_fit, q_fit, s_fit = self._data
        x, q = x_fit[idx], q_fit[idx]
        n = len(x)
        surface = None if s_fit is None else (s_fit[0][idx], s_fit[1][idx])
        if self.direction is not None:
            # one network pass over the data batch and a batch of guidance points together
            xd, ud = self.direction
            j = torch.randint(len(xd), (min(p.batch_size, len(xd)),), generator=self._rng).to(self.device)
            x = torch.cat([x, xd[j]])
            if surface is not None:
                sd, gd = self.surface_direction
                surface = (torch.cat([surface[0], sd[j]]), torch.cat([surface[1], gd[j]]))
        # every term per member (K of them; one network: K = 1), so that the summed loss gives each member
        # exactly the gradient it would get alone; the terms shown are the members' means
        ensemble = isinstance(self.model, FluxEnsemble)
        member: dict[str, torch.Tensor] = {}
        if options["constraint"] == "soft":
            pred, div = self.model.members_and_divergence(x, surface) if ensemble else \
                self.model.flux_and_divergence(x, surface)
            member["data"] = ((pred[..., :n, :] - q) ** 2).mean(dim=(-2, -1))
            member["div"] = div[..., :n].abs().mean(dim=-1)
            loss = (1 - p.div_weight) * member["data"] + p.div_weight * member["div"]
        else:
            pred = self.model.members(x, surface) if ensemble else self.model(x, surface)
            member["data"] = ((pred[..., :n, :] - q) ** 2).mean(dim=(-2, -1))
            loss = member["data"]
        if self.direction is not None:
            cos = torch.nn.functional.cosine_similarity(pred[..., n:, :], ud[j], dim=-1, eps=1e-12)
            member["dir"] = 1 - cos.mean(dim=-1)
            loss = (1 - p.dir_weight) * loss + p.dir_weight * member["dir"]
        terms = {k: v.mean() for k, v in member.items()}
        terms["total"] = loss.mean()
        return loss.sum(), terms

    def _collocation_loss(self) -> torch.Tensor:
        lo, hi = self._scaled_corners()
        u = torch.rand(self.params.collocation, 2, generator=self._rng)
        x = (as_tensor(lo, torch.device("cpu")) + u * as_tensor(hi - lo, torch.device("cpu"))).to(self.device)
        if isinstance(self.model, FluxEnsemble):  # each member's own divergence, as in its data loss
            return self.params.div_weight * self.model.members_and_divergence(x)[1].abs().mean(dim=-1).sum()
        div = self.model.divergence(x, create_graph=True)
        return self.params.div_weight * div.abs().mean()

    def _lr_factor(self, progress: float) -> float:
        warm = self.params.warmup
        if warm > 0 and progress < warm:
            return progress / warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (progress - warm) / (1 - warm))))

    # -- the loop ---------------------------------------------------------------
    def fit(self, control: Control | None = None) -> FitResult:
        control = control or Control(snapshot_every=None)
        control.start_clock()
        self._select(control)
        if self._refit_due(control):
            self._refit(control)
        seconds = control.elapsed()
        planned = self.params.planned_epochs
        final, short = self.finish(control, f"after {self.epoch} epochs",
                                   self.params.seconds if self.stop_reason == "seconds" else None,
                                   f"{self.epoch} of {planned} planned epochs",
                                   useful=self.epoch >= USEFUL_PLAN_SHARE * planned)
        return FitResult(epochs=self.epoch, steps=self.step, seconds=seconds, best_epoch=self.best_epoch,
                         metrics=dict(final.metrics), losses=dict(self.losses), stop_reason=self.stop_reason,
                         refit=self.refitted, shortfall=short)

    def _select(self, control: Control) -> None:
        """The first phase: fit the points outside the validation set, keep the weights of the lowest validation
        RMSE, stop by the schedule, a budget or the patience."""
        best_train, best_state = math.inf, None
        while not self._stop(control):
            epoch_loss = self._epoch(control, lambda fraction: self._progress(control, fraction))
            self.epoch += 1
            val = self.validation_rmse()
            # the lowest validation RMSE chooses the kept weights; without a validation set, the training loss
            better = val < self.best_val if self.has_validation else epoch_loss < best_train
            if better:
                best_train, self.best_val, self.best_epoch = epoch_loss, val, self.epoch
                best_state = copy.deepcopy(self.model.state_dict())
            record = dict(step=self.step, epoch=self.epoch, seconds=control.elapsed(),
                          progress=self._progress(control, 0.0), lr=self.optimizer.param_groups[0]["lr"],
                          epoch_data_loss=epoch_loss, best_epoch=self.best_epoch,
                          **{f"loss_{k}": v for k, v in self.losses.items()})
            if self.has_validation:
                record["val_rmse"] = val
            control.record(record)
        if best_state is not None:
            self.model.load_state_dict(best_state)

    def _refit_due(self, control: Control) -> bool:
        """Whether to train again on every training point: ``refit`` is on, validation chose an epoch, the
        schedule ran its course (its plan or the patience ended it: an epoch cap leaves the kept epoch at a
        high learning rate, where replaying it without a validation set to choose is a gamble), and the
        time budget (if any) leaves :data:`REFIT_SAFETY` times the refit's estimated duration."""
        p = self.params
        if not (p.refit and self.has_validation and self.best_epoch > 0
                and self.stop_reason in ("schedule", "patience")):
            return False
        if p.seconds is None:
            return True
        per_epoch = control.elapsed() / max(self.epoch, 1) * len(self.x_all) / len(self.x_train)
        return control.elapsed() + REFIT_SAFETY * per_epoch * self.best_epoch <= p.seconds

    def _refit(self, control: Control) -> None:
        """The second phase: from the same initial weights, every training point, as many epochs as the kept
        epoch, on the same warm-up and cosine schedule compressed to that length, so that it ends on a cold
        learning rate (the kept epoch of an early patience stop was at a high one: replaying it to there gave
        a noisy end point). If the time budget runs out first, the first phase's weights stay."""
        p = self.params
        selected = copy.deepcopy(self.model.state_dict())
        self.model.load_state_dict(self._initial_state)
        self.optimizer = self._make_optimizer()
        self._data = (self.x_all, self.q_all, self.surface_all)
        try:
            for e in range(self.best_epoch):
                if p.seconds is not None and control.elapsed() >= p.seconds:
                    self.model.load_state_dict(selected)
                    return
                epoch_loss = self._epoch(control, lambda fraction: (e + fraction) / self.best_epoch)
                control.record(dict(step=self.step, epoch=e + 1, seconds=control.elapsed(),
                                    progress=(e + 1) / self.best_epoch, lr=self.optimizer.param_groups[0]["lr"],
                                    refit_data_loss=epoch_loss, best_epoch=self.best_epoch, phase="refit"))
        finally:
            self._data = (self.x_train, self.q_train, self.surface_train)
        self.refitted = True

    def _epoch(self, control: Control, progress_at: Callable[[float], float]) -> float:
        """One pass over the current phase's points (and, for the PINN, a collocation step); the learning rate
        follows ``progress_at(fraction of the epoch done)``. Returns the epoch-mean data loss."""
        p = self.params
        n = len(self._data[0])
        batch = min(p.batch_size, n)
        steps = math.ceil(n / batch)
        perm = torch.randperm(n, generator=self._rng).to(self.device)
        data_sum = 0.0
        self.model.train()
        for i in range(steps):
            control.tick()
            for group in self.optimizer.param_groups:
                group["lr"] = p.lr * self._lr_factor(progress_at(i / steps))
            loss, terms = self._batch_loss(perm[i * batch:(i + 1) * batch])
            self._check_finite(loss, terms)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.step += 1
            data_sum += float(terms["data"].detach())
            self.losses = {k: float(v.detach()) for k, v in terms.items()}
            if control.snapshot_due():
                control.publish(self.snapshot(control))
        if self.spec.options["constraint"] == "soft" and p.collocation > 0:
            control.tick()
            loss = self._collocation_loss()
            self._check_finite(loss, {"collocation": loss})
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.losses["collocation"] = float(loss.detach()) / p.members  # the members' mean, as every term
        return data_sum / steps

    @property
    def has_validation(self) -> bool:
        return len(self.q_val) > 0

    def _stop(self, control: Control) -> bool:
        """Whether the run ends now, with the reason kept in ``stop_reason``."""
        p = self.params
        if self.epoch >= p.planned_epochs:
            self.stop_reason = "schedule"
        elif self.epoch >= p.epochs:
            self.stop_reason = "epochs"
        elif p.seconds is not None and control.elapsed() >= p.seconds:
            self.stop_reason = "seconds"
        elif (self.has_validation and self.epoch - self.best_epoch >= p.patience
              and self._progress(control, 0.0) >= PATIENCE_FROM):
            self.stop_reason = "patience"
        return bool(self.stop_reason)

    def validation_rmse(self) -> float:
        """RMSE over the validation points now, scaled units (NaN without a validation set)."""
        if not self.has_validation:
            return math.nan
        return rmse(self.predict_scaled(self.x_val), self.q_val)

    def _progress(self, control: Control, epoch_fraction: float) -> float:
        return self.budget_progress(control, (self.epoch + epoch_fraction) / self.params.planned_epochs)

    def _check_finite(self, loss: torch.Tensor, terms: dict[str, torch.Tensor]) -> None:
        self.check_loss(loss, terms, f"epoch {self.epoch}, step {self.step}")

    # -- evaluation ---------------------------------------------------------------
    def predict_scaled(self, xy_scaled: torch.Tensor) -> np.ndarray:
        """Flux (N, 2) in scaled units at scaled positions (float64 numpy)."""
        with torch.no_grad():
            return in_chunks(self.model, xy_scaled)

    def divergence_scaled(self, xy_scaled: torch.Tensor) -> np.ndarray:
        """Divergence (N,) in scaled units by automatic differentiation (total derivative)."""
        return in_chunks(self.model.divergence, xy_scaled)

    def predict(self, xy: np.ndarray) -> np.ndarray:
        """Flux (N, 2) in m²/yr at EPSG:3031 positions (N, 2) in metres."""
        scale = self.problem.scale
        return self.predict_scaled(as_tensor(scale.xy_to_scaled(xy), self.device)) * scale.flux

    def evaluate(self, live: bool = False) -> dict[str, float]:
        """Test scores (scaled and physical); ``live`` scores a fixed random subset (see LIVE_TEST_POINTS)."""
        return self._score(live)[0]

    def _score(self, live: bool) -> tuple[dict[str, float], dict[str, np.ndarray]]:
        """Test scores and per-point error magnitudes (m²/yr) from one prediction pass."""
        idx = self._live_test if live else np.arange(len(self.q_test))
        x = self.x_test[torch.as_tensor(idx, device=self.device)]
        pred = self.predict_scaled(x)
        div = self.divergence_scaled(x[:LIVE_MAD_POINTS] if live else x)
        scores = flux_scores(pred, self.q_test[idx], div, self.problem.scale)
        xy = self.problem.test.xy[idx]
        errors = {"x": xy[:, 0], "y": xy[:, 1],
                  "error": np.hypot(*(pred - self.q_test[idx]).T) * self.problem.scale.flux}
        return scores, errors

    def grid_fields(self, max_cells: int | None = None) -> xr.Dataset:
        """Prediction, divergence and (where truth is known) error on the evaluation grid, physical units.

        ``max_cells`` caps the cells a side (keeping the aspect ratio) for cheaper live maps."""
        problem = self.problem
        shape = self.grid_shape
        if max_cells is not None and max(shape) > max_cells:
            factor = max_cells / max(shape)
            shape = (max(3, round(shape[0] * factor)), max(3, round(shape[1] * factor)))
        return flux_grid_fields(self.model, problem.scale, problem.bounds, shape, truth=problem.truth,
                                attrs={"model": self.spec.name, "data": problem.spec})

    def snapshot(self, control: Control, final: bool = False) -> Snapshot:
        """Metrics and fields now, in physical units; live snapshots score a subset of the test points
        on a coarser map grid, so that making one costs a few per cent of training."""
        was_training = self.model.training
        self.model.eval()
        metrics, errors = self._score(live=not final)
        metrics.update(epochs=self.epoch, steps=self.step)
        if final and self.has_validation:  # the kept epoch's, held out (a refit has fitted these points since)
            metrics.update(val_rmse=self.best_val, val_rmse_phys=self.best_val * self.problem.scale.flux)
        snap = Snapshot(
            model=self.spec.name, step=self.step, epoch=self.epoch,
            seconds=control.elapsed(), progress=1.0 if final else self._progress(control, 0.0),
            losses=dict(self.losses), metrics=metrics,
            fields=self.grid_fields(max_cells=None if final else LIVE_GRID_MAX),
            points=errors, device=str(self.device), final=final,
        )
        self.model.train(was_training)
        return snap
