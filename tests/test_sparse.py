"""Event-driven inference gives the dense network's outputs and spikes."""

from __future__ import annotations

import pytest
import torch

from neurosculpt import layers as L
from neurosculpt import sparse
from neurosculpt.models import build_model
from neurosculpt.sparse import EventDrivenNetwork


def _model(seed: int = 0, quantize: bool = False, **params):
    """A pruned snn-mlp; with ``quantize`` every weight is a multiple of 1/64, so with spike
    input every sum is exact in float32 whatever the order (event and dense agree bit for bit)."""
    torch.manual_seed(seed)
    config = {"kind": "snn-mlp", "hidden": (40, 30), "steps": 7, **params}
    model = build_model(config, (12,), 6)
    with torch.no_grad():
        for layer in model.layers:
            layer.weight.mul_(4.0)
            L.prune_synapses(layer, torch.rand(layer.weight.shape) < 0.7)
            if quantize:
                layer.weight.copy_(torch.round(layer.weight * 64) / 64)
                layer.bias.copy_(torch.round(layer.bias * 64) / 64)
    return model.eval()


def _spikes(model, x):
    model.record_activity = True
    with torch.no_grad():
        out = model(x)
    model.record_activity = False
    return out, [int(a.sum()) for a in model.activity]


def _x(n: int = 16) -> torch.Tensor:
    return torch.rand(n, 12, generator=torch.Generator().manual_seed(2))


@pytest.mark.parametrize("readout", ["membrane", "spikes"])
@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_exact_on_spike_input(readout, reset):
    model = _model(quantize=True, encoder="rate", readout=readout, reset=reset)
    event = EventDrivenNetwork(model)
    x = _x()
    torch.manual_seed(7)
    expected, counts = _spikes(model, x)
    torch.manual_seed(7)
    got = event(x)
    assert min(counts) > 20  # the network really spikes
    assert event.spike_counts == counts
    if readout == "spikes":
        assert torch.equal(got, expected)
    else:
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_direct_coding_matches_dense():
    model = _model()
    event = EventDrivenNetwork(model)
    assert event.static_input
    expected, counts = _spikes(model, _x())
    got = event(_x())
    assert event.spike_counts == counts
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    assert torch.equal(got.argmax(1), expected.argmax(1))
    assert event.live_synapses == model.live_synapses()


def test_task_subnetwork():
    model = _model(quantize=True, encoder="rate")
    for layer in model.layers:
        L.consolidate(layer, 0)
        L.reopen_free_synapses(layer)
    model.set_training_task(1)
    event = EventDrivenNetwork(model, task=0)
    assert event.live_synapses < model.live_synapses()
    assert model.layers[0].active_task is None
    model.set_task(0)
    torch.manual_seed(3)
    expected, counts = _spikes(model, _x())
    model.set_task(None)
    torch.manual_seed(3)
    got = event(_x())
    assert event.spike_counts == counts
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_torch_fallback_equals_compiled(monkeypatch):
    model = _model(quantize=True)
    compiled = EventDrivenNetwork(model)(_x(5))
    monkeypatch.setenv("NEUROSCULPT_COMPILE", "0")
    monkeypatch.setattr(sparse._LIBRARY, "_loaded", {})
    fallback = EventDrivenNetwork(model)
    got = fallback(_x(5))
    torch.testing.assert_close(got, compiled, rtol=0, atol=1e-6)
    assert sum(fallback.spike_counts) > 0


def test_refuses_conv_and_ann():
    with pytest.raises(ValueError, match="snn-mlp"):
        EventDrivenNetwork(build_model({"kind": "snn-conv", "channels": (2,), "hidden": (4,)},
                                       (1, 4, 4), 2))
    with pytest.raises(ValueError, match="snn-mlp"):
        EventDrivenNetwork(build_model("ann-mlp", (4,), 2))
