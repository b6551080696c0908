"""The model registry: nine flux models, documented hyper-parameters with bounds."""

import param
import pytest

from iceviz.models.registry import REGISTRY, get_model, model_names

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
    with pytest.raises(ValueError):
        get_model("dfnn").make_params(width=0)  # below the bound
    assert get_model("dfnn").make_params(width=128).width == 128
    with pytest.raises(ValueError, match="unknown model 'dfnm'"):
        get_model("dfnm")
