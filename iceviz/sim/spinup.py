"""Spin-ups: a scenario run without melt for ``spin_up_years``, cached on disk by a hash of its inputs.

The key covers everything that changes the result: the scenario's parameters,
the spin-up forcing and settings, the mesh (its node coordinates and
triangles) and :data:`SIM_VERSION`, which is raised whenever the physics or
numerics change. A cache file that cannot be read is recomputed; one that
cannot be written only costs the next caller a recomputation.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

import numpy as np

from iceviz.cache import cache_dir, write_npz
from iceviz.sim.model import Forcing, RunSettings, Simulator, State

SIM_VERSION = 1
"""Raised when a change to the simulator changes its results (invalidates cached spin-ups)."""
SPIN_UP_MAX_DT = 2.0
"""Largest spin-up time step [a] (the CFL condition may ask for less)."""


def spin_up_settings(years: float) -> RunSettings:
    return RunSettings(years=years, snapshot_every=max(years, 0.01), max_dt=SPIN_UP_MAX_DT)


def spin_up_key(simulator: Simulator) -> str:
    """Hex digest of the spin-up's inputs."""
    scenario = simulator.scenario
    digest = hashlib.sha256()
    recipe = dict(version=SIM_VERSION, scenario=scenario.key(), forcing=Forcing().key(),
                  settings=spin_up_settings(scenario.spin_up_years).key())
    digest.update(json.dumps(recipe, sort_keys=True).encode())
    digest.update(np.ascontiguousarray(simulator.mesh.points).tobytes())
    digest.update(np.ascontiguousarray(simulator.mesh.triangles).tobytes())
    return digest.hexdigest()[:20]


def spin_up_path(simulator: Simulator, root: Path | None = None) -> Path:
    return (root or cache_dir() / "sim") / f"spinup-{simulator.scenario.scenario_name}-{spin_up_key(simulator)}.npz"


def spun_up(simulator: Simulator, root: Path | None = None,
            on_step: Callable[[State, dict], None] | None = None) -> tuple[State, bool]:
    """The scenario's state after its spin-up (time reset to 0), and whether it came from the cache."""
    path = spin_up_path(simulator, root)
    n = simulator.mesh.n_nodes
    try:
        with np.load(path) as cached:
            h, u, v = cached["h"], cached["u"], cached["v"]
        if h.shape == u.shape == v.shape == (n,) and all(np.isfinite(a).all() for a in (h, u, v)):
            return State(h=h, u=u, v=v, t=0.0), True
    except (OSError, KeyError, ValueError):
        pass
    years = simulator.scenario.spin_up_years
    if years <= 0:
        start = simulator.initial_state()
        result = simulator.solve_velocity(start.h, None, spin_up_settings(0.0))
        state = State(h=start.h, u=result.u, v=result.v)
    else:
        state = simulator.run(Forcing(), spin_up_settings(years), on_step=on_step).state()
    state.t = 0.0
    write_npz(path, h=state.h, u=state.u, v=state.v)
    return state, False
