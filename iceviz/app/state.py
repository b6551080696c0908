"""The explorer's per-session state, as ``param`` classes that never import Panel.

One :class:`ExplorerState` per browser session: which region and data source
are chosen, which models to train with which hyper-parameters, and the jobs
it launched (through a :class:`~iceviz.runtime.queue.JobQueue`). The Panel
layer only renders this state and forwards clicks to its methods.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import param

from iceviz.data.builder import RegionRecipe
from iceviz.data.problem import DataError, FluxProblem
from iceviz.data.products import Catalog
from iceviz.data.region import intersect
from iceviz.data.roots import data_roots, inside, shown_path
from iceviz.data.specs import describe, load_problem
from iceviz.geo.crs import box_size_km, format_bounds
from iceviz.geo.regions import PRESET_REGIONS
from iceviz.models.registry import REGISTRY, model_names
from iceviz.training.device import available_devices
from iceviz.runtime.job import CallTask, Job, JobStatus
from iceviz.runtime.queue import JobQueue, JobTooLarge, QueueFull, SessionQueue
from iceviz.runtime.executor import isolated_job_class
from iceviz.training.trainers import problem_defaults, training_job

REPO_ROOT = Path(__file__).resolve().parents[2]
CUSTOM = "custom"
REAL = "region:box"
REAL_LABEL = "Real data: MEaSUREs velocity × Bedmap / BedMachine thickness"


def real_data_ready(catalog: Catalog) -> bool:
    """True when the catalogue holds a velocity product and a thickness source (survey points or BedMachine)."""
    return bool(catalog.mosaics()) and bool(catalog.of("bedmap") or catalog.of("bedmachine"))


def available_sources(catalog: Catalog | None = None) -> dict[str, str]:
    """Data sources the app offers: label -> spec (without options). Only those that load here."""
    sources = {
        "Synthetic outlet glacier (Byrd box)": "synthetic:glacier",
        **{f"Benchmark field: {n}": f"synthetic:{n}" for n in ("curve", "branching", "deflection", "ridges", "edge")},
    }
    try:
        load_problem("byrd-mcor:")
        sources = {"Byrd Glacier observations (byrd-mcor)": "byrd-mcor:", **sources}
    except DataError:
        pass
    sample = REPO_ROOT / "sample_data" / "glacier_points.csv"
    if sample.is_file():
        sources["Sample points file (glacier_points.csv)"] = f"points:{sample}"
    if catalog is not None and real_data_ready(catalog):
        sources[REAL_LABEL] = REAL
    return sources


@functools.lru_cache(maxsize=32)
def _whole_source(spec: str) -> FluxProblem:
    """A source loaded once per server process and shared read-only by every session."""
    return load_problem(spec)


def _bbox_option(bounds: tuple[float, float, float, float]) -> str:
    return "bbox=" + ",".join(f"{b:.0f}" for b in bounds)


class ExplorerState(param.Parameterized):
    """Region, data and models of one browser session, and the jobs it runs."""

    region = param.Selector(default=CUSTOM,
                            objects={"Custom box (drag one on the map)": CUSTOM,
                                     **{r.name: key for key, r in PRESET_REGIONS.items()}},
                            doc="A preset region (shown by its name, held by its key), or 'custom' for the box "
                                "drawn on the map.")
    bounds = param.NumericTuple(default=(400_000.0, 600_000.0, -950_000.0, -750_000.0), length=4,
                                doc="Region box (xmin, xmax, ymin, ymax) [m, EPSG:3031].")
    source = param.Selector(default=None, objects=[], doc="Where the flux observations come from.")
    models = param.ListSelector(default=["dfnn", "pinn", "nn"], objects=model_names("flux"),
                                doc="Models to train side by side.")
    seconds = param.Number(30.0, bounds=(1.0, 600.0), doc="Training budget per model [s].")
    device = param.Selector(default="auto", objects=available_devices(), doc="Where to train: auto = CUDA, else MPS, else CPU.")
    message = param.String("", doc="The latest message for the user (errors name what was wrong).")
    problem = param.Parameter(None, doc="The loaded problem for the current box and source (None when unusable).")
    recipe = param.ClassSelector(class_=RegionRecipe, doc="How real-data regions are built (real-data source only).")
    catalog = param.ClassSelector(class_=Catalog, doc="The product files found (settings, environment).")
    session_paths = param.List(default=[], item_type=Path,
                               doc="Data folders this session picked under the server's data roots.")

    def __init__(self, queue: JobQueue | SessionQueue | None = None, build_in_background: bool = False,
                 loads: JobQueue | SessionQueue | None = None, isolate: bool = False, **params: Any):
        self.build_in_background = build_in_background
        self.loads = loads or JobQueue(slots=1)
        """Where background region builds wait (the server's quick queue in the app)."""
        self.isolate = isolate
        """Build regions in a worker process (what a server wants), not a thread."""
        self._build_job: Job | None = None
        params.setdefault("catalog", Catalog.discover())
        params.setdefault("recipe", RegionRecipe())
        self._sources = available_sources(params["catalog"])
        self.queue = queue or JobQueue()
        # registry defaults; what the problem sets follows each load (_on_problem)
        self.hyper: dict[str, param.Parameterized] = {n: REGISTRY[n].make_params() for n in model_names("flux")}
        self._set_by_problem: dict[str, dict[str, Any]] = {}
        """Per model, the values the last loaded problem set (see :meth:`_on_problem`)."""
        self.param.source.objects = list(self._sources)
        params.setdefault("source", next(iter(self._sources)))
        super().__init__(**params)
        self.use_source_extent()
        self.recipe.param.watch(lambda e: self.load() if self.is_real else None,
                                [k for k in RegionRecipe.param if k != "name"])

    # -- data ---------------------------------------------------------------------
    @property
    def source_spec(self) -> str:
        return self._sources[self.source]

    @property
    def is_real(self) -> bool:
        """True when the source is built from the real products for the box (a region: spec)."""
        return self.source_spec == REAL

    def footprint(self, label: str | None = None) -> FluxProblem:
        """The whole problem of a source: its bounds are the dataset's footprint (not for real data)."""
        return _whole_source(self._sources[label or self.source])

    def source_bounds(self, label: str) -> tuple[float, float, float, float]:
        """The footprint of a source: the velocity mosaic's for real data, else the whole problem's bounds."""
        if self._sources[label] == REAL:
            return tuple(float(b) for b in self.catalog.mosaics()[0].footprint)
        return tuple(float(b) for b in self.footprint(label).bounds)

    def use_data(self, folder: str | Path) -> list[str]:
        """Use the product files under ``folder`` in this session (never recorded for other sessions): it must
        lie under one of the server's data roots (:func:`iceviz.data.roots.data_roots`, set by whoever started
        the server). Refreshes the catalogue and the sources; returns one line per file found, named relative
        to its root (what went wrong goes to :attr:`message`, without revealing anything outside the roots)."""
        roots = data_roots()
        path = Path(str(folder).strip())
        if not path.is_absolute() or not inside(path, roots):
            self.message = ("Only the data folders this server offers can be used: pick one in the list (whoever "
                            "runs the server adds folders with `iceviz data add` or $ICEVIZ_DATA_ROOTS).")
            return []
        path = path.resolve()
        if path not in self.session_paths:
            self.session_paths = [*self.session_paths, path]
        self.catalog = Catalog.discover(session=self.session_paths)
        self._sources = available_sources(self.catalog)
        self.param.source.objects = list(self._sources)
        found = [f for f in self.catalog.files if inside(f.path, [path])]
        self.message = "" if found else (f"{shown_path(path, roots)}: no MEaSUREs, BedMachine or Bedmap file "
                                          "that iceviz can read")
        return [f"{f.product}: {shown_path(f.path, roots)}" for f in found]

    def missing_datasets(self) -> list[str]:
        """Public flux datasets (``iceviz data fetch`` names) that this machine does not have yet."""
        return [] if "byrd-mcor:" in self._sources.values() else ["byrd-mcor"]

    def fetch_dataset(self, name: str) -> bool:
        """Fetch a public dataset (blocking: call it off the event loop), offer it and pick it; False, with
        :attr:`message` saying why, when it could not be fetched."""
        from iceviz.data.public import fetch

        try:
            fetch(name)
        except DataError as err:
            self.message = str(err)
            return False
        self._sources = available_sources(self.catalog)
        self.param.source.objects = list(self._sources)
        label = next(k for k, v in self._sources.items() if v.startswith(f"{name}:"))
        self.message = ""
        self.source = label
        return True

    def points_csv(self) -> str:
        """The current real-data box as a ``points:`` file (CSV text with provenance columns), to keep."""
        from iceviz.data.specs import build_region_from_spec

        if not self.is_real:
            raise DataError("a points file is built from the real-data source only")
        return build_region_from_spec(self.spec).table.to_csv(index=False)

    def footprints(self) -> dict[str, tuple[float, float, float, float]]:
        """Bounds of every available source, one entry per distinct footprint (for the map)."""
        groups: list[tuple[tuple[float, ...], list[str]]] = []
        for label in self._sources:
            try:
                bounds = self.source_bounds(label)
            except DataError:
                continue
            # footprints whose edges all lie within 20 km of each other share one box and label
            same = next((g for g in groups if max(abs(a - b) for a, b in zip(g[0], bounds)) < 20_000), None)
            if same is None:
                groups.append((bounds, [label]))
            else:
                same[1].append(label)
        return {(labels[0] if len(labels) == 1 else f"{labels[0]} + {len(labels) - 1} more"): bounds
                for bounds, labels in groups}

    def use_source_extent(self) -> None:
        """Set the box to the whole of the current source (real data: keep the box, the mosaic is continental)."""
        if self.is_real:
            self.load()
            return
        try:
            bounds = tuple(float(b) for b in self.footprint().bounds)
        except DataError as err:
            self.message = str(err)
            self.problem = None
            return
        self.region = CUSTOM
        self.set_bounds(bounds)

    @param.depends("source", watch=True)
    def _on_source(self) -> None:
        self.use_source_extent()  # loads the source: _on_problem follows

    def _problem_defaults(self) -> dict[str, dict[str, Any]]:
        """What the loaded problem sets for each model over the registry (nothing while none is loaded).

        Every flux model shares one parameter class and, unless its registry defaults say otherwise, one
        validation split: models whose family, class, split fraction and seed agree share one computation
        (on a 27,000-point box a split takes ~0.1 s, and there are nine flux models)."""
        if self.problem is None:
            return {name: {} for name in self.hyper}
        out: dict[str, dict[str, Any]] = {}
        done: dict[tuple, dict[str, Any]] = {}
        for name in self.hyper:
            spec = REGISTRY[name]
            p = spec.make_params(**{k: v for k, v in self.problem.hints.items() if k in spec.params.param})
            key = (spec.family, spec.params, p.val_fraction, p.seed)
            if key not in done:
                done[key] = problem_defaults(spec, self.problem)
            out[name] = done[key]
        return out

    def _expected(self, name: str, by_problem: dict[str, Any]) -> dict[str, Any]:
        """Model ``name``'s hyper-parameters as nobody edited them: param's, the registry's, then the problem's."""
        spec = REGISTRY[name]
        defaults = {k: p.default for k, p in spec.params.param.objects().items() if k != "name"}
        return {**defaults, **spec.defaults, **by_problem}

    def edits(self) -> dict[str, dict[str, Any]]:
        """Per model, the hyper-parameters the user set to something else than they would be."""
        out = {}
        for name, params in self.hyper.items():
            expected = self._expected(name, self._set_by_problem.get(name, {}))
            out[name] = {k: v for k, v in params.param.values().items() if k in expected and v != expected[k]}
        return out

    def reset_hyper(self) -> None:
        """Hyper-parameters back to the registry defaults, then those the loaded problem sets: for flux
        models the batch, plan and patience that follow its number of points, and the source's hints
        (:func:`~iceviz.training.trainers.problem_defaults`). In place: the widgets follow."""
        self._set_by_problem = self._problem_defaults()
        for name, params in self.hyper.items():
            params.param.update(**self._expected(name, self._set_by_problem[name]))

    @param.depends("problem", watch=True)
    def _on_problem(self) -> None:
        """A new box or source loaded: every hyper-parameter takes what the new problem sets (the batch, plan
        and patience follow its number of points; a source may hint more), except those the user edited, which
        stay as edited, since the app passes every widget as an override."""
        if self.problem is None:
            return
        edits = self.edits()
        self._set_by_problem = self._problem_defaults()
        for name, params in self.hyper.items():
            params.param.update(**{**self._expected(name, self._set_by_problem[name]), **edits[name]})

    @param.depends("region", watch=True)
    def _on_region(self) -> None:
        if self.region != CUSTOM:
            self.set_bounds(PRESET_REGIONS[self.region].bounds, keep_region=True)

    def set_bounds(self, bounds: tuple[float, float, float, float], keep_region: bool = False) -> None:
        """Use the box ``bounds`` (from a preset, the map or a typed value) and load its data."""
        xmin, xmax, ymin, ymax = (float(b) for b in bounds)
        if not (xmin < xmax and ymin < ymax):
            self.message = f"the box needs xmin < xmax and ymin < ymax, got {bounds}"
            return
        if not keep_region:
            self.region = CUSTOM
        self.bounds = (xmin, xmax, ymin, ymax)
        self.load()

    @property
    def spec(self) -> str:
        """The data spec for the current source cropped to the current box."""
        if self.is_real:
            changed = {k: v for k, v in self.recipe.param.values().items()
                       if k != "name" and v != RegionRecipe.param[k].default}
            options = "&".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in changed.items())
            if self.session_paths:  # the session's folders travel with the spec (to the training workers)
                options = "&".join(filter(None, [options, "data=" + ",".join(map(str, self.session_paths))]))
            head = f"region:{self.region}" if self.region != CUSTOM else f"region:box?{_bbox_option(self.bounds)}"
            return head + (("&" if "?" in head else "?") + options if options else "")
        full = self.footprint().bounds
        if all(abs(a - b) < 1e-6 for a, b in zip(full, self.bounds)):
            return self.source_spec
        sep = "&" if "?" in self.source_spec else "?"
        return f"{self.source_spec}{sep}{_bbox_option(self.bounds)}"

    def shown(self, text: str) -> str:
        """``text`` (e.g. a spec) as the page shows it: the session's data folders named relative to their
        roots, not as the server's paths."""
        from iceviz.app.paths import for_browser

        roots = data_roots()
        for path in self.session_paths:
            text = text.replace(str(path), shown_path(path, roots))
        return for_browser(text)

    def load(self) -> FluxProblem | None:
        """Load the current box; a box without usable data leaves a message, never an exception.

        With :attr:`build_in_background` a real-data box is built as a job (seconds for a large box, which
        would stall every session of a server): :meth:`finish_build` then applies the newest result.
        """
        spec = self.spec
        if self.is_real and self.build_in_background:
            if self._build_job is not None:
                self._build_job.cancel()  # a newer box replaces it: its result, if it comes, is dropped
            self.problem = None
            kind = isolated_job_class() if self.isolate else Job
            job = kind("region build", CallTask(load_problem, (spec,), (DataError,)), snapshot_every=None,
                       num_threads=None)
            try:
                self._build_job = self.loads.submit(job)
            except QueueFull as err:
                self._build_job = None
                self.message = f"The box was not built: {err}."
                return None
            self.message = f"Building the box from the product files ({spec})…"
            return None
        problem, message = self._try_load(spec)
        if problem is None and not self.is_real:
            message = self._outside_message(message)
        self._apply(problem, message)
        return self.problem

    def _outside_message(self, message: str) -> str:
        """The refusal of a box the current data set does not cover, in words: what covers what, what to do."""
        try:
            footprint = self.source_bounds(self.source)
        except DataError:
            return message
        if intersect(self.bounds, footprint) is not None:
            return message  # it overlaps: the loader's own reason (too few points, ...) says more
        where = PRESET_REGIONS[self.region].name if self.region != CUSTOM else "This box"
        return (f"No usable data in this box: {where} lies outside the chosen data set ({self.source}, which "
                f"covers {format_bounds(footprint)}). Pick a data set that covers it (the cyan boxes "
                f"on the map), draw a box inside one, or use the real products (Map tab, 'Use this folder'; "
                f"or `iceviz data download`) and choose the real-data source.")

    @staticmethod
    def _try_load(spec: str) -> tuple[FluxProblem | None, str]:
        try:
            return load_problem(spec), ""
        except DataError as err:
            return None, f"No usable data in this box: {err}"

    def _apply(self, problem: FluxProblem | None, message: str) -> None:
        self.problem = problem
        self.message = message

    def finish_build(self) -> bool:
        """Apply the newest background build once it has ended (older ones were cancelled and are dropped);
        True when something was applied. Call it from the thread that owns the session (the app's poll)."""
        job = self._build_job
        if job is None or not job.status.finished:
            return False
        self._build_job = None
        if job.status is JobStatus.DONE:
            self._apply(job.result, "")
        elif job.status is JobStatus.FAILED:
            self._apply(None, f"No usable data in this box: {job.error}")
        else:
            return False
        return True

    def summary(self) -> dict[str, Any]:
        """What the box holds: size in km, observation counts, fields. The training points are counted as a
        seed-0 flux run uses them: ``train`` fitted, ``validation`` held out (the problem's training points are
        both)."""
        width, height = box_size_km(self.bounds)
        out: dict[str, Any] = {"width_km": width, "height_km": height, "spec": self.spec}
        if self.problem is not None:
            info = describe(self.problem)
            held = info["validation_points"]
            out.update(train=info["train_points"] - held, validation=held, test=info["test_points"],
                       fields=info["fields"], notes=self.problem.notes)
        return out

    # -- training -----------------------------------------------------------------------
    def compatible(self, name: str) -> str | None:
        """Why ``name`` cannot train on the current problem, or None when it can."""
        if self.problem is None:
            return "no data loaded"
        options = REGISTRY[name].options
        if options.get("aux") and not self.problem.has_surface:
            return "needs surface elevation, which this source lacks"
        if options.get("direction") and self.problem.direction is None:
            return "needs velocity directions, which this source lacks"
        return None

    def start(self, snapshot_every: float = 0.5, nice: int = 0, isolate: bool = False) -> list[Job]:
        """Queue one job per selected model (skipping, with a message, those the data cannot serve).

        ``isolate`` trains each job in a worker process (what a server wants: see iceviz.runtime.worker).
        """
        if self.problem is None:
            self.message = self.message or "Load a region with data first."
            return []
        jobs, skipped = [], []
        for name in self.models:
            reason = self.compatible(name)
            if reason:
                skipped.append(f"{name} ({reason})")
                continue
            overrides = {k: v for k, v in self.hyper[name].param.values().items() if k != "name"}
            overrides["seconds"] = self.seconds  # the first budget reached (epochs or seconds) ends the run
            job = training_job(name, self.problem, device=self.device, snapshot_every=snapshot_every, nice=nice,
                               isolate=isolate, **overrides)
            try:
                jobs.append(self.queue.submit(job))
            except JobTooLarge as err:  # this one alone: the others may fit
                skipped.append(f"{name} ({err})")
            except QueueFull as err:
                skipped.append(f"{', '.join(self.models[self.models.index(name):])} ({err})")
                break
        self.message = f"Skipped {', '.join(skipped)}." if skipped else ""
        return jobs

    def cancel_all(self) -> None:
        self.queue.cancel_all()
