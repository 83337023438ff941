"""Regularisation baselines (EWC, online EWC, SI, MAS, LwF) and joint training.

The forgetting checks use split-digits (scikit-learn's bundled 8x8 digits, 5 two-class tasks,
task-incremental), where plain fine-tuning with 10 epochs per task loses over 10 points of
accuracy on old tasks (BWT about -0.14 with seed 0).
"""

from __future__ import annotations

import copy
import functools
import math

import pytest
import torch
import torch.nn.functional as F

import neurosculpt
from neurosculpt.benchmarks import from_tensors, make_benchmark
from neurosculpt.loop import Context, Learner, TrainConfig
from neurosculpt.models import ModelConfig, build_model
from neurosculpt.strategies import make_strategies, make_strategy
from neurosculpt.strategies.base import Strategy
from neurosculpt.strategies.ewc import EWC, OnlineEWC, per_sample_mean
from neurosculpt.strategies.joint import Joint
from neurosculpt.strategies.lwf import LwF, frozen_copy
from neurosculpt.strategies.mas import MAS
from neurosculpt.strategies.si import SI

pytest.importorskip("sklearn")

@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest (and least disturbed by other processes) on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


FAST = {"ewc": {"fisher_samples": 64}, "online-ewc": {"fisher_samples": 64},
        "mas": {"samples": 64}}
PENALTIES = ["ewc", "online-ewc", "si", "mas"]
# buffer prefixes of (importance, anchor) after task k
RECORD = {"ewc": ("fisher{k}", "anchor{k}"), "online-ewc": ("fisher", "anchor"),
          "si": ("importance", "anchor"), "mas": ("importance", "anchor")}


def learner(spec: str, kind: str = "ann-mlp", epochs: int = 10, params: dict | None = None,
            steps: int = 4, extra: list[Strategy] | None = None) -> Learner:
    bench = make_benchmark("split-digits", seed=0)
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind=kind, hidden=(64, 64), steps=steps),
                        bench.input_shape, bench.n_outputs)
    params = params or {}
    strategies = make_strategies(
        spec, {n: {**FAST.get(n, {}), **params.get(n, {})} for n in spec.split("+")})
    return Learner(model, bench, strategies + (extra or []),
                   TrainConfig(epochs=epochs, progress=False, seed=0))


@functools.cache
def metrics(spec: str, kind: str = "ann-mlp") -> dict:
    return learner(spec, kind).run()["metrics"]


def value(tensor: torch.Tensor) -> float:
    return float(tensor.detach())


def tiny_stream(tasks: int = 2, scenario: str = "task"):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(40 * tasks, 6, generator=gen)
    y = torch.arange(2 * tasks).repeat_interleave(20)
    x = x + y[:, None].float()
    return from_tensors(x, y, x, y, [[2 * k, 2 * k + 1] for k in range(tasks)], scenario)


# --- forgetting -----------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["ewc", "online-ewc", "si", "mas", "lwf"])
def test_reduces_forgetting_vs_naive(spec):
    naive, method = metrics("naive"), metrics(spec)
    assert naive["bwt"] < -0.1
    assert method["bwt"] > naive["bwt"] + 0.05
    assert method["acc"] > naive["acc"]


def test_lwf_reduces_forgetting_on_spiking_model():
    naive, lwf = metrics("naive", "snn-mlp"), metrics("lwf", "snn-mlp")
    assert lwf["bwt"] > naive["bwt"] + 0.03
    assert lwf["acc"] > naive["acc"]


def test_joint_is_an_upper_bound():
    naive, joint = metrics("naive"), metrics("joint")
    assert joint["acc"] >= naive["acc"]
    assert joint["bwt"] >= 0.0


def test_joint_trains_on_union_without_duplicates():
    bench = make_benchmark("split-digits", seed=0)
    learn = Learner(build_model("ann-mlp", bench.input_shape, bench.n_outputs), bench, [Joint()])
    ctx = learn.ctx
    ctx.task_id, ctx.task = 2, bench.tasks[2]
    replayed = bench.tasks[0].train.subset(torch.arange(5))
    sets = Joint().train_data(ctx, [(bench.tasks[2].train, 2), (replayed, 0)])
    assert [tid for _, tid in sets] == [0, 1, 2, 0]
    again = Joint().train_data(ctx, sets)
    assert len(again) == len(sets)


# --- penalties ------------------------------------------------------------------------------


