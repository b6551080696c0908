"""The explorer's Region tab: training points the models fit, validation and test points told apart."""

from __future__ import annotations

import holoviews as hv
import numpy as np

from iceviz.app import explorer as ex
from iceviz.app.state import ExplorerState
from iceviz.data.specs import load_problem
from iceviz.data.splits import validation_mask

hv.extension("bokeh")


def test_the_points_are_drawn_by_split_as_a_seed_0_run_uses_them():
    problem = load_problem("synthetic:glacier")
    held, _ = validation_mask(problem.train, problem.bounds)
    points = ex.region_split(problem)
    split = points.dimension_values("split")
    counts = {name: int((split == name).sum()) for name in ("train", "validation", "test")}
    assert counts == {"train": int((~held).sum()), "validation": int(held.sum()), "test": len(problem.test)}
    assert min(counts.values()) > 0 and len(split) == sum(counts.values())
    xy = np.column_stack([points.dimension_values("x"), points.dimension_values("y")])
    assert np.array_equal(xy[split == "validation"], problem.train.xy[held])
    assert np.array_equal(xy[split == "train"], problem.train.xy[~held])


def test_the_region_view_has_a_legend_of_three_colours_and_counts_in_its_title():
    state = ExplorerState()
    state.source = next(k for k, v in state._sources.items() if v == "synthetic:curve")
    fig = hv.render(ex.region_view(state))
    [legend] = [r for item in fig.legend[0].items for r in item.renderers if "color" in r.data_source.data]
    mapper = legend.glyph.fill_color.transform
    assert list(mapper.factors) == ["train", "validation", "test"]
    assert len(set(mapper.palette)) == 3
    info = state.summary()
    assert info["train"] + info["validation"] == len(state.problem.train)
    assert fig.title.text.endswith(f"{info['train']} train · {info['validation']} validation · "
                                   f"{info['test']} test points")


def test_a_shelf_picked_on_the_map_becomes_the_viscosity_tabs_on_its_next_visit(data_home):
    from iceviz.app import explorer as ex

    app = ex.Explorer()
    app.tabs.active = ex.VISCOSITY_TAB  # the view is made on the first visit
    app.tabs.active = 0
    app.state.region = "larsen-c"
    assert app.viscosity.state.preset != "Larsen C" and app.shelf_wanted == "Larsen C"  # not in a hidden tab
    app.tabs.active = ex.VISCOSITY_TAB
    assert app.viscosity.state.preset == "Larsen C" and app.shelf_wanted is None
    app.state.region = "amery"  # while the tab is on screen: at once
    assert app.viscosity.state.preset == "Amery"
    app.close()
