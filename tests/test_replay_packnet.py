"""Experience replay (reservoir memory) and PackNet (prune, retrain, freeze per task)."""

from __future__ import annotations

import pytest
import torch
from tiny_streams import clusters

import neurosculpt
from neurosculpt import layers as L
from neurosculpt.loop import Learner, TrainConfig
from neurosculpt.models import build_model
from neurosculpt.strategies import available, make_strategies
from neurosculpt.strategies.base import Strategy
from neurosculpt.strategies.packnet import PackNet
from neurosculpt.strategies.replay import Replay


def learner(bench, strategies, kind: str = "ann-mlp", epochs: int = 3, **model) -> Learner:
    torch.manual_seed(0)
    net = build_model({"kind": kind, "hidden": (24, 24), "steps": 3, **model},
                      bench.input_shape, bench.n_outputs)
    config = TrainConfig(epochs=epochs, batch_size=16, lr=5e-3, progress=False)
    return Learner(net, bench, strategies, config)


# --- replay ------------------------------------------------------------------------------------


def test_reservoir_is_bounded_and_uniform_over_the_stream():
    counts = torch.zeros(20)
    for seed in range(800):
        torch.manual_seed(seed)
        memory = Replay(buffer_size=5)
        for start in range(0, 20, 7):  # uneven batches exercise slot collisions
            ids = torch.arange(start, min(start + 7, 20))
            memory.add(ids[:, None].float(), ids, ids // 10)
            assert len(memory.memory()[1]) == min(int(memory.seen), 5)
        x, y, t = memory.memory()
        assert len(set(y.tolist())) == 5  # each example enters at most once
        assert torch.equal(x[:, 0].long(), y) and torch.equal(t, y // 10)
        counts[y] += 1
    inclusion = counts / 800
    assert torch.allclose(inclusion, torch.full((20,), 0.25), atol=0.06)  # 4 std


def test_replay_buffer_in_training_holds_every_task_in_proportion():
    bench = clusters(3, "class", per_class=40)
    replay = Replay(buffer_size=60, replay_batch_size=8)
    sizes = []

    class Probe(Strategy):
        def before_batch(self, ctx):
            sizes.append((len(ctx.x), len(ctx.y), len(ctx.task_ids), ctx.task_id))

    run = learner(bench, [replay, Probe()], epochs=2)
    run.run()
    assert int(replay.seen) == 3 * 80  # first pass only: replayed samples are never stored
    assert replay.filled == 60 and replay.memory_x.shape == (60, 12)
    per_task = run.tasks[-1]["replay"]["per_task"]
    assert sorted(per_task) == ["0", "1", "2"]
    assert all(10 <= n <= 30 for n in per_task.values())  # 20 each in expectation
    # batches of task 0's first step are not padded, later ones carry 8 replayed samples
    assert sizes[0][:3] == (16, 16, 16)
    assert all(n == 16 + 8 for n, _, _, task in sizes if task > 0)
    _, y, t = replay.memory()
    assert torch.equal(y // 2, t)  # labels stay the output indices of their task


def test_replay_reduces_forgetting_in_class_incremental_learning():
    bench = clusters(3, "class")
    bwt = {}
    for name in ("naive", "replay"):
        run = learner(bench, make_strategies(name, {"buffer_size": 60} if name == "replay"
                                             else None), epochs=4)
        bwt[name] = run.run()["metrics"]["bwt"]
    assert bwt["naive"] < -0.6
    assert bwt["replay"] > bwt["naive"] + 0.3


def test_replay_composes_with_ewc():
    if "ewc" not in available():
        pytest.skip("ewc is not part of this installation")
    bench = clusters(2, "task")
    strategies = make_strategies("replay+ewc", {"replay": {"buffer_size": 32}})
    result = learner(bench, strategies).run()
    replay = strategies[0]
    assert replay.filled == 32 and sorted(result["tasks"][-1]["replay"]["per_task"]) == ["0", "1"]
    assert all(v is not None for row in result["accuracy_matrix"] for v in row)


# --- packnet -----------------------------------------------------------------------------------


def owned_values(model) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    out = []
    for layer in model.plastic_layers:
        owned, bias_owned = layer.owner >= 0, layer.bias_owner >= 0
        weight = torch.where(layer.frozen, layer.frozen_weight, layer.weight).detach()
        out.append((owned.clone(), weight[owned].clone(), bias_owned.clone(),
                    layer.effective_bias().detach()[bias_owned].clone()))
    return out


@pytest.mark.parametrize("kind", ["ann-mlp", "snn-mlp"])
def test_packnet_freezes_subnetworks_and_keeps_task_il_accuracy(kind):
    bench = clusters(3, "task")
    model = {"learn_beta": True, "learn_threshold": True} if kind == "snn-mlp" else {}
    run = learner(bench, [PackNet(prune_ratio=0.5, retrain_epochs=1)], kind=kind, **model)
    run.measure_random_init()
    snapshots, shared = [], None
    for task in range(3):
        run.train_task(task)
        for before in snapshots:  # everything owned after an earlier task is bitwise unchanged
            for (owned, weight, bias_owned, bias), layer in zip(
                    before, run.model.plastic_layers, strict=True):
                now = torch.where(layer.frozen, layer.frozen_weight, layer.weight).detach()
                assert bool((layer.owner[owned] >= 0).all()) and bool(layer.mask[owned].all())
                assert torch.equal(now[owned], weight)
                assert torch.equal(layer.effective_bias().detach()[bias_owned], bias)
        snapshots.append(owned_values(run.model))
        extra = [p.detach().clone() for n, p in run.model.named_parameters()
                 if not n.startswith("layers.")]
        if shared is not None:
            assert all(torch.equal(a, b) for a, b in zip(shared, extra, strict=True))
        shared = extra
        assert run.tasks[-1]["train"][-1]["phase"] == ("retrain" if task < 2 else "train")
    if kind == "snn-mlp":
        assert shared  # the learnable time constants exist and were held fixed
    R = run.accuracy
    for j in range(3):
        assert all(R[i][j] == R[j][j] for i in range(j, 3))
    assert run.summary()["metrics"]["bwt"] == 0.0
    assert min(R[j][j] for j in range(3)) >= 0.8  # chance is 0.5


def test_packnet_prunes_the_expected_fraction_and_owners_partition_live_synapses():
    ratio = 0.75
    bench = clusters(3, "task")
    run = learner(bench, [PackNet(prune_ratio=ratio, retrain_epochs=1)], epochs=2)
    run.measure_random_init()
    layers = run.model.plastic_layers
    hidden = layers[:-1]
    free = [layer.weight.numel() for layer in hidden]
    for task in range(3):
        run.train_task(task)
        record = run.tasks[-1]["packnet"]
        for i in range(len(hidden)):
            expected = round(ratio * free[i]) if task < 2 else 0  # the last task keeps all
            assert record["pruned"][i] == expected
            assert record["partitions"][i][str(task)] == free[i] - expected
            free[i] = expected
        for layer in layers:
            live, owned = layer.mask, layer.owner >= 0
            assert torch.equal(live, owned)  # no live free synapse, no dead owned one
            sizes = L.partition_sizes(layer)
            assert "free" not in sizes and sum(sizes.values()) == layer.live_synapses()
            assert bool(layer.frozen[owned].all()) and not bool(layer.frozen[~owned].any())
        assert all(bool(layer.bias_frozen.all()) for layer in hidden)
        out = layers[-1]
        for t in bench.tasks:  # each head's weights and biases belong to its own task only
            rows = torch.tensor(t.classes)
            owners = set(out.owner[rows][out.mask[rows]].tolist())
            assert owners == ({t.id} if t.id <= task else set())
            assert bool(out.bias_frozen[rows].all()) == (t.id <= task)
    lr = run.ctx.optimizer.param_groups[0]["lr"]
    assert lr == run.config.lr  # the lower retraining rate is restored


@pytest.mark.parametrize("reopen", ["zero", "fresh"])
def test_packnet_gives_freed_weights_to_the_next_task(reopen):
    bench = clusters(2, "task")
    packnet = PackNet(prune_ratio=0.5, retrain_epochs=0, reopen=reopen)
    run = learner(bench, [packnet], epochs=1)
    run.train_task(0)
    layers = run.model.plastic_layers
    closed = [~layer.mask.clone() for layer in layers]
    run.ctx.task, run.ctx.task_id, run.ctx.record = bench.tasks[1], 1, {}
    run.model.set_training_task(1)
    packnet.before_task(run.ctx)
    assert run.ctx.record["packnet"]["reopened"] == [int(c.sum()) for c in closed]
    for layer, was_closed in zip(layers, closed, strict=True):
        assert bool(layer.mask.all()) and bool((layer.owner[was_closed] == L.FREE).all())
        values = layer.weight.detach()[was_closed]
        assert bool((values == 0).all()) == (reopen == "zero")


def test_packnet_class_scenario_runs_on_the_union():
    bench = clusters(2, "class")
    run = learner(bench, [PackNet()], epochs=2)
    result = run.run()
    assert result["accuracy_matrix"][0][0] > 0.9
    out = run.model.plastic_layers[-1]
    assert set(out.owner[out.mask].tolist()) == {0, 1}  # task 1 also trained task 0's rows


@pytest.mark.parametrize("strategy,kind", [("packnet", "ann-mlp"), ("packnet", "snn-mlp"),
                                           ("replay", "ann-mlp")])
def test_resume_after_an_interruption_gives_identical_results(tmp_path, strategy, kind):
    args = dict(benchmark="permuted-digits", tasks=3, samples_per_task=120,
                test_samples_per_task=60, strategy=strategy, model=kind, epochs=2,
                batch_size=32, reset_optimizer=False, progress=False, keep_checkpoints=True,
                model_params={"hidden": [32], "steps": 3},
                strategy_params={"buffer_size": 50} if strategy == "replay" else {})
    full = neurosculpt.run(out=tmp_path / "run", **args)
    (tmp_path / "run" / "checkpoints" / "task_002.pt").unlink()
    (tmp_path / "run" / "results.json").unlink()
    resumed = neurosculpt.resume(tmp_path / "run")
    # tasks 0 and 1 came from the checkpoint (their wall-clock times are not re-measured)
    assert resumed.results["tasks"][:2] == full.results["tasks"][:2]
    assert resumed.accuracy_matrix == full.accuracy_matrix
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    sa, sb = full.strategies[0].state_dict(), resumed.strategies[0].state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
