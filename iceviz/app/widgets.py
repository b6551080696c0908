"""Widgets made from ``param`` classes: labels that carry the unit of the doc line, number boxes, selects."""

from __future__ import annotations

import re
from collections.abc import Container, Mapping

import panel as pn
import param


WRAP_LABEL = "label { white-space: normal; overflow-wrap: anywhere; }"
"""Widget stylesheet: labels wrap within the widget's width."""


def param_label(parameter: param.Parameter, labels: Mapping[str, str] | None = None) -> str:
    """The parameter's label (``labels`` may rename it) with the unit its doc gives in brackets:
    'Refined resolution [m]'. A dimensionless '[1]' is left out."""
    unit = re.search(r"\[([^\]]+)\]", parameter.doc or "")
    label = (labels or {}).get(parameter.name, parameter.label)
    return f"{label} [{unit.group(1)}]" if unit and unit.group(1) != "1" else label


def param_widgets(obj: param.Parameterized, width: int, hidden: Container[str] = ("name",),
                  labels: Mapping[str, str] | None = None) -> list[pn.widgets.Widget]:
    """One widget per parameter of ``obj`` (but ``hidden``), linked both ways: number boxes for numbers
    (their ranges span decades, which no slider can set), a select for choices; the bounds and the doc
    (as a tooltip) go on the widget."""
    widgets = []
    for name in obj.param:
        if name in hidden:
            continue
        p = obj.param[name]  # the instance's parameter (the class's would link the widget to the class)
        # a label longer than its box wraps instead of running into the next widget's
        common = dict(name=param_label(p, labels), width=width, description=p.doc, stylesheets=[WRAP_LABEL])
        if isinstance(p, param.Selector):
            widgets.append(pn.widgets.Select.from_param(p, **common))
        elif isinstance(p, param.Integer):
            widgets.append(pn.widgets.IntInput.from_param(p, **common))
        elif isinstance(p, param.Number):
            widgets.append(pn.widgets.FloatInput.from_param(p, **common))
    return widgets
