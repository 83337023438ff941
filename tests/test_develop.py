"""The development cycle (develop), the DSD baseline and the importance scores."""

from __future__ import annotations

import pytest
import torch

import neurosculpt
from neurosculpt import layers as L
from neurosculpt.benchmarks import make_benchmark
from neurosculpt.loop import Learner, TrainConfig
from neurosculpt.models import ModelConfig, build_model
from neurosculpt.plasticity import synapse_scores, unit_scores
from neurosculpt.plasticity.structure import apoptosis
from neurosculpt.strategies import make_strategy

PHASES = ("before_expand", "after_expand", "before_prune", "after_prune", "before_consolidate",
          "after_consolidate")
SMALL = {"samples_per_task": 120, "test_samples_per_task": 60, "progress": False}


def _learner(strategy: str, model: str = "ann-mlp", tasks: int = 5, params: dict | None = None,
             hidden: tuple[int, ...] = (32, 32), benchmark: str = "split-digits"):
    bench = make_benchmark(benchmark, n_tasks=tasks, samples_per_task=120,
                           test_samples_per_task=60)
    torch.manual_seed(0)
    net = build_model(ModelConfig(kind=model, hidden=hidden, steps=4), bench.input_shape,
                      bench.n_outputs, sequence=bench.sequence)
    strat = make_strategy(strategy, params or {})
    return Learner(net, bench, [strat], TrainConfig(epochs=2, batch_size=32, progress=False))


def _toy_model(kind: str) -> torch.nn.Module:
    torch.manual_seed(1)
    return build_model(ModelConfig(kind=kind, hidden=(12, 10), steps=4), (6,), 3)


# --- structure --------------------------------------------------------------------------------


def test_grow_then_prune_leaves_the_kept_network_unchanged() -> None:
    for kind in ("ann-mlp", "snn-mlp"):
        model = _toy_model(kind)
        x = torch.rand(16, 6)
        before = model(x)
        sizes = model.hidden_sizes()
        model.grow_units(0, 5)
        model.grow_units(1, 4)
        assert model.hidden_sizes() == [17, 14]
        # prune every outgoing synapse of the new units: they no longer reach the output
        for index, n in enumerate(sizes):
            nxt = model.plastic_layers[index + 1]
            cut = torch.zeros_like(nxt.mask)
            cut[:, n:] = True
            L.prune_synapses(nxt, cut)
        torch.testing.assert_close(model(x), before, rtol=0, atol=1e-6)
        # apoptosis removes exactly the orphaned new units and the tensors shrink back
        assert apoptosis(model, None) == [5, 4]
        assert model.hidden_sizes() == sizes
        assert [layer.weight.shape for layer in model.plastic_layers] == [
            (12, 6), (10, 12), (3, 10)]
        torch.testing.assert_close(model(x), before, rtol=0, atol=1e-6)


def test_frozen_synapses_do_not_move_and_bwt_is_exactly_zero() -> None:
    learner = _learner("develop", model="snn-mlp", params={"grow": 8, "initial_hidden": 16})
    snapshots: list[list[tuple[torch.Tensor, torch.Tensor]]] = []

    def snapshot(lrn: Learner) -> None:
        snapshots.append([(layer.owner.clone(), layer.effective_weight().detach().clone())
                          for layer in lrn.model.plastic_layers])

    learner.model.set_training_task(10**6)  # effective_weight of every live synapse
    summary = learner.run(on_task_end=snapshot)
    first = snapshots[0]
    final = learner.model.plastic_layers
    for (owner, weight), layer in zip(first, final, strict=True):
        owned = owner == 0
        assert bool(owned.any())
        assert torch.equal(layer.owner[layer.owner == 0].sort().values,
                           owner[owned].sort().values)
        # frozen values are exactly what task 0 left, wherever compaction moved them
        assert bool(layer.frozen[layer.owner == 0].all())
        assert torch.equal(layer.frozen_weight[layer.owner == 0].sort().values,
                           weight[owned].sort().values)
    matrix = summary["accuracy_matrix"]
    for j in range(len(matrix)):
        assert len({matrix[i][j] for i in range(j, len(matrix))}) == 1
    assert summary["metrics"]["bwt"] == 0.0


