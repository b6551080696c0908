"""Training mesh emulators (EGCN and its baselines) on a simulation ensemble.

The task is the seed's: (initial state, forcing, time) -> (vx, vy, h) at that time, at every
node. The predicted change from the initial state is t̂ times the network's output (t̂ the
scaled time since the first snapshot), so every emulator reproduces the initial state exactly
and its change grows from zero, as the simulated one does. Loss: mean squared error of the scaled change from the initial state
(:mod:`iceviz.training.emulator_data`), AdamW with a cosine fall of the rate to a tenth over
the budget. With ``average`` > 0 (the EGCN's default) an exponential moving average of the
weights is kept beside the trained ones, and it is what is validated, kept and scored. After
every epoch the validation runs are scored; the weights of the best validation epoch are kept.
Test runs (held-out forcing values) are only ever scored.

Scores, over the test runs and every snapshot after the first (in physical units): RMSE of
thickness [m] and velocity [m/a], Pearson R, grounding-line and volume-above-flotation errors,
and the speed-up: the simulator's recorded wall time for a run ÷ the emulator's wall time for
the same snapshots, measured here.
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from iceviz.data.ensemble import TARGETS, EnsembleProblem
from iceviz.models.emulators import make_emulator
from iceviz.models.registry import ModelSpec
from iceviz.training.device import resolve_device
from iceviz.training.emulator_data import EmulatorData, EmulatorScales
from iceviz.training.emulator_metrics import Flotation, break_even, state_scores
from iceviz.runtime.job import Control
from iceviz.training.base import FitResult, Trainer
from iceviz.training.snapshot import Snapshot

USEFUL_EPOCHS = 10
"""A run its time budget ends before this many epochs is cut short (the explorer's EGCN with one epoch in 15 s
ranked last; the MLP's validation loss was still 5x its 200 s figure at epoch 10, BENCHMARKS.md)."""
LIVE_TIMES = 11
"""Live snapshots score the test runs at about this many snapshot times; the final one at all of them."""
CHUNK = {"cpu": 4, "cuda": 64}
"""Graphs per evaluation pass, by device type: on a CPU small passes stay in its caches (4 graphs of the
default mesh took 0.46 s for a 40-snapshot rollout, 32 took 0.78 s, one thread)."""
FINAL_LR = 0.1
"""The cosine schedule ends at this fraction of the peak rate."""
HEADLINE_METRICS = ("rmse_h", "rmse_v", "rmse_vx", "rmse_vy", "r")
"""The scores an emulator reports (the CLI's summary line): a run ends failed unless every one is finite. The R of
the changes is not among them: persistence predicts none, and its R is NaN by design."""


class EmulatorTrainer(Trainer):
    """Trains one emulator on an ensemble; snapshots error maps of the test runs on the mesh.

    Parameters
    ----------
    spec : the registered model (``egcn``, ``gcn``, ``mlp``, ``cnn``, ``persistence``).
    problem : the ensemble.
    params : hyper-parameters (``spec.make_params(...)``).
    device : ``auto``, ``cpu``, ``cuda``...
    grid_shape : unused (maps are on the mesh); accepted for the common trainer signature.
    """

    headline = HEADLINE_METRICS

    def __init__(self, spec: ModelSpec, problem: EnsembleProblem, params: Any, device: str = "auto",
                 grid_shape: tuple[int, int] | None = None):
        self.spec, self.problem, self.params = spec, problem, params
        self.device = resolve_device(device)
        torch.manual_seed(params.seed)
        self._rng = np.random.default_rng(params.seed)
        split = problem.split
        self.scales = EmulatorScales.from_problem(problem, split["train"])
        self.data = EmulatorData(problem, self.scales, self.device)
        self.config = self._config(spec, params, self.scales.n_scalars, self.scales.n_vectors)
        self.model = make_emulator(self.config, problem.mesh.points, problem.mesh.edges).to(self.device)
        n_times = len(problem.times)
        self.train_pairs = self.data.samples(split["train"])
        self.val_pairs = self.data.samples(split["val"], np.arange(1, n_times, 2))
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = (torch.optim.AdamW(trainable, lr=params.lr, weight_decay=params.weight_decay)
                          if trainable else None)
        self.averaged = (AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(params.average))
                         if trainable and params.average > 0 else None)
        self.flotation = Flotation(problem)
        self.epoch = self.step = self.best_epoch = 0
        self.best_val = math.inf
        self.losses: dict[str, float] = {}
        self.train_seconds = 0.0

    @staticmethod
    def _config(spec: ModelSpec, params: Any, n_scalars: int, n_vectors: int) -> dict[str, Any]:
        arch = spec.options["architecture"]
        if arch == "persistence":
            return dict(architecture=arch, n_scalars=n_scalars, n_vectors=n_vectors)
        config = dict(architecture=arch, n_scalars=n_scalars, n_vectors=n_vectors, width=params.width,
                      layers=params.layers)
        if arch == "egcn" and params.layer == "seed":
            config["architecture"] = "egcn-seed"
        elif arch == "egcn":
            config["channels"] = params.channels
        elif arch == "cnn":
            config["cells"] = params.cells
        return config

    # -- the loop ------------------------------------------------------------------------
    def _progress(self, control: Control, within_epoch: float = 0.0) -> float:
        return self.budget_progress(control, (self.epoch + within_epoch) / self.params.epochs)

    def fit(self, control: Control | None = None) -> FitResult:
        """Epochs of shuffled mini-batches until the budget is spent; then the best validation epoch's weights."""
        control = control or Control(snapshot_every=None)
        control.start_clock()
        if self.optimizer is not None:
            best_state = self._train(control)
            self.model.load_state_dict(best_state if best_state is not None else self.scored.state_dict())
            self.averaged = None  # from here on the model holds the weights that are scored
        self.train_seconds = control.elapsed()
        p = self.params
        timed_out = self.optimizer is not None and bool(p.seconds) and self.epoch < p.epochs
        final, short = self.finish(control, f"after {self.epoch} epochs", p.seconds if timed_out else None,
                                   f"{self.epoch} epochs", useful=self.epoch >= USEFUL_EPOCHS)
        return FitResult(epochs=self.epoch, steps=self.step, seconds=self.train_seconds, best_epoch=self.best_epoch,
                         metrics=dict(final.metrics), losses=dict(self.losses), shortfall=short)

    def _train(self, control: Control) -> dict[str, torch.Tensor] | None:
        p, n = self.params, len(self.train_pairs)
        best_state = None
        self.model.train()
        while self._progress(control) < 1.0:
            order = self._rng.permutation(n)
            total, seen = 0.0, 0
            for i in range(0, n, p.batch_size):
                control.tick()
                progress = self._progress(control, i / n)
                if progress >= 1.0:
                    break
                self._set_lr(progress)
                pairs = self.train_pairs[order[i:i + p.batch_size]]
                loss = self._step(pairs)
                total, seen = total + loss * len(pairs), seen + len(pairs)
            if seen == 0:
                break
            self.epoch += 1
            val = self.validation_loss()
            self.losses = dict(total=total / seen, val=val)
            if val < self.best_val:
                self.best_val, self.best_epoch = val, self.epoch
                best_state = copy.deepcopy(self.scored.state_dict())
            control.record(dict(step=self.step, epoch=self.epoch, seconds=control.elapsed(),
                                progress=self._progress(control), lr=self.optimizer.param_groups[0]["lr"],
                                loss_total=self.losses["total"], loss_val=val))
            if control.snapshot_due():
                control.publish(self.snapshot(control))
        return best_state

    def _set_lr(self, progress: float) -> None:
        lr = self.params.lr * (FINAL_LR + (1 - FINAL_LR) * 0.5 * (1 + math.cos(math.pi * progress)))
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    @property
    def scored(self) -> torch.nn.Module:
        """The network that is validated and scored: the moving average of the weights while one is kept."""
        return self.averaged.module if self.averaged is not None else self.model

    def forward(self, pairs: np.ndarray, model: torch.nn.Module | None = None, share: bool = False) -> torch.Tensor:
        """Scaled changes [B, N, 3] of (run, snapshot) pairs: t̂ times the output of ``model`` (the trained one);
        ``share``: let pairs of one run share their vector inputs (see :meth:`EmulatorData.inputs`)."""
        t = self.data.time[torch.as_tensor(pairs[:, 1], device=self.device)]
        model = self.model if model is None else model
        return model(*self.data.inputs(pairs, share)) * t.view(-1, 1, 1)

    def _step(self, pairs: np.ndarray) -> float:
        loss = torch.mean((self.forward(pairs) - self.data.target(pairs)) ** 2)
        self.check_loss(loss, {"mse": loss}, f"step {self.step}", lr=self.optimizer.param_groups[0]["lr"])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if self.averaged is not None:
            self.averaged.update_parameters(self.model)
        self.step += 1
        return float(loss.detach())

    def predict_scaled(self, pairs: np.ndarray) -> torch.Tensor:
        """Scaled changes [K, N, 3] of (run, snapshot) pairs, in chunks, without gradients."""
        model = self.scored
        was_training = model.training
        model.eval()
        with torch.no_grad():
            chunk = CHUNK.get(self.device.type, CHUNK["cpu"])  # passes over consecutive snapshots of a run share
            out = [self.forward(pairs[i:i + chunk], model, share=True)  # its vector inputs (training batches mix runs)
                   for i in range(0, len(pairs), chunk)]
        model.train(was_training)
        return torch.cat(out) if out else torch.zeros(0)

    def validation_loss(self) -> float:
        """Mean squared scaled error over the validation runs (every other snapshot)."""
        pred = self.predict_scaled(self.val_pairs)
        return float(torch.mean((pred - self.data.target(self.val_pairs)) ** 2))

    def predict(self, run: int, snapshots: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Predicted ``vx``, ``vy`` [m/a], ``h`` [m] -> (S, N) for one run at its snapshots (all by default)."""
        pairs = self.data.samples([run], snapshots)
        return self.data.physical(self.predict_scaled(pairs), pairs)

    # -- scores ------------------------------------------------------------------------
    def emulator_seconds(self, run: int, repeats: int = 3) -> float:
        """Median wall time [s] to predict every snapshot after the first of ``run`` (as a rollout would)."""
        pairs = self.data.samples([run], np.arange(1, len(self.problem.times)))
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            self.data.physical(self.predict_scaled(pairs), pairs)
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        return float(np.median(times))

    def evaluate(self, snapshots: np.ndarray) -> tuple[xr.Dataset, dict[str, Any]]:
        """Predictions, truth and errors of the test runs at ``snapshots`` (indices, the first being 0), and
        the scores over every snapshot after the first (over all given when that is the first alone)."""
        problem, f = self.problem, self.problem.fields
        runs = problem.split["test"]
        parts = [self.predict(r, snapshots) for r in runs]
        pred = {k: np.stack([p[k] for p in parts]) for k in TARGETS}  # (R, S, N)
        true = {k: f[k][runs][:, snapshots] for k in TARGETS}
        init = {k: np.broadcast_to(f[k][runs][:, :1], true[k].shape) for k in TARGETS}
        later = snapshots > 0 if np.any(snapshots > 0) else np.ones(len(snapshots), bool)
        pick = (lambda d: {k: v[:, later] for k, v in d.items()})
        metrics: dict[str, Any] = state_scores(pick(pred), pick(true), pick(init))
        per_forcing = {}
        for i, r in enumerate(runs):
            one = (lambda d: {k: v[i, later] for k, v in d.items()})
            s = state_scores(one(pred), one(true), one(init))
            diag = {k: v[r, snapshots][later] for k, v in problem.diagnostics.items()}
            s.update(self.flotation.errors(pred["h"][i, later], diag["grounding_line"], diag["volume_above_flotation"]))
            per_forcing[problem.label(r)] = {k: s[k] for k in ("rmse_h", "rmse_v", "r", "gl_error_final",
                                                              "vaf_rel_error_final")}
        metrics["per_forcing"] = per_forcing
        for key in ("gl_error_final", "vaf_rel_error_final"):
            metrics[key] = float(np.mean([v[key] for v in per_forcing.values()]))
        err_h, err_v = pred["h"] - true["h"], np.hypot(pred["vx"] - true["vx"], pred["vy"] - true["vy"])
        rmse_h_t, rmse_v_t = np.sqrt(np.mean(err_h**2, axis=2)), np.sqrt(np.mean(err_v**2, axis=2))
        mesh = problem.mesh
        node = ("run", "time", "node")
        data = {
            **{k: (node, pred[k], {"units": u, "long_name": f"{k} (emulator)"}) for k, u in _UNITS.items()},
            **{f"{k}_true": (node, true[k], {"units": u, "long_name": f"{k} (simulator)"}) for k, u in _UNITS.items()},
            "h_error": (node, err_h, {"units": "m", "long_name": "thickness error (emulator - simulator)"}),
            "speed_error": (node, err_v, {"units": "m yr-1", "long_name": "length of the velocity error vector"}),
            "rmse_h_t": (("run", "time"), rmse_h_t, {"units": "m", "long_name": "thickness RMSE over the nodes"}),
            "rmse_v_t": (("run", "time"), rmse_v_t, {"units": "m yr-1", "long_name": "velocity RMSE over the nodes"}),
            "triangles": (("face", "three"), mesh.triangles, {"long_name": "mesh triangles (node indices)"}),
            "bed": (("node",), problem.bed, {"units": "m", "long_name": "bed elevation"}),
        }
        coords = {"run": ("run", [problem.label(r) for r in runs]),
                  "time": ("time", problem.times[snapshots], {"units": "yr"}),
                  "node_x": ("node", mesh.points[:, 0], {"units": "m"}),
                  "node_y": ("node", mesh.points[:, 1], {"units": "m"})}
        attrs = {"model": self.spec.name, "data": problem.spec}
        return xr.Dataset(data, coords=coords, attrs=attrs), metrics

    def snapshot(self, control: Control, final: bool = False) -> Snapshot:
        """Test-run maps and scores now (live: about LIVE_TIMES snapshot times; final: all, plus the speed-up)."""
        seconds = control.elapsed()
        n = len(self.problem.times)
        stride = 1 if final else max(1, math.ceil((n - 1) / (LIVE_TIMES - 1)))
        snapshots = np.unique(np.r_[np.arange(0, n, stride), n - 1])
        fields, metrics = self.evaluate(snapshots)
        metrics.update(epochs=self.epoch, steps=self.step, best_epoch=self.best_epoch)
        if np.isfinite(self.best_val):
            metrics["val_loss"] = self.best_val
        if final:
            metrics.update(self.speed_scores(seconds))
        return Snapshot(model=self.spec.name, step=self.step, epoch=self.epoch, seconds=seconds,
                        progress=1.0 if final else self._progress(control), losses=dict(self.losses),
                        metrics=metrics, fields=fields, device=str(self.device), final=final)

    def speed_scores(self, train_seconds: float) -> dict[str, float]:
        """Speed-up over the simulator's recorded wall time (mean over the test runs), its time step and the
        break-even number of rollouts including ``train_seconds``."""
        runs = self.problem.split["test"]
        emulator = self.emulator_seconds(int(runs[0]))
        simulator = float(np.mean(self.problem.wall_time[runs]))
        return dict(speedup=simulator / emulator, emulator_seconds=emulator, simulator_seconds=simulator,
                    simulator_dt=self.problem.mean_dt, break_even_rollouts=break_even(train_seconds, simulator,
                                                                                      emulator))


_UNITS = {"vx": "m yr-1", "vy": "m yr-1", "h": "m"}
