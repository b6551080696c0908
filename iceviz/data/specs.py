"""Data specs: one parser turns a spec string into a :class:`FluxProblem`.

Syntax: ``KIND:ARG`` optionally followed by ``?key=value&key=value``::

    synthetic:curve?noise=0.05&seed=3
    synthetic:glacier?bbox=450000,550000,-900000,-800000
    byrd-mcor:                      (directory searched, see iceviz.data.byrd)
    byrd-mcor:/data/byrd_mcor
    points:sample_data/glacier_points.csv?tile=20000

``bbox=xmin,xmax,ymin,ymax`` (metres) works for every kind and crops train,
test and direction points to that box. The first ``?`` starts the options, so
file names must not contain one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from iceviz.data import synthetic
from iceviz.data.ensemble import EnsembleProblem
from iceviz.data.problem import DataError, FluxObservations, FluxProblem
from iceviz.data.region import crop
from iceviz.data.shelf import ShelfProblem, crop_shelf
from iceviz.data.splits import validation_mask

Problem = FluxProblem | ShelfProblem | EnsembleProblem


@dataclass(frozen=True)
class Option:
    """A spec option: parser (text -> value, ValueError on bad text) and one-line help."""

    name: str
    parse: Callable[[str], Any]
    help: str


@dataclass(frozen=True)
class Kind:
    """A spec kind: its argument pattern, description, options and loader."""

    name: str
    arg: str
    description: str
    options: tuple[Option, ...]
    load: Callable[[str, dict[str, Any], str], Problem]
    args: tuple[str, ...] = field(default=())  # the valid arguments when they are a fixed list


@dataclass(frozen=True)
class ParsedSpec:
    """A spec split into its parts; options still as text."""

    spec: str
    kind: str
    arg: str
    options: dict[str, str]


def _float(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise ValueError("must be finite")
    return v


def _noise(text: str) -> float:
    v = _float(text)
    lo, hi = synthetic.NOISE_BOUNDS
    if not lo <= v <= hi:
        raise ValueError(f"must lie in [{lo:g}, {hi:g}]")
    return v


def _seed(text: str) -> int:
    v = int(text)
    if v < 0:
        raise ValueError("must be a non-negative integer")
    return v


def _tile(text: str) -> float:
    v = _float(text)
    if v <= 0:
        raise ValueError("must be a positive number of metres")
    return v


def _bbox(text: str) -> tuple[float, float, float, float]:
    parts = [p for p in text.split(",")]
    if len(parts) != 4:
        raise ValueError("needs four numbers xmin,xmax,ymin,ymax (metres)")
    xmin, xmax, ymin, ymax = (_float(p) for p in parts)
    if not (xmin < xmax and ymin < ymax):
        raise ValueError("needs xmin < xmax and ymin < ymax")
    return xmin, xmax, ymin, ymax


BBOX = Option("bbox", _bbox, "xmin,xmax,ymin,ymax in metres: crop train, test and direction points to this box")
NOISE = Option("noise", _noise, f"training noise std as a fraction of mean |q|, in [0, 1] (default {synthetic.DEFAULT_NOISE:g})")
SEED = Option("seed", _seed, f"noise seed, integer >= 0 (default {synthetic.DEFAULT_SEED})")


def _load_synthetic(arg: str, opts: dict[str, Any], spec: str) -> FluxProblem:
    return synthetic.synthetic_problem(
        arg, noise=opts.get("noise", synthetic.DEFAULT_NOISE), seed=opts.get("seed", synthetic.DEFAULT_SEED), spec=spec
    )


def _load_byrd(arg: str, opts: dict[str, Any], spec: str) -> FluxProblem:
    from iceviz.data.byrd import load_byrd

    return load_byrd(arg or None, spec=spec)


def _load_points(arg: str, opts: dict[str, Any], spec: str) -> FluxProblem:
    from iceviz.data.points import DEFAULT_EXTENT, DEFAULT_TILE, load_points

    if not arg:
        raise DataError(f"{spec}: points needs a file, e.g. points:sample_data/glacier_points.csv")
    return load_points(arg, tile=opts.get("tile", DEFAULT_TILE), spec=spec, extent=opts.get("extent", DEFAULT_EXTENT))


def _load_diffice(arg: str, opts: dict[str, Any], spec: str) -> ShelfProblem:
    from iceviz.data.shelf import load_diffice

    if not arg:
        raise DataError(f"{spec}: diffice needs a .mat file, e.g. diffice:../shared/data/diffice/SynData_exp1.mat")
    return load_diffice(arg, spec=spec)


def _load_shelf(arg: str, opts: dict[str, Any], spec: str) -> ShelfProblem:
    from iceviz.data.shelf import load_synthetic_shelf

    return load_synthetic_shelf(arg, spec=spec)


def _values(text: str) -> list[float]:
    values = [float(v) for v in text.split(",") if v.strip()]
    if not values or not all(math.isfinite(v) for v in values):
        raise ValueError("expected comma-separated finite numbers")
    return values


def _load_sim(arg: str, opts: dict[str, Any], spec: str) -> EnsembleProblem:
    from iceviz.data.ensemble import load_ensemble
    from iceviz.sim.ensemble import default_ensemble
    from iceviz.sim.ssa import SimulationError

    if not arg:
        raise DataError(f"{spec}: sim needs an ensemble directory (from 'iceviz sim ensemble') or 'default'")
    if arg == "default":
        try:
            arg = str(default_ensemble())
        except SimulationError as err:
            raise DataError(f"{spec}: {err}") from None
    return load_ensemble(arg, spec=spec, test=opts.get("test"), val=opts.get("val"))


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}")
        return value
    return parse


def _nonnegative(text: str) -> float:
    v = _float(text)
    if v < 0:
        raise ValueError("must be >= 0")
    return v


def _int_at_least(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        v = int(text)
        if v < low:
            raise ValueError(f"must be an integer >= {low}")
        return v
    return parse


def _fraction(text: str) -> float:
    v = _float(text)
    if not 0.05 <= v <= 0.8:
        raise ValueError("must lie in [0.05, 0.8]")
    return v


def _paths(text: str) -> list[str]:
    paths = [p.strip() for p in text.split(",") if p.strip()]
    if not paths:
        raise ValueError("expected comma-separated files or folders")
    return paths


REGION_RECIPE_OPTIONS = ("spacing", "firn", "thickness", "gap", "split", "tile", "frame", "test_fraction",
                         "velocity", "min_points", "seed")


def _load_region(arg: str, opts: dict[str, Any], spec: str) -> FluxProblem:
    return build_region_spec(arg, opts, spec).problem


def build_region_from_spec(spec: str):
    """The :class:`~iceviz.data.builder.RegionBuild` (problem and points table) of a ``region:`` spec string
    (DataError for other kinds)."""
    parsed = parse_spec(spec)
    if parsed.kind != "region":
        raise DataError(f"{spec}: iceviz makes points files from region: specs only (e.g. region:byrd)")
    return build_region_spec(parsed.arg, parse_options(parsed), parsed.spec)


def build_region_spec(arg: str, opts: dict[str, Any], spec: str):
    """The :class:`~iceviz.data.builder.RegionBuild` of a ``region:`` spec (a preset key, or ``box`` + bbox)."""
    from iceviz.data.builder import RegionRecipe, build_region
    from iceviz.data.products import Catalog
    from iceviz.geo.regions import PRESET_REGIONS, get_region

    if arg in ("", "box"):
        if "bbox" not in opts:
            raise DataError(f"{spec}: region:box needs bbox=xmin,xmax,ymin,ymax (metres), or give a preset region: "
                            f"{', '.join(PRESET_REGIONS)}")
        bounds = opts["bbox"]
    else:
        try:
            bounds = opts.get("bbox", get_region(arg).bounds)
        except ValueError as err:
            raise DataError(f"{spec}: {err} (or region:box?bbox=...)") from None
    recipe = RegionRecipe(**{k: v for k, v in opts.items() if k in REGION_RECIPE_OPTIONS})
    extra = {}
    if "data" in opts:
        from iceviz.data.products import expand, identify

        for root in opts["data"]:
            for p in expand(Path(root)):
                try:
                    extra.setdefault(identify(p), []).append(p)
                except DataError:
                    if not Path(root).expanduser().is_dir():
                        raise
    return build_region(bounds, recipe, Catalog.discover(extra), spec=spec)


KINDS: dict[str, Kind] = {
    "synthetic": Kind(
        "synthetic",
        "NAME",
        "synthetic field with exact divergence-free truth",
        (NOISE, SEED, BBOX),
        _load_synthetic,
        synthetic.SYNTHETIC_NAMES,
    ),
    "byrd-mcor": Kind(
        "byrd-mcor",
        "DIR",
        "Byrd Glacier tensors of 'Mass Conservation on Rails' (DIR empty: $ICEVIZ_DATA/byrd_mcor, then ../shared/data/byrd_mcor)",
        (BBOX,),
        _load_byrd,
    ),
    "points": Kind(
        "points",
        "FILE",
        "flux points from a .csv or .nc file (x, y, qx, qy [, s, vx, vy, split]; see sample_data/README.md)",
        (Option("tile", _tile, "checkerboard tile size in metres when the file has no split column (default 15000)"),
         BBOX,
         Option("extent", _choice("antarctica", "any"), "allowed |x|, |y|: antarctica (default; EPSG:3031, ±3400 km) "
                                                        "or any (another polar projection, ±20000 km)")),
        _load_points,
    ),
    "diffice": Kind(
        "diffice",
        "FILE.mat",
        "ice shelf for the viscosity inversion in the DIFFICE_jax layout (velocity m/s, thickness, calving front)",
        (BBOX,),
        _load_diffice,
    ),
    "shelf": Kind(
        "shelf",
        "NAME",
        "synthetic ice shelf with known viscosity, solved by iceviz's own SSA (see iceviz.sim.shelves)",
        (BBOX,),
        _load_shelf,
    ),
    "sim": Kind(
        "sim",
        "DIR",
        "simulation ensemble for the mesh emulators (DIR from 'iceviz sim ensemble'; 'default': the cached default "
        "ensemble, run on first use, ~2 min)",
        (Option("test", _values, "forcing values held out for testing, e.g. 20,50 (default: a quarter of the "
                                 "interior values)"),
         Option("val", _values, "forcing values held out for validation (default: one interior value)")),
        _load_sim,
    ),
    "region": Kind(
        "region",
        "NAME",
        "flux = thickness × velocity built from real products (MEaSUREs, BedMachine, Bedmap) for a preset region "
        "or region:box?bbox=...; files from 'iceviz data add', $ICEVIZ_MEASURES_INSAR etc. or data=PATH",
        (BBOX,
         Option("spacing", _nonnegative, "thin survey points closer than this, metres (default 1000; 0 keeps all)"),
         Option("firn", _choice("none", "subtract"), "none: thickness as surveyed; subtract: minus BedMachine firn "
                                                     "air content (ice equivalent)"),
         Option("thickness", _choice("bedmap", "bedmap+bedmachine", "bedmachine"),
                "survey points only (default), BedMachine standing in beyond 'gap' of any survey, or BedMachine only"),
         Option("gap", _tile, "metres from a survey point beyond which BedMachine stands in (default 10000)"),
         Option("split", _choice("tiles", "lines"), "checkerboard tiles (default) or whole flight lines"),
         Option("tile", _tile, "checkerboard tile size in metres (default 15000)"),
         Option("frame", _nonnegative, "border in metres kept for training, tiles start inside it (default 0; the "
                                       "Byrd tensors: 10000)"),
         Option("test_fraction", _fraction, "share of survey points held out by flight line (split=lines; 0.3)"),
         Option("velocity", _choice("auto", "measures-insar", "measures-phase"), "velocity product (default auto)"),
         Option("data", _paths, "extra product files or folders, comma-separated (identified by content)"),
         Option("min_points", _int_at_least(5), "fewest usable points the box must hold (default 50)"),
         Option("seed", _seed, "seed of the flight-line split (default 0)")),
        _load_region,
    ),
}

SYNTHETIC_DESCRIPTIONS: dict[str, str] = {
    **{n: f"benchmark field '{n}': {synthetic.BENCHMARKS[n].description}; 9 flight lines, noise-free 20 × 20 test grid" for n in synthetic.BENCHMARK_NAMES},
    "glacier": "outlet glacier in the Byrd box: trunk, 4 tributaries, fjord narrowing, surface; ~20 flight lines, 20 km checkerboard",
}


def _option_list(kind: Kind) -> str:
    return "; ".join(f"{o.name} ({o.help})" for o in kind.options)


def parse_spec(spec: str) -> ParsedSpec:
    """Split ``KIND:ARG?key=value&...`` (DataError for unknown kinds or malformed options)."""
    if not isinstance(spec, str) or not spec.strip():
        raise DataError(f"empty data spec {spec!r}; valid kinds: {', '.join(KINDS)}")
    text = spec.strip()
    head, _, query = text.partition("?")
    kind, _, arg = head.partition(":")
    kind, arg = kind.strip().lower(), arg.strip()
    if kind not in KINDS:
        raise DataError(f"{text}: unknown data kind {kind!r}; valid kinds: {', '.join(KINDS)}")
    options: dict[str, str] = {}
    for item in query.split("&") if query else []:
        if not item:
            continue
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if not eq or not key:
            raise DataError(f"{text}: malformed option {item!r}; expected key=value")
        if key in options:
            raise DataError(f"{text}: option {key!r} given twice")
        options[key] = value.strip()
    return ParsedSpec(text, kind, arg, options)


def parse_options(parsed: ParsedSpec) -> dict[str, Any]:
    """Typed option values (DataError naming the option, its value and the valid options)."""
    kind = KINDS[parsed.kind]
    by_name = {o.name: o for o in kind.options}
    values: dict[str, Any] = {}
    for key, text in parsed.options.items():
        if key not in by_name:
            raise DataError(f"{parsed.spec}: unknown option {key!r} for {kind.name}; valid options: {_option_list(kind)}")
        try:
            values[key] = by_name[key].parse(text)
        except ValueError as exc:
            raise DataError(f"{parsed.spec}: bad value {key}={text!r}: {exc}; {key}: {by_name[key].help}") from None
    return values


def load_problem(spec: str) -> Problem:
    """Parse ``spec`` and build its problem (a flux or a shelf problem; cropped when ``bbox`` is given)."""
    parsed = parse_spec(spec)
    kind = KINDS[parsed.kind]
    opts = parse_options(parsed)
    if kind.args and parsed.arg not in kind.args:
        got = repr(parsed.arg) if parsed.arg else "nothing"
        raise DataError(f"{parsed.spec}: unknown {kind.name} {kind.arg} {got}; valid: {', '.join(kind.args)}")
    problem = kind.load(parsed.arg, opts, parsed.spec)
    if "bbox" in opts and kind.name != "region":  # a region is built for its box, not cropped
        problem = crop_shelf(problem, opts["bbox"]) if isinstance(problem, ShelfProblem) else crop(problem, opts["bbox"])
    return problem


def list_specs() -> list[tuple[str, str]]:
    """(spec pattern, one-line description) for every available spec; options in :func:`list_options`."""
    rows = [
        (f"synthetic:{n}", f"{SYNTHETIC_DESCRIPTIONS[n]} (options: noise, seed, bbox)") for n in synthetic.SYNTHETIC_NAMES
    ]
    for name in ("byrd-mcor", "points", "diffice", "sim", "region"):
        kind = KINDS[name]
        rows.append((f"{name}:{kind.arg}", f"{kind.description} (options: {', '.join(o.name for o in kind.options)})"))
    from iceviz.sim.shelves import SHELVES  # the simulator is heavy to import: only when listing

    rows += [(f"shelf:{n}", f"synthetic ice shelf '{n}' with known viscosity, solved by iceviz's SSA (options: bbox)")
             for n in SHELVES]
    return rows


def list_options() -> list[tuple[str, str]]:
    """(option=example, which kinds accept it and what it does) for the spec options."""
    rows: dict[str, tuple[str, list[str]]] = {}
    for kind in KINDS.values():
        for o in kind.options:
            rows.setdefault(o.name, (o.help, []))[1].append(kind.name)
    examples = {"noise": "noise=0.02", "seed": "seed=0", "tile": "tile=15000", "bbox": "bbox=xmin,xmax,ymin,ymax",
                "extent": "extent=any"}
    return [(examples.get(n, n), f"[{', '.join(kinds)}] {help_}") for n, (help_, kinds) in rows.items()]


def _stats(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {}
    return {
        "min": float(values.min()),
        "median": float(np.median(values)),
        "mean": float(values.mean()),
        "max": float(values.max()),
        "rms": float(np.sqrt(np.mean(values**2))),
    }


def _flux_magnitude(obs: FluxObservations) -> np.ndarray:
    return np.hypot(obs.q[:, 0], obs.q[:, 1])


def describe_shelf(problem: ShelfProblem) -> dict[str, Any]:
    """A JSON-able summary of a shelf problem (``iceviz data info SPEC``)."""
    xy_v, uv = problem.velocity_points()
    _, h = problem.thickness_points()
    xmin, xmax, ymin, ymax = problem.bounds

    def raster(r: Any, n: int) -> dict[str, Any]:
        return {"shape": [int(s) for s in r.shape], "spacing_m": r.spacing, "points": n}

    out: dict[str, Any] = {
        "spec": problem.spec,
        "description": problem.description,
        "kind": problem.kind,
        "velocity_grid": raster(problem.velocity, len(xy_v)),
        "thickness_grid": raster(problem.thickness, len(h)),
        "front_points": len(problem.front),
        "bounds_m": [xmin, xmax, ymin, ymax],
        "size_km": [(xmax - xmin) / 1000.0, (ymax - ymin) / 1000.0],
        "fields": ["u", "v", "h", "front"] + (["mu_true"] if problem.has_truth else []),
        "speed_m_per_yr": _stats(np.hypot(uv[:, 0], uv[:, 1])),
        "thickness_m": _stats(h),
        "notes": list(problem.notes),
    }
    if problem.has_truth:
        mu = problem.velocity.fields["mu"]
        out["viscosity_pa_s"] = _stats(mu[np.isfinite(mu)])
    return out


def describe_ensemble(problem: EnsembleProblem) -> dict[str, Any]:
    pts = problem.mesh.points
    return {
        "spec": problem.spec,
        "kind": problem.kind,
        "directory": str(problem.directory),
        "scenario": problem.scenario,
        "overrides": problem.overrides,
        "runs": problem.n_runs,
        "nodes": int(problem.mesh.n_nodes),
        "size_km": [float(np.ptp(pts[:, 0])) / 1000.0, float(np.ptp(pts[:, 1])) / 1000.0],
        "snapshots": len(problem.times),
        "years": float(problem.times[-1] - problem.times[0]),
        "forcing": {k: sorted(set(map(float, problem.forcing[:, i]))) for i, k in enumerate(problem.forcing_keys)},
        "split": {k: [problem.label(r) for r in v] for k, v in problem.split.items()},
        "simulator_seconds_per_run": float(np.mean(problem.wall_time)),
        "simulator_dt_years": problem.mean_dt,
        "notes": list(problem.notes),
    }


def describe(problem: Problem) -> dict[str, Any]:
    """A JSON-able summary of a problem (``iceviz data info SPEC``)."""
    if isinstance(problem, ShelfProblem):
        return describe_shelf(problem)
    if isinstance(problem, EnsembleProblem):
        return describe_ensemble(problem)
    xmin, xmax, ymin, ymax = (float(b) for b in problem.bounds)
    fields = ["qx", "qy"]
    if problem.has_surface:
        fields.append("s")
    if problem.direction is not None:
        fields.append("direction")
    if problem.truth is not None:
        fields.append("truth")
    if problem.surface_truth is not None:
        fields.append("surface_truth")
    sc = problem.scale
    held, how = validation_mask(problem.train, problem.bounds)
    out: dict[str, Any] = {
        "spec": problem.spec,
        "description": problem.description,
        "kind": problem.kind,
        "train_points": len(problem.train),
        "test_points": len(problem.test),
        "validation_points": int(held.sum()),
        "validation_split": f"{how}: carved from the training points; flux models fit the other "
                            f"{len(held) - int(held.sum())} and choose their kept weights on these",
        "flight_lines": None if problem.train.line is None else int(len(set(map(str, problem.train.line)) - {""})),
        "direction_points": 0 if problem.direction is None else int(problem.direction.xy.shape[0]),
        "bounds_m": [xmin, xmax, ymin, ymax],
        "size_km": [(xmax - xmin) / 1000.0, (ymax - ymin) / 1000.0],
        "grid_shape": [int(n) for n in problem.grid_shape],
        "fields": fields,
        "flux_magnitude_m2_per_yr": {
            "train": _stats(_flux_magnitude(problem.train)),
            "test": _stats(_flux_magnitude(problem.test)),
        },
        "scale": {
            "x0_m": float(sc.x0),
            "y0_m": float(sc.y0),
            "length_m": float(sc.length),
            "flux_m2_per_yr": float(sc.flux),
            "surface_m": float(sc.surface),
            "divergence_m_per_yr": float(sc.divergence),
        },
        "notes": list(problem.notes),
    }
    if problem.has_surface:
        s = np.concatenate([problem.train.s, problem.test.s if problem.test.s is not None else np.empty(0)])
        out["surface_m"] = {"min": float(s.min()), "max": float(s.max())}
    return out