def test_structure_is_recorded_for_every_phase_and_pruning_shrinks() -> None:
    variants = ({"keep": 0.2},
                {"threshold": 1.0, "score": "magnitude", "budget": 1.0},
                {"keep_units": 0.5, "score": "obd", "prune_rounds": 2})
    for params in variants:
        result = neurosculpt.run(benchmark="split-digits", strategy="develop", model="ann-mlp",
                                 tasks=5, epochs=2, batch_size=32,
                                 model_params={"hidden": (32, 32)}, strategy_params=params,
                                 **SMALL)
        for task in result.results["tasks"]:
            structure = task["structure"]
            assert set(PHASES) <= set(structure)
            for phase in PHASES:
                assert len(structure[phase]["units"]) == 3
                assert len(structure[phase]["live_synapses"]) == 3
            assert structure["after_prune"]["live_synapses"][0] < \
                structure["before_prune"]["live_synapses"][0]
            assert structure["after_consolidate"]["free_synapses"] == [0, 0, 0]
            assert str(task["task"]) in structure["after_consolidate"]["partitions"][0]
            assert task["live_synapses"] == sum(structure["after_consolidate"]["live_synapses"])
            if "keep_units" in params:  # at most half of the new units survive
                grown = structure["after_expand"]["units"][0] - \
                    structure["before_expand"]["units"][0]
                assert structure["after_prune"]["units"][0] <= \
                    structure["before_expand"]["units"][0] + max(1, round(grown / 2))
        # the hidden layers end within the budget (default 60% of each) and below the dense size
        budget = min(params.get("budget", 0.6), 0.9)
        live = result.results["tasks"][-1]["structure"]["after_consolidate"]["live_synapses"]
        assert live[0] <= budget * 64 * 32 and live[1] <= budget * 32 * 32
        assert result.metrics["bwt"] == 0.0


def test_capacity_is_never_exceeded_and_logged() -> None:
    for name, params in (("develop", {"max_units": 6, "grow": 4, "initial_hidden": 3}),
                         ("dsd", {"max_units": [5, 4]})):
        result = neurosculpt.run(benchmark="split-digits", strategy=name, model="ann-mlp",
                                 tasks=5, epochs=1, batch_size=32,
                                 model_params={"hidden": (24, 24)}, strategy_params=params,
                                 **SMALL)
        caps = [6, 6] if name == "develop" else [5, 4]
        logs = []
        for task in result.results["tasks"]:
            for phase in task["structure"].values():
                assert all(n <= c for n, c in zip(phase["units"][:-1], caps, strict=True))
            logs += task.get("log", [])
        assert any("capacity" in line for line in logs)
        assert result.results["status"] == "complete"


def test_budget_caps_what_all_tasks_own() -> None:
    result = neurosculpt.run(benchmark="split-digits", strategy="develop", model="ann-mlp",
                             tasks=5, epochs=1, batch_size=32, model_params={"hidden": (24, 24)},
                             strategy_params={"budget": 0.3, "keep": 0.6, "initial_hidden": 1.0},
                             **SMALL)
    dense = [64 * 24, 24 * 24]
    logs = []
    for task in result.results["tasks"]:
        owned = task["structure"]["after_consolidate"]["live_synapses"][:2]
        assert all(n <= 0.3 * d for n, d in zip(owned, dense, strict=True))
        logs += task.get("log", [])
    assert owned[0] > 0.2 * dense[0]  # the budget is used, not just respected
    assert any(line.startswith("budget:") for line in logs)


# --- checkpoint and resume ----------------------------------------------------------------------


def test_resume_reproduces_masks_owners_and_accuracy(tmp_path) -> None:
    for name, params in (("develop", {"consolidation": "regularize", "score": "activity"}),
                         ("dsd", {"rounds": 3})):
        config = dict(benchmark="split-digits", strategy=name, model="snn-mlp", tasks=5,
                      epochs=2, batch_size=32, model_params={"hidden": (24, 24), "steps": 4},
                      strategy_params=params, keep_checkpoints=True, **SMALL)
        out = tmp_path / name
        full = neurosculpt.run(config, out=out)
        (out / "checkpoints" / "task_004.pt").unlink()
        resumed = neurosculpt.resume(out)
        assert resumed.accuracy_matrix == full.accuracy_matrix
        a, b = full.model.state_dict(), resumed.model.state_dict()
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), key
        for s_full, s_res in zip(full.strategies, resumed.strategies, strict=True):
            sa, sb = s_full.state_dict(), s_res.state_dict()
            assert sa.keys() == sb.keys()
            assert all(torch.equal(sa[k], sb[k]) for k in sa)


