"""Ice-shelf presets of the viscosity tab, and its per-session state (``param`` only, never Panel).

A :class:`ShelfPreset` names a shelf the viscosity PINN can be trained on and
where its data comes from: a DIFFICE-layout file (``diffice:FILE.mat``, found
by :func:`iceviz.data.shelf.find_diffice`) or one of our synthetic shelves
(``shelf:NAME``, solved by our SSA, with a known viscosity). Presets whose file
is missing are still listed, and refused with a message naming the missing
file and what to do (real-data loaders for MEaSUREs / BedMachine are a later
issue: until then a shelf needs a file in the DIFFICE layout).

:class:`ViscosityState` holds one browser session's choices: the preset, an
optional crop box in the shelf's own coordinates, the budget, the device and
the ``viscosity-pinn`` hyper-parameters, and the job it started. Loading a
shelf can take seconds (a synthetic shelf solves an SSA), so it is split into
:func:`load_preset` (blocking, cached, safe to call in a thread) and
:meth:`ViscosityState.accept` / :meth:`ViscosityState.refuse`, which the
caller applies where its widgets live.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any

import param

from iceviz.data.locations import data_dirs
from iceviz.data.problem import DataError
from iceviz.data.public import DATASET_FOR_FILE, fetch_hint
from iceviz.data.shelf import REQUIRED, ShelfProblem, crop_shelf, find_diffice
from iceviz.models.registry import REGISTRY
from iceviz.training.device import available_devices
from iceviz.runtime.job import Job
from iceviz.runtime.queue import JobQueue, QueueFull, SessionQueue
from iceviz.training.trainers import training_job

MODEL = "viscosity-pinn"


@dataclass(frozen=True)
class ShelfPreset:
    """A shelf the viscosity tab offers.

    label : what the preset select shows.
    spec : the data spec (``diffice:FILE.mat`` or ``shelf:NAME``).
    description : one line for humans.
    file : for DIFFICE presets, the file name looked up in the ``diffice`` data directories.
    region : the explorer's map preset (iceviz.geo.regions key) for this shelf, if any.
    synthetic : a shelf with a known viscosity (its error can be scored).
    """

    label: str
    spec: str
    description: str
    file: str | None = None
    region: str | None = None
    synthetic: bool = False

    def unavailable(self) -> str | None:
        """Why this preset cannot be loaded here (None when its data can be found)."""
        if self.file is None:
            return None
        try:
            find_diffice(self.file)
        except DataError:
            return missing_file_message(self)
        return None


def missing_file_message(preset: ShelfPreset) -> str:
    """The refusal for a preset whose DIFFICE file is absent: what is missing, how to get it, where we looked."""
    places = ", ".join(str(d) for d in data_dirs("diffice"))
    name = DATASET_FOR_FILE.get(preset.file)
    if name:
        return (f"{preset.label}: its data ({preset.file}) is not on this machine yet: press \"Get this dataset\" "
                f"or {fetch_hint(name)}. Looked in {places}.")
    return (f"{preset.label}: no data for this shelf here, and no public copy is registered: put a DIFFICE-layout "
            f".mat file ({', '.join(REQUIRED)}; SI units) named {preset.file} in one of {places} (set ICEVIZ_DATA "
            f"to choose the first), or train from the command line with "
            f"`iceviz train {MODEL} --data diffice:PATH.mat`.")


PRESETS: dict[str, ShelfPreset] = {p.label: p for p in (
    ShelfPreset("Amery", "diffice:data_pinns_Amery.mat",
                "Amery Ice Shelf, real data (MEaSUREs velocity, BedMachine thickness; no true viscosity)",
                file="data_pinns_Amery.mat", region="amery"),
    ShelfPreset("Larsen C", "diffice:data_pinns_LarsenC.mat", "Larsen C Ice Shelf, real data",
                file="data_pinns_LarsenC.mat", region="larsen-c"),
    ShelfPreset("Ross", "diffice:data_pinns_Ross.mat", "Ross Ice Shelf, real data",
                file="data_pinns_Ross.mat", region="ross"),
    ShelfPreset("Synthetic: analytic (our SSA)", "shelf:analytic",
                "80 × 50 km synthetic shelf with the reference's analytic viscosity, solved by our SSA",
                synthetic=True),
    ShelfPreset("Synthetic: shear margins (our SSA)", "shelf:margins",
                "80 × 50 km synthetic shelf with soft shear margins, solved by our SSA", synthetic=True),
    ShelfPreset("Reference synthetic (SynData_exp1)", "diffice:SynData_exp1.mat",
                "DIFFICE_jax's synthetic shelf (COMSOL), with its true viscosity", file="SynData_exp1.mat",
                synthetic=True),
)}
"""Every shelf preset, by label, in the order the select shows them."""

DEFAULT_PRESET = "Synthetic: analytic (our SSA)"

REGION_PRESETS: dict[str, str] = {p.region: label for label, p in PRESETS.items() if p.region}
"""The explorer's map presets (iceviz.geo.regions keys) that are ice shelves -> the shelf preset's label."""


def preset_for_region(region: str | None) -> str | None:
    """The shelf preset matching the explorer's map region (``amery``, ``larsen-c``, ``ross``), else None."""
    return REGION_PRESETS.get(region or "")


