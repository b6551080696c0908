"""Checkpoints: safetensors weights plus JSON metadata; reload predicts like the trainer; clear errors."""

from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from iceviz.training.checkpoint import FORMAT, load_checkpoint, save_checkpoint
from iceviz.training.trainers import make_trainer



@pytest.fixture(scope="module")
def trained():
    """A few epochs of dfnn on synthetic:curve and dfnn-aux on synthetic:glacier (with surface elevation)."""
    out = {}
    for model, data, epochs in (("dfnn", "synthetic:curve", 5), ("dfnn-aux", "synthetic:glacier", 2)):
        trainer = make_trainer(model, data, device="cpu", grid_shape=(12, 10), epochs=epochs, seed=1)
        result = trainer.fit()
        out[model] = (trainer, result)
    return out


def _predict(ck, xy: np.ndarray) -> np.ndarray:
    x = torch.as_tensor(ck.scale.xy_to_scaled(xy), dtype=torch.float32)
    with torch.no_grad():
        return ck.model(x).double().numpy() * ck.scale.flux


@pytest.mark.parametrize("model", ["dfnn", "dfnn-aux"])
def test_round_trip_predicts_like_the_trainer(trained, tmp_path, model):
    trainer, result = trained[model]
    path = save_checkpoint(tmp_path / "sub" / "model.safetensors", trainer, metrics=result.metrics)
    assert path.is_file()
    ck = load_checkpoint(path)
    problem = trainer.problem
    assert ck.model_name == model
    assert ck.data == problem.spec
    assert ck.scale == problem.scale
    assert ck.bounds == tuple(problem.bounds)
    assert ck.grid_shape == (12, 10)
    assert ck.metrics == result.metrics
    assert ck.params["seed"] == 1 and ck.params["lr"] == trainer.params.lr
    assert ck.config == trainer.config
    assert not ck.model.training
    assert (ck.model.surface is not None) == (model == "dfnn-aux")

    xy = problem.test.xy[:300]
    expected = trainer.predict(xy)
    got = _predict(ck, xy)
    scale = np.abs(expected).max()
    assert scale > 0
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6 * scale)
    # the divergence (autograd through the network and, for -aux, the fitted surface) round-trips too
    xs = torch.as_tensor(problem.scale.xy_to_scaled(xy), dtype=torch.float32)
    div_ck = ck.model.divergence(xs).detach().double().numpy()
    div_tr = trainer.divergence_scaled(xs)
    np.testing.assert_allclose(div_ck, div_tr, rtol=1e-4, atol=1e-6)


def test_aux_checkpoint_keeps_the_fitted_surface(trained, tmp_path):
    trainer, _ = trained["dfnn-aux"]
    ck = load_checkpoint(save_checkpoint(tmp_path / "aux.safetensors", trainer))
    coef = ck.model.surface.coef
    assert coef.abs().max() > 0, "surface fit lost: the reloaded surface is the unfitted zero surface"
    torch.testing.assert_close(coef, trainer.model.surface.coef.cpu())


def test_file_is_plain_safetensors_without_pickle(trained, tmp_path):
    trainer, result = trained["dfnn"]
    path = save_checkpoint(tmp_path / "model.safetensors", trainer, metrics=result.metrics)
    raw = path.read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + header_len])  # a JSON header, not a pickle / zip archive
    assert not raw.startswith(b"PK") and not raw.startswith(b"\x80")
    tensors = load_file(str(path))
    state = trainer.model.state_dict()
    assert set(tensors) == set(state)
    for k, v in state.items():
        torch.testing.assert_close(tensors[k], v.cpu())
    meta = json.loads(header["__metadata__"]["iceviz"])
    assert meta["format"] == FORMAT and meta["model"] == "dfnn" and meta["data"] == "synthetic:curve"
    assert meta["metrics"]["rmse"] == result.metrics["rmse"]


def test_missing_file(tmp_path):
    path = tmp_path / "absent.safetensors"
    with pytest.raises(ValueError, match="absent.safetensors"):
        load_checkpoint(path)
    with pytest.raises(ValueError, match="no such checkpoint file") as info:
        load_checkpoint(tmp_path)  # a directory is not a checkpoint file either
    assert str(tmp_path) in str(info.value)


