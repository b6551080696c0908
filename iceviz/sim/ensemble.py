"""Ensembles: one scenario, spun up once, run for every combination of forcing values, in parallel.

An ensemble directory holds one UGRID file per run (``runs/run-000.nc``, ...; see
:mod:`iceviz.sim.ugrid`) and ``manifest.json``: the scenario and its overrides,
the run settings, the spin-up, the grid of forcing values and, per run, its
forcing, file, wall time, solver and budget statistics and whether it finished
(a run that fails is recorded with its error; the others carry on).

Every grid point runs in a worker: a task on a Dask cluster (given a
``distributed.Client``: a local one, or any cluster whose workers see the
output directory), else a process of a local pool (``forkserver`` start
method), or one after the other in this process. The worker rebuilds the
simulator from the scenario name and overrides (meshing is deterministic, which
the spin-up key checks) and starts from the spun-up state the parent sends it,
so the results do not depend on the number or kind of workers. On Dask a run
whose worker dies is run again elsewhere (a run only writes its own file, so
that is safe).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
import multiprocessing
import os
import shutil
import tempfile
import time
import uuid
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

import numpy as np

from iceviz.sim.model import Forcing, RunSettings, Simulator, State
from iceviz.sim.scenarios import get_scenario
from iceviz.cache import cache_dir
from iceviz.sim.spinup import SIM_VERSION, spin_up_key, spun_up
from iceviz.sim.ssa import SimulationError
from iceviz.sim.ugrid import write_run

FORCING_KEYS = ("melt", "smb", "retreat_rate")
"""Forcing parameters an ensemble may vary (a positive retreat_rate sets calving to 'retreat')."""
MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
START_METHOD = "forkserver"
"""How worker processes start: a clean interpreter (no forked threads or open files from the parent)."""
MAX_VALUES = 10_000
"""Most values one spec may give."""
MANIFEST_KEYS = ("scenario", "overrides", "scenario_key", "settings", "spin_up", "grid", "runs", "wall_time",
                 "workers")
RUN_KEYS = ("index", "forcing", "file", "status")

Progress = Callable[[int, int, dict], None]
"""progress(done, total, run_record), called as each run finishes."""


def parse_values(spec: str) -> list[float]:
    """The values of a spec: ``"0:70:10"`` (start:stop:step, stop included), ``"5"`` or ``"0,30,60"``.

    Ranges are computed in decimal arithmetic, so float steps reach their stop and give the
    values as written (``"0:0.3:0.1"`` -> 0, 0.1, 0.2, 0.3).
    """
    text = str(spec).strip()
    try:
        if ":" in text:
            start, stop, step = (Decimal(part.strip()) for part in text.split(":"))
            if not all(v.is_finite() for v in (start, stop, step)) or step <= 0 or stop < start:
                raise ValueError("a range needs finite start <= stop and step > 0")
            count = int((stop - start) // step) + 1
            if count > MAX_VALUES:
                raise ValueError(f"{count} values, more than {MAX_VALUES}")
            values = [float(start + i * step) for i in range(count)]
        else:
            values = [float(part) for part in text.split(",")]
            if not all(math.isfinite(v) for v in values):
                raise ValueError("values must be finite")
    except (ValueError, ArithmeticError) as err:
        reason = str(err) if isinstance(err, ValueError) else "not a number"
        raise SimulationError(f"bad value spec {spec!r}: expected start:stop:step (stop included), a number or "
                              f"comma-separated numbers ({reason})") from None
    return values


def grid_points(grid: dict[str, list[float]]) -> list[dict[str, float]]:
    """Every combination of the grid's values (Cartesian product, last key varying fastest)."""
    unknown = sorted(set(grid) - set(FORCING_KEYS))
    if unknown:
        raise SimulationError(f"an ensemble varies only {', '.join(FORCING_KEYS)}; got {unknown}")
    empty = [key for key, values in grid.items() if len(values) == 0]
    if empty:
        raise SimulationError(f"no values given for {', '.join(empty)}")
    keys = list(grid)
    return [dict(zip(keys, map(float, combo))) for combo in itertools.product(*(grid[k] for k in keys))]


