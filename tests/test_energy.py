"""Energy accounting against hand-computed counts and NeuroBench's definitions."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from neurosculpt import layers as L
from neurosculpt.energy import E_AC_PJ, E_MAC_PJ, _ops, format_energy, measure_energy
from neurosculpt.layers import PlasticConv2d
from neurosculpt.models import build_model


def _tiny():
    """4 inputs -> 3 LIF -> 2 outputs, 2 steps, direct coding, hand-set weights and masks."""
    model = build_model({"kind": "snn-mlp", "hidden": (3,), "steps": 2}, (4,), 2)
    l0, l1 = model.layers
    with torch.no_grad():
        l0.weight.copy_(torch.tensor([[4.0, 1.0, 9.0, 0.5],
                                      [9.0, 3.0, -1.0, 9.0],
                                      [0.2, 9.0, 0.4, 0.5]]))
        l0.mask.copy_(torch.tensor([[1, 1, 0, 1], [0, 1, 1, 0], [1, 0, 1, 1]], dtype=torch.bool))
        l0.bias.zero_()
        l1.weight.copy_(torch.tensor([[1.0, 9.0, 2.0], [0.5, 1.5, 9.0]]))
        l1.mask.copy_(torch.tensor([[1, 0, 1], [1, 1, 0]], dtype=torch.bool))
    return model


def test_hand_computed_counts():
    model = _tiny()
    x = torch.tensor([[0.5, 0.0, 1.0, 0.2]]).repeat(2, 1)
    model.record_activity = True
    with torch.no_grad():
        model(x)
    # neuron 0 gets 2.1 and fires at both steps, neuron 1 gets -1, neuron 2 gets 0.6 and fires
    # at step 2 (0.9 * 0.6 + 0.6 = 1.14)
    assert model.activity[0][:, 0].tolist() == [[1.0, 0.0, 0.0], [1.0, 0.0, 1.0]]
    report = measure_energy(model, x)
    l0, l1 = report["layers"]
    # layer 0: analog input, nonzero inputs 0, 2, 3 each reach 2 live synapses, 2 steps
    assert l0["input"] == "analog" and l0["macs"] == 12 and l0["acs"] == 0
    assert l0["dense_ops"] == 24
    # layer 1: spikes; neuron 0 reaches 2 live synapses (steps 1, 2), neuron 2 reaches 1
    assert l1["input"] == "spikes" and l1["acs"] == 5 and l1["macs"] == 0
    assert l1["dense_ops"] == 12
    ps = report["per_sample"]
    assert ps["energy_pj"] == pytest.approx(5 * E_AC_PJ + 12 * E_MAC_PJ)
    assert report["activation_sparsity"] == pytest.approx(0.5)
    assert l0["firing_rate"] == pytest.approx(0.5)
    assert report["connection_sparsity"] == pytest.approx(1 - 12 / 18)
    assert report["non_spiking"]["macs"] == 18
    assert report["non_spiking"]["energy_pj"] == pytest.approx(18 * E_MAC_PJ)
    fp = report["footprint"]
    assert fp["bytes_per_weight"] == 4 and fp["index_bytes"] == 0  # dense is smaller here
    assert fp["total_bytes"] == (18 + 5 + 5) * 4
    assert report["samples"] == 2 and report["time_steps"] == 2
    json.dumps(report)
    assert "ACs" in format_energy(report)


def _neurobench_synops(layer, x):
    """NeuroBench's definition: the layer with nonzero weights set to 1 and no bias, applied to
    the input with nonzero values set to 1, summed."""
    w = (layer.effective_weight() != 0).float()
    xb = (x != 0).float()
    if isinstance(layer, PlasticConv2d):
        return float(F.conv2d(xb, w, padding=layer.padding).sum())
    return float(F.linear(xb, w).sum())


@pytest.mark.parametrize("kind", ["snn-mlp", "snn-conv"])
def test_matches_neurobench_definitions(kind):
    torch.manual_seed(0)
    model = build_model({"kind": kind, "hidden": (16,), "channels": (3, 4), "steps": 4,
                         "encoder": "rate"}, (1, 8, 8), 5)
    with torch.no_grad():
        for layer in model.layers:
            layer.weight.mul_(4.0)
            L.prune_synapses(layer, torch.rand(layer.weight.shape) < 0.4)
    x = torch.rand(6, 1, 8, 8)
    seen = []
    hooks = [layer.register_forward_pre_hook(lambda m, a: seen.append((m, a[0])))
             for layer in model.layers]
    torch.manual_seed(5)
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    torch.manual_seed(5)
    report = measure_energy(model, x)
    for (layer, inp), row in zip(seen, report["layers"], strict=True):
        expected = _neurobench_synops(layer, inp) / len(x)
        assert row["acs"] + row["macs"] == pytest.approx(expected, rel=1e-12)
    assert report["layers"][0]["input"] == "spikes"  # rate coding: accumulates only
    zeros = sum(int((layer.effective_weight() == 0).sum()) for layer in model.layers)
    total = sum(layer.weight.numel() for layer in model.layers)
    assert report["connection_sparsity"] == pytest.approx(zeros / total)


def test_conv_count_by_loops():
    torch.manual_seed(1)
    layer = PlasticConv2d(2, 3)
    L.prune_synapses(layer, torch.rand(layer.weight.shape) < 0.5)
    x = (torch.rand(2, 2, 5, 4) < 0.3).float()
    live = layer.mask
    expected = 0
    for _, c, y, xx in (x != 0).nonzero().tolist():
        for o in range(3):
            for ky in range(3):
                for kx in range(3):
                    oy, ox = y - ky + 1, xx - kx + 1
                    if 0 <= oy < 5 and 0 <= ox < 4 and live[o, c, ky, kx]:
                        expected += 1
    effective, dense = _ops(layer, x)
    assert expected > 0 and effective == expected
    assert dense == 2 * 3 * 2 * sum(  # batch * out * in * taps inside the image
        1 for y in range(5) for xx in range(4) for ky in range(3) for kx in range(3)
        if 0 <= y - ky + 1 < 5 and 0 <= xx - kx + 1 < 4)


def test_task_subnetwork_and_ann():
    model = _tiny()
    for layer in model.layers:
        L.consolidate(layer, 0)
        L.reopen_free_synapses(layer)
    model.set_training_task(1)
    x = torch.rand(3, 4)
    sub = measure_energy(model, x, task=0)
    whole = measure_energy(model, x, task=None)
    assert sub["connection_sparsity"] == pytest.approx(1 - 12 / 18)
    assert whole["connection_sparsity"] == 0.0
    assert model.layers[0].active_task is None  # selection restored
    ann = build_model({"kind": "ann-mlp", "hidden": (8,)}, (4,), 2)
    report = measure_energy(ann, [(x, None)], max_samples=2)
    assert report["samples"] == 2 and report["time_steps"] == 1
    assert report["per_sample"]["acs"] == 0 and report["per_sample"]["macs"] > 0