class Spy(Strategy):
    """Records a strategy's regularisation term on every batch, keyed by task."""

    name = "spy"

    def __init__(self, target: Strategy) -> None:
        super().__init__()
        self.target = [target]
        self.values: dict[int, list[float]] = {}

    def loss(self, ctx: Context, loss: torch.Tensor) -> torch.Tensor:
        target = self.target[0]
        term = (target.old_task_loss(ctx) if isinstance(target, LwF)
                else target.penalty(ctx.model))
        self.values.setdefault(ctx.task_id, []).append(value(term))
        return loss


@pytest.mark.parametrize("spec", PENALTIES + ["lwf"])
def test_penalty_zero_on_first_task_positive_after(spec):
    probe = learner(spec, epochs=1)
    spy = Spy(probe.strategies[0])
    probe.strategies.append(spy)
    for task in range(2):
        probe.train_task(task)
    assert spy.values[0] and all(v == 0.0 for v in spy.values[0])
    assert max(spy.values[1]) > 0.0
    assert all(math.isfinite(v) for v in spy.values[1])


def test_penalty_matches_ewc_formula():
    probe = learner("ewc", epochs=1)
    ewc = probe.strategies[0]
    probe.train_task(0)
    model = probe.model
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    expected = sum(
        ewc.lam / 2 * (ewc.stored("fisher0", n) * (p - ewc.stored("anchor0", n)) ** 2).sum()
        for n, p in model.named_parameters())
    assert torch.allclose(ewc.penalty(model), expected)
    assert value(expected) > 0


def test_ewc_keeps_one_penalty_per_task_online_ewc_one_in_total():
    ewc, online = learner("ewc", epochs=1), learner("online-ewc", epochs=1)
    for task in range(3):
        ewc.train_task(task)
        online.train_task(task)
    assert ewc.strategies[0].consolidated.tolist() == [0, 1, 2]
    assert len(ewc.strategies[0].records()) == 3
    assert len(online.strategies[0].records()) == 1
    assert int(online.strategies[0].tasks_seen) == 3


def test_online_fisher_decays_with_gamma():
    fishers = {}
    for gamma in (0.0, 1.0):
        run = learner("online-ewc", epochs=1, params={"online-ewc": {"gamma": gamma}})
        for task in range(2):
            run.train_task(task)
        fishers[gamma] = run.strategies[0].stored("fisher", "layers.0.weight").sum()
    assert fishers[1.0] > fishers[0.0] > 0


def test_per_sample_mean_of_gradients_is_the_batch_gradient():
    bench = tiny_stream()
    torch.manual_seed(0)
    model = build_model("ann-mlp", bench.input_shape, bench.n_outputs)
    ctx = Learner(model, bench, [], TrainConfig(progress=False)).ctx
    ce = lambda logits, y: F.cross_entropy(logits, y)  # noqa: E731
    mean = per_sample_mean(ctx, ce, lambda g: g, max_samples=1000, salt=0)
    x, y = bench.tasks[0].train.get(torch.arange(len(bench.tasks[0].train)))
    tids = torch.zeros(len(y), dtype=torch.long)
    grads = torch.autograd.grad(ce(ctx.forward(x, tids), y), list(model.parameters()))
    for (name, _), g in zip(model.named_parameters(), grads, strict=True):
        assert torch.allclose(mean[name], g, atol=1e-6)
    fisher = per_sample_mean(ctx, ce, lambda g: g * g, max_samples=1000, salt=0)
    assert all(bool((fisher[n] >= mean[n] ** 2 - 1e-7).all()) for n in fisher)


def test_si_importance_and_path_integral():
    run = learner("si", epochs=2)
    si = run.strategies[0]
    run.train_task(0)
    weight = si.stored("importance", "layers.0.weight")
    assert weight is not None and bool((weight >= 0).all()) and float(weight.sum()) > 0
    assert float(si.stored("path", "layers.0.weight").abs().sum()) == 0.0
    assert torch.equal(si.stored("anchor", "layers.0.weight"), run.model.layers[0].weight)
    run.train_task(1)
    assert float(si.stored("importance", "layers.0.weight").sum()) > float(weight.sum())