def forcing_values(point: dict[str, float]) -> dict[str, Any]:
    """Every forcing parameter at one grid point: the defaults, the point's values, and the calving
    mode ('retreat' where retreat_rate > 0)."""
    calving = "retreat" if point.get("retreat_rate", 0.0) > 0 else "fixed"
    return {**Forcing().key(), **point, "calving": calving}


def make_forcing(values: dict[str, Any]) -> Forcing:
    """The Forcing with these parameter values; SimulationError for values outside their bounds."""
    try:
        return Forcing(**values)
    except ValueError as err:
        raise SimulationError(f"forcing {values}: {err}") from None


def run_ensemble(scenario_name: str, scenario_overrides: dict[str, Any], grid: dict[str, list[float]],
                 settings: RunSettings, out_dir: str | os.PathLike, workers: int = 1,
                 progress: Progress | None = None, client: Any = None) -> dict:
    """Run ``scenario_name`` for every point of ``grid``; write the runs and the manifest; the manifest.

    Parameters
    ----------
    scenario_name, scenario_overrides : the scenario (see :func:`iceviz.sim.scenarios.get_scenario`).
    grid : forcing parameter (melt, smb, retreat_rate) -> its values; every combination is run.
    settings : the length and snapshots of every run.
    out_dir : where ``runs/run-NNN.nc`` and ``manifest.json`` go (created).
    workers : worker processes of a local pool (1 runs in this process); ignored with ``client``.
    progress : called with (runs done, runs in all, the run's manifest record) as each run finishes.
    client : a ``distributed.Client``: every run a task on its cluster (the manifest records its workers).
    """
    t_wall = time.perf_counter()
    if int(workers) != workers or workers < 1:
        raise SimulationError(f"workers must be a positive integer, got {workers!r}")
    points = grid_points(grid)
    overrides = json.dumps(scenario_overrides, sort_keys=True)
    simulator = _simulator(scenario_name, overrides)
    state, cache_hit = spun_up(simulator)
    key = spin_up_key(simulator)
    out = Path(out_dir).expanduser()
    (out / "runs").mkdir(parents=True, exist_ok=True)
    width = max(3, len(str(len(points) - 1)))
    tasks = [dict(index=i, forcing=forcing_values(point), file=f"runs/run-{i:0{width}d}.nc")
             for i, point in enumerate(points)]
    common = dict(scenario_name=scenario_name, overrides=overrides, settings=settings.key(), state=state,
                  expected_key=key, out_dir=str(out))
    records: list[dict] = []

    def finished(record: dict) -> None:
        records.append(record)
        if progress is not None:
            progress(len(records), len(tasks), record)

    if client is not None:
        workers = _run_on_dask(client, tasks, common, finished)
    elif workers == 1:
        for task in tasks:
            finished(run_one(task, **common))
    else:
        context = multiprocessing.get_context(START_METHOD)
        with ProcessPoolExecutor(max_workers=min(int(workers), len(tasks)), mp_context=context) as pool:
            futures: dict[Future, dict] = {pool.submit(run_one, task, **common): task for task in tasks}
            for future in as_completed(futures):
                try:
                    record = future.result()
                except Exception as exc:  # noqa: BLE001 - a worker that died (BrokenProcessPool, pickling)
                    record = _failed(futures[future], exc)
                finished(record)
    manifest = dict(version=MANIFEST_VERSION, scenario=scenario_name, overrides=scenario_overrides,
                    scenario_key=simulator.scenario.key(), settings=settings.key(),
                    spin_up=dict(key=key, cache_hit=cache_hit, years=simulator.scenario.spin_up_years),
                    nodes=simulator.mesh.n_nodes, grid={k: [float(v) for v in vs] for k, vs in grid.items()},
                    runs=sorted(records, key=lambda r: r["index"]), wall_time=time.perf_counter() - t_wall,
                    workers=int(workers))
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _run_on_dask(client: Any, tasks: list[dict], common: dict, finished: Callable[[dict], None]) -> int:
    """Every task as a Dask task on ``client``'s cluster (each carries the spun-up state: a task that must run
    again elsewhere needs nothing from the worker that died); calls ``finished(record)`` as each ends; returns
    the cluster's number of workers."""
    from distributed import as_completed as completed

    batch = uuid.uuid4().hex[:8]
    futures = {client.submit(_run_one_on_worker, task, **common, pure=False,
                             key=f"iceviz-sim-{batch}-run-{task['index']}"): task for task in tasks}
    try:
        for future in completed(futures, loop=client.loop):
            try:
                record = future.result()
            except Exception as exc:  # noqa: BLE001 - a task the cluster gave up on (its workers kept dying)
                record = _failed(futures[future], exc)
            finished(record)
    finally:
        client.cancel([f for f in futures if not f.done()])
    return max(1, len(client.scheduler_info().get("workers", {})))


