"""Checkpoints: safetensors weights plus JSON metadata; reload predicts like the trainer; clear errors."""

from __future__ import annotations

import json
import math
import os
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from iceviz.models.emulators import make_emulator
from iceviz.models.registry import EmulatorParams, FluxParams, ViscosityParams
from iceviz.training import checkpoint
from iceviz.training.checkpoint import FORMAT, MAX_CHECKPOINT_BYTES, config_bytes, load_checkpoint, save_checkpoint
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


def _rewrite_metadata(src, dst, edit=None, edit_header=None) -> Path:
    """Copy the safetensors file ``src`` to ``dst`` with its iceviz metadata (``edit(meta)``) and its header
    (``edit_header(header)``: the tensor table and ``__metadata__``) edited in place, the tensor bytes as they
    were. The format: 8 bytes of little-endian header length, the JSON header, then the raw tensor bytes."""
    raw = Path(src).read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + length])
    meta = json.loads(header["__metadata__"]["iceviz"])
    if edit is not None:
        edit(meta)
    header["__metadata__"]["iceviz"] = json.dumps(meta)
    if edit_header is not None:
        edit_header(header)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    Path(dst).write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + length:])
    return Path(dst)


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


# -- crafted checkpoints: refused from what they say, before anything is allocated from it ----------------------------
@pytest.fixture(scope="module")
def saved(trained, small_ensemble, tmp_path_factory):
    """A checkpoint of each family, and of a flux model with a fitted surface, by model name."""
    root = tmp_path_factory.mktemp("saved")
    trainers = {
        "dfnn": trained["dfnn"][0], "dfnn-aux": trained["dfnn-aux"][0],
        "viscosity-pinn": make_trainer("viscosity-pinn", "shelf:analytic", device="cpu", epochs=1, width=8, depth=2,
                                       mu_width=8, mu_depth=2),
        "mlp": make_trainer("mlp", f"sim:{small_ensemble}", device="cpu", epochs=1, width=8, layers=1),
    }
    return {name: save_checkpoint(root / f"{name}.safetensors", trainer) for name, trainer in trainers.items()}


def _shape(name, shape):
    return lambda header: header[name].update(shape=shape)


