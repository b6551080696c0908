"""The model registry: one table from a model name to its family, problem kind and defaults.

The CLI, the app's widgets and the tests read this table; nothing else lists
model names. Hyper-parameters are ``param`` classes with bounds and a doc
line (units in square brackets), so the app can turn them into widgets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import param

from iceviz.models.activations import ACTIVATIONS
from iceviz.models.flux import AUX_DERIVATIVES


class Budget(param.Parameterized):
    """How long to train and how to seed: shared by every family."""

    epochs = param.Integer(200, bounds=(1, 1_000_000), doc="Epoch budget [epochs]; training stops at the first budget reached.")
    seconds = param.Number(None, allow_None=True, bounds=(0.0, None), inclusive_bounds=(False, True),
                           doc="Wall-clock budget [s] (pauses excluded); empty for no limit.")
    seed = param.Integer(0, bounds=(0, 2**31 - 1), doc="Random seed: same seed, same CPU run (with an epoch budget).")


class TrainingBudget(Budget):
    """The optimiser settings of the mini-batch families (flux)."""

    lr = param.Number(1e-2, bounds=(1e-6, 1.0), doc="Peak learning rate [1/step] of AdamW, cosine-annealed to zero over the budget.")
    warmup = param.Number(0.0, bounds=(0.0, 0.5), doc="Fraction of the budget spent warming the learning rate up linearly [fraction].")
    weight_decay = param.Number(0.0, bounds=(0.0, 1.0), doc="AdamW decoupled weight decay [1].")
    batch_size = param.Integer(1024, bounds=(8, 1_000_000), doc="Observations per optimisation step [points].")


class FluxParams(TrainingBudget):
    """Hyper-parameters of the flux family (dfNN, PINN, NN and their +dir / +aux variants)."""

    width = param.Integer(64, bounds=(4, 1024), doc="Hidden units per layer [units].")
    depth = param.Integer(4, bounds=(1, 12), doc="Hidden layers [layers].")
    activation = param.Selector(default="silu", objects=list(ACTIVATIONS),
                                doc="Activation; dfNN needs a twice-differentiable one (not relu).")
    div_weight = param.Number(0.2, bounds=(0.0, 1.0),
                              doc="PINN: weight of mean |∇·q| in the loss [1]; the data term gets 1 - this.")
    collocation = param.Integer(10240, bounds=(0, 10_000_000),
                                doc="PINN: fresh uniform collocation points for the once-per-epoch divergence step [points].")
    dir_weight = param.Number(0.4, bounds=(0.0, 1.0),
                              doc="+dir: weight of 1 - mean cosine(q, velocity direction) [1]; the data term gets 1 - this.")
    aux_derivative = param.Selector(default="total", objects=list(AUX_DERIVATIVES),
                                    doc="+aux dfNN: 'total' is divergence-free in physical space; 'partial' holds s fixed (reference).")
    surface_length = param.Number(0.05, bounds=(0.001, 10.0),
                                  doc="+aux: length scale of the smooth surface fit [scaled length units].")
    planned_epochs = param.Integer(300, bounds=(1, 1_000_000),
                                   doc="Length of the learning-rate schedule [epochs]: the run ends there at the "
                                       "latest; an epoch budget cuts it short, a binding time budget anneals sooner. "
                                       "Default from the number of training points (flux_size_defaults).")
    patience = param.Integer(100, bounds=(1, 1_000_000),
                             doc="From half-way through the schedule on, stop after this many epochs without a lower "
                                 "validation RMSE [epochs].")
    refit = param.Boolean(True, doc="Once validation has chosen the kept epoch (the run ended by its plan or its "
                                    "patience), train again from the same initial weights on every training point "
                                    "(validation ones too) for that many epochs, on the schedule compressed to that "
                                    "length, if the time budget leaves room.")
    members = param.Integer(1, bounds=(1, 10),  # ten of the largest networks the bounds allow fit a checkpoint
                            doc="Ensemble members trained together as one batched network, each from its own "
                                "initialisation; the prediction is their mean, their spread its uncertainty "
                                "[members].")
    val_fraction = param.Number(0.15, bounds=(0.0, 0.5),
                                doc="Share of the training points held out as whole flight lines (else whole tiles) "
                                    "to choose the kept weights and when to stop, at most 2,000 points [fraction]; "
                                    "0 keeps the weights of the lowest training loss and never stops early.")


RESAMPLING = ("uniform", "residual")
"""Collocation sampling of the viscosity PINN: a fresh uniform batch every step, or residual-based."""


class ViscosityParams(Budget):
    """Hyper-parameters of the viscosity PINN (DIFFICE_jax's method; see iceviz.training.viscosity_trainer).

    An epoch is one optimisation step on a fresh batch (Adam) or one L-BFGS iteration. The weights kept
    are those with the lowest validation misfit on held-out tiles of the observations (``val_fraction``).
    """

    lr = param.Number(1e-3, bounds=(1e-6, 1.0),
                      doc="Adam learning rate [1/step], constant unless annealed (a higher rate with decay did worse, "
                          "science page §2).")
    anneal = param.Number(0.0, bounds=(0.0, 1.0),
                          doc="Fraction of the Adam phase, at its end, over which the rate falls to zero by a cosine [fraction].")
    batch_size = param.Integer(500, bounds=(8, 1_000_000),
                               doc="Velocity and thickness observations per step, each [points] (the reference: 1,000; "
                                   "500 reached a given error sooner, BENCHMARKS.md).")
    width = param.Integer(30, bounds=(4, 512), doc="Hidden units per layer of the (u, v, h) network [units].")
    depth = param.Integer(6, bounds=(1, 12), doc="Hidden layers of the (u, v, h) network [layers].")
    separate_thickness = param.Boolean(False, doc="Thickness from a network of its own (as wide and deep as the "
                                                  "(u, v, h) one), which then gives (u, v) only.")
    mu_width = param.Integer(30, bounds=(4, 512), doc="Hidden units per layer of the log-viscosity network [units].")
    mu_depth = param.Integer(6, bounds=(1, 12), doc="Hidden layers of the log-viscosity network [layers].")
    collocation = param.Integer(500, bounds=(10, 1_000_000),
                                doc="Collocation points for the SSA residual, drawn afresh every step [points].")
    front_points = param.Integer(250, bounds=(1, 100_000), doc="Calving-front points per step [points].")
    thickness_weight = param.Number(0.6, bounds=(0.0, 100.0), doc="Weight of the thickness misfit (velocity misfits weigh 1) [1].")
    equation_weight = param.Number(0.05, bounds=(0.0, 100.0), doc="Weight of the mean squared SSA residual [1].")
    front_weight = param.Number(0.1, bounds=(0.0, 100.0), doc="Weight of the mean squared calving-front residual [1].")
    lbfgs_fraction = param.Number(0.3, bounds=(0.0, 1.0),
                                  doc="Fraction of the budget spent in L-BFGS on a fixed batch after Adam [fraction] "
                                      "(0.3 took SynData_exp1 from ~7 % to ~1 % μ error in a 300 s budget).")
    resampling = param.Selector(default="uniform", objects=list(RESAMPLING),
                                doc="Collocation sampling: uniform, or residual-based (density ∝ residual² + mean).")
    resample_every = param.Integer(200, bounds=(1, 100_000),
                                   doc="Residual-based sampling: steps between re-scoring the candidates [steps].")
    subdomains = param.Integer(1, bounds=(1, 8),
                               doc="XPINN domain decomposition: strips along the shelf's longer side, each with its "
                                   "own networks, for large shelves [sub-domains].")
    interface_weight = param.Number(1.0, bounds=(0.0, 100.0),
                                    doc="XPINN: weight of the jump of u, v, h, log μ and the velocity gradient "
                                        "across the interfaces [1].")
    interface_points = param.Integer(200, bounds=(1, 100_000), doc="XPINN: points per interface per step [points].")
    val_fraction = param.Number(0.1, bounds=(0.0, 0.5),
                                doc="Share of the velocity and thickness cells held out as whole tiles of the shelf, "
                                    "never trained on, to choose the kept weights [fraction]; 0 keeps the last "
                                    "weights.")


EMULATOR_LAYERS = ("equivariant", "seed")
"""EGCN layers: ours (exactly E(2)-equivariant) or the seed's (velocity as plain numbers)."""


class EmulatorParams(Budget):
    """Hyper-parameters of the mesh emulators (EGCN, GCN, MLP, grid CNN; see iceviz.training.emulator_trainer).

    An epoch is one pass over every (run, snapshot) pair of the training runs.
    """

    lr = param.Number(5e-3, bounds=(1e-6, 1.0),
                      doc="Peak Adam learning rate [1/step], cosine-annealed to a tenth over the budget.")
    batch_size = param.Integer(8, bounds=(1, 1024), doc="Graphs (run, snapshot pairs) per optimisation step [graphs].")
    width = param.Integer(32, bounds=(4, 512), doc="Hidden features per node (and per edge message) [units].")
    layers = param.Integer(3, bounds=(1, 12), doc="Message-passing, convolution or hidden layers [layers].")
    channels = param.Integer(2, bounds=(1, 32),
                             doc="EGCN: vector channels per node, at least one per vector input (the first the initial "
                                 "velocity) [channels].")
    layer = param.Selector(default="equivariant", objects=list(EMULATOR_LAYERS),
                           doc="EGCN: 'equivariant' (velocity only as a vector) or the seed's layer (velocity as numbers).")
    cells = param.Integer(2048, bounds=(64, 1_000_000), doc="Grid CNN: raster cells the mesh is interpolated to [cells].")
    weight_decay = param.Number(0.0, bounds=(0.0, 1.0), doc="AdamW decoupled weight decay [1].")
    average = param.Number(0.0, bounds=(0.0, 0.9999),
                           doc="Decay per step of the moving average of the weights that is validated, kept and "
                               "scored; 0 uses the weights as trained [1].")


@dataclass(frozen=True)
class ModelSpec:
    """One registered model.

    Attributes
    ----------
    name : registry key, e.g. ``dfnn-dir``.
    family : its family (``flux``, ``viscosity``, ``emulator``), registered in :mod:`iceviz.training.families`.
    problem_kind : the problem kind it accepts (``FluxProblem.kind``).
    params : the ``param`` class of its hyper-parameters.
    defaults : overrides of the class defaults for this model.
    doc : one line for humans.
    options : family-specific switches (e.g. constraint, direction, aux).
    min_seconds : the smallest training budget that gives a meaningful result on the project's 2-core
        machine, one thread [s] (measured: see :data:`MIN_SECONDS`); None when any budget does.
    """

    name: str
    family: str
    problem_kind: str
    params: type[param.Parameterized]
    defaults: dict[str, Any]
    doc: str
    options: dict[str, Any] = field(default_factory=dict)
    min_seconds: float | None = None

    def uses(self, key: str) -> bool:
        """Whether hyper-parameter ``key`` has any effect on this model (a flux model ignores the knobs of the
        other variants: the PINN penalty, the guidance weight, the surface fit)."""
        opts = self.options
        if self.family != "flux":
            return True
        if key in ("div_weight", "collocation"):
            return opts.get("constraint") == "soft"
        if key == "dir_weight":
            return bool(opts.get("direction"))
        if key == "surface_length":
            return bool(opts.get("aux"))
        if key == "aux_derivative":
            return bool(opts.get("aux")) and opts.get("constraint") == "hard"
        return True

    def make_params(self, **overrides: Any) -> param.Parameterized:
        """Hyper-parameters with this model's defaults and the given overrides (validated by param)."""
        unknown = set(overrides) - (set(self.params.param) - {"name"})
        if unknown:
            raise ValueError(f"{self.name}: unknown hyper-parameter(s) {sorted(unknown)}; "
                             f"known: {sorted(p for p in self.params.param if p != 'name')}")
        values = {**self.defaults, **overrides}
        try:
            return self.params(**values)
        except (ValueError, TypeError) as err:  # param's own message names the class, not what to type
            for key in overrides:
                try:
                    self.params(**{**self.defaults, key: overrides[key]})
                except (ValueError, TypeError):
                    raise ValueError(f"{self.name}: {key}={overrides[key]!r} is not allowed: "
                                     f"{_expected(self.params.param[key])}") from None
            raise ValueError(f"{self.name}: {err}") from None


def _expected(p: param.Parameter) -> str:
    """What a parameter accepts, in words: its kind, bounds or choices, and its doc line."""
    if isinstance(p, param.Selector) and not isinstance(p, param.ClassSelector):
        what = f"one of {list(p.objects)}"
    elif isinstance(p, (param.Integer, param.Number)):
        kind = "an integer" if isinstance(p, param.Integer) else "a number"
        lo, hi = p.bounds or (None, None)
        what = kind + (f" from {lo:g} to {hi:g}" if lo is not None and hi is not None else "")
    elif isinstance(p, param.Boolean):
        what = "true or false"
    else:
        what = f"a {type(p).__name__.lower()}"
    return f"{what} ({p.doc})" if p.doc else what


MIN_SECONDS = {
    # dfNN at 10 s is at or below the published small-data recipe on 29 of 31 region-suite problems
    # (benchmarks/results/regions.json); every flux model gets the same floor.
    "flux": 10.0,
    # the reference synthetic shelf: 5.0 % viscosity error at 60 s, 2.3 % at 120 s
    # (benchmarks/results/viscosity_budgets.json); a 30 s run ended above 50 %.
    "viscosity-pinn": 60.0,
    # the first time the validation loss came within 2x of what 200 s of training reaches
    # (benchmarks/results/emulators_seconds.json, the default ensemble)
    "mlp": 35.0, "gcn": 45.0, "cnn": 30.0, "egcn": 105.0,
}
"""Smallest meaningful training budgets [s] on the project's 2-core machine (one torch thread), measured."""


def short_budget(names: Sequence[str], seconds: float | None) -> str:
    """A warning when ``seconds`` is below the smallest meaningful budget of any model in ``names``, else ""
    (also when there is no time budget: an epoch budget is the user's own measure)."""
    if seconds is None:
        return ""
    short = {n: REGISTRY[n].min_seconds for n in names
             if n in REGISTRY and REGISTRY[n].min_seconds and seconds < REGISTRY[n].min_seconds}
    if not short:
        return ""
    need = ", ".join(f"{n} {m:g} s" for n, m in short.items())
    return (f"A {seconds:g} s budget is below what gives a meaningful result on a 2-core machine ({need}; "
            f"measured, BENCHMARKS.md): expect an unfinished fit, not a verdict on the model.")


_FLUX_DOCS = {
    "dfnn": "divergence-free NN: flux is the rotated gradient of a learned stream function (hard constraint)",
    "pinn": "physics-informed NN: flux directly, mean |divergence| as a soft penalty",
    "nn": "plain NN: flux directly, data loss only",
}
_VARIANT_DOCS = {"": "", "-dir": ", with directional guidance from velocity", "-aux": ", with surface elevation as input"}

_FLUX_DEFAULTS = {
    # Tuned on byrd-mcor for a 20 s one-thread budget (see BENCHMARKS.md); the
    # batch, network size and schedule follow the number of training points
    # (flux_size_defaults). The epoch budget is a cap that binds only when set.
    "dfnn": dict(lr=7e-3, weight_decay=1e-2, activation="silu", epochs=1_000_000),
    # The reference's 0.2 on mean |div| outweighs the data term in these scaled units: on nine problems of the
    # region suite (30 s, validation RMSE) 0.02 beat 0.2 on all nine and 0.05 on eight; 0.005 tied with it
    # at twice the divergence (BENCHMARKS.md).
    "pinn": dict(lr=1e-2, activation="silu", epochs=1_000_000, div_weight=0.02),
    "nn": dict(lr=5e-3, activation="silu", epochs=1_000_000),
}

SCHEDULE_STEPS = 6000
"""Optimisation steps a flux run is planned for (flux_size_defaults)."""


def flux_size_defaults(n_points: int) -> dict[str, Any]:
    """Flux hyper-parameters that follow the number of points a run fits (training minus validation).

    - batch: n / 32 rounded down to a power of two, within [32, 512] points: a few hundred points
      take batches of 32 (the published small-data recipe's), Byrd's 23,000 take 512;
    - planned_epochs: :data:`SCHEDULE_STEPS` optimisation steps, within [100, 2000] epochs;
    - patience: a quarter of the plan, at least 25 epochs;
    - collocation (PINN): n rounded up to a power of two, within [1024, 10240] points, so that the
      once-per-epoch divergence step costs about what the epoch's data steps cost.
    """
    n = max(int(n_points), 1)
    batch = int(min(512, max(32, 2 ** math.floor(math.log2(max(n / 32, 1))))))
    steps_per_epoch = math.ceil(n / batch)
    planned = int(min(2000, max(100, round(SCHEDULE_STEPS / steps_per_epoch))))
    collocation = int(min(10240, max(1024, 2 ** math.ceil(math.log2(n)))))
    return dict(batch_size=batch, planned_epochs=planned, patience=max(25, planned // 4), collocation=collocation)


_VARIANT_DEFAULTS = {
    # With the reference's 0.4 the guidance term outweighs the data for dfNN (see BENCHMARKS.md).
    "dfnn-dir": dict(dir_weight=0.1),
}


def _flux_specs() -> dict[str, ModelSpec]:
    specs = {}
    for base, constraint in (("dfnn", "hard"), ("pinn", "soft"), ("nn", "none")):
        for variant in ("", "-dir", "-aux"):
            name = base + variant
            specs[name] = ModelSpec(
                name=name,
                min_seconds=MIN_SECONDS["flux"],
                family="flux",
                problem_kind="flux",
                params=FluxParams,
                defaults={**_FLUX_DEFAULTS[base], **_VARIANT_DEFAULTS.get(name, {})},
                doc=_FLUX_DOCS[base] + _VARIANT_DOCS[variant],
                options=dict(constraint=constraint, direction=variant == "-dir", aux=variant == "-aux"),
            )
    return specs


VISCOSITY_SPEC = ModelSpec(
    name="viscosity-pinn",
    min_seconds=MIN_SECONDS["viscosity-pinn"],
    family="viscosity",
    problem_kind="shelf",
    params=ViscosityParams,
    # an epoch is a step here, so the epoch budget is large
    defaults=dict(epochs=20_000),
    doc="ice-shelf viscosity from velocity and thickness: (u, v, h) and log μ networks solving the SSA (DIFFICE_jax)",
)

_EMULATOR_DOCS = {
    "egcn": "equivariant graph network emulating the simulator on its mesh: (initial state, forcing, time) -> state",
    "gcn": "graph convolutional network emulator (Kipf & Welling), inputs as plain numbers",
    "mlp": "node-wise MLP emulator: every node on its own, no neighbours",
    "cnn": "grid CNN emulator: the mesh interpolated to a raster and back",
    "persistence": "the floor: the state stays as it started",
}


_EMULATOR_DEFAULTS = {
    # Chosen at 12 epochs on the default ensemble (BENCHMARKS.md): the seed's rate 1e-2 suits the graph
    # networks and the MLP, the CNN did better at 5e-3; 40 epochs of EGCN take about 4.5 minutes on 2 cores.
    # The EGCN alone gains from weight decay and averaged weights (3 seeds; the MLP and GCN lose with them).
    "egcn": dict(epochs=40, lr=1e-2, weight_decay=0.05, average=0.99),
    "gcn": dict(epochs=40, lr=1e-2),
    "mlp": dict(epochs=40, lr=1e-2, width=64, layers=4),
    "cnn": dict(epochs=40, lr=5e-3, layers=4),
    "persistence": dict(epochs=1),
}


def _emulator_specs() -> dict[str, ModelSpec]:
    return {name: ModelSpec(name=name, family="emulator", problem_kind="ensemble", params=EmulatorParams,
                            defaults=_EMULATOR_DEFAULTS[name], doc=doc, options=dict(architecture=name),
                            min_seconds=MIN_SECONDS.get(name))
            for name, doc in _EMULATOR_DOCS.items()}


REGISTRY: dict[str, ModelSpec] = {**_flux_specs(), VISCOSITY_SPEC.name: VISCOSITY_SPEC, **_emulator_specs()}
"""Every model iceviz can train, by name."""


def get_model(name: str) -> ModelSpec:
    """The registered model ``name``; ValueError listing the known names otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(REGISTRY)}") from None


def model_names(problem_kind: str | None = None) -> list[str]:
    """Registered names, optionally only those that accept ``problem_kind``."""
    return [n for n, s in REGISTRY.items() if problem_kind is None or s.problem_kind == problem_kind]