def _run_one_on_worker(task: dict, **common: Any) -> dict:
    """:func:`run_one` as a Dask task: first undo the nanny's malloc trimming (4.5x slower runs otherwise)."""
    from iceviz.runtime.dask_job import keep_freed_memory

    keep_freed_memory()
    return run_one(task, **common)


def run_one(task: dict, scenario_name: str, overrides: str, settings: dict, state: State, expected_key: str,
            out_dir: str) -> dict:
    """Run one grid point (in a worker process) and write its file; its manifest record, failed or done.

    ``expected_key`` is the spin-up key of the parent's simulator: the rebuilt one must match it.
    """
    try:
        simulator = _simulator(scenario_name, overrides)
        if spin_up_key(simulator) != expected_key:
            raise SimulationError("the worker's mesh differs from the spun-up one (mesh generation is not "
                                  "deterministic here)")
        run = simulator.run(make_forcing(task["forcing"]), RunSettings(**settings), state=state)
        write_run(run, Path(out_dir) / task["file"])
    except Exception as exc:  # noqa: BLE001 - one failed run must not stop the ensemble
        return _failed(task, exc)
    budget = run.budget
    return dict(task, status="done", wall_time=run.wall_time, steps=int(len(run.steps["t"])),
                snapshots=int(len(run.times)), iterations=int(np.sum(run.steps["iterations"])),
                unconverged_steps=int(np.sum(run.steps["converged"] == 0)),
                budget_residual=budget.relative_residual,
                grounding_line=float(run.diagnostics["grounding_line"][-1]),
                volume_change=float(run.diagnostics["volume"][-1] - run.diagnostics["volume"][0]))


def _failed(task: dict, exc: BaseException) -> dict:
    message = str(exc) if isinstance(exc, SimulationError) else f"{type(exc).__name__}: {exc}"
    return dict(task, file=None, status="failed", error=message)


@functools.lru_cache(maxsize=2)
def _simulator(scenario_name: str, overrides: str) -> Simulator:
    """The scenario's simulator (built once per process); ``overrides`` as a JSON object string."""
    return Simulator(get_scenario(scenario_name, **json.loads(overrides)))


DEFAULT_SCENARIO = "marine-glacier"
DEFAULT_GRID = {"melt": [float(m) for m in range(0, 80, 10)]}
DEFAULT_SETTINGS = dict(years=20.0, snapshot_every=0.5)
"""The default ensemble: the marine glacier (2,345 nodes) under 0, 10, ... 70 m/a of melt for 20 years, a
snapshot every half year (about two minutes on two cores; then cached)."""


