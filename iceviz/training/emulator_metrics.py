"""Scores of an emulator against the simulator: RMSE, Pearson R, grounding line, volume above flotation, speed-up."""

from __future__ import annotations

import numpy as np

from iceviz.data.ensemble import EnsembleProblem
from iceviz.sim.model import flotation_diagnostics
from iceviz.sim.scenarios import get_scenario
from iceviz.sim.transport import Transport


def rmse(pred: np.ndarray, true: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(pred) - np.asarray(true)) ** 2)))


def pearson(pred: np.ndarray, true: np.ndarray) -> float:
    """Pearson correlation of the flattened arrays (nan when either is constant)."""
    p, t = np.ravel(pred) - np.mean(pred), np.ravel(true) - np.mean(true)
    denominator = np.sqrt(np.sum(p**2) * np.sum(t**2))
    return float(np.sum(p * t) / denominator) if denominator > 0 else float("nan")


def state_scores(pred: dict[str, np.ndarray], true: dict[str, np.ndarray], initial: dict[str, np.ndarray]
                 ) -> dict[str, float]:
    """Scores of predicted ``vx``, ``vy`` [m/a] and ``h`` [m] (arrays of one shape) against the truth.

    ``rmse_v`` is the RMS of the velocity error vector's length; ``r`` is the thickness R (the
    seed's figure); ``r_change_h`` / ``r_change_v`` correlate the predicted and true *changes* from
    ``initial``, which persistence cannot fake (its values-R is near 1 whenever little changes).
    """
    dvx, dvy = pred["vx"] - true["vx"], pred["vy"] - true["vy"]
    scores = dict(rmse_h=rmse(pred["h"], true["h"]), rmse_vx=rmse(pred["vx"], true["vx"]),
                  rmse_vy=rmse(pred["vy"], true["vy"]), rmse_v=float(np.sqrt(np.mean(dvx**2 + dvy**2))),
                  r_h=pearson(pred["h"], true["h"]), r_vx=pearson(pred["vx"], true["vx"]),
                  r_vy=pearson(pred["vy"], true["vy"]))
    scores["r"] = scores["r_h"]
    scores["r_change_h"] = pearson(pred["h"] - initial["h"], true["h"] - initial["h"])
    scores["r_change_v"] = pearson(np.concatenate([np.ravel(pred[k] - initial[k]) for k in ("vx", "vy")]),
                                   np.concatenate([np.ravel(true[k] - initial[k]) for k in ("vx", "vy")]))
    return scores


class Flotation:
    """Grounding-line position [m] and volume above flotation [m³] of thickness fields on an ensemble's mesh,
    computed as the simulator computes its diagnostics (same centreline, same P1 areas)."""

    def __init__(self, problem: EnsembleProblem):
        transport = Transport(problem.mesh, problem.bed)
        self.bed, self.area = problem.bed, transport.node_area
        self.line = get_scenario(problem.scenario, **problem.overrides).centreline()
        self.probe = transport.basis.probes(self.line.T)

    def __call__(self, h: np.ndarray) -> tuple[float, float]:
        d = flotation_diagnostics(h, self.bed, self.area, self.probe, self.line)
        return d["grounding_line"], d["volume_above_flotation"]

    def errors(self, pred_h: np.ndarray, true_gl: np.ndarray, true_vaf: np.ndarray) -> dict[str, float]:
        """Mean absolute grounding-line error [m] and mean relative VAF error of predicted thickness (K, N)
        against the simulator's own diagnostics at the same K snapshots, and both at the last one."""
        pred = np.array([self(h) for h in pred_h])
        gl = np.abs(pred[:, 0] - true_gl)
        vaf = np.abs(pred[:, 1] - true_vaf) / np.abs(true_vaf).clip(1.0)
        return dict(gl_error=float(gl.mean()), gl_error_final=float(gl[-1]), vaf_rel_error=float(vaf.mean()),
                    vaf_rel_error_final=float(vaf[-1]))


def break_even(train_seconds: float, simulator_seconds: float, emulator_seconds: float) -> float:
    """Rollouts after which training plus emulating costs less than simulating (inf if emulating is no faster)."""
    saved = simulator_seconds - emulator_seconds
    return float(np.ceil(train_seconds / saved)) if saved > 0 else float("inf")