def test_mas_importance_needs_no_labels_and_accumulates():
    run = learner("mas", epochs=1)
    mas = run.strategies[0]
    run.train_task(0)
    first = mas.stored("importance", "layers.2.weight").clone()
    run.train_task(1)
    second = mas.stored("importance", "layers.2.weight")
    # output rows of task 1's classes only gain importance from task 1 (its head)
    rows0 = run.benchmark.tasks[0].classes
    rows1 = run.benchmark.tasks[1].classes
    assert float(first[rows0].sum()) > 0 and float(first[rows1].sum()) == 0
    assert torch.equal(second[rows0], first[rows0])
    assert float(second[rows1].sum()) > 0


# --- growth and compaction by other strategies ----------------------------------------------


class Grow(Strategy):
    """Test helper: grows hidden layer 0 before every task after the first, shrinks on demand."""

    name = "grow"

    def __init__(self, shrink_at: int | None = None) -> None:
        super().__init__()
        self.shrink_at = shrink_at

    def before_task(self, ctx: Context) -> None:
        if ctx.task_id == self.shrink_at:
            ctx.model.remove_units(0, torch.arange(1, ctx.model.layers[0].n_out, 2),
                                   ctx.optimizer)
        elif ctx.task_id > 0:
            ctx.model.grow_units(0, 8, ctx.optimizer)


@pytest.mark.parametrize("spec", PENALTIES + ["lwf"])
def test_survives_growth_and_compaction(spec):
    run = learner(spec, epochs=3, extra=[Grow(shrink_at=2)])
    run.strategies.insert(0, run.strategies.pop())  # grow first, as develop+ewc would
    strategy = run.strategies[1]
    run.train_task(0)
    if spec != "lwf":
        importance, anchor = (prefix.format(k=0) for prefix in RECORD[spec])
        assert strategy.stored(anchor, "layers.0.weight").shape == (64, 64)
        grown = copy.deepcopy(run.model)
        grown.grow_units(0, 8)
        assert value(strategy.penalty(grown)) == 0.0
        with torch.no_grad():
            grown.layers[0].weight[64:] += 1.0
            grown.layers[1].weight[:, 64:] += 1.0
        assert value(strategy.penalty(grown)) == 0.0  # new synapses are free
        with torch.no_grad():
            grown.layers[0].weight[:64] += 0.1
        assert value(strategy.penalty(grown)) > 0.0  # the old ones are still protected
    run.train_task(1)
    assert run.model.layers[0].n_out == 72
    if spec != "lwf":
        importance, anchor = (prefix.format(k=1) for prefix in RECORD[spec])
        assert strategy.stored(anchor, "layers.0.weight").shape == (72, 64)
        assert strategy.stored(importance, "layers.1.weight").shape == (64, 72)
    run.train_task(2)
    assert run.model.layers[0].n_out == 36
    row = run.summary()["accuracy_matrix"][2]
    assert all(v is not None and math.isfinite(v) for v in row)
    assert row[2] > 0.6


# --- state ----------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", PENALTIES + ["lwf"])
def test_state_round_trips_into_fresh_instance(spec):
    run = learner(spec, epochs=1, extra=[Grow()])
    run.strategies.insert(0, run.strategies.pop())
    strategy = run.strategies[1]
    for task in range(2):
        run.train_task(task)
    state = strategy.state_dict()
    fresh = make_strategy(spec, FAST.get(spec))
    fresh.load_checkpoint_state(state, run.model)
    restored = fresh.state_dict()
    assert restored.keys() == state.keys()
    assert all(torch.equal(restored[k], state[k]) for k in state)
    ctx = run.ctx
    ctx.x, _ = run.benchmark.tasks[2].train.get(torch.arange(16))
    ctx.task_id = 2
    if spec == "lwf":
        assert torch.equal(fresh.teacher(ctx.x), strategy.teacher(ctx.x))
        assert not any(p.requires_grad for p in fresh.teacher.parameters())
        assert torch.allclose(fresh.old_task_loss(ctx), strategy.old_task_loss(ctx))
    else:
        assert torch.equal(fresh.penalty(run.model), strategy.penalty(run.model))


def test_lwf_resume_gives_identical_results(tmp_path):
    config = {"benchmark": "split-digits", "strategy": "lwf", "model": "ann-mlp",
              "epochs": 2, "progress": False, "model_params": {"hidden": [32]},
              "keep_checkpoints": True}
    full = neurosculpt.run(config, out=tmp_path)
    for late in ("task_003.pt", "task_004.pt"):
        (tmp_path / "checkpoints" / late).unlink()
    resumed = neurosculpt.resume(tmp_path)
    assert resumed.accuracy_matrix == full.accuracy_matrix
    assert resumed.metrics == full.metrics
    assert resumed.results["config"]["strategy_params"] == {
        "lwf": {"alpha": 1.0, "temperature": 2.0}}