CRAFTED = [
    pytest.param("dfnn", lambda m: m["config"].update(width=200_000), None,
                 r"config: dfnn: width=200000 is not allowed: an integer from 4 to 1024 \(Hidden units",
                 id="huge-width"),
    pytest.param("dfnn", lambda m: m["params"].update(width=200_000), None,
                 r"params: dfnn: width=200000 is not allowed: an integer from 4 to 1024", id="huge-width-param"),
    pytest.param("dfnn", lambda m: m["config"].update(depth=-3), None,
                 r"config: dfnn: depth=-3 is not allowed: an integer from 1 to 12", id="negative-depth"),
    pytest.param("dfnn", lambda m: m["config"].update(width="wide"), None,
                 r"config: dfnn: width='wide' is not allowed: an integer", id="string-width"),
    pytest.param("dfnn", lambda m: m["params"].update(lr=1e6), None,
                 r"params: dfnn: lr=1000000.0 is not allowed: a number from 1e-06 to 1", id="huge-lr"),
    pytest.param("dfnn", lambda m: m["params"].update(seconds=math.inf), None, r"params.seconds is inf",
                 id="inf-param"),
    pytest.param("dfnn", lambda m: m.update(bounds=[math.nan, 1.0, 0.0, 1.0]), None,
                 r"bounds: bounds must be finite, got \(nan", id="nan-bounds"),
    pytest.param("dfnn", lambda m: m.update(bounds=[1.0, 0.0, 0.0, 1.0]), None, r"need xmin < xmax",
                 id="inverted-bounds"),
    pytest.param("dfnn", lambda m: m.update(bounds=[0.0, 1.0, 0.0]), None, r"expected four numbers",
                 id="three-bounds"),
    pytest.param("dfnn", lambda m: m["scale"].update(flux=math.nan), None,
                 r"scale.flux is nan: it must be a finite number", id="nan-scale"),
    pytest.param("dfnn", lambda m: m["scale"].update(length=0.0), None,
                 r"scale.length is 0.0: it must be above zero", id="zero-scale"),
    pytest.param("dfnn", lambda m: m["config"].update(amplitude=-math.inf), None,
                 r"config.amplitude is -inf", id="inf-config"),
    pytest.param("dfnn", lambda m: m.update(grid_shape=[10**6, 10**6]), None,
                 r"grid_shape \[1000000, 1000000\] has 1,000,000,000,000 cells, more than 4,000,000", id="huge-grid"),
    pytest.param("dfnn", lambda m: m.update(grid_shape=[0, 10]), None,
                 r"grid_shape must be two positive integers \(ny, nx\), got \[0, 10\]", id="empty-grid"),
    pytest.param("dfnn", lambda m: m["config"].pop("width"), None, r"the checkpoint lacks 'width'", id="no-width"),
    pytest.param("dfnn", lambda m: m.pop("scale"), None, r"the checkpoint lacks 'scale'", id="no-scale"),
    pytest.param("dfnn", lambda m: m.pop("config"), None, r"iceviz metadata lacks config", id="no-config"),
    pytest.param("dfnn", lambda m: m.update(config=[64, 4]), None, r"config must be a JSON object, got \[64, 4\]",
                 id="config-not-an-object"),
    pytest.param("dfnn", lambda m: m.update(model="no-such-model"), None, r"unknown model 'no-such-model'",
                 id="unknown-model"),
    pytest.param("dfnn", lambda m: m.update(model=["dfnn"]), None, r"model and data must be names",
                 id="model-not-a-name"),
    pytest.param("dfnn", None, _shape("hidden.0.weight", [200_000, 200_000]),
                 r"its header declares 152,588 MiB of tensors \(the largest, 'hidden.0.weight', of shape "
                 r"\[200000, 200000\]\), more than a checkpoint may hold \(512 MiB\)", id="huge-tensor"),
    pytest.param("dfnn", None, _shape("hidden.0.weight", [-1, 2]), r"tensor 'hidden.0.weight'", id="negative-shape"),
    pytest.param("dfnn", None, lambda h: h["w_out"].update(dtype="F128"), r"tensor 'w_out'", id="unknown-dtype"),
    pytest.param("dfnn", None, lambda h: h.update(__metadata__="x"), r"without iceviz metadata", id="no-metadata"),
    pytest.param("dfnn-aux", lambda m: m["config"]["surface"].update(features=10**9), None,
                 r"config: the network it describes would take about 30,518 MiB, more than a checkpoint may hold",
                 id="huge-surface"),
    pytest.param("dfnn", lambda m: m["config"].update(members=1000), None,
                 r"config: dfnn: members=1000 is not allowed: an integer from 1 to 10", id="many-members"),
    pytest.param("dfnn-aux", lambda m: m["config"]["surface"].update(features=-5), None,
                 r"config.surface.features must be a whole number", id="negative-surface"),
    pytest.param("dfnn-aux", lambda m: m["config"]["surface"].update(length_scale=0.0), None,
                 r"config: dfnn-aux: surface_length=0.0 is not allowed: a number from 0.001 to 10",
                 id="surface-length"),
    pytest.param("viscosity-pinn", lambda m: m["config"].update(mu_width=10**6), None,
                 r"config: viscosity-pinn: mu_width=1000000 is not allowed: an integer from 4 to 512",
                 id="huge-mu-width"),
    pytest.param("viscosity-pinn", lambda m: m["config"].update(edges=[i / 100 for i in range(40)]), None,
                 r"config: viscosity-pinn: subdomains=41 is not allowed: an integer from 1 to 8", id="many-subdomains"),
    pytest.param("viscosity-pinn", lambda m: m["config"]["scales"].update(h0=-1.0), None,
                 r"config.scales.h0 is -1.0: it must be above zero", id="negative-thickness-scale"),
    pytest.param("viscosity-pinn", lambda m: m["config"]["scales"].update(u_mean=math.nan), None,
                 r"config.scales.u_mean is nan", id="nan-shelf-scale"),
    pytest.param("mlp", lambda m: m["config"].update(layers=100), None,
                 r"config: mlp: layers=100 is not allowed: an integer from 1 to 12", id="many-layers"),
    pytest.param("mlp", lambda m: m["config"].update(architecture="egcn", hidden=10**6), None,
                 r"config: the network it describes would take about [\d,]+ MiB", id="huge-egcn-hidden"),
    pytest.param("mlp", lambda m: m["scales"].update(dv=math.inf), None, r"scales.dv is inf", id="inf-emulator-scale"),
    pytest.param("mlp", lambda m: m["scales"].update(forcing_std=[0.0 for _ in m["scales"]["forcing_std"]]), None,
                 r"scales.forcing_std is \[0.0\]: it must be above zero", id="zero-forcing-scale"),
    pytest.param("mlp", None, _shape("mesh.points", [10**7, 2]),
                 r"a mesh of 10,000,000 nodes and [\d,]+ edges: at most 1,000,000 nodes", id="huge-mesh"),
    pytest.param("mlp", None, lambda h: h.pop("mesh.edges"), r"needs its mesh as \[N, 2\] tensors", id="no-mesh-edges"),
]


