"""Training the viscosity PINN: ice-shelf viscosity from velocity and thickness through the SSA.

The loss (the reference's, DIFFICE_jax), in the scaled units of
:class:`~iceviz.models.viscosity.ShelfScales`::

    L = [MSE(û) + MSE(v̂) + w_h MSE(ĥ) + w_e mean(f₁² + f₂²) + w_f mean(g₁² + g₂²)] / L_init

with f the dimensionless SSA momentum residual at collocation points, g the
calving-front residual at front points, defaults w_h = 0.6, w_e = 0.05,
w_f = 0.1, and L_init the weighted sum at initialisation. Every Adam step
draws a fresh batch of velocity, thickness, collocation and front points
(500, 500, 500 and 250 by default: half the reference's 1,000-point batches,
which buys twice the steps per second and measured better per wall-clock
second, BENCHMARKS.md). Collocation points come from the valid velocity
cells, uniformly or, with ``resampling="residual"``, with density
∝ r² / mean(r²) + 1 over a candidate set re-scored every ``resample_every``
steps (r = |f|, the residual-based adaptive sampling that the reference
advertises but does not do). The last ``lbfgs_fraction`` of the budget (30 %
by default) runs L-BFGS on one fixed batch; ``anneal`` optionally lets the
Adam rate fall to zero by a cosine before it.

With ``subdomains`` > 1 (XPINN-style domain decomposition, for large shelves)
the shelf is cut into strips of equal point counts along its longer side,
each with its own networks, and the loss gains
``interface_weight · mean over interfaces of the mean squared jump`` of
ũ, ṽ, h̃, log μ̃ and the velocity gradient at points on each interface.

Model selection: a share ``val_fraction`` (10 % by default) of the
observation cells, whole square tiles of the shelf (a tenth of its longer
side), the same tiles of both rasters
(:func:`~iceviz.data.shelf.validation_split`), is held out: no velocity or
thickness batch draws from it, and the output scales (means and spreads of u,
v, h) come from the training cells only. Collocation, front and interface
points are physics, not observations, and still cover the whole shelf. Every
``RECORD_EVERY`` steps (Adam steps or L-BFGS iterations) and at the end of
each phase, the validation misfit, the loss's data part
MSE(û) + MSE(v̂) + w_h MSE(ĥ) (:func:`data_loss`) on the held-out cells, is
recorded in the history as ``val_misfit`` (comparable with the training
batches' ``loss_u`` + ``loss_v`` + w_h ``loss_h``). The weights with the lowest one,
over both phases, are restored at the end: those are scored, snapshotted and
checkpointed, and ``best_epoch`` is their step. With ``val_fraction`` 0 every
cell is trained on and the last weights are kept.

Scores: relative L2 errors ‖p − t‖ / ‖t‖ over the valid cells of u, v
(velocity raster) and h (thickness raster), training and validation cells
alike, and over the validation cells only (``val_u_rel_error``,
``val_v_rel_error``, ``val_h_rel_error``); of μ where the truth is known,
also split into the interior and the cells within ``BOUNDARY_BAND`` of the
shelf's edge; ``residual`` is the RMS of the dimensionless momentum residual
over the shelf (1 is the size of the driving stress ρ g' h₀² / L).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import torch
import xarray as xr
from scipy.ndimage import distance_transform_edt

from iceviz.data.shelf import Raster, ShelfProblem, validation_split
from iceviz.models.registry import ModelSpec
from iceviz.models.viscosity import ShelfScales, ViscosityPINN, strip_edges
from iceviz.physics.ssa import effective_strain_rate, front_residual, momentum_residual
from iceviz.training.device import as_tensor, resolve_device
from iceviz.runtime.job import Control
from iceviz.training.base import FitResult, Trainer
from iceviz.training.snapshot import Snapshot

USEFUL_STEPS = 2000
"""A run its time budget ends before this many steps is cut short: 30 s on one idle core (~1,500 steps) left the
reference synthetic shelf's viscosity error above 50 %, 60 s (~3,000) gave 5 % (BENCHMARKS.md)."""
BOUNDARY_BAND = 5000.0
"""Cells closer than this to the shelf's edge [m] are 'near-boundary' in the split viscosity error."""
RECORD_EVERY = 50
"""Steps between history records (losses, the validation misfit, and the viscosity error on a fixed subset
where truth is known), and at the end of each phase. Validating on 10 % of a shelf's cells costs one to two
Adam steps (shelf:analytic, Amery; one CPU thread): ~2-3 % of the run at this spacing, in either phase."""
RECORD_MU_POINTS = 5000
"""... scored on this many fixed random cells."""
RESIDUAL_CANDIDATES = 20_000
"""Residual-based sampling scores this many random candidate cells at a time."""
LIVE_GRID_MAX = 100
"""Live snapshots map the fields on at most this many cells a side (every k-th cell); the final one on all."""
LBFGS_ITERATIONS = 10
"""L-BFGS iterations per call (between two looks at the clock and the controls)."""
CHUNK = 16_384
"""Points per evaluation pass."""
HEADLINE_METRICS = ("mu_rel_error", "u_rel_error", "v_rel_error", "h_rel_error", "val_u_rel_error", "val_v_rel_error",
                    "val_h_rel_error", "residual")