@functools.lru_cache(maxsize=8)
def _load(spec: str) -> ShelfProblem:
    from iceviz.data.specs import load_problem

    problem = load_problem(spec)
    if not isinstance(problem, ShelfProblem):
        raise DataError(f"{spec} is not an ice shelf")
    return problem


def load_preset(label: str) -> ShelfProblem:
    """The whole shelf of preset ``label`` (blocking: seconds for a synthetic shelf; cached per process and
    shared read-only by every session). DataError with the refusal when its data is missing or unusable."""
    try:
        preset = PRESETS[label]
    except KeyError:
        raise DataError(f"unknown shelf preset {label!r}; valid: {', '.join(PRESETS)}") from None
    why = preset.unavailable()
    if why:
        raise DataError(why)
    return _load(preset.spec)


def bbox_spec(spec: str, box: tuple[float, float, float, float] | None) -> str:
    """``spec`` cropped to ``box`` (xmin, xmax, ymin, ymax) [m], as a data spec."""
    if box is None:
        return spec
    return f"{spec}{'&' if '?' in spec else '?'}bbox=" + ",".join(f"{b:.0f}" for b in box)


def crop_problem(whole: ShelfProblem, box: tuple[float, float, float, float] | None) -> ShelfProblem:
    """``whole`` cropped to ``box`` (the same problem for None); DataError (e.g. no calving front in it)."""
    if box is None:
        return whole
    named = dataclasses.replace(whole, spec=bbox_spec(whole.spec, box))  # messages and outputs name the crop
    return crop_shelf(named, box)