# --- composition and arguments --------------------------------------------------------------


def test_ewc_plus_si_composes():
    run = learner("ewc+si")
    ewc, si = run.strategies
    summary = run.run()
    assert len(summary["accuracy_matrix"]) == 5
    assert len(ewc.records()) == 5 and int(si.tasks_seen) == 5
    assert value(ewc.penalty(run.model)) > 0.0  # anchors of tasks 0-3 are older parameters
    assert value(si.penalty(run.model)) == 0.0  # its one anchor is the final parameters
    assert summary["metrics"]["bwt"] > metrics("naive")["bwt"] + 0.05


@pytest.mark.parametrize("scenario", ["class", "task"])
def test_lwf_plus_joint_and_class_scenario(scenario):
    bench = tiny_stream(tasks=3, scenario=scenario)
    torch.manual_seed(0)
    model = build_model("snn-mlp", bench.input_shape, bench.n_outputs)
    lwf = LwF()
    learn = Learner(model, bench, [Joint(), lwf], TrainConfig(epochs=1, progress=False))
    learn.run()
    assert lwf.teacher is not None and lwf.teacher is not model
    ctx = learn.ctx
    assert ctx.task_id == 2
    groups = lwf.old_outputs(ctx)
    assert groups == ([[0, 1, 2, 3]] if scenario == "class" else [[0, 1], [2, 3]])


def test_lwf_reuses_the_training_forward_pass():
    run = learner("lwf", epochs=1)
    run.config.energy_samples = 0  # no energy pass: count training and evaluation only
    run.train_task(0)
    calls = []
    run.model.register_forward_hook(lambda *args: calls.append(1))
    run.train_task(1)
    steps = run.ctx.record["train"][0]["steps"]
    tests = sum(math.ceil(len(t.test) / 1000) for t in run.benchmark.tasks)
    assert len(calls) == steps + tests  # one forward per batch, plus evaluation


def test_lwf_distils_all_outputs_in_domain_scenario():
    bench = make_benchmark("permuted-digits", n_tasks=2, scenario="domain", samples_per_task=50)
    ctx = Learner(build_model("ann-mlp", bench.input_shape, bench.n_outputs), bench, []).ctx
    assert LwF().old_outputs(ctx) == []
    ctx.task_id = 1
    assert LwF().old_outputs(ctx) == [list(range(10))]


def test_frozen_copy_drops_hooks_and_recorded_activity():
    bench = tiny_stream()
    model = build_model("snn-mlp", bench.input_shape, bench.n_outputs)
    calls = []
    model.register_forward_hook(lambda *args: calls.append(1))
    model.record_activity = True
    x, _ = bench.tasks[0].train.get(torch.arange(4))
    model(x)  # activity now holds tensors with a graph, which deepcopy refuses
    teacher = frozen_copy(model)
    calls.clear()
    assert torch.equal(teacher(x), model(x).detach())
    assert calls == [1]  # only the original model's hook ran
    assert not any(p.requires_grad for p in teacher.parameters())
    assert model.layers[0].weight.requires_grad


def test_unknown_parameter_is_named():
    with pytest.raises(ValueError, match="lam"):
        make_strategy("ewc", {"lambda": 10})


@pytest.mark.parametrize("cls,kwargs", [
    (EWC, {"lam": -1}), (EWC, {"fisher_samples": 0}), (OnlineEWC, {"gamma": 1.5}),
    (SI, {"xi": 0}), (SI, {"c": -1}), (MAS, {"samples": 0}), (LwF, {"temperature": 0}),
    (LwF, {"alpha": -1}),
])
def test_invalid_hyper_parameters(cls, kwargs):
    with pytest.raises(ValueError):
        cls(**kwargs)


def test_names_and_hparams():
    for spec in ["joint", "ewc", "online-ewc", "si", "mas", "lwf"]:
        strategy = make_strategy(spec)
        assert strategy.name == spec
        assert isinstance(strategy.hparams, dict)
    assert make_strategy("si", {"c": 0.5}).hparams == {"c": 0.5, "xi": 1e-3}