@pytest.mark.parametrize("content", [os.urandom(512), b"", b"\x05\x00\x00\x00\x00\x00\x00\x00{oops"],
                         ids=["random", "empty", "truncated-header"])
def test_not_a_safetensors_file(tmp_path, content):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="junk.safetensors"):
        load_checkpoint(path)


def test_safetensors_without_iceviz_metadata(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(3)}, str(path), metadata={"other": "x"})
    with pytest.raises(ValueError, match="plain.safetensors.*metadata"):
        load_checkpoint(path)


def _rewrite_metadata(src, dst, edit) -> None:
    with safe_open(str(src), framework="pt") as f:
        meta = json.loads(f.metadata()["iceviz"])
    edit(meta)
    save_file(load_file(str(src)), str(dst), metadata={"iceviz": json.dumps(meta)})


def test_metadata_naming_an_unknown_model(trained, tmp_path):
    good = save_checkpoint(tmp_path / "good.safetensors", trained["dfnn"][0])
    bad = tmp_path / "renamed.safetensors"
    _rewrite_metadata(good, bad, lambda m: m.update(model="no-such-model"))
    with pytest.raises(ValueError, match="no-such-model") as info:
        load_checkpoint(bad)
    assert "renamed.safetensors" in str(info.value)


def test_metadata_of_another_format(trained, tmp_path):
    good = save_checkpoint(tmp_path / "good.safetensors", trained["dfnn"][0])
    bad = tmp_path / "future.safetensors"
    _rewrite_metadata(good, bad, lambda m: m.update(format="iceviz-checkpoint-99"))
    with pytest.raises(ValueError, match="future.safetensors.*iceviz-checkpoint-99"):
        load_checkpoint(bad)


def test_weights_not_matching_the_config(trained, tmp_path):
    good = save_checkpoint(tmp_path / "good.safetensors", trained["dfnn"][0])
    bad = tmp_path / "wider.safetensors"
    _rewrite_metadata(good, bad, lambda m: m["config"].update(width=m["config"]["width"] * 2))
    with pytest.raises(ValueError, match="wider.safetensors"):
        load_checkpoint(bad)


def test_emulator_scales_from_an_older_version(small_ensemble, tmp_path):
    """An emulator checkpoint whose scales lack a field (saved before the accumulated forcing input) is refused by
    name, not fed inputs it was not trained on."""
    trainer = make_trainer("mlp", f"sim:{small_ensemble}", device="cpu", epochs=1, width=8, layers=1)
    good = save_checkpoint(tmp_path / "good.safetensors", trainer)
    assert load_checkpoint(good).scales == trainer.scales
    bad = tmp_path / "older.safetensors"
    _rewrite_metadata(good, bad, lambda m: m["scales"].pop("forcing_rms"))
    with pytest.raises(ValueError, match="older.safetensors.*forcing_rms.*retrain"):
        load_checkpoint(bad)


def test_emulator_with_fewer_inputs_than_this_version_builds(small_ensemble, tmp_path):
    """An emulator checkpoint whose network takes another number of scalar or vector inputs than its scales now
    give (saved before an input was added) is refused by name before it is fed inputs of the wrong width."""
    trainer = make_trainer("mlp", f"sim:{small_ensemble}", device="cpu", epochs=1, width=8, layers=1)
    good = save_checkpoint(tmp_path / "good.safetensors", trainer)
    bad = tmp_path / "narrower.safetensors"
    for key, kind in (("n_scalars", "scalar"), ("n_vectors", "vector")):
        _rewrite_metadata(good, bad, lambda m: m["config"].update({key: m["config"][key] - 1}))
        with pytest.raises(ValueError, match=f"narrower.safetensors.*takes {getattr(trainer.scales, key) - 1} {kind} .*"
                                             f"builds {getattr(trainer.scales, key)} .*retrain"):
            load_checkpoint(bad)