class ViscosityState(param.Parameterized):
    """The viscosity tab of one browser session: which shelf, which part of it, how long, with what."""

    preset = param.Selector(default=DEFAULT_PRESET, objects=list(PRESETS), doc="The ice shelf to invert.")
    box = param.NumericTuple(default=None, length=4, allow_None=True,
                             doc="Crop (xmin, xmax, ymin, ymax) [m, the shelf's own coordinates]; empty: whole shelf.")
    seconds = param.Number(60.0, bounds=(5.0, 1800.0), doc="Training budget [s] (pauses excluded).")
    device = param.Selector(default="auto", objects=available_devices(), doc="Where to train: auto = CUDA, else MPS, else CPU.")
    hyper = param.ClassSelector(class_=param.Parameterized, doc="The viscosity PINN's hyper-parameters.")
    message = param.String("", doc="Why the current choice cannot be trained (empty when it can).")
    whole = param.Parameter(None, doc="The preset's whole shelf, once loaded (None while loading or refused).")
    problem = param.Parameter(None, doc="The shelf cropped to the box: what a job trains on (None when unusable).")
    loading = param.Boolean(False, doc="True from a preset's choice until its shelf is loaded or refused.")

    def __init__(self, queue: JobQueue | SessionQueue | None = None, **params: Any):
        params.setdefault("hyper", REGISTRY[MODEL].make_params())
        super().__init__(**params)
        self.job: Job | None = None
        self.queue = queue or JobQueue()
        """Where its inversions wait for a slot (the server's queue in the app; by default its own)."""
        self._on_preset()

    # -- the shelf -------------------------------------------------------------------------------
    @param.depends("preset", watch=True)
    def _on_preset(self) -> None:
        self.param.update(box=None, whole=None, problem=None, message="", loading=True)

    @property
    def spec(self) -> str:
        """The data spec of the current choice (the preset's, with a bbox when cropped)."""
        return bbox_spec(PRESETS[self.preset].spec, self.box)

    def load(self) -> ShelfProblem | None:
        """Load the preset and crop it (blocking); the problem, or None with :attr:`message` saying why."""
        label = self.preset
        try:
            whole = load_preset(label)
        except DataError as err:
            self.refuse(str(err), label)
            return None
        return self.accept(whole, label)

    def accept(self, whole: ShelfProblem, label: str | None = None) -> ShelfProblem | None:
        """Use ``whole`` as the loaded shelf of preset ``label`` (ignored if the preset changed since)."""
        if label is not None and label != self.preset:
            return None
        hints = {k: v for k, v in whole.hints.items() if k in self.hyper.param and k not in ("name", "seconds")}
        if hints:
            self.hyper.param.update(**hints)
        self.param.update(whole=whole, loading=False)
        return self._crop()

    def missing_dataset(self) -> str | None:
        """The ``iceviz data fetch`` name that would make the current preset loadable, if it is missing."""
        preset = PRESETS[self.preset]
        if preset.file is None or preset.unavailable() is None:
            return None
        return DATASET_FOR_FILE.get(preset.file)

    def refuse(self, message: str, label: str | None = None) -> None:
        """The preset ``label`` cannot be loaded: say why (ignored if the preset changed since)."""
        if label is not None and label != self.preset:
            return
        self.param.update(whole=None, problem=None, message=message, loading=False)

    def set_box(self, bounds: tuple[float, float, float, float]) -> ShelfProblem | None:
        """Crop to ``bounds`` (xmin, xmax, ymin, ymax) [m]; a box without calving front (or data) is refused,
        with the reason in :attr:`message` and the box kept on show so the user sees what was refused."""
        xmin, xmax, ymin, ymax = (float(b) for b in bounds)
        if not (xmin < xmax and ymin < ymax):
            self.message = f"the box needs xmin < xmax and ymin < ymax, got {tuple(bounds)}"
            return None
        self.box = (xmin, xmax, ymin, ymax)
        return self._crop()

    def clear_box(self) -> ShelfProblem | None:
        """Use the whole shelf again."""
        self.box = None
        return self._crop()

    def _crop(self) -> ShelfProblem | None:
        if self.whole is None:
            return None
        try:
            problem = crop_problem(self.whole, self.box)
        except DataError as err:
            self.param.update(problem=None, message=f"This region cannot be inverted: {err}")
            return None
        self.param.update(problem=problem, message="")
        return problem

    # -- training ----------------------------------------------------------------------------------
    def overrides(self) -> dict[str, Any]:
        """The hyper-parameters a job gets: every one of :attr:`hyper`, and the budget in seconds."""
        values = {k: v for k, v in self.hyper.param.values().items() if k not in ("name", "seconds")}
        return {**values, "seconds": float(self.seconds)}

    def start(self, snapshot_every: float = 1.0, isolate: bool = False, nice: int = 0) -> Job | None:
        """Start training on :attr:`problem` (None, with a message, when there is nothing to train on or a
        job is still running). ``isolate`` trains in a worker process (what a server wants)."""
        if self.job is not None and not self.job.status.finished:
            return None
        if self.problem is None:
            self.message = self.message or ("The shelf is still loading." if self.loading else "Pick a shelf first.")
            return None
        job = training_job(MODEL, self.problem, device=self.device, snapshot_every=snapshot_every,
                           isolate=isolate, nice=nice, **self.overrides())
        try:
            self.job = self.queue.submit(job)
        except QueueFull as err:
            self.message = f"The inversion did not start: {err}."
            return None
        return self.job

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()
