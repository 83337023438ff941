"""Interoperability: already-encoded input, the ``affine`` readout that snnTorch loads whole,
and energy counts that match NeuroBench's when live synapses hold a weight of exactly 0."""

from __future__ import annotations

import contextlib
import io

import pytest
import torch

from neurosculpt.energy import measure_energy
from neurosculpt.models import build_model


def _model(**params) -> torch.nn.Module:
    torch.manual_seed(0)
    config = {"kind": "snn-mlp", "hidden": (24, 16), "steps": 6, **params}
    model = build_model(config, (1, 8, 8), 5)
    with torch.no_grad():
        for layer in model.layers:
            layer.weight.mul_(3.0)  # a few spikes per neuron
    return model.eval()


def _inputs(n: int = 9) -> torch.Tensor:
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("encoder", ["direct", "rate", "latency"])
@pytest.mark.parametrize("shape", ["image", "flat"])
def test_forward_on_encoded_input(encoder, shape):
    """``[T, B, ...]`` input with a batch unlike the number of steps (the crash was
    ``shape '[100, 1, 28, 28]' is invalid``: the batch size came from the time axis)."""
    model = _model(encoder=encoder)
    x = _inputs(9)
    torch.manual_seed(3)
    encoded = model.encoder(x)
    if shape == "flat":
        encoded = encoded.flatten(2)
    with torch.no_grad():
        got = model(encoded, encoded=True)
        torch.manual_seed(3)
        expected = model(x)
    assert got.shape == (9, 5)
    assert torch.allclose(got, expected, atol=1e-6)


def test_encoded_input_must_be_time_major():
    with pytest.raises(ValueError, match=r"time-major \[T, B, \.\.\.\]"):
        _model()(torch.rand(4, 64), encoded=True)


def test_affine_readout_round_trip_and_weights(tmp_path):
    nir = pytest.importorskip("nir")
    from neurosculpt.export.nir import export_nir, from_nir, readout_weights

    model = _model(readout_beta=0.8)
    path = tmp_path / "a.nir"
    graph = export_nir(model, path, readout="affine")
    assert list(graph.nodes)[-2:] == ["fc_out", "output"]
    assert graph.metadata["readout"] == "weighted-sum"
    back = from_nir(nir.read(str(path)))
    with torch.no_grad():
        assert torch.equal(back(_inputs()), model(_inputs()))
    weights = readout_weights(0.5, 3)
    assert weights == pytest.approx([(1 + 0.5 + 0.25) / 3, (1 + 0.5) / 3, 1 / 3])


def test_affine_readout_refused_for_spike_readouts():
    pytest.importorskip("nir")
    from neurosculpt.export.nir import NIRExportError, to_nir

    with pytest.raises(NIRExportError, match="readout='affine' is for membrane readouts"):
        to_nir(_model(readout="spikes"), readout="affine")


@pytest.mark.parametrize("kind", ["snn-mlp", "snn-conv"])
def test_snntorch_runs_the_whole_affine_graph_to_the_same_scores(tmp_path, kind):
    """No node removed: snnTorch's importer loads every node, and the weighted sum of its
    per-step output is neurosculpt's class scores."""
    nir = pytest.importorskip("nir")
    pytest.importorskip("snntorch")
    from snntorch import utils as snn_utils
    from snntorch.import_nir import import_from_nir

    from neurosculpt.export.nir import export_nir

    model = _model(kind=kind, channels=(4, 6), readout_beta=0.7)
    export_nir(model, tmp_path / "m.nir", readout="affine")
    graph = nir.read(str(tmp_path / "m.nir"))
    with contextlib.redirect_stdout(io.StringIO()):
        net = import_from_nir(graph)
    x = _inputs(4)
    encoded = model.encoder(x)
    weights = torch.tensor(
        __import__("json").loads(graph.metadata["readout_weights"]), dtype=torch.float64)
    scores = []
    with torch.no_grad():
        for b in range(len(x)):  # Flatten(start_dim=0) in the peers: one unbatched sample
            snn_utils.reset(net)
            sample = encoded[:, b] if kind == "snn-conv" else encoded[:, b:b + 1].flatten(2)
            steps = [net(sample[t])[0].reshape(-1).double() for t in range(len(sample))]
            scores.append((torch.stack(steps) * weights[:, None]).sum(0))
        expected = model(x).double()
    assert torch.allclose(torch.stack(scores), expected, atol=1e-4)
    assert torch.equal(torch.stack(scores).argmax(1), expected.argmax(1))


def test_energy_counts_what_neurobench_counts_for_zero_weights():
    """A live synapse whose weight is exactly 0 computes nothing: NeuroBench (which sees only
    weights) counts it as absent; so do ACs/MACs and connection sparsity here, while
    ``live_synapses`` and ``mask_sparsity`` keep the mask's view."""
    model = _model()
    x = _inputs()
    before = measure_energy(model, x, task=None)
    layer = model.layers[1]
    with torch.no_grad():
        layer.weight[:, :8] = 0.0  # live (mask unchanged) but zero
    after = measure_energy(model, x, task=None)
    zeroed = 8 * layer.n_out
    row = after["layers"][1]
    assert row["live_synapses"] == before["layers"][1]["live_synapses"]
    assert row["connected_synapses"] == row["live_synapses"] - zeroed
    total = sum(layer.weight.numel() for layer in model.layers)
    zeros = sum(int((layer.effective_weight() == 0).sum()) for layer in model.layers)
    assert after["connection_sparsity"] == pytest.approx(zeros / total)  # NeuroBench's formula
    assert after["mask_sparsity"] == before["mask_sparsity"] == 0.0
    model.record_activity = True
    with torch.no_grad():
        model(x)
    spikes = model.activity[0].flatten(0, 1)  # [T * B, 24] spikes into layer 1
    fan_out = (layer.effective_weight() != 0).sum(0).double()
    assert row["acs"] == pytest.approx(float((spikes.double() @ fan_out).sum()) / len(x))
    assert row["acs"] < before["layers"][1]["acs"]


def test_legacy_nir_file_has_no_v_reset_and_round_trips(tmp_path):
    nir = pytest.importorskip("nir")
    h5py = pytest.importorskip("h5py")
    from neurosculpt.export.nir import export_nir, from_nir

    model = _model(neuron="lif")
    path = tmp_path / "old.nir"
    export_nir(model, path, nir_version="1.0.4")
    with h5py.File(path, "r") as f:
        assert f["version"][()].decode() == "1.0.4"
        assert [n for n, g in f["node/nodes"].items() if "v_reset" in g] == []
        assert "v_threshold" in f["node/nodes/lif0"]
    back = from_nir(nir.read(str(path)))
    with torch.no_grad():
        assert torch.equal(back(_inputs()), model(_inputs()))
