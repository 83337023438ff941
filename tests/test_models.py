"""Networks: every kind builds for its inputs, outputs have the right shape, clear errors."""

from __future__ import annotations

import json

import pytest
import torch

from neurosculpt import MODELS, ModelConfig, build_model
from neurosculpt import layers as L


@pytest.mark.parametrize("kind", MODELS)
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28)])
def test_every_model_builds_for_images(kind, shape, tiny_model):
    torch.manual_seed(0)
    model = build_model({"kind": kind, **tiny_model}, shape, 7)
    x = torch.rand(3, *shape)
    out = model(x)
    assert out.shape == (3, 7)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert all(layer.weight.grad is not None for layer in model.plastic_layers)
    assert (model.readout is not None) == kind.startswith("snn")
    expected = 2 + len(tiny_model["hidden"]) + 1 if kind.endswith("conv") else 3
    assert len(model.plastic_layers) == expected


@pytest.mark.parametrize("kind", ["snn-mlp", "ann-mlp"])
def test_mlps_take_sequences(kind, tiny_model):
    frames, mels = 6, 5
    model = build_model({"kind": kind, **tiny_model}, (frames, mels), 4, sequence=True)
    model.record_activity = True
    out = model(torch.randn(2, frames, mels))
    assert out.shape == (2, 4)
    if kind == "snn-mlp":  # one time step per frame, mels as input features
        assert model.plastic_layers[0].n_in == mels
        assert model.activity[0].shape == (frames, 2, 32)
    else:  # one step holding the whole flattened sequence
        assert model.plastic_layers[0].n_in == frames * mels
        assert model.activity[0].shape == (1, 2, 32)


@pytest.mark.parametrize("kind", ["snn-conv", "ann-conv"])
def test_conv_on_sequences_is_a_clear_error(kind):
    with pytest.raises(ValueError, match="snn-mlp or ann-mlp"):
        build_model(kind, (20, 32), 10, sequence=True)
    with pytest.raises(ValueError, match="image input"):
        build_model(kind, (64,), 10)


def test_spike_readout_counts_output_spikes(tiny_model):
    torch.manual_seed(0)
    model = build_model({"kind": "snn-mlp", **tiny_model, "readout": "spikes"}, (1, 8, 8), 5)
    out = model(torch.rand(4, 1, 8, 8) * 4)
    assert out.shape == (4, 5)
    assert torch.equal(out, out.round())
    assert out.min() >= 0 and out.max() <= tiny_model["steps"]


def test_unknown_model_names_the_valid_ones():
    with pytest.raises(ValueError) as err:
        build_model("snn-transformer", (1, 8, 8), 10)
    assert all(name in str(err.value) for name in MODELS)
    with pytest.raises(ValueError) as err:
        build_model({"kind": "snn-mlp", "hiden": (3,)}, (1, 8, 8), 10)
    assert "hiden" in str(err.value) and "hidden" in str(err.value)
    with pytest.raises(ValueError, match="membrane, spikes"):
        ModelConfig(readout="voltage")


def test_single_width_is_one_layer():
    """``--model-param hidden=64`` gives an int, meaning one hidden layer."""
    assert ModelConfig(hidden=64, channels=8).hidden == (64,)
    assert ModelConfig(hidden=[3, 4]).hidden == (3, 4)
    model = build_model({"kind": "ann-conv", "hidden": 16, "channels": 4}, (1, 8, 8), 3)
    assert model.hidden_sizes() == [4, 16]


def test_structure_is_json_and_tracks_growth_and_owners(tiny_model):
    model = build_model({"kind": "snn-conv", **tiny_model, "channels": (3, 4)}, (1, 8, 8), 5)
    L.consolidate(model.layers[0], 0)
    L.prune_synapses(model.layers[2], torch.ones_like(model.layers[2].mask))
    model.grow_units(2, 3)
    structure = json.loads(json.dumps(model.structure()))
    assert [s["units"] for s in structure] == [3, 4, 35, 32, 5]
    assert structure[0]["partitions"] == {"0": 27}
    assert structure[2]["inputs"] == 4 * 2 * 2  # 4 channels of 2 x 2 after two pools
    assert structure[2]["live_synapses"] == 3 * 16  # only the grown units' inputs are live
    assert structure[2]["live_units"] == 3
    assert structure[3]["inputs"] == 35


def test_shared_parameters_are_those_outside_the_plastic_layers():
    """Consolidating strategies fix these after the first task; plastic weights are not among
    them, learnable neuron constants are."""
    model = build_model({"kind": "snn-mlp", "hidden": (8, 6), "learn_beta": True,
                         "learn_threshold": True}, (5,), 3)
    plastic = {id(p) for layer in model.plastic_layers for p in (layer.weight, layer.bias)}
    shared = model.shared_parameters()
    assert shared and not any(id(p) in plastic for p in shared)
    assert {id(p) for p in shared} | plastic == {id(p) for p in model.parameters()}
    assert build_model({"kind": "ann-mlp", "hidden": (8,)}, (5,), 3).shared_parameters() == []