# --- regularised consolidation ------------------------------------------------------------------


def test_regularize_lets_old_synapses_move_a_little() -> None:
    drift = {}
    for lam in (0.0, 1e4):
        learner = _learner("develop", tasks=2,
                           params={"consolidation": "regularize", "lam": lam, "keep": 0.3})
        learner.train_task(0)
        layer = learner.model.plastic_layers[0]
        owned = layer.owner == 0
        anchor = layer.weight.detach()[owned].clone()
        learner.train_task(1)
        assert not bool(layer.frozen.any())
        drift[lam] = float((layer.weight.detach()[layer.owner == 0] - anchor).abs().mean())
    assert drift[0.0] > 0
    assert drift[1e4] < 0.5 * drift[0.0]


def test_conv_models_develop_and_dsd() -> None:
    for name in ("develop", "dsd"):
        result = neurosculpt.run(benchmark="split-digits", strategy=name, model="ann-conv",
                                 tasks=2, epochs=1, batch_size=32,
                                 model_params={"channels": (8, 8), "hidden": (16,)}, **SMALL)
        assert result.metrics["bwt"] == 0.0
        assert len(result.results["tasks"][-1]["structure"]["after_consolidate"]["units"]) == 4


# --- importance scores --------------------------------------------------------------------------


def test_every_score_ranks_useless_synapses_lowest() -> None:
    for kind in ("ann-mlp", "snn-mlp"):
        model = _toy_model(kind)
        with torch.no_grad():
            model.plastic_layers[0].weight[3, 1] = 0.0  # a synapse with zero weight
        gen = torch.Generator().manual_seed(0)
        batches = []
        for _ in range(3):
            x = torch.rand(32, 6, generator=gen) + 0.5
            x[:, 4] = 0.0  # input 4 is never active
            batches.append((x, torch.randint(0, 3, (32,), generator=gen)))
        for score in ("magnitude", "activity", "taylor", "obd"):
            first = synapse_scores(model, score, batches)[0]
            assert first.shape == (12, 6)
            lowest = first.min()
            if score != "magnitude":  # magnitude does not look at the data
                assert torch.all(first[:, 4] == lowest), (kind, score)
            if score != "activity":  # co-firing does not look at the weight
                assert first[3, 1] == lowest, (kind, score)
            # synapses onto a neuron that never fires are useless too: compare the rest
            others = (unit_scores(model, "activity", batches)[0] > 0)[:, None].expand_as(first)
            others = others.clone()
            others[:, 4] = False
            others[3, 1] = False
            assert bool((first[others] > lowest).all()), (kind, score)
        rates = unit_scores(model, "activity", batches)
        assert [len(r) for r in rates] == [12, 10, 3]
        magnitude = unit_scores(model, "magnitude")
        torch.testing.assert_close(magnitude[1], model.plastic_layers[1].weight.abs().sum(1))


def test_recover_lr_scales_only_the_recovery_phase(digits):
    """The recovery runs at recover_lr times the learning rate; afterwards the configured rate
    is back exactly."""
    from neurosculpt.strategies.develop import Develop

    rates: list[float] = []

    class Spy(Develop):
        def after_step(self, ctx):
            rates.append(ctx.optimizer.param_groups[0]["lr"])
            super().after_step(ctx)

    torch.manual_seed(0)
    model = build_model({"kind": "ann-mlp", "hidden": (16,)}, digits.input_shape,
                        digits.n_outputs)
    learner = Learner(model, digits, [Spy(recover_lr=4.0, recover_steps=3)],
                      TrainConfig(steps=4, batch_size=16, lr=1e-3, progress=False))
    learner.train_task(0)
    assert rates == [1e-3] * 4 + [4e-3] * 3
    assert learner.ctx.optimizer.param_groups[0]["lr"] == 1e-3
    with pytest.raises(ValueError, match="recover_lr"):
        Develop(recover_lr=0.0)