"""The scores an inversion reports (the CLI's summary line; the mu_* one where the truth is known, the val_* ones with
a validation set): a run ends failed unless every one is finite. The interior and near-boundary split of the
viscosity error is not among them: either part may hold no cell of a shelf."""


def relative_error(pred: np.ndarray, true: np.ndarray) -> float:
    """‖pred − true‖₂ / ‖true‖₂ over the entries where both are finite."""
    ok = np.isfinite(pred) & np.isfinite(true)
    return float(np.linalg.norm(pred[ok] - true[ok]) / np.linalg.norm(true[ok]))


def data_loss(terms: Mapping[str, Any], thickness_weight: float) -> Any:
    """The loss's data part, MSE(û) + MSE(v̂) + w_h MSE(ĥ), from its terms (tensors or numbers).

    On the validation cells it is the validation misfit that chooses the kept weights: the
    objective the training minimises, so no component is favoured over the loss's own balance
    (relative L2 misfits would be, as ‖v‖ is small beside ‖u‖ on a shelf flowing along x).
    """
    return terms["u"] + terms["v"] + thickness_weight * terms["h"]


def state_copy(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of every weight (both networks of every sub-domain)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def near_boundary(valid: np.ndarray, x: np.ndarray, y: np.ndarray, band: float = BOUNDARY_BAND) -> np.ndarray:
    """(ny, nx) mask of the valid cells within ``band`` metres of an invalid cell or the raster's edge."""
    padded = np.pad(valid, 1, constant_values=False)
    spacing = (abs(float(y[1] - y[0])) if len(y) > 1 else 1.0, abs(float(x[1] - x[0])) if len(x) > 1 else 1.0)
    distance = distance_transform_edt(padded, sampling=spacing)[1:-1, 1:-1]
    # a cell centre is half a cell from the edge of its own cell: measure to the ice edge, not the next centre
    return valid & (distance - 0.5 * min(spacing) < band)


def interface_points(xhat: np.ndarray, edge: float, axis: int, spacing: float) -> np.ndarray:
    """Points on the interface line x̂[axis] = ``edge`` inside the shelf: the data points (normalised, (N, 2))
    within one and a half grid ``spacing`` of it, moved onto it."""
    near = xhat[np.abs(xhat[:, axis] - edge) < 1.5 * spacing].copy()
    near[:, axis] = edge
    return np.unique(near, axis=0)


class ViscosityTrainer(Trainer):
    """Trains a :class:`ViscosityPINN` on one shelf; snapshots maps of μ, residuals and misfits.

    Parameters
    ----------
    spec : the registered model (``viscosity-pinn``).
    problem : the shelf.
    params : hyper-parameters (``spec.make_params(...)``).
    device : ``auto``, ``cpu``, ``cuda``...
    grid_shape : unused (maps are on the shelf's own rasters); accepted for the common trainer signature.

    Attributes
    ----------
    val_v, val_h : masks of the validation cells over the problem's velocity and thickness points.
    best_epoch, best_val : the step and the validation misfit of the lowest one yet.
    """

    headline = HEADLINE_METRICS

    def __init__(self, spec: ModelSpec, problem: ShelfProblem, params: Any, device: str = "auto",
                 grid_shape: tuple[int, int] | None = None):
        self.spec, self.problem, self.params = spec, problem, params
        self.device = dev = resolve_device(device)
        torch.manual_seed(params.seed)
        self._rng = torch.Generator().manual_seed(params.seed)
        xy_v, uv = problem.velocity_points()
        xy_h, h = problem.thickness_points()
        val_v, val_h = validation_split(problem, params.val_fraction, params.seed)
        self.val_v, self.val_h = val_v, val_h  # masks over the velocity and thickness points: held out
        # the cells' positions make the domain; the observed values scale from the training cells only
        self.scales = sc = ShelfScales.from_data(xy_v, uv[~val_v], h[~val_h])
        uv_hat, h_hat = sc.normalise(uv, h)
        x_vel, x_thk = sc.to_input(xy_v), sc.to_input(xy_h)
        self.x_vel = as_tensor(x_vel, dev)  # every valid velocity cell: where collocation points are drawn
        self.x_uv, self.uv_hat = as_tensor(x_vel[~val_v], dev), as_tensor(uv_hat[~val_v], dev)
        self.x_thk, self.h_hat = as_tensor(x_thk[~val_h], dev), as_tensor(h_hat[~val_h], dev)
        self.x_val_uv, self.uv_val_hat = as_tensor(x_vel[val_v], dev), as_tensor(uv_hat[val_v], dev)
        self.x_val_h, self.h_val_hat = as_tensor(x_thk[val_h], dev), as_tensor(h_hat[val_h], dev)
        self._val_rms = dict(u=_rms(uv[val_v, 0]), v=_rms(uv[val_v, 1]), h=_rms(h[val_h]))  # [m/a], [m]
        self.x_front, self.normals = as_tensor(sc.to_input(problem.front), dev), as_tensor(problem.normals, dev)
        edges, axis = strip_edges(x_vel, params.subdomains, sc)
        self.model = ViscosityPINN(sc, params.width, params.depth, params.mu_width, params.mu_depth,
                                   edges=edges, axis=axis, separate_thickness=params.separate_thickness).to(dev)
        spacing = max(problem.velocity.spacing / sc.x_r, problem.velocity.spacing / sc.y_r)
        self.x_interfaces = [as_tensor(interface_points(x_vel, e, axis, spacing), dev) for e in edges]
        self.optimizer = self._adam()
        self._loss_scale: float | None = None
        self._candidates: torch.Tensor | None = None  # residual-based sampling: candidate indices and weights
        self._weights: torch.Tensor | None = None
        truth_rng = np.random.default_rng(params.seed)
        self._truth = None
        if problem.has_truth:
            xy_mu, mu = problem.velocity.points("mu")
            pick = np.sort(truth_rng.permutation(len(xy_mu))[:RECORD_MU_POINTS])
            self._truth = (as_tensor(sc.to_input(xy_mu[pick]), dev), mu[pick, 0])
        self.epoch = 0
        self.step = 0
        self.phase = "adam"
        self.losses: dict[str, float] = {}
        self.lbfgs_failed = False
        self.best_val = math.inf
        self.best_epoch = 0
        self._best_state: dict[str, torch.Tensor] | None = None
        self._recorded_step: int | None = None

    @property
    def has_validation(self) -> bool:
        """Whether observation cells are held out (``val_fraction`` > 0 and a split was possible)."""
        return bool(self.val_v.any())

    @property
    def config(self) -> dict[str, Any]:
        """The network's description (what a checkpoint needs to rebuild it)."""
        return self.model.config

    def _adam(self) -> torch.optim.Adam:
        # fused: one kernel for all 28 parameter tensors instead of a Python loop (~2 ms a step on a CPU)
        return torch.optim.Adam(self.model.parameters(), lr=self.params.lr, fused=True)

    # -- batches ------------------------------------------------------------------------
    def _pick(self, n: int, k: int) -> torch.Tensor:
        return torch.randint(n, (min(k, n),), generator=self._rng).to(self.device)

    def _collocation(self) -> torch.Tensor:
        p = self.params
        if p.resampling == "residual":
            if self._weights is None or self.step % p.resample_every == 0:
                self._score_candidates()
            j = torch.multinomial(self._weights, p.collocation, replacement=True, generator=self._rng)
            return self.x_vel[self._candidates[j].to(self.device)]
        return self.x_vel[self._pick(len(self.x_vel), p.collocation)]

    def _score_candidates(self) -> None:
        """Residual-based sampling: density ∝ r² / mean(r²) + 1 over a fresh random candidate set."""
        cand = torch.randint(len(self.x_vel), (min(RESIDUAL_CANDIDATES, len(self.x_vel)),), generator=self._rng)
        with torch.no_grad():
            f1, f2 = momentum_residual(*self.model.jets(self.x_vel[cand.to(self.device)], 2), buoyancy=1.0)
            r2 = (f1**2 + f2**2).cpu().double()
        self._candidates, self._weights = cand, r2 / r2.mean().clamp_min(1e-30) + 1.0

    def batch(self) -> dict[str, torch.Tensor]:
        """One fresh batch: velocity and thickness observations (training cells only), collocation and
        front points (normalised inputs and targets)."""
        p = self.params
        iv, ih = self._pick(len(self.x_uv), p.batch_size), self._pick(len(self.x_thk), p.batch_size)
        jf = self._pick(len(self.x_front), p.front_points)
        interfaces = {f"x_interface_{k}": x[self._pick(len(x), p.interface_points)]
                      for k, x in enumerate(self.x_interfaces)}
        return dict(x_vel=self.x_uv[iv], uv=self.uv_hat[iv], x_thk=self.x_thk[ih], h=self.h_hat[ih],
                    x_col=self._collocation(), x_front=self.x_front[jf], normals=self.normals[jf], **interfaces)

    # -- loss ------------------------------------------------------------------------
    def loss_terms(self, b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The unweighted loss terms on a batch (scaled units)."""
        model = self.model
        n = len(b["x_vel"])
        pred = model.flow_values(torch.cat([b["x_vel"], b["x_thk"]]))
        pred_v, pred_h = pred[:n], pred[n:, 2]
        # the front condition needs first derivatives only: its own, cheaper, order-1 pass
        f1, f2 = momentum_residual(*model.jets(b["x_col"], 2), buoyancy=1.0)
        u, v, h, mu = model.jets(b["x_front"], 1)
        g1, g2 = front_residual(u, v, h.value, mu.value, b["normals"][:, 0], b["normals"][:, 1], buoyancy=1.0)
        terms = dict(u=((pred_v[:, 0] - b["uv"][:, 0]) ** 2).mean(), v=((pred_v[:, 1] - b["uv"][:, 1]) ** 2).mean(),
                     h=((pred_h - b["h"]) ** 2).mean(), equation=(f1**2 + f2**2).mean(), front=(g1**2 + g2**2).mean())
        if self.x_interfaces:
            terms["interface"] = sum(model.interface_mismatch(k, b[f"x_interface_{k}"])
                                     for k in range(len(self.x_interfaces))) / len(self.x_interfaces)
        return terms

    def total_loss(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        p = self.params
        loss = (data_loss(terms, p.thickness_weight) + p.equation_weight * terms["equation"]
                + p.front_weight * terms["front"])
        if "interface" in terms:
            loss = loss + p.interface_weight * terms["interface"]
        if self._loss_scale is None:
            self._loss_scale = float(loss.detach()) or 1.0
        return loss / self._loss_scale

    def _evaluate_loss(self, b: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        terms = self.loss_terms(b)
        loss = self.total_loss(terms)
        terms["total"] = loss
        return loss, terms

    # -- the loop ------------------------------------------------------------------------
    def _progress(self, control: Control) -> float:
        return self.budget_progress(control, self.step / self.params.epochs)

    def fit(self, control: Control | None = None) -> FitResult:
        """Adam on fresh batches, then (``lbfgs_fraction`` > 0) L-BFGS on a fixed batch, until the budget is
        spent; then back to the weights of the lowest validation misfit, if there is a validation set."""
        control = control or Control(snapshot_every=None)
        p = self.params
        control.start_clock()
        self.model.train()
        while self._progress(control) < 1.0:
            control.tick()
            if self.phase == "adam" and p.lbfgs_fraction > 0 and not self.lbfgs_failed and self._progress(control) >= 1 - p.lbfgs_fraction:
                self._end_phase(control)
                self._start_lbfgs()
            before = self.step
            if self.phase == "adam":
                self._set_lr(self._progress(control))
            terms = self._adam_step() if self.phase == "adam" else self._lbfgs_step()
            self.losses = {k: float(v.detach()) for k, v in terms.items()}
            self.epoch = self.step
            if self.step // RECORD_EVERY > before // RECORD_EVERY:
                control.record(self._record(control))
            if control.snapshot_due():
                control.publish(self.snapshot(control))
        self._end_phase(control)
        seconds = control.elapsed()
        if self._best_state is not None:
            self.model.load_state_dict(self._best_state)
        final, short = self.finish(control, f"after {self.step} steps",
                                   p.seconds if p.seconds and self.step < p.epochs else None, f"{self.step} steps",
                                   useful=self.step >= USEFUL_STEPS)
        return FitResult(epochs=self.epoch, steps=self.step, seconds=seconds, shortfall=short,
                         best_epoch=self.best_epoch if self.has_validation else self.epoch,
                         metrics=dict(final.metrics), losses=dict(self.losses))

    def _end_phase(self, control: Control) -> None:
        """Record (and validate) the weights at the end of a phase, unless this step was just recorded."""
        if self._recorded_step != self.step:
            control.record(self._record(control))

    def _set_lr(self, progress: float) -> None:
        """Constant ``lr``, then (``anneal`` > 0) a cosine fall to zero over the last ``anneal`` of the Adam phase."""
        p = self.params
        end = 1.0 - p.lbfgs_fraction
        start = end * (1.0 - p.anneal)
        lr = p.lr
        if p.anneal > 0 and progress > start:
            lr = 0.5 * p.lr * (1.0 + math.cos(math.pi * min(1.0, (progress - start) / (end - start))))
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def _adam_step(self) -> dict[str, torch.Tensor]:
        loss, terms = self._evaluate_loss(self.batch())
        self._check_finite(loss, terms)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        return terms

    def _start_lbfgs(self) -> None:
        self.phase = "lbfgs"
        self._fixed = self.batch()
        self.optimizer = torch.optim.LBFGS(self.model.parameters(), lr=1.0, max_iter=LBFGS_ITERATIONS,
                                           history_size=50, line_search_fn="strong_wolfe",
                                           tolerance_grad=1e-9, tolerance_change=1e-12)

    def _lbfgs_step(self) -> dict[str, torch.Tensor]:
        """One L-BFGS call (up to LBFGS_ITERATIONS iterations). A non-finite loss restores the weights from
        before the call and goes back to Adam for the rest of the budget (noted as ``lbfgs_failed``)."""
        saved = state_copy(self.model)
        last: dict[str, torch.Tensor] = {}

        def closure() -> torch.Tensor:
            self.optimizer.zero_grad(set_to_none=True)
            loss, terms = self._evaluate_loss(self._fixed)
            if torch.isfinite(loss):
                loss.backward()
            last.update(terms)
            return loss

        group = self.optimizer.param_groups[0]
        group["max_iter"] = max(1, min(LBFGS_ITERATIONS, self.params.epochs - self.step))  # stay within the epochs
        group["max_eval"] = group["max_iter"] * 5 // 4 + 1
        first = group["params"][0]
        done = int(self.optimizer.state[first].get("n_iter", 0))
        self.optimizer.step(closure)
        iterations = int(self.optimizer.state[first].get("n_iter", 0)) - done
        finite = torch.isfinite(last["total"]) and all(torch.isfinite(v).all() for v in self.model.parameters())
        if not finite:
            self.model.load_state_dict(saved)
            self.lbfgs_failed = True
            self.phase, self.optimizer = "adam", self._adam()
            return self._adam_step()
        if iterations == 0:  # converged on this batch: take a fresh one
            self._start_lbfgs()
        self.step += max(1, iterations)
        return last

    def _record(self, control: Control) -> dict[str, Any]:
        """The history record of this step; with a validation set, validates (:meth:`_validate`) too."""
        self._recorded_step = self.step
        record = dict(step=self.step, epoch=self.epoch, phase=self.phase, seconds=control.elapsed(),
                      progress=self._progress(control), **{f"loss_{k}": v for k, v in self.losses.items()})
        if self.has_validation:
            record["val_misfit"] = self._validate()
            record["best_epoch"] = self.best_epoch
        if self._truth is not None:
            with torch.no_grad():
                mu = self.model.physical(self._truth[0])["mu"].double().cpu().numpy()
            record["mu_rel_error"] = relative_error(mu, self._truth[1])
        return record

    def _validate(self) -> float:
        """The validation misfit now; a copy of the weights is kept when it is the lowest yet."""
        misfit = data_loss(self.validation_terms(), self.params.thickness_weight)
        if misfit < self.best_val:
            self.best_val, self.best_epoch, self._best_state = misfit, self.step, state_copy(self.model)
        return misfit

    def validation_terms(self) -> dict[str, float]:
        """The loss's data terms MSE(û), MSE(v̂), MSE(ĥ) over the validation cells (scaled units)."""
        with torch.no_grad():
            duv = (self.model.flow_values(self.x_val_uv)[:, :2] - self.uv_val_hat).double()
            dh = (self.model.flow_values(self.x_val_h)[:, 2] - self.h_val_hat).double()
        return dict(u=float(duv[:, 0].square().mean()), v=float(duv[:, 1].square().mean()),
                    h=float(dh.square().mean()))

    def validation_errors(self, terms: Mapping[str, float]) -> dict[str, float]:
        """Relative L2 misfits ‖p − t‖ / ‖t‖ of u, v, h [1] over the validation cells, from their
        :meth:`validation_terms`.

        Physical and scaled differences differ by the output's scale s (u_r, v_r or h₀; the means
        cancel): over n cells ‖p − t‖ = s √(n MSE) and ‖t‖ = √n RMS(t), so the ratio is s √MSE / RMS(t).
        """
        sc = self.scales
        scale = dict(u=sc.u_r, v=sc.v_r, h=sc.h0)
        return {k: scale[k] * math.sqrt(terms[k]) / self._val_rms[k] for k in ("u", "v", "h")}

    def _check_finite(self, loss: torch.Tensor, terms: dict[str, torch.Tensor]) -> None:
        self.check_loss(loss, terms, f"step {self.step}")

    # -- evaluation ------------------------------------------------------------------------
    def predict(self, xy: np.ndarray, derivatives: bool = False) -> dict[str, np.ndarray]:
        """u, v [m/a], h [m], μ [Pa·s] at positions (N, 2) [m]; with ``derivatives`` also the dimensionless
        momentum residual (``residual_x``, ``residual_y``) and the effective strain rate [1/a]."""
        sc = self.scales
        x = as_tensor(sc.to_input(xy), self.device)
        parts: list[dict[str, np.ndarray]] = []
        for i in range(0, len(x), CHUNK):
            xc = x[i:i + CHUNK]
            with torch.no_grad():
                out = {k: v for k, v in self.model.physical(xc).items()}
                if derivatives:
                    u, v, h, mu = self.model.jets(xc, 2)
                    out["residual_x"], out["residual_y"] = momentum_residual(u, v, h, mu, buoyancy=1.0)
                    out["strain_rate"] = effective_strain_rate(u, v) * (sc.speed / sc.length)
            parts.append({k: t.double().cpu().numpy() for k, t in out.items()})
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}

    def front_rms(self) -> float:
        """RMS of the dimensionless calving-front residual over all front points."""
        with torch.no_grad():
            u, v, h, mu = self.model.jets(self.x_front, 1)
            g1, g2 = front_residual(u, v, h.value, mu.value, self.normals[:, 0], self.normals[:, 1], buoyancy=1.0)
        return float(torch.sqrt((g1**2 + g2**2).mean()))

    def grid_fields(self, stride: int = 1) -> tuple[xr.Dataset, dict[str, float]]:
        """Maps on the shelf's rasters (every ``stride``-th cell) and the scores computed from them."""
        problem = self.problem
        vel, thk = _every(problem.velocity, stride), _every(problem.thickness, stride)
        ok = vel.valid("u") & vel.valid("v")
        xx, yy = np.meshgrid(vel.x, vel.y)
        pred = self.predict(np.column_stack([xx[ok], yy[ok]]), derivatives=True)
        maps = {k: _fill(ok, v) for k, v in pred.items()}
        ok_h = thk.valid("h")
        xh, yh = np.meshgrid(thk.x, thk.y)
        h_pred = _fill(ok_h, self.predict(np.column_stack([xh[ok_h], yh[ok_h]]))["h"])
        obs = vel.fields
        data = {
            "mu": (maps["mu"], "Pa s", "effective viscosity (inferred)"),
            "u": (maps["u"], "m yr-1", "ice velocity, x component (network)"),
            "v": (maps["v"], "m yr-1", "ice velocity, y component (network)"),
            "u_misfit": (maps["u"] - obs["u"], "m yr-1", "network minus observed velocity, x"),
            "v_misfit": (maps["v"] - obs["v"], "m yr-1", "network minus observed velocity, y"),
            "strain_rate": (maps["strain_rate"], "yr-1", "effective strain rate"),
            "residual_x": (maps["residual_x"], "1", "SSA momentum residual, x (in units of the driving stress)"),
            "residual_y": (maps["residual_y"], "1", "SSA momentum residual, y (in units of the driving stress)"),
            "residual": (np.hypot(maps["residual_x"], maps["residual_y"]), "1", "SSA momentum residual magnitude"),
        }
        metrics = {
            "u_rel_error": relative_error(maps["u"], obs["u"]),
            "v_rel_error": relative_error(maps["v"], obs["v"]),
            "h_rel_error": relative_error(h_pred, thk.fields["h"]),
            "residual": float(np.sqrt(np.nanmean(maps["residual_x"] ** 2 + maps["residual_y"] ** 2))),
            "front_residual": self.front_rms(),
        }
        if problem.has_truth:
            true = obs["mu"]
            data["mu_true"] = (true, "Pa s", "effective viscosity (truth)")
            data["mu_error"] = ((maps["mu"] - true) / true, "1", "relative viscosity error (inferred - truth) / truth")
            edge = near_boundary(problem.velocity.valid("mu"), problem.velocity.x, problem.velocity.y)[::stride, ::stride]
            metrics["mu_rel_error"] = relative_error(maps["mu"], true)
            metrics["mu_rel_error_interior"] = relative_error(np.where(edge, np.nan, maps["mu"]), true)
            metrics["mu_rel_error_boundary"] = relative_error(np.where(edge, maps["mu"], np.nan), true)
        variables = {k: (("y", "x"), v, {"units": u, "long_name": n}) for k, (v, u, n) in data.items()}
        variables["h"] = (("y_h", "x_h"), h_pred, {"units": "m", "long_name": "ice thickness (network)"})
        variables["h_misfit"] = (("y_h", "x_h"), h_pred - thk.fields["h"],
                                 {"units": "m", "long_name": "network minus observed thickness"})
        variables["front_x"], variables["front_y"] = ((("front",), problem.front[:, k], {
            "units": "m", "long_name": f"calving-front points, {axis}"}) for k, axis in enumerate("xy"))
        coords = {"x": ("x", vel.x, {"units": "m"}), "y": ("y", vel.y, {"units": "m"}),
                  "x_h": ("x_h", thk.x, {"units": "m"}), "y_h": ("y_h", thk.y, {"units": "m"})}
        attrs = {"model": self.spec.name, "data": problem.spec, "viscosity_scale_pa_s": self.scales.viscosity}
        return xr.Dataset(variables, coords=coords, attrs=attrs), metrics

    def snapshot(self, control: Control, final: bool = False) -> Snapshot:
        """Maps and scores now; live snapshots on every k-th cell (at most LIVE_GRID_MAX a side)."""
        seconds = control.elapsed()  # the training's, not the time the maps below take
        stride = 1 if final else max(1, math.ceil(max(self.problem.velocity.shape) / LIVE_GRID_MAX))
        was_training = self.model.training
        self.model.eval()
        fields, metrics = self.grid_fields(stride)
        self.model.train(was_training)
        metrics.update(epochs=self.epoch, steps=self.step)
        if self.has_validation:
            errors = self.validation_errors(self.validation_terms())
            metrics.update({f"val_{k}_rel_error": e for k, e in errors.items()})
        if self.lbfgs_failed:
            metrics["lbfgs_failed"] = 1.0
        points = {"x": self.problem.front[:, 0], "y": self.problem.front[:, 1]}
        return Snapshot(model=self.spec.name, step=self.step, epoch=self.epoch, seconds=seconds,
                        progress=1.0 if final else self._progress(control), losses=dict(self.losses),
                        metrics=metrics, fields=fields, points=points, device=str(self.device), final=final)


def _rms(values: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(values)))) if len(values) else math.nan


def _every(raster: Raster, stride: int) -> Raster:
    if stride == 1:
        return raster
    return Raster(raster.x[::stride], raster.y[::stride], {k: v[::stride, ::stride] for k, v in raster.fields.items()})


def _fill(mask: np.ndarray, values: np.ndarray) -> np.ndarray:
    out = np.full(mask.shape, np.nan)
    out[mask] = values
    return out