@pytest.mark.parametrize("model, edit, edit_header, message", CRAFTED)
def test_crafted_checkpoints_are_refused_before_anything_is_allocated(saved, tmp_path, monkeypatch, model, edit,
                                                                       edit_header, message):
    """Sizes, hyper-parameters, scales, bounds and grids are checked from the header alone: the refusal names the
    file and the problem, comes at once, and no tensor is read (so no network is built) before it."""
    bad = _rewrite_metadata(saved[model], tmp_path / "crafted.safetensors", edit, edit_header)
    reads = []
    monkeypatch.setattr(checkpoint, "load_file", lambda *args, **kwargs: reads.append(args))
    start = time.perf_counter()
    with pytest.raises(ValueError, match=message) as info:
        load_checkpoint(bad)
    assert time.perf_counter() - start < 2.0
    assert str(info.value).startswith(f"{bad}: ")
    assert reads == []


def test_every_family_passes_its_own_checks(saved):
    for name, path in saved.items():
        assert load_checkpoint(path).model_name == name


def test_a_file_larger_than_any_checkpoint_is_refused_unread(tmp_path):
    path = tmp_path / "huge.safetensors"
    with path.open("wb") as f:
        f.truncate(MAX_CHECKPOINT_BYTES + 1)  # sparse: takes no disk
    with pytest.raises(ValueError, match=r"huge.safetensors: the file holds 536,870,913 bytes, more than a "
                                         r"checkpoint may \(536,870,912\)"):
        load_checkpoint(path)


@pytest.mark.parametrize("error", [MemoryError("cannot allocate"), RuntimeError("CUDA out of memory"),
                                   OverflowError("too large"), TypeError("bad"), struct.error("unpack"),
                                   json.JSONDecodeError("bad", "{", 0), KeyError("weight")],
                         ids=lambda e: type(e).__name__)
def test_any_failure_while_loading_becomes_a_value_error_naming_the_file(saved, monkeypatch, error):
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(checkpoint, "load_file", fail)
    with pytest.raises(ValueError, match=r"dfnn.safetensors: ") as info:
        load_checkpoint(saved["dfnn"])
    assert str(error) in str(info.value)


def test_a_device_that_does_not_exist(saved):
    with pytest.raises(ValueError, match=r"dfnn.safetensors: .*nonexistent"):
        load_checkpoint(saved["dfnn"], device="nonexistent")


def _weight_bytes(model: torch.nn.Module) -> int:
    """Bytes of a network's parameters and persistent buffers, but its mesh graph's (which follow the mesh)."""
    return sum(t.numel() * t.element_size() for k, t in model.state_dict().items() if not k.startswith("graph."))


def test_the_size_estimate_bounds_the_weights_of_every_family(saved):
    for name, path in saved.items():
        ck = load_checkpoint(path)
        family = "flux" if name.startswith("dfnn") else "viscosity" if name == "viscosity-pinn" else "emulator"
        assert 0 < _weight_bytes(ck.model) <= config_bytes(family, ck.config), name


@pytest.mark.parametrize("architecture", ["egcn", "egcn-seed", "gcn", "mlp", "cnn"])
def test_the_size_estimate_bounds_the_weights_of_every_emulator(saved, architecture):
    config = load_checkpoint(saved["mlp"]).config
    tensors = load_file(str(saved["mlp"]))
    points, edges = tensors["mesh.points"].numpy(), tensors["mesh.edges"].numpy()
    for width, layers, channels in ((4, 1, 1), (48, 3, 4)):
        sized = dict(config, architecture=architecture, width=width, layers=layers,
                     **({"channels": channels} if architecture == "egcn" else {}),
                     **({"cells": 256} if architecture == "cnn" else {}))
        assert _weight_bytes(make_emulator(sized, points, edges)) <= config_bytes("emulator", sized), sized


def test_every_network_the_registry_allows_fits_under_the_limit(saved):
    """The limit refuses no checkpoint iceviz itself could write: the largest sizes the bounds allow fit."""
    def top(params, key):
        return params.param[key].bounds[1]

    emulator = load_checkpoint(saved["mlp"]).config
    configs = {
        "flux": dict(members=top(FluxParams, "members"), width=top(FluxParams, "width"), depth=top(FluxParams, "depth"),
                     surface=dict(features=800)),
        "viscosity": dict(width=top(ViscosityParams, "width"), depth=top(ViscosityParams, "depth"),
                          mu_width=top(ViscosityParams, "mu_width"), mu_depth=top(ViscosityParams, "mu_depth"),
                          edges=[0.0] * (top(ViscosityParams, "subdomains") - 1)),
        "emulator": dict(emulator, width=top(EmulatorParams, "width"), layers=top(EmulatorParams, "layers"),
                         channels=top(EmulatorParams, "channels"), cells=top(EmulatorParams, "cells")),
    }
    for family, config in configs.items():
        assert config_bytes(family, config) <= MAX_CHECKPOINT_BYTES, family