def cached_ensemble_dir(scenario_name: str, overrides: dict[str, Any], grid: dict[str, list[float]],
                        settings: dict[str, Any], root: Path | None = None) -> Path:
    """Where an ensemble is cached: named by the scenario and a hash of its whole recipe and the simulator
    version."""
    recipe = json.dumps(dict(version=SIM_VERSION, scenario=scenario_name, overrides=overrides, grid=grid,
                             settings=RunSettings(**settings).key()), sort_keys=True)
    key = hashlib.sha256(recipe.encode()).hexdigest()[:12]
    return (root or cache_dir() / "sim") / f"ensemble-{scenario_name}-{key}"


def cached_ensemble(scenario_name: str, overrides: dict[str, Any], grid: dict[str, list[float]],
                    settings: dict[str, Any], progress: Progress | None = None, root: Path | None = None,
                    workers: int | None = None) -> Path:
    """The ensemble's cached directory, run first if it is not there (into a temporary folder renamed
    when every run is done, so a stopped build leaves nothing half-made behind).

    ``settings`` are :class:`RunSettings` values; ``workers`` defaults to two processes where there
    are two cores. SimulationError when a run fails.
    """
    out = cached_ensemble_dir(scenario_name, overrides, grid, settings, root)
    if (out / MANIFEST).is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=out.parent))
    try:
        manifest = run_ensemble(scenario_name, overrides, grid, RunSettings(**settings), tmp,
                                workers=workers or min(2, os.cpu_count() or 1), progress=progress)
        failed = [r for r in manifest["runs"] if r["status"] != "done"]
        if failed:
            raise SimulationError(f"the ensemble failed in {len(failed)} run(s): {failed[0].get('error')}")
        try:
            tmp.rename(out)
        except OSError:  # built meanwhile by someone else: theirs is as good
            if not (out / MANIFEST).is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def default_ensemble(progress: Progress | None = None, root: Path | None = None, workers: int | None = None) -> Path:
    """The default ensemble's directory (run on first use, then cached)."""
    return cached_ensemble(DEFAULT_SCENARIO, {}, DEFAULT_GRID, DEFAULT_SETTINGS, progress, root, workers)


def _within(directory: Path, name: Any) -> bool:
    """Whether the run file ``name`` is a relative path that stays in ``directory`` (links followed)."""
    if not isinstance(name, str) or not name or Path(name).is_absolute():
        return False
    root = directory.resolve()
    resolved = (directory / name).resolve()
    return root in resolved.parents


def read_manifest(directory: str | os.PathLike) -> dict:
    """An ensemble's manifest; SimulationError if it is missing or malformed or a finished run's file is gone.

    Run files are given relative to ``directory`` (``directory / run["file"]``).
    """
    d = Path(directory).expanduser()
    path = d / MANIFEST
    if not path.is_file():
        raise SimulationError(f"{d} is not an ensemble: no {MANIFEST}")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SimulationError(f"cannot read ensemble manifest {path}: {err}") from None
    if not isinstance(manifest, dict):
        raise SimulationError(f"ensemble manifest {path} is not a JSON object")
    missing = [k for k in MANIFEST_KEYS if k not in manifest]
    if not missing and not isinstance(manifest["runs"], list):
        missing = ["runs (a list)"]
    if not missing:
        missing = sorted({f"runs[].{k}" for run in manifest["runs"] for k in RUN_KEYS
                          if not isinstance(run, dict) or k not in run})
    if missing:
        raise SimulationError(f"ensemble manifest {path} is malformed: missing {', '.join(missing)}")
    outside = [str(run["file"]) for run in manifest["runs"]
               if (run["status"] == "done" or run["file"] is not None) and not _within(d, run["file"])]
    if outside:
        raise SimulationError(f"ensemble manifest {path}: run file(s) {', '.join(outside)} lie outside the ensemble "
                              "directory (run files are named relative to it, and stay in it)")
    absent = [run["file"] for run in manifest["runs"] if run["status"] == "done" and not (d / run["file"]).is_file()]
    if absent:
        raise SimulationError(f"ensemble {d}: {len(absent)} run file(s) missing: {', '.join(absent)}")
    return manifest
