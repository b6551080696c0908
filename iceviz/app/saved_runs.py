"""The Saved runs tab: the run folders found on the server, and one run's maps and scores, for every family.

A run folder is what ``iceviz train --out DIR`` writes: ``model.safetensors``
(the checkpoint, with its scores), ``metrics.json`` and ``prediction.nc``. A
flux model's maps are recomputed from the checkpoint itself; a viscosity
inversion's and an emulator's are read from the ``prediction.nc`` beside it
(they need the data they were trained on, which the checkpoint does not hold),
and drawn with the figures of their own tabs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

import holoviews as hv
import numpy as np
import panel as pn
import xarray as xr
from bokeh.models import PrintfTickFormatter

from iceviz.app.board import divergence_scale
from iceviz.app.live import fixed_pane
from iceviz.app.paths import RUN_SUFFIXES, find_runs, for_browser, safe_path
from iceviz.data.netcdf import read_netcdf
from iceviz.data.problem import DataError
from iceviz.models.registry import REGISTRY
from iceviz.training.checkpoint import Checkpoint, load_checkpoint
from iceviz.training.fields import flux_grid_fields
from iceviz.viz import maps
from iceviz.viz.emulator_figures import ComparisonMaps, symmetric_limit
from iceviz.viz.live_figures import round2
from iceviz.viz.shelf_figures import ShelfFigures

PREDICTION = "prediction.nc"
MAX_PREDICTION_BYTES = 512 * 2**20
"""The largest prediction.nc (its variables' size in memory) the tab reads: a bigger one is refused."""
VISCOSITY_VARIABLES = ("mu", "residual", "strain_rate", "u_misfit", "v_misfit", "h_misfit")
EMULATOR_VARIABLES = ("h", "h_true", "speed_error", "triangles")
LOAD_ERRORS = (ValueError, OSError, RuntimeError, KeyError, TypeError, IndexError, MemoryError)
"""What loading a run folder written elsewhere may raise: each becomes a message, never a traceback."""
VIEWS = {"flux": "_flux_view", "viscosity": "_viscosity_view", "emulator": "_emulator_view"}
"""The method of :class:`SavedRuns` that shows a run of each trained family (each of ``families.TRAINED``)."""


def scores_table(metrics: dict[str, Any]) -> pn.pane.Markdown:
    """The run's scalar scores as a two-column table."""
    rows = "\n".join(f"| {k} | {v:.6g} |" if isinstance(v, float) else f"| {k} | {v} |"
                     for k, v in metrics.items() if isinstance(v, (int, float, str)))
    return pn.pane.Markdown(f"| metric | value |\n|---|---|\n{rows}", css_classes=["run-metrics"])


def read_prediction(folder: Path, needed: Iterable[str]) -> xr.Dataset:
    """The ``prediction.nc`` of a run folder, in memory; DataError saying why it cannot be drawn."""
    path = folder / PREDICTION
    if not path.is_file():
        raise DataError(f"no {PREDICTION} beside the checkpoint in {folder} (written by `iceviz train --out`)")
    ds = read_netcdf(path, max_bytes=MAX_PREDICTION_BYTES)
    missing = [name for name in needed if name not in ds.variables]
    if missing:
        raise DataError(f"{path} lacks {', '.join(missing)} (written by another iceviz version? train again "
                        "with --out)")
    return ds


def flux_panes(ckpt: Checkpoint, title: str) -> list[Any]:
    """Flux magnitude with arrows, and divergence on its symmetric floored scale, recomputed from the model."""
    fields = flux_grid_fields(ckpt.model, ckpt.scale, ckpt.bounds, ckpt.grid_shape)
    limit, note = divergence_scale(fields)
    plot = (maps.magnitude_map(fields, f"{title}: |q| (m²/yr)") * maps.flux_arrows(fields)
            + maps.divergence_map(fields, limit, f"{title}: ∇·q (m/yr)" + (f"; {note}" if note else ""))).opts(
        hv.opts.Image(data_aspect=1, frame_width=380, cformatter=PrintfTickFormatter(format="%.3g"),
                      **maps.km_axes()))
    return [pn.pane.HoloViews(plot, linked_axes=False)]


def viscosity_figures(ds: xr.Dataset) -> ShelfFigures:
    """The Viscosity tab's maps of a saved inversion (viscosity, its truth and error where known, residual,
    strain rate, misfits), with the calving front where the file has it."""
    x, y = ds["x"].values, ds["y"].values
    if x.size < 2 or y.size < 2:
        raise ValueError("its grid has fewer than two cells a side")
    front = (np.column_stack([ds["front_x"].values, ds["front_y"].values]) if "front_x" in ds and "front_y" in ds
             else np.zeros((0, 2)))
    figures = ShelfFigures((float(x.min()), float(x.max()), float(y.min()), float(y.max())), front,
                           truth="mu_true" in ds and "mu_error" in ds)
    figures.update(ds, label=str(ds.attrs.get("model", "PINN")))
    return figures


class EmulatorRun:
    """An emulator run's test predictions against the simulator: a test run and a model year to show."""

    def __init__(self, ds: xr.Dataset, frame_width: int = 700):
        points = np.column_stack([ds["node_x"].values, ds["node_y"].values])
        triangles = np.asarray(ds["triangles"].values)
        if triangles.ndim != 2 or triangles.shape[1] != 3 or triangles.min() < 0 or triangles.max() >= len(points):
            raise ValueError("its triangles do not index its nodes")
        self.ds = ds
        bed = ds["bed"].values if "bed" in ds else np.full(len(points), np.nan)  # no bed: no grounding lines
        self.maps = ComparisonMaps(points, triangles, bed, frame_width=frame_width)
        h_true, h_error = ds["h_true"].values, ds["h"].values - ds["h_true"].values
        # one scale for every run and year, so that moving through them compares honestly
        self.limits = {"h_max": round2(max(float(np.nanmax(h_true)), 1.0)), "error_limit": symmetric_limit(h_error),
                       "speed_error_max": round2(max(float(np.nanmax(ds["speed_error"].values)), 1.0))}
        runs = [str(r) for r in ds["run"].values]
        self.run = pn.widgets.Select(name="Test run", options=runs, value=runs[0], width=200)
        years = [float(t) for t in ds["time"].values]
        self.year = pn.widgets.DiscreteSlider(name="Model year", options=years, value=years[-1], width=360)
        self.run.param.watch(lambda e: self.show(), "value")
        self.year.param.watch(lambda e: self.show(), "value")
        self.show()

    def show(self) -> None:
        at = {"run": self.run.value, "time": self.year.value}
        self.maps.update(self.ds["h_true"].sel(at).values, self.ds["h"].sel(at).values,
                         self.ds["speed_error"].sel(at).values, **self.limits)

    def panes(self) -> list[Any]:
        css = ("emu-truth", "emu-emulated", "emu-h-error", "emu-v-error")
        return [pn.Row(self.run, self.year), *(fixed_pane(m.figure, c) for m, c in zip(self.maps.maps, css))]


class SavedRuns:
    """The Saved runs tab of one session.

    Parameters
    ----------
    roots : the folders runs may be loaded from (searched for runs, and the only ones a typed path may name).
    bases : folders a relative typed path is taken from first (e.g. the working directory).
    notify : shows a message to the user ("" clears it).
    """

    def __init__(self, roots: list[Path], bases: list[Path], notify: Callable[[str], None]):
        self.roots, self.bases = roots, bases
        self.notify = lambda text: notify(for_browser(text))
        self.run_list = pn.widgets.Select(name="Saved runs found (runs/ folders, newest first)", options={},
                                          width=520)
        refresh = pn.widgets.Button(name="Look again", button_type="light", align="end", width=140)
        refresh.on_click(lambda event: self.list_runs())
        self.run_path = pn.widgets.TextInput(name="… or another run (folder with model.safetensors, or the file)",
                                             placeholder="runs/glacier-dfnn", width=520)
        load = pn.widgets.Button(name="Load run", button_type="primary", align="end", width=140)
        load.on_click(self.load)
        self.run_view = pn.Column()
        self.emulator: EmulatorRun | None = None
        """The maps of the run shown, when it is an emulator run."""
        self.shelf: ShelfFigures | None = None
        """The maps of the run shown, when it is a viscosity inversion."""
        self.view = pn.Column(pn.Row(self.run_list, refresh), pn.Row(self.run_path, load), self.run_view)
        self.list_runs()
        self.run_list.param.watch(self._on_pick, "value")

    def list_runs(self) -> None:
        runs = find_runs(self.roots)

        def shown(p: Path) -> str:
            for base in self.bases:
                if base.resolve() in p.parents:
                    return str(p.parent.relative_to(base.resolve()))
            return str(p.parent)

        self.run_list.options = {"(none found)" if not runs else "(choose a run)": "",
                                 **{shown(p): str(p) for p in runs}}

    def _on_pick(self, event: Any) -> None:
        """A run picked in the list loads at once (the typed path gives way to it)."""
        if event.new:
            self.run_path.value = ""
            self.load()

    def load(self, event: Any = None) -> None:
        """Load the typed run, else the picked one: its maps and scores, or a message saying what is wrong."""
        text = self.run_path.value.strip() or self.run_list.value or ""
        if not text:
            self.notify("No run chosen: pick one of the saved runs found, or type a run folder (one written by "
                        "`iceviz train --out DIR`).")
            return
        if not text.endswith(RUN_SUFFIXES):
            text = text.rstrip("/") + "/model.safetensors"  # a run folder written by --out
        try:
            path = safe_path(text, self.roots, RUN_SUFFIXES, bases=self.bases)
            ckpt = load_checkpoint(path)
        except Exception as err:  # noqa: BLE001 - whatever a crafted file does, the tab says so and keeps serving
            self.emulator, self.shelf = None, None
            self.run_view.objects = []  # nothing of the previous run stays on screen under the message
            self.notify(f"Could not load the run: {err}" if isinstance(err, LOAD_ERRORS)
                        else f"Could not load the run: {type(err).__name__}: {err}")
            return
        family = REGISTRY[ckpt.model_name].family
        title = f"{ckpt.model_name} on {ckpt.data}"
        kind = f"{'an' if family[0] in 'aeiou' else 'a'} {family} run"
        self.emulator, self.shelf = None, None
        try:
            view = getattr(self, VIEWS[family])
        except KeyError:
            self.run_view.objects = []
            self.notify(f"Could not show the run: the Saved runs tab has no view of {kind} (iceviz/app/saved_runs.py)")
            return
        try:
            panes, from_prediction = view(ckpt, path, title)
            head = f"**{title}**: {kind}" + (f", as saved in its `{PREDICTION}`" if from_prediction else "")
        except LOAD_ERRORS as err:
            self.emulator, self.shelf, panes = None, None, []
            head = f"**{title}**: {kind}, loaded and checked, but its maps cannot be drawn: {err}"
        self.run_view.objects = [pn.pane.Markdown(head, css_classes=["run-title"]), *panes,
                                 scores_table(ckpt.metrics)]
        self.notify("")

    # -- one view per model family (VIEWS): (panes, whether they come from the run's prediction file) -------------
    def _flux_view(self, ckpt: Any, path: Path, title: str) -> tuple[list[Any], bool]:
        """The model itself, evaluated on its region's grid."""
        return flux_panes(ckpt, title), False

    def _viscosity_view(self, ckpt: Any, path: Path, title: str) -> tuple[list[Any], bool]:
        self.shelf = viscosity_figures(read_prediction(path.parent, VISCOSITY_VARIABLES))
        return [pn.Row(*(fixed_pane(m.figure, m.css_class) for m in row), sizing_mode="fixed")
                for row in self.shelf.rows], True

    def _emulator_view(self, ckpt: Any, path: Path, title: str) -> tuple[list[Any], bool]:
        self.emulator = EmulatorRun(read_prediction(path.parent, EMULATOR_VARIABLES))
        return self.emulator.panes(), True

    def poll(self) -> None:
        """Periodic: re-rasterise an emulator run's maps after a zoom."""
        if self.emulator is not None:
            self.emulator.maps.refresh()
