"""The Sweep tab: launch a small sweep on the explorer's region, see it as tables and parallel coordinates.

The state lives in :class:`~iceviz.app.sweep_state.SweepState`; this module lays it out and polls it. The
plot is a plain Bokeh figure made once: one vertical axis per swept setting (the model as categories) and
then the test RMSE and MAD, each normalised to its own range with its values written beside it (HoloViews'
and hvPlot's ``parallel_coordinates`` share one value axis between the columns and colour by a category,
and Bokeh's own parallel plot example needs a compiled extension, which an offline server cannot build).
One line per finished run, coloured by its test RMSE; the data sources change as runs finish, so the
figure updates in place and keeps the user's view.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import panel as pn
from bokeh.models import (ColorBar, ColumnDataSource, FixedTicker, HoverTool, LabelSet, LinearColorMapper,
                          NumeralTickFormatter, Range1d)
from bokeh.models.widgets.tables import HTMLTemplateFormatter, NumberFormatter, ScientificFormatter
from bokeh.palettes import Viridis256
from bokeh.plotting import figure

from iceviz.app.live import JOB_NICE, fixed_pane
from iceviz.app.sweep_state import (NONE, RUN_SCORES, SCORE_AXES, Axis, SweepState, example_values,
                                    parallel_axes)
from iceviz.app.widgets import WRAP_LABEL, param_label
from iceviz.geo.crs import format_bounds
from iceviz.models.registry import REGISTRY, short_budget

POLL_MS = 1000
CONTROL_WIDTH = 300
PLOT_WIDTH, PLOT_HEIGHT = 1060, 400
SCORE_TITLES = {"rmse": "test RMSE", "mad": "mean |∇·q|", "val_rmse": "validation RMSE"}
"""What the scores are called on screen (all in the data's scaled units, as the Training tab's table says)."""
PALETTE = Viridis256[:232]
"""Line colours from low test RMSE (dark) to high (green-yellow; the palette's last, palest yellows are left out,
unreadable on white)."""
STATUS_FORMAT = HTMLTemplateFormatter(template=(
    '<span style="color: <%= value == "failed" || value == "refused" ? "#b00020" : value == "done" ? "#1b5e20" '
    ': value == "cut short" ? "#8a5300" : "inherit" %>"><%= value %></span>'))
INTRO = ("**Sweep**: train every combination of the chosen models, hyper-parameter values and seeds on the "
         "region of the sidebar, and compare them as W&B's or TensorBoard's HParams views do: one line per run "
         "from its settings to its test RMSE and mean |∇·q|, and each setting's mean and spread over seeds. "
         "Every run starts from the Training tab's hyper-parameters for its model, then takes the swept values, "
         "its seed and the budget below. Runs wait in the server's queue like every job (a few at a time: the "
         "next as runs start); scores are in the data's scaled units.")


def axis_title(axis: Axis) -> str:
    """An axis's name under the plot: the score's words, '(log)' when in log scale."""
    name = SCORE_AXES.get(axis.name, axis.name)
    return f"{name}\n(log)" if axis.log else name


class ParallelPlot:
    """A parallel-coordinates figure whose axes and lines are replaced in place (:meth:`update`)."""

    def __init__(self, width: int = PLOT_WIDTH, height: int = PLOT_HEIGHT):
        self.lines = ColumnDataSource(dict(xs=[], ys=[], rmse=[], mad=[], run=[]))
        self.spines = ColumnDataSource(dict(x=[], y0=[], y1=[]))
        self.ticks = ColumnDataSource(dict(x=[], y=[], text=[], dx=[], align=[]))
        self.colours = LinearColorMapper(palette=PALETTE, low=0.0, high=1.0, nan_color="#bbbbbb")
        fig = figure(width=width, height=height, x_range=Range1d(-0.35, 1.5), y_range=Range1d(-0.06, 1.06),
                     tools="save", toolbar_location="above",
                     title="Settings against scores: one line per finished run, coloured by test RMSE "
                           "(hover a line for its run)")
        fig.segment(x0="x", x1="x", y0="y0", y1="y1", source=self.spines, line_color="#555555", line_width=1.5)
        fig.scatter(x="x", y="y", source=self.ticks, marker="dash", size=7, line_color="#555555")
        fig.add_layout(LabelSet(x="x", y="y", text="text", source=self.ticks, x_offset="dx", text_align="align",
                                text_baseline="middle", text_font_size="9pt", text_color="#222222",
                                background_fill_color="white", background_fill_alpha=0.85))
        renderer = fig.multi_line(xs="xs", ys="ys", source=self.lines, line_width=2.5, line_alpha=0.85,
                                  line_color={"field": "rmse", "transform": self.colours},
                                  hover_line_width=4.5, hover_line_alpha=1.0,
                                  hover_line_color={"field": "rmse", "transform": self.colours})
        renderer.level = "underlay"
        fig.add_tools(HoverTool(renderers=[renderer], tooltips=[("run", "@run"), ("test RMSE", "@rmse{0.0000}"),
                                                                ("mean |∇·q|", "@mad{0.00e+0}")],
                                line_policy="interp"))
        fig.add_layout(ColorBar(color_mapper=self.colours, title="test RMSE (scaled)", width=12,
                                formatter=NumeralTickFormatter(format="0.0000")), "right")
        fig.yaxis.visible = False
        fig.grid.visible = False
        fig.outline_line_color = None
        fig.xaxis.ticker = FixedTicker(ticks=[])
        fig.xaxis.major_label_text_font_size = "10pt"
        fig.xaxis.major_label_text_font_style = "bold"
        fig.xaxis.axis_line_color = None
        fig.xaxis.major_tick_line_color = None
        self.figure = fig

    def update(self, axes: list[Axis], runs: list[str], rmse: np.ndarray, mad: np.ndarray) -> None:
        """Draw ``axes`` and one line per run through them (``runs`` name the lines; ``rmse`` colours them)."""
        n = len(axes)
        fig = self.figure
        fig.x_range.update(start=-0.35, end=n - 0.5)
        fig.xaxis.ticker.ticks = list(range(n))
        fig.xaxis.major_label_overrides = {i: axis_title(a) for i, a in enumerate(axes)}
        self.spines.data = dict(x=list(range(n)), y0=[0.0] * n, y1=[1.0] * n)
        ticks = [(i, pos, text) for i, a in enumerate(axes) for pos, text in a.ticks]
        # the first axis's labels on its left, where no line runs; the others' on their right
        self.ticks.data = dict(x=[t[0] for t in ticks], y=[t[1] for t in ticks], text=[t[2] for t in ticks],
                               dx=[-6 if t[0] == 0 else 6 for t in ticks],
                               align=["right" if t[0] == 0 else "left" for t in ticks])
        self.lines.data = dict(xs=[list(range(n))] * len(runs),
                               ys=[[float(a.positions[j]) for a in axes] for j in range(len(runs))],
                               rmse=list(rmse), mad=list(mad), run=list(runs))
        finite = rmse[np.isfinite(rmse)]
        if finite.size:
            lo, hi = float(finite.min()), float(finite.max())
            pad = 0.0 if hi > lo else max(abs(hi) * 0.05, 1e-12)  # a single run: a range around it
            self.colours.update(low=lo - pad, high=hi + pad)


class SweepView:
    """The Sweep tab of one browser session."""

    def __init__(self, state: SweepState, poll_ms: int = POLL_MS):
        self.state = state
        self.poll_ms = poll_ms
        self._callback: Any = None
        self._region_key: Any = None
        self._build()

    # -- layout ------------------------------------------------------------------------------------
    def _build(self) -> None:
        s = self.state
        common = dict(width=CONTROL_WIDTH, stylesheets=[WRAP_LABEL])
        models = pn.widgets.MultiChoice.from_param(s.param.models, name="Models", **common)
        seeds = pn.widgets.IntSlider.from_param(s.param.seeds, name="Seeds per setting (0, 1, …)", **common)
        self.knobs = [pn.widgets.Select.from_param(s.param[f"knob_{i}"], name=f"Hyper-parameter {i}", **common)
                      for i in (1, 2)]
        self.values = [pn.widgets.TextInput.from_param(s.param[f"values_{i}"], name="Values", **common,
                                                       css_classes=[f"sweep-values-{i}"]) for i in (1, 2)]
        seconds = pn.widgets.FloatInput.from_param(s.param.seconds, name="Budget per run [s]", start=1, step=5,
                                                   description=s.param.seconds.doc, **common)
        epochs = pn.widgets.IntInput.from_param(s.param.epochs, name="Epochs per run (empty: the run's plan)",
                                                start=1, description=s.param.epochs.doc, **common)
        self.plan = pn.pane.Markdown("", width=CONTROL_WIDTH, css_classes=["sweep-plan"])
        self.invalid = pn.pane.Markdown("", width=CONTROL_WIDTH, css_classes=["sweep-invalid"],
                                        styles={"color": "#b00020"})
        self.budget_note = pn.pane.Markdown("", width=CONTROL_WIDTH, css_classes=["budget-note"],
                                            styles={"color": "#8a4b00", "font-size": "0.85em"})
        self.launch_button = pn.widgets.Button(name="Launch sweep", button_type="primary", width=140)
        self.cancel_button = pn.widgets.Button(name="Cancel sweep", button_type="danger", width=140, disabled=True)
        self.launch_button.on_click(lambda event: self.launch())
        self.cancel_button.on_click(lambda event: self.cancel())
        controls = pn.Row(
            pn.Column(models, seeds, seconds, epochs, self.budget_note, width=CONTROL_WIDTH + 20),
            pn.Column(self.knobs[0], self.values[0], self.knobs[1], self.values[1], width=CONTROL_WIDTH + 20),
            pn.Column(self.plan, self.invalid, pn.Row(self.launch_button, self.cancel_button),
                      width=CONTROL_WIDTH + 20),
            css_classes=["sweep-controls"], sizing_mode="stretch_width")
        self.region = pn.pane.Markdown("", sizing_mode="stretch_width", css_classes=["sweep-region"])
        self.message = pn.pane.Alert("", alert_type="warning", visible=False, sizing_mode="stretch_width",
                                     css_classes=["sweep-message"])
        self.progress = pn.indicators.Progress(value=0, max=1, height=14, width=420, bar_color="primary",
                                               margin=(12, 10, 8, 10), align="center")
        self.progress_text = pn.pane.Markdown("No sweep launched yet.", css_classes=["sweep-progress"],
                                              sizing_mode="stretch_width")
        self.plot = ParallelPlot()
        score_format = {**{f"{k}{suffix}": NumberFormatter(format="0.0000") for k in ("rmse", "val_rmse")
                           for suffix in ("", "_mean", "_std")},
                        **{f"mad{suffix}": ScientificFormatter(precision=2, power_limit_low=0, power_limit_high=3)
                           for suffix in ("", "_mean", "_std")},
                        "seconds": NumberFormatter(format="0.0[0]"), "seconds_mean": NumberFormatter(format="0.0[0]")}
        self.summary = pn.widgets.Tabulator(
            self._summary(), disabled=True, show_index=False, sizing_mode="stretch_width", layout="fit_data_fill",
            css_classes=["sweep-summary"], formatters=score_format,
            groups={title: [f"{k}_mean", f"{k}_std"] for k, title in SCORE_TITLES.items()},
            titles={"done": "seeds done", "seconds_mean": "s (mean)",
                    **{f"{k}_{a}": "± std" if a == "std" else "mean" for k in SCORE_TITLES for a in ("mean", "std")}})
        # sortable by its scores only: the other columns' sort buttons would push the errors out of sight
        self.table = pn.widgets.Tabulator(
            s.table(), disabled=True, show_index=False, sizing_mode="stretch_width", layout="fit_data_stretch",
            css_classes=["sweep-runs"], height=320, sortable=self._sortable(),
            formatters={**score_format, "status": STATUS_FORMAT, "error": {"type": "textarea"}},
            titles={**SCORE_TITLES, "val_rmse": "val. RMSE", "seconds": "s"})
        self.view = pn.Column(
            pn.pane.Markdown(INTRO, sizing_mode="stretch_width"), self.region, controls, self.message,
            pn.Row(self.progress, pn.Column(self.progress_text, align="center"), sizing_mode="stretch_width"),
            fixed_pane(self.plot.figure, "sweep-plot"),
            pn.pane.Markdown("##### Each setting over its seeds"), self.summary,
            pn.pane.Markdown("##### Every run"), self.table,
            sizing_mode="stretch_width", css_classes=["sweep"])
        s.param.watch(lambda *events: self._show_plan(), ["plan", "invalid"])
        s.param.watch(lambda e: self._show_message(), "message")
        s.param.watch(lambda *events: self._note_budget(), ["models", "seconds"])
        for i in (1, 2):
            s.param.watch(lambda e, i=i: self._describe_knob(i), f"knob_{i}")
            self._describe_knob(i)
        self._show_plan()
        self._show_message()
        self._note_budget()
        self._show_region()
        self._draw_plot()

    def attach(self) -> None:
        """Start polling (inside a served session; a view built elsewhere is polled by hand)."""
        if self._callback is None and pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
            self._callback = pn.state.add_periodic_callback(self.poll, period=self.poll_ms)

    # -- actions -------------------------------------------------------------------------------------
    def launch(self) -> None:
        """Launch the chosen sweep (the state says why when it cannot) and show its runs."""
        if self.state.launch(nice=JOB_NICE, isolate=True):
            self.table.sortable = self._sortable()
            self._refresh()

    def cancel(self) -> None:
        self.state.cancel()
        self._refresh()

    def poll(self) -> None:
        """Periodic: submit the sweep's next runs, and redraw what changed."""
        self._show_region()
        if self.state.poll():
            self._refresh()
        else:
            self._buttons()

    # -- drawing -------------------------------------------------------------------------------------
    def _sortable(self) -> dict[str, bool]:
        return {c: c in RUN_SCORES for c in self.state.table().columns}

    def _summary(self) -> Any:
        """The state's summary over seeds as shown: '2 of 3' seeds done in one column."""
        frame = self.state.aggregate()
        frame["done"] = [f"{d} of {n}" for d, n in zip(frame["done"], frame["runs"])]
        return frame.drop(columns="runs")

    def _describe_knob(self, i: int) -> None:
        """The values box of knob ``i``: its label with the unit, its doc as a tooltip, example values."""
        knob, box = getattr(self.state, f"knob_{i}"), self.values[i - 1]
        if knob == NONE:
            box.param.update(name="Values", placeholder="pick a hyper-parameter first", description=None,
                             disabled=True)
            return
        model = self.state.models[0]
        p = REGISTRY[model].params.param[knob]
        box.param.update(name=f"Values of {param_label(p)}", placeholder=f"e.g. {example_values(model, knob)}",
                         description=p.doc, disabled=False)

    def _show_plan(self) -> None:
        s = self.state
        self.plan.object = s.plan
        self.invalid.object = f"Cannot launch: {s.invalid}." if s.invalid else ""
        if not s.rows:  # before the first launch the plot shows the axes it will have
            self._draw_plot()
        self._buttons()

    def _show_message(self) -> None:
        self.message.object = self.state.message
        self.message.visible = bool(self.state.message)

    def _note_budget(self) -> None:
        self.budget_note.object = short_budget(self.state.models, self.state.seconds)

    def _show_region(self) -> None:
        """The region the next sweep trains on (the sidebar's), redrawn when it changes."""
        e = self.state.explorer
        key = (e.problem, e.spec)
        if key == self._region_key:
            return
        self._region_key = key
        if e.problem is None:
            self.region.object = "**Region**: none loaded: pick a preset or drag a box on the map."
            return
        self.region.object = (f"**Region**: {format_bounds(e.bounds)} · `{e.shown(e.spec)}` · "
                              f"{len(e.problem.train.xy):,} training and {len(e.problem.test.xy):,} test points")

    def _buttons(self) -> None:
        running = self.state.running
        self.launch_button.disabled = running or bool(self.state.invalid)
        self.cancel_button.disabled = not running

    def _refresh(self) -> None:
        """Tables, progress and plot from the state's rows."""
        s = self.state
        done, total, text = s.progress()
        with pn.io.hold():  # one change for the browser
            self.progress.param.update(value=0, max=max(total, 1))  # (a value above the old maximum is refused)
            self.progress.param.update(value=done, bar_color="success" if total and done == total else "primary")
            self.progress_text.object = text
            self.table.value = s.table()
            self.summary.value = self._summary()
            self._draw_plot()
            self._buttons()

    def _draw_plot(self) -> None:
        """The launched sweep's axes and finished runs; before any launch, the planned sweep's axes."""
        s = self.state
        levels = s.levels
        if not s.rows:
            try:
                levels = {"model": list(s.models), **s.grid()}
            except ValueError:
                levels = {"model": list(s.models)}
        axes, drawn = parallel_axes(s.table(), levels)
        order = np.argsort(-drawn["rmse"].to_numpy(dtype=float), kind="stable")  # the best runs drawn last, on top
        drawn = drawn.iloc[order].reset_index(drop=True)
        for axis in axes:
            axis.positions = axis.positions[order]
        names = [" · ".join([str(r["model"]), *(f"{k} {r[k]}" for k in levels if k != "model"), f"seed {r['seed']}"])
                 for _, r in drawn.iterrows()]
        # held: a Bokeh model changed outside the session's lock (a widget's callback) is refused by the server
        with pn.io.hold():
            self.plot.update(axes, names, drawn["rmse"].to_numpy(dtype=float), drawn["mad"].to_numpy(dtype=float))
