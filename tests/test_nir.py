"""NIR export/import: round trips, node parameters, refused settings, snnTorch's importer."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch
from torch import nn

nir = pytest.importorskip("nir")

from neurosculpt import layers as L  # noqa: E402
from neurosculpt.export.nir import (  # noqa: E402
    NIRExportError,
    NIRImportError,
    export_nir,
    from_nir,
    to_nir,
)
from neurosculpt.models import build_model  # noqa: E402


def _model(kind: str = "snn-mlp", seed: int = 0, **params) -> nn.Module:
    torch.manual_seed(seed)
    config = {"kind": kind, "hidden": (24, 16), "channels": (4, 6), "steps": 6, **params}
    model = build_model(config, (1, 8, 8), 5)
    with torch.no_grad():
        for layer in model.layers:
            layer.weight.mul_(3.0)  # enough input current for a few spikes per neuron
    return model.eval()


def _inputs(seed: int = 1) -> torch.Tensor:
    return torch.rand(9, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind", ["snn-mlp", "snn-conv"])
@pytest.mark.parametrize("pooling", ["avg", "sum"])
def test_round_trip_identical(tmp_path, kind, pooling):
    model = _model(kind)
    path = tmp_path / "m.nir"
    export_nir(model, path, pooling=pooling)
    back = from_nir(path)
    x = _inputs()
    with torch.no_grad():
        model.record_activity = True
        expected = model(x)
        rates = [float(a.mean()) for a in model.activity]
        got = back(x)
    assert all(0.02 < r < 0.9 for r in rates), rates  # the test exercises real spiking
    assert torch.equal(expected, got)
    assert back.config.kind == kind and back.config.beta == 0.9
    for a, b in zip(model.layers, back.layers, strict=True):
        assert torch.equal(a.effective_weight(), b.effective_weight())


def test_task_subnetwork_and_pruning_survive(tmp_path):
    model = _model()
    for layer in model.layers:  # task 0 owns half of the synapses, the rest stays free
        L.prune_synapses(layer, torch.rand(layer.weight.shape) < 0.3)
        L.consolidate(layer, 0)
        L.reopen_free_synapses(layer)
    model.set_training_task(1)
    x = _inputs()
    path = tmp_path / "t0.nir"
    export_nir(model, path, task=0)
    back = from_nir(path)
    with torch.no_grad():
        model.set_task(0)
        expected = model(x)
        model.set_task(None)
        whole = model(x)
        got = back(x)
    assert torch.equal(expected, got)
    assert not torch.equal(whole, got)
    assert back.live_synapses() == sum(layer.live_synapses(0) for layer in model.layers)
    assert graph_task(path) == 0


def graph_task(path) -> int:
    return int(nir.read(str(path)).metadata["task"])


def test_node_parameters_and_metadata():
    model = _model(beta=0.8, threshold=0.5, readout_beta=0.95, encoder="rate")
    dt = 1e-3
    graph = to_nir(model, dt=dt)
    assert list(graph.nodes) == ["input", "fc0", "lif0", "fc1", "lif1", "fc_out", "readout",
                                 "output"]
    lif = graph.nodes["lif0"]
    beta = float(model.neurons[0].beta)
    tau = dt / (1.0 - beta)
    assert isinstance(lif, nir.LIF) and lif.tau.shape == (24,)
    np.testing.assert_allclose(lif.tau, tau, rtol=1e-12)
    np.testing.assert_array_equal(lif.r, 1.0)
    np.testing.assert_array_equal(lif.v_leak, 0.0)
    np.testing.assert_array_equal(lif.v_threshold, np.float32(0.5))
    np.testing.assert_array_equal(lif.v_reset, 0.0)
    w = model.layers[0].effective_weight().detach().double().numpy()
    np.testing.assert_allclose(graph.nodes["fc0"].weight, w * tau / dt, rtol=1e-12)
    readout = graph.nodes["readout"]
    assert isinstance(readout, nir.LI)
    tau_r = dt / (1.0 - float(model.readout.beta))
    np.testing.assert_allclose(readout.tau, tau_r, rtol=1e-12)
    w_out = model.layers[-1].effective_weight().detach().double().numpy()
    np.testing.assert_allclose(graph.nodes["fc_out"].weight, w_out * tau_r / dt, rtol=1e-12)
    meta = graph.metadata
    assert meta["dt"] == dt and meta["time_steps"] == 6 and meta["encoder"] == "rate"
    assert meta["readout"] == "membrane-mean"
    assert graph.nodes["input"].input_type["input"].tolist() == [64]


def test_conv_graph_nodes():
    graph = to_nir(_model("snn-conv"))
    kinds = [type(n).__name__ for n in graph.nodes.values()]
    assert kinds == ["Input", "Conv2d", "LIF", "AvgPool2d", "Conv2d", "LIF", "AvgPool2d",
                     "Flatten", "Affine", "LIF", "Affine", "LIF", "Affine", "LI", "Output"]
    assert graph.nodes["lif0"].tau.shape == (4, 8, 8)
    assert graph.nodes["flatten"].output_type["output"].tolist() == [24]


def test_if_neurons_and_spike_readout(tmp_path):
    model = _model(neuron="if", readout="spikes")
    graph = export_nir(model, tmp_path / "if.nir")
    node = graph.nodes["lif0"]
    assert isinstance(node, nir.IF)
    np.testing.assert_allclose(node.r, 1.0 / 1e-4)
    np.testing.assert_array_equal(graph.nodes["fc0"].weight,
                                  model.layers[0].effective_weight().detach().double().numpy())
    assert isinstance(graph.nodes["readout"], nir.IF)
    back = from_nir(tmp_path / "if.nir")
    assert back.config.neuron == "if" and back.config.readout == "spikes"
    x = _inputs()
    with torch.no_grad():
        assert torch.equal(model(x), back(x))


def test_refuses_what_nir_cannot_express():
    with pytest.raises(NIRExportError, match="subtract"):
        to_nir(_model(reset="subtract"))
    with pytest.raises(NIRExportError, match="not spiking"):
        to_nir(build_model("ann-mlp", (1, 8, 8), 5))


def _snntorch_style_graph(seed: int = 0) -> tuple[nir.NIRGraph, list[np.ndarray]]:
    """Affine-LIF-Affine-LIF as snnTorch writes it: r = tau/dt, unscaled weights, no metadata."""
    rng = np.random.default_rng(seed)
    dt, beta = 1e-4, 0.9
    tau = dt / (1 - beta)
    w1, b1 = rng.normal(0, 0.6, (12, 7)), rng.normal(0, 0.1, 12)
    w2, b2 = rng.normal(0, 0.6, (3, 12)), rng.normal(0, 0.1, 3)

    def lif(n: int) -> nir.LIF:
        return nir.LIF(tau=np.full(n, tau), r=np.full(n, tau / dt), v_leak=np.zeros(n),
                       v_threshold=np.ones(n), v_reset=np.zeros(n))

    graph = nir.NIRGraph.from_list(nir.Affine(weight=w1.astype(np.float32),
                                              bias=b1.astype(np.float32)), lif(12),
                                   nir.Affine(weight=w2.astype(np.float32),
                                              bias=b2.astype(np.float32)), lif(3))
    return graph, [w1, b1, w2, b2]


def _reference_spikes(params: list[np.ndarray], x: np.ndarray, beta: float = 0.9) -> np.ndarray:
    """Plain float64 simulation of the hand-written graph: v = beta v + Wx + b, reset to 0."""
    w1, b1, w2, b2 = params
    v1, v2, out = np.zeros((x.shape[1], 12)), np.zeros((x.shape[1], 3)), []
    for t in range(x.shape[0]):
        v1 = beta * v1 + x[t] @ w1.astype(np.float32).T + b1.astype(np.float32)
        s1 = (v1 > 1.0).astype(float)
        v1 = np.where(s1 > 0, 0.0, v1)
        v2 = beta * v2 + s1 @ w2.astype(np.float32).T + b2.astype(np.float32)
        s2 = (v2 > 1.0).astype(float)
        v2 = np.where(s2 > 0, 0.0, v2)
        out.append(s2)
    return np.stack(out)


def test_import_foreign_graph_without_metadata():
    graph, params = _snntorch_style_graph()
    model = from_nir(graph, steps=8)
    assert model.config.readout == "spikes" and model.config.hidden == (12,)
    assert model.config.beta == 0.9 and model.config.steps == 8
    x = torch.rand(5, 7, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        counts = model(x)
    expected = _reference_spikes(params, np.repeat(x.numpy()[None].astype(np.float64), 8, 0))
    np.testing.assert_array_equal(counts.numpy(), expected.sum(0))


def test_import_refusals():
    graph, _ = _snntorch_style_graph()
    graph.nodes["lif"].v_leak = np.full(12, 0.1)
    with pytest.raises(NIRImportError, match="v_leak"):
        from_nir(graph)
    graph, _ = _snntorch_style_graph()
    graph.edges.append(("lif", "affine"))
    with pytest.raises(NIRImportError, match="successors|twice"):
        from_nir(graph)


def _snntorch_run(graph: nir.NIRGraph, encoded: torch.Tensor) -> torch.Tensor:
    from snntorch import utils as snn_utils
    from snntorch.import_nir import import_from_nir

    with contextlib.redirect_stdout(io.StringIO()):
        net = import_from_nir(graph)
    snn_utils.reset(net)
    with torch.no_grad():
        return torch.stack([net(encoded[t])[0] for t in range(encoded.shape[0])])


def test_snntorch_reproduces_exported_spikes(tmp_path):
    pytest.importorskip("snntorch")
    pytest.importorskip("nirtorch")
    model = _model(readout="spikes", steps=8)
    path = tmp_path / "s.nir"
    export_nir(model, path)
    encoded = model.encoder(_inputs()).flatten(2)
    spikes = _snntorch_run(nir.read(str(path)), encoded)
    captured = {}
    hook = model.output_neurons.register_forward_hook(
        lambda mod, args, out: captured.__setitem__("s", out))
    with torch.no_grad():
        model(_inputs())
    hook.remove()
    assert captured["s"].sum() > 0
    assert torch.equal(spikes, captured["s"])


def test_snntorch_and_neurosculpt_agree_on_foreign_graph():
    pytest.importorskip("snntorch")
    pytest.importorskip("nirtorch")
    graph, _ = _snntorch_style_graph(seed=4)
    model = from_nir(graph, steps=8)
    x = torch.rand(6, 7, generator=torch.Generator().manual_seed(5))
    encoded = model.encoder(x)
    spikes = _snntorch_run(graph, encoded)
    with torch.no_grad():
        counts = model(x)
    assert spikes.sum() > 0
    assert torch.equal(spikes.sum(0), counts)


def _fake_run(folder, model_params: dict) -> nn.Module:
    """A run folder as ``neurosculpt run`` leaves it: config.json and a checkpoint."""
    from dataclasses import asdict

    from neurosculpt.benchmarks import make_benchmark
    from neurosculpt.runs import CHECKPOINT_FORMAT, RunConfig, save_checkpoint, write_json

    pytest.importorskip("sklearn")
    config = RunConfig(benchmark="split-digits", model="snn-mlp", model_params=model_params)
    bench = make_benchmark("split-digits")
    torch.manual_seed(0)
    model = build_model(config.model_config(), bench.input_shape, bench.n_outputs)
    for layer in model.layers:
        L.prune_synapses(layer, torch.rand(layer.weight.shape) < 0.5)
        L.consolidate(layer, 0)
    model.set_training_task(1)
    write_json(folder / "config.json",
               {**asdict(config), "model_params": config.model_config().to_dict()})
    save_checkpoint(folder / "checkpoints" / "task_001.pt",
                    {"format": CHECKPOINT_FORMAT, "model": model.state_dict()})
    return model.eval()


def test_cli_export_import_energy(tmp_path, capsys):
    import argparse
    import json

    from neurosculpt.export import load_model
    from neurosculpt.export.commands import add_commands

    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers())

    def cli(*argv: str) -> str:
        args = parser.parse_args([str(a) for a in argv])
        assert args.func(args) == 0
        return capsys.readouterr().out

    run = tmp_path / "run"
    model = _fake_run(run, {"hidden": [16], "steps": 4})
    text = cli("export", run, "--task", "0", "-o", tmp_path / "t0.nir")
    assert "task 0's subnetwork" in text and "LIF" in text
    text = cli("import", tmp_path / "t0.nir", "-o", tmp_path / "imported")
    assert "snn-mlp" in text and "[16]" in text
    imported = load_model(tmp_path / "imported")
    x = torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        model.set_task(0)
        assert torch.equal(imported(x), model(x))
    reports = json.loads(cli("energy", run, "--max-samples", "8", "--json"))
    assert [r["task"] for r in reports] == [0, 1, 2, 3, 4]
    assert reports[0]["connection_sparsity"] == pytest.approx(
        1 - model.live_synapses() / sum(layer.weight.numel() for layer in model.layers))
    assert "per sample" in cli("energy", run, "--max-samples", "4")
