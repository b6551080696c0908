"""The model families, one registration each: the trainer (or runner), what a finished run reports, what its output
file holds.

The model registry (:mod:`iceviz.models.registry`) names each model's family; everything that differs between
families is looked up here by that name (:func:`get_family`; an unknown one fails loudly): the CLI's JSON line
and its line for people, ``prediction.nc``, :func:`~iceviz.training.trainers.make_trainer`. A new family is one
module holding its trainer and one :class:`Family` in :data:`FAMILIES`:

- its trainer is built as ``Trainer(spec, problem, params, device=..., grid_shape=...)`` and has ``fit(control)``
  returning a :class:`~iceviz.training.flux_trainer.FitResult` and ``snapshot(control, final)`` whose ``fields``
  (an ``xarray.Dataset``) is what the run shows and writes;
- ``report(trainer, result)`` gives the family's JSON keys (with a ``units`` entry saying what each means) and
  one line for people;
- ``prediction(fields, summary)`` gives the dataset ``prediction.nc`` holds;
- ``checkpoint`` (:class:`~iceviz.training.checkpoint.CheckpointHooks`): what its checkpoints hold beyond the
  common keys (weights, config, hyper-parameters, data spec, metrics), how that is checked before anything is
  built from it, and how the network is rebuilt.

The simulator is a family too (``simulator``), with nothing to train: its runner
(:class:`~iceviz.sim.job.SimulationTask`, built from a scenario, its parameters, a forcing and run settings, each
a ``param`` class in :mod:`iceviz.sim`) has the same ``fit(control)``; its report and output serve
``iceviz sim run`` and the Simulator tab's export; it keeps no checkpoints (its spun-up states are cached
instead) and its jobs estimate their own memory (:func:`~iceviz.sim.job.simulation_memory`). It has no entry in
the model registry: ``iceviz train`` and the Saved runs tab are for the trained families.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import xarray as xr

from iceviz.data.netcdf import fields_dataset
from iceviz.data.splits import validation_mask
from iceviz.models.emulators import mlp_parameters
from iceviz.models.registry import flux_size_defaults
from iceviz.sim.job import SimulationTask
from iceviz.sim.model import SimRun
from iceviz.sim.ugrid import run_dataset
from iceviz.training.base import FitResult
from iceviz.training.checkpoint import EMULATOR_CHECKPOINT, FLUX_CHECKPOINT, VISCOSITY_CHECKPOINT, CheckpointHooks
from iceviz.training.emulator_trainer import EmulatorTrainer
from iceviz.training.flux_trainer import FluxTrainer
from iceviz.training.viscosity_trainer import ViscosityTrainer


@dataclass(frozen=True)
class Family:
    """One model family: how to train it and what its runs report and write."""

    name: str
    trainer: Callable[..., Any]
    """Builds what runs: ``trainer(spec, problem, params, device=..., grid_shape=...)`` (the simulator's runner:
    ``SimulationTask(scenario, overrides, forcing, settings)()``); it has ``fit(control)``."""
    report: Callable[[Any, Any], tuple[dict[str, Any], str]]
    """(trainer or runner, its result) -> (the family's JSON keys, with ``units``; one line for people)."""
    prediction: Callable[[xr.Dataset, dict[str, Any]], xr.Dataset]
    """(the final fields, the run's summary) -> the dataset its output file (``prediction.nc``) holds."""
    checkpoint: CheckpointHooks | None
    """What its checkpoints hold beyond the common keys, and how that is checked and rebuilt (None: it keeps
    none)."""
    memory: Callable[[Any], tuple[int, int]] | None
    """hyper-parameters -> (weights, values stored per step for the backward pass): the job's memory estimate
    (:func:`~iceviz.training.memory.job_memory`; None: its jobs estimate their own)."""
    problem_defaults: Callable[[Any, Any], dict[str, Any]] = lambda spec, problem: {}
    """(model spec, problem) -> hyper-parameters that follow the problem (before the source's own hints)."""
    plans_its_length: bool = False
    """A run ends by its own plan (a time budget alone leaves the epoch default in place); else a time budget
    alone lifts the epoch budget out of its way."""


# -- flux: dfNN, PINN, NN and their variants on flux observations ------------------------------------------------

FLUX_KEYS = ("rmse", "mae", "mad", "rmse_phys", "mae_phys", "mad_phys")
STOP_REASONS = {"schedule": "the end of its planned schedule", "patience": "patience (no better validation)",
                "epochs": "the epoch budget", "seconds": "the time budget"}
"""Why a flux run ended, in words (``stop_reason`` in the JSON line)."""


def fit_points(problem: Any, params: Any) -> int:
    """How many of ``problem``'s training points a flux run fits once its validation set is held out."""
    held, _ = validation_mask(problem.train, problem.bounds, params.val_fraction, params.seed)
    return int(len(held) - held.sum())


def flux_problem_defaults(spec: Any, problem: Any) -> dict[str, Any]:
    """The plan, patience and batch that follow the number of points a flux run fits
    (:func:`~iceviz.models.registry.flux_size_defaults`)."""
    return flux_size_defaults(fit_points(problem, spec.make_params(**problem.hints)))


def flux_memory(p: Any) -> tuple[int, int]:
    """The network differentiated once (divergence, stream function): 8 values per activation, per member."""
    return (p.members * mlp_parameters([4] + [p.width] * p.depth + [3]),
            8 * p.members * (p.batch_size + p.collocation) * p.width * p.depth)


def flux_report(trainer: Any, result: FitResult) -> tuple[dict[str, Any], str]:
    m, scale = result.metrics, trainer.problem.scale
    out = {k: m[k] for k in FLUX_KEYS} | {k: m[k] for k in ("val_rmse", "val_rmse_phys") if k in m}
    out.update(stop_reason=result.stop_reason, train_points=int((~trainer.val_mask).sum()),
               val_points=int(trainer.val_mask.sum()), refit=result.refit)
    out["units"] = {"rmse": "scaled flux", "val_rmse": "scaled flux", "val_rmse_phys": "m2/yr",
                    "mad": "scaled divergence", "rmse_phys": "m2/yr", "mae_phys": "m2/yr", "mad_phys": "m/yr",
                    "flux_scale_m2_per_yr": scale.flux, "divergence_scale_m_per_yr": scale.divergence}
    line = (f"test RMSE {out['rmse']:.4f} ({out['rmse_phys']:.4g} m²/yr), MAE {out['mae']:.4f}, "
            f"MAD {out['mad']:.3g} ({out['mad_phys']:.3g} m/yr)")
    if "val_rmse" in out:
        line += (f"; validation RMSE {out['val_rmse']:.4f} on {out['val_points']} held-out points, weights of "
                 f"epoch {result.best_epoch} kept, stopped by {STOP_REASONS[result.stop_reason]}")
        if result.refit:
            line += f", then refitted on all {out['train_points'] + out['val_points']} points to that epoch"
    return out, line


def flux_prediction(fields: xr.Dataset, summary: dict[str, Any]) -> xr.Dataset:
    """The predicted flux and its divergence on the region's grid, CF with EPSG:3031 coordinates."""
    return fields_dataset(fields, {"title": f"iceviz {summary['model']} prediction",
                                   "source": f"iceviz {summary['model']}", "data_spec": summary["data"],
                                   "rmse_phys_m2_per_yr": summary["rmse_phys"],
                                   "mad_phys_m_per_yr": summary["mad_phys"]})


# -- viscosity: the PINN that infers an ice shelf's effective viscosity ------------------------------------------

VISCOSITY_KEYS = ("mu_rel_error", "mu_rel_error_interior", "mu_rel_error_boundary", "u_rel_error", "v_rel_error",
                  "h_rel_error", "val_u_rel_error", "val_v_rel_error", "val_h_rel_error", "residual",
                  "front_residual")
"""The viscosity family's JSON keys (the mu_* ones only where the true viscosity is known, the val_* ones only
with a validation set)."""
VISCOSITY_UNITS = {
    "mu_rel_error": "relative L2 error ||mu - mu_true|| / ||mu_true|| over the shelf",
    "mu_rel_error_boundary": "the same within 5 km of the shelf edge (interior: the rest)",
    "u_rel_error": "relative L2 misfit of the network's u to the observed u over every cell (likewise v, h)",
    "val_u_rel_error": "the same over the held-out validation cells only (likewise v, h)",
    "residual": "RMS of the dimensionless SSA momentum residual (1 = driving stress rho g' h0^2 / L)",
    "front_residual": "RMS of the dimensionless calving-front residual",
}


def viscosity_memory(p: Any) -> tuple[int, int]:
    """Flow and viscosity networks per sub-domain, differentiated twice (strain rates, then stresses): 24 values
    per activation."""
    flows = 2 if p.separate_thickness else 1  # a thickness network as large as the flow's
    weights = p.subdomains * (flows * mlp_parameters([4] + [p.width] * p.depth + [3])
                              + mlp_parameters([4] + [p.mu_width] * p.mu_depth + [1]))
    points = p.batch_size + p.collocation + p.front_points + p.interface_points * (p.subdomains - 1)
    return weights, 24 * points * (flows * p.width * p.depth + p.mu_width * p.mu_depth)


def viscosity_report(trainer: Any, result: FitResult) -> tuple[dict[str, Any], str]:
    out = {k: result.metrics[k] for k in VISCOSITY_KEYS if k in result.metrics}
    out["units"] = VISCOSITY_UNITS | {"viscosity_scale_pa_s": trainer.scales.viscosity}
    line = ", ".join(f"{k} {100 * out[k]:.2f} %" for k in VISCOSITY_KEYS if k.endswith("rel_error") and k in out)
    return out, line + f", SSA residual {out['residual']:.3g}"


def viscosity_prediction(fields: xr.Dataset, summary: dict[str, Any]) -> xr.Dataset:
    """The inferred viscosity and the fitted fields on the shelf's two rasters (velocity, thickness), as they are."""
    return fields.assign_attrs(title=f"iceviz {summary['model']} inversion", source=f"iceviz {summary['model']}",
                               data_spec=summary["data"], Conventions="CF-1.8",
                               **{k: summary[k] for k in VISCOSITY_KEYS if k in summary})


# -- emulator: networks that emulate the simulator on its mesh ---------------------------------------------------

EMULATOR_KEYS = ("rmse_h", "rmse_v", "rmse_vx", "rmse_vy", "r", "r_vx", "r_vy", "r_change_h", "r_change_v",
                 "gl_error_final", "vaf_rel_error_final", "speedup", "emulator_seconds", "simulator_seconds",
                 "simulator_dt", "break_even_rollouts", "per_forcing")
"""The emulator family's JSON keys (scores over the test runs' snapshots after the first)."""
EMULATOR_UNITS = {
    "rmse_h": "m", "rmse_v": "m/yr (length of the velocity error vector)", "rmse_vx": "m/yr", "rmse_vy": "m/yr",
    "r": "Pearson R of thickness values", "r_change_h": "Pearson R of the thickness change since the first snapshot",
    "gl_error_final": "m (grounding line on the centreline, last snapshot)",
    "vaf_rel_error_final": "relative volume-above-flotation error, last snapshot",
    "speedup": "simulator wall time for a run / emulator wall time for its snapshots, this machine",
    "emulator_seconds": "s", "simulator_seconds": "s (as recorded in the ensemble)", "simulator_dt": "yr (mean)",
    "break_even_rollouts": "rollouts after which training + emulation beats simulation",
}


EMULATOR_NODES = 20_000
"""Mesh nodes an emulator job is sized for before its ensemble is read (the default glacier has 2,345)."""


def emulator_memory(p: Any) -> tuple[int, int]:
    """Every node of every graph in a batch through every layer (a grid CNN: its cells): 6 values each."""
    return p.layers * p.width * p.width * 9, 6 * p.batch_size * max(EMULATOR_NODES, p.cells) * p.width * p.layers


def emulator_report(trainer: Any, result: FitResult) -> tuple[dict[str, Any], str]:
    out = {k: result.metrics[k] for k in EMULATOR_KEYS} | {"units": EMULATOR_UNITS}
    return out, (f"test RMSE h {out['rmse_h']:.2f} m, v {out['rmse_v']:.2f} m/a, R {out['r']:.4f}, "
                 f"speed-up {out['speedup']:.0f}x")


def emulator_prediction(fields: xr.Dataset, summary: dict[str, Any]) -> xr.Dataset:
    """The test runs' emulated snapshots on the mesh nodes, with the triangles."""
    return fields.assign_attrs(title=f"iceviz {summary['model']} emulation", source=f"iceviz {summary['model']}",
                               data_spec=summary["data"], Conventions="CF-1.8",
                               **{k: summary[k] for k in ("rmse_h", "rmse_v", "r", "speedup")})


# -- simulator: the finite-element model itself, run on a scenario (nothing to train) ------------------------------

SIMULATOR_UNITS = {
    "wall_time": "s", "steps": "time steps", "snapshots": "saved states (the start included)",
    "nodes": "mesh nodes", "iterations": "SSA solver iterations, all steps",
    "grounding_line_start": "m (centreline, from the inflow boundary)", "grounding_line_end": "m",
    "volume_change": "m3 (ice volume at the end minus at the start)",
    "budget_residual": "relative mass-budget residual: |volume change - sum of fluxes| / the largest term",
}
"""The simulator family's JSON keys (beyond what the run was asked: scenario, forcing, years) and their units."""


def simulator_report(runner: Any, run: SimRun) -> tuple[dict[str, Any], str]:
    """The run's size, cost and outcome; ``runner`` (unused) keeps the families' signature."""
    gl, volume = run.diagnostics["grounding_line"], run.diagnostics["volume"]
    out = {"wall_time": round(run.wall_time, 3), "steps": len(run.steps["t"]), "snapshots": len(run.times),
           "nodes": run.mesh.n_nodes, "iterations": int(run.steps["iterations"].sum()),
           "grounding_line_start": float(gl[0]), "grounding_line_end": float(gl[-1]),
           "volume_change": float(volume[-1] - volume[0]), "budget_residual": run.budget.relative_residual,
           "units": SIMULATOR_UNITS}
    line = (f"{out['steps']} steps in {run.wall_time:.1f} s; grounding line {gl[0] / 1e3:.1f} -> "
            f"{gl[-1] / 1e3:.1f} km, volume change {out['volume_change']:.4g} m³ (budget residual "
            f"{out['budget_residual']:.1e})")
    return out, line


def simulator_prediction(fields: xr.Dataset, summary: dict[str, Any]) -> xr.Dataset:
    """The run's UGRID dataset (:func:`~iceviz.sim.ugrid.run_dataset`) with its outcome in the attributes."""
    return fields.assign_attrs({f"summary_{k}": summary[k] for k in SIMULATOR_UNITS if k in summary})


def simulator_output(run: SimRun) -> xr.Dataset:
    """What a simulation's output file holds: :func:`simulator_prediction` of the run (CLI and app alike)."""
    return simulator_prediction(run_dataset(run), simulator_report(None, run)[0])


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("flux", FluxTrainer, flux_report, flux_prediction, FLUX_CHECKPOINT, flux_memory,
           problem_defaults=flux_problem_defaults, plans_its_length=True),
    Family("viscosity", ViscosityTrainer, viscosity_report, viscosity_prediction, VISCOSITY_CHECKPOINT,
           viscosity_memory),
    Family("emulator", EmulatorTrainer, emulator_report, emulator_prediction, EMULATOR_CHECKPOINT,
           emulator_memory),
    Family("simulator", SimulationTask, simulator_report, simulator_prediction, checkpoint=None, memory=None),
)}
TRAINED = tuple(name for name, family in FAMILIES.items() if family.checkpoint is not None)
"""The families whose runs are trained and saved as checkpoints (the model registry's)."""


def get_family(name: str) -> Family:
    """The registration of family ``name``; ValueError naming the registered ones for any other."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r}; registered: {', '.join(FAMILIES)} "
                         "(iceviz/training/families.py)") from None
