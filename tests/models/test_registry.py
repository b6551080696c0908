"""The model registry: nine flux models, documented hyper-parameters with bounds."""

import param
import pytest

from iceviz.models.registry import REGISTRY, get_model, model_names, short_budget

FLUX = ["dfnn", "dfnn-dir", "dfnn-aux", "pinn", "pinn-dir", "pinn-aux", "nn", "nn-dir", "nn-aux"]


def test_all_nine_flux_models_are_registered():
    assert model_names("flux") == FLUX
    assert get_model("dfnn").options["constraint"] == "hard"
    assert get_model("pinn-aux").options == {"constraint": "soft", "direction": False, "aux": True}
    assert get_model("nn-dir").options == {"constraint": "none", "direction": True, "aux": False}


def test_every_parameter_has_a_doc_and_numbers_have_bounds():
    for spec in REGISTRY.values():
        params = spec.make_params()
        for name, p in params.param.objects().items():
            if name == "name":
                continue
            assert p.doc, f"{spec.name}.{name} has no doc"
            if isinstance(p, (param.Number, param.Integer)):
                assert p.bounds is not None, f"{spec.name}.{name} has no bounds"


def test_overrides_are_validated():
    with pytest.raises(ValueError, match="unknown hyper-parameter"):
        get_model("dfnn").make_params(widht=3)
    with pytest.raises(ValueError, match=r"width=0 is not allowed: an integer from 4 to 1024 \(Hidden units"):
        get_model("dfnn").make_params(width=0)  # below the bound
    with pytest.raises(ValueError, match="width='abc' is not allowed: an integer"):
        get_model("dfnn").make_params(width="abc")
    with pytest.raises(ValueError, match=r"activation='foo' is not allowed: one of \['silu'"):
        get_model("dfnn").make_params(activation="foo")
    assert get_model("dfnn").make_params(width=128).width == 128
    with pytest.raises(ValueError, match="unknown model 'dfnm'"):
        get_model("dfnm")


def test_each_flux_model_lists_only_the_knobs_it_uses():
    assert not get_model("dfnn").uses("div_weight") and not get_model("dfnn").uses("dir_weight")
    assert get_model("pinn").uses("div_weight") and get_model("pinn").uses("collocation")
    assert get_model("dfnn-dir").uses("dir_weight") and not get_model("dfnn-dir").uses("surface_length")
    assert get_model("dfnn-aux").uses("aux_derivative") and not get_model("pinn-aux").uses("aux_derivative")
    assert get_model("nn").uses("lr") and get_model("viscosity-pinn").uses("lr")


def test_budgets_below_the_measured_minimum_are_flagged():
    assert short_budget(["dfnn", "pinn"], 30) == ""
    note = short_budget(["egcn", "mlp"], 15)
    assert "egcn 105 s" in note and "mlp 35 s" in note and "15 s budget" in note
    assert "viscosity-pinn 60 s" in short_budget(["viscosity-pinn"], 30)
    assert short_budget(["persistence"], 1) == ""  # the floor needs no training
