"""The adapter: user modules become plastic networks, keep their function, and every strategy runs
on the example networks (tiny data, few steps)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from expected_warnings import short_tasks_for
from torch import nn

from neurosculpt import layers as L
from neurosculpt import runs
from neurosculpt.adapter import AdaptedNetwork, AdapterError, adapt, build_user_model
from neurosculpt.loading import load_object
from neurosculpt.network import check_network
from neurosculpt.strategies import available

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SNN = f"{EXAMPLES / 'snntorch_mlp.py'}:factory"
RESNET = f"{EXAMPLES / 'resnet_bn.py'}:factory"


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.l1, self.l2, self.out = nn.Linear(16, 12), nn.Linear(12, 10), nn.Linear(10, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.l2(torch.relu(self.l1(x.flatten(1))))))


class Loopy(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it, a declared chain can."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.fc1(x.flatten(1)))
        if h.sum() > 0:
            h = h * 1.0
        return self.fc2(h)


def test_adapt_keeps_weights_and_outputs():
    torch.manual_seed(0)
    module = MLP()
    x = torch.rand(5, 4, 4)
    before = module(x)
    net = adapt(module, (4, 4))
    assert isinstance(net.net.l1, L.PlasticLinear) and net.layer_names == ["l1", "l2", "out"]
    assert torch.allclose(net(x), before)
    assert adapt(module, (4, 4)).layer_names == net.layer_names  # a module adapted before
    assert [g.producers for g in net.groups] == [["l1"], ["l2"]] and not net.config.spiking
    net.record_activity = True
    net(x)
    assert [tuple(a.shape) for a in net.activity] == [(1, 5, 12), (1, 5, 10)]
    assert bool((net.activity[0] >= 0).all())  # after the functional ReLU


def test_snntorch_network_is_traced_through_its_time_loop():
    torch.manual_seed(0)
    module = load_object(SNN)((1, 4, 4), 3, hidden=(8, 6), steps=5)
    x = torch.rand(4, 1, 4, 4)
    before = module(x)
    net = adapt(module, (1, 4, 4))
    assert torch.allclose(net(x), before)
    assert [(g.producers, g.tap) for g in net.groups] == [(["fc1"], "lif1"), (["fc2"], "lif2")]
    assert net.config.spiking
    net.record_activity = True
    net(x)
    assert [tuple(a.shape) for a in net.activity] == [(5, 4, 8), (5, 4, 6)]


def test_residual_sums_and_batchnorm_couple_units():
    torch.manual_seed(0)
    net = build_user_model(RESNET, (1, 8, 8), 10, {"channels": 6, "inner": 5})
    assert net.layer_names == ["stem", "blocks.0.conv1", "blocks.0.conv2", "blocks.1.conv1",
                               "blocks.1.conv2", "fc"]
    stream = net.groups[0]
    assert stream.producers == ["stem", "blocks.0.conv2", "blocks.1.conv2"]
    assert stream.followers == ["bn", "blocks.0.bn2", "blocks.1.bn2"]
    assert set(stream.consumers) == {"blocks.0.conv1", "blocks.1.conv1", "fc"}
    assert [net.units(i).fixed for i in range(5)] == [False, False, True, False, True]
    assert {c.layer for c in net.units(0).consumers} == {1, 3, 5}
    assert check_network(net, torch.rand(2, 1, 8, 8)) == []
    net.grow_units(1, 2)
    net.remove_units(3, torch.tensor([0, 4]))
    assert net.hidden_sizes() == [6, 7, 6, 3, 6]
    bn = net.net.get_submodule("blocks.0.bn1")
    assert bn.running_var.shape == (7,) and bn.num_features == 7
    assert net.net.get_submodule("blocks.1.conv2").n_in == 3
    with pytest.raises(ValueError, match="fixed"):
        net.grow_units(2, 1)  # a summed layer follows the stream's lead
    serial = net.resize_serial
    net.eval()
    x = torch.rand(3, 1, 8, 8)
    before = net(x)
    net.grow_units(0, 3)  # the residual stream: every summed layer, norm and reader
    assert net.hidden_sizes() == [9, 7, 9, 3, 9] and check_network(net, x) == []
    assert net.net.fc.n_in == 9 and net.net.get_submodule("blocks.1.bn2").num_features == 9
    assert [(r.layer, r.kind) for r in net.resizes_since(serial)] == [
        (0, "grow"), (2, "grow"), (4, "grow")]
    with torch.no_grad():
        for c in net.units(0).consumers:  # silence the new units' outgoing synapses
            net.plastic_layers[c.layer].weight[:, c.inputs(torch.arange(6, 9))] = 0.0
    assert torch.allclose(net(x), before, atol=1e-6)
    net.remove_units(0, torch.tensor([6, 7, 8]))
    assert torch.allclose(net(x), before, atol=1e-6) and net.hidden_sizes()[::2] == [6, 6, 6]


def test_compaction_of_unread_channels_keeps_the_outputs():
    """Channels whose every outgoing synapse is pruned (masked) can go: the compacted network
    computes what the masked one did, BatchNorm statistics included."""
    torch.manual_seed(0)
    net = build_user_model(RESNET, (1, 8, 8), 10, {"channels": 6, "inner": 5})
    net.train()
    for _ in range(3):
        net(torch.randn(8, 1, 8, 8))  # running statistics away from their init
    net.eval()
    x = torch.randn(4, 1, 8, 8)
    for i, dead in ((0, torch.tensor([5])), (1, torch.tensor([1, 4])), (3, torch.tensor([2]))):
        for c in net.units(i).consumers:
            layer = net.plastic_layers[c.layer]
            cols = torch.zeros(layer.n_in, dtype=torch.bool)
            cols[c.inputs(dead)] = True
            shape = (1, -1) + (1,) * (layer.weight.dim() - 2)
            L.prune_synapses(layer, cols.view(shape).expand_as(layer.mask))
    masked = net(x)
    assert net.compact() == [1, 2, 0, 1, 0]
    assert net.hidden_sizes() == [5, 3, 5, 4, 5]
    assert torch.allclose(net(x), masked, atol=1e-6)


def test_untraceable_module_needs_a_chain():
    with pytest.raises(AdapterError, match="cannot be traced.*chain="):
        adapt(Loopy(), (4, 4))
    net = adapt(Loopy(), (4, 4), chain=["fc1", "act", "fc2"])
    assert net.groups[0].tap == "act" and net.groups[0].consumers == {"fc2": 1}
    net.grow_units(0, 3)
    assert net.hidden_sizes() == [11]
    assert net(torch.rand(2, 4, 4)).shape == (2, 3)


def test_transformer_feed_forward_units_plastic_residual_stream_fixed():
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Linear(6, 8)
            self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
            self.norm = nn.LayerNorm(8)
            self.ff = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 8))
            self.head = nn.Linear(8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.embed(x)
            h = h + self.attn(h, h, h, need_weights=False)[0]
            h = h + self.ff(self.norm(h))
            return self.head(h.mean(1))

    net = adapt(Block(), (5, 6), plastic=["ff.*", "head"])
    assert not isinstance(net.net.attn.out_proj, L.PlasticLayer)
    hidden, stream = net.groups
    assert hidden.producers == ["ff.0"] and not hidden.fixed and hidden.tap == "ff.1"
    assert stream.fixed  # added to the embedding: not the adapter's to resize
    with pytest.raises(ValueError, match="fixed"):
        net.grow_units(1, 2)
    net.grow_units(0, 4)
    net.record_activity = True
    assert net(torch.rand(2, 5, 6)).shape == (2, 3)
    assert tuple(net.activity[0].shape) == (5, 2, 20)  # tokens as time steps


def test_errors_name_the_module_and_the_reason():
    class Cat(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.out = nn.Linear(4, 3), nn.Linear(4, 3), nn.Linear(6, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(torch.cat([self.a(x), self.b(x)], 1))

    with pytest.raises(AdapterError, match="layer 'a' through cat"):
        adapt(Cat(), (4,))
    net = adapt(Cat(), (4,), fixed=["a", "b"])  # declared fixed: nothing after them to follow
    assert all(g.fixed for g in net.groups) and net(torch.rand(2, 4)).shape == (2, 2)
    with pytest.raises(AdapterError, match="no nn.Linear or nn.Conv2d"):
        adapt(nn.Sequential(nn.ReLU()), (4,))
    with pytest.raises(AdapterError, match="has 3 outputs; the benchmark needs 5"):
        build_user_model(lambda shape, n: MLP(), (16,), 5)
    with pytest.raises(AdapterError, match="cannot be called as factory"):
        build_user_model(lambda: MLP(), (16,), 3)


@pytest.fixture
def tiny_user_run() -> dict:
    return {"benchmark": "split-digits", "epochs": 1, "steps": 3, "batch_size": 32,
            "samples_per_task": 48, "test_samples_per_task": 30, "tasks": 2, "progress": False,
            "threads": 1}


@pytest.mark.parametrize("strategy", available())
def test_every_strategy_runs_on_the_snntorch_network(strategy, tiny_user_run):
    pytest.importorskip("snntorch")
    with short_tasks_for(strategy):
        result = runs.run({**tiny_user_run, "strategy": strategy, "model": SNN,
                           "model_params": {"hidden": [12, 10], "steps": 3}})
    assert result.results["status"] == "complete"
    assert isinstance(result.model, AdaptedNetwork)


@pytest.mark.parametrize("strategy", available())
def test_every_strategy_runs_on_the_residual_network(strategy, tiny_user_run):
    with short_tasks_for(strategy):
        result = runs.run({**tiny_user_run, "strategy": strategy, "model": RESNET, "steps": 2,
                           "model_params": {"channels": 4, "inner": 4, "blocks": 2}})
    assert result.results["status"] == "complete"
    assert check_network(result.model, torch.rand(2, 1, 8, 8)) == []


def test_develop_removes_units_and_synapses_of_the_snntorch_network(tiny_user_run):
    pytest.importorskip("snntorch")
    result = runs.run({**tiny_user_run, "strategy": "develop", "model": SNN, "steps": 12,
                       "model_params": {"hidden": [24, 24], "steps": 3},
                       "strategy_params": {"keep_units": 0.5, "keep": 0.3}})
    removed = [t["develop"]["removed_units"] for t in result.results["tasks"]]
    assert sum(map(sum, removed)) > 0
    dense = 64 * 24 + 24 * 24 + 24 * 10
    assert result.model.live_synapses() < dense


@pytest.mark.parametrize("strategy", ["develop", "packnet"])
def test_resnet_loses_channels_and_compaction_keeps_its_outputs(strategy, tiny_user_run):
    """develop removes channels itself (apoptosis); after PackNet's pruning the channels that
    nothing reads any more are compacted away. Either way the compacted network computes what
    the masked one did."""
    params = ({"keep_units": 0.5, "keep": 0.2} if strategy == "develop"
              else {"prune_ratio": 0.98, "prune_last": True})
    result = runs.run({**tiny_user_run, "strategy": strategy, "model": RESNET, "steps": 6,
                       "tasks": 1, "model_params": {"channels": 6, "inner": 16, "blocks": 2},
                       "strategy_params": params})
    net = result.model.eval()
    x = torch.randn(6, 1, 8, 8)
    with torch.no_grad():
        masked = net(x)
        net.compact()
        compacted = net(x)
    inner = [net.hidden_sizes()[i] for i in (1, 3)]
    assert sum(inner) < 32, inner
    assert torch.allclose(compacted, masked, atol=1e-5)


def test_user_model_resumes_from_its_spec(tmp_path, tiny_user_run):
    pytest.importorskip("snntorch")
    config = {**tiny_user_run, "strategy": "develop", "model": SNN, "keep_checkpoints": True,
              "model_params": {"hidden": [12, 10], "steps": 3}}
    full = runs.run(config, out=tmp_path / "full")
    assert json.loads((tmp_path / "full" / "config.json").read_text())["model"] == SNN
    cut = tmp_path / "cut"
    shutil.copytree(tmp_path / "full", cut)
    (cut / "checkpoints" / "task_001.pt").unlink()
    results = json.loads((cut / "results.json").read_text())
    results["status"] = "running"
    (cut / "results.json").write_text(json.dumps(results))
    resumed = runs.resume(cut)
    assert resumed.accuracy_matrix == full.accuracy_matrix
    assert resumed.model.hidden_sizes() == full.model.hidden_sizes()


def test_run_takes_a_module_or_a_factory(tmp_path, tiny_user_run):
    torch.manual_seed(0)
    by_module = runs.run({**tiny_user_run, "benchmark": "split-digits"}, model=_digits_mlp(),
                         out=tmp_path / "module")
    assert by_module.results["config"]["model"] == "<Sequential instance>"
    with pytest.raises(ValueError, match="resume needs a model factory spec"):
        runs.resume(tmp_path / "module")
    by_factory = runs.run(tiny_user_run, model=_factory)
    assert by_factory.results["config"]["model"] == f"{__name__}:_factory"


def _digits_mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))


def _factory(input_shape: tuple[int, ...], n_outputs: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, n_outputs))


def test_nir_export_of_the_snntorch_network_reproduces_its_spikes(tmp_path):
    """The adapted snnTorch network exported to NIR and read back as a built-in network fires
    the same spikes in every hidden layer and gives the same outputs."""
    pytest.importorskip("snntorch")
    pytest.importorskip("nir")
    from neurosculpt.export.nir import export_nir, from_nir

    torch.manual_seed(0)
    net = build_user_model(SNN, (1, 8, 8), 10, {"hidden": [20, 16], "steps": 6})
    with torch.no_grad():
        for layer in net.plastic_layers:
            layer.weight.mul_(3.0)  # enough current for a few spikes per unit
        L.prune_synapses(net.plastic_layers[1], torch.rand(16, 20) < 0.3)
    net.eval()
    export_nir(net, tmp_path / "snn.nir")
    back = from_nir(tmp_path / "snn.nir").eval()
    x = torch.rand(9, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        net.record_activity = back.record_activity = True
        expected, got = net(x), back(x)
    rates = [float(a.mean()) for a in net.activity]
    assert all(0.02 < r < 0.9 for r in rates), rates
    for a, b in zip(net.activity, back.activity, strict=True):
        assert torch.equal(a, b)
    assert torch.allclose(expected, got, atol=1e-5)
    assert back.config.steps == 6 and back.live_synapses() == net.live_synapses()


def test_cli_runs_resumes_and_refuses_user_models(tmp_path, capsys):
    from neurosculpt.cli import main

    args = ["run", "-b", "split-digits", "--tasks", "2", "--steps", "3", "--samples-per-task",
            "48", "--test-samples-per-task", "30", "--threads", "1", "--quiet",
            "--model", RESNET, "--model-param", "channels=4", "--model-param", "inner=4"]
    assert main([*args, "-s", "packnet", "--out", str(tmp_path / "r")]) == 0
    assert "resnet_bn.py:factory" in capsys.readouterr().out
    assert main(["run", "--resume", str(tmp_path / "r"), "--quiet"]) == 0
    bad = tmp_path / "bad.py"
    bad.write_text("def factory(shape):\n    return None\n")
    assert main(["run", "-b", "split-digits", "--model", f"{bad}:factory", "--quiet"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot be called as factory(input_shape, n_outputs" in err[0]


def test_layernorm_after_a_layer_follows_its_units():
    net = adapt(nn.Sequential(nn.Linear(4, 6), nn.LayerNorm(6), nn.GELU(), nn.Linear(6, 2)), (4,))
    assert net.groups[0].followers == ["1"] and net.groups[0].tap == "2"
    net.grow_units(0, 3)
    assert net.net[1].normalized_shape == (9,) and net.net[1].weight.shape == (9,)
    net.remove_units(0, torch.tensor([0, 8]))
    assert net.net[1].normalized_shape == (7,) and net(torch.rand(3, 4)).shape == (3, 2)
