"""Issue 19: class order of class-split streams, the balanced replay memory, the whole-task
Fisher of EWC, and task inference for partitioned networks (develop, packnet)."""

from __future__ import annotations

import json

import pytest
import torch
from tiny_streams import cluster_learner, clusters

import neurosculpt
from neurosculpt import make_benchmark
from neurosculpt.benchmarks import resolve_class_order
from neurosculpt.cli import main
from neurosculpt.loop import Learner, TrainConfig
from neurosculpt.models import build_model
from neurosculpt.runs import RunConfig
from neurosculpt.strategies import make_strategies, make_strategy
from neurosculpt.strategies.ewc import EWC, empirical_fisher
from neurosculpt.strategies.replay import Replay
from neurosculpt.strategies.task_inference import SCORES, TaskInference

# --- class order -------------------------------------------------------------------------------


def test_class_order_natural_seed_and_list(digits):
    natural = make_benchmark("split-digits", class_order="natural", seed=3)
    assert natural.info["class_order"] == list(range(10))
    assert [t.name.split(":")[1] for t in natural.tasks] == ["0-1", "2-3", "4-5", "6-7", "8-9"]
    assert make_benchmark("split-digits", class_order="seed").info["class_order"] \
        == digits.info["class_order"]  # the default is unchanged
    given = make_benchmark("split-digits", class_order="9,8,7,6,5,4,3,2,1,0")
    assert given.info["class_order"] == list(range(9, -1, -1))
    assert make_benchmark("split-digits", class_order=[1, 0, 2, 3, 4, 5, 6, 7, 8, 9],
                          n_tasks=2).tasks[0].name.endswith(":1-0-2-3-4")


@pytest.mark.parametrize("value, message", [
    ("0,1,2", "not a permutation"), ("0,0,1,2,3,4,5,6,7,8", "not a permutation"),
    ("0,1,2,3,4,5,6,7,8,10", "not a permutation"), ("random", "natural, seed or"),
])
def test_bad_class_orders_are_named(value, message):
    with pytest.raises(ValueError, match=message):
        resolve_class_order(value, torch.arange(10), 0)


def test_class_order_only_for_class_splits():
    with pytest.raises(ValueError, match="class-split"):
        make_benchmark("permuted-digits", class_order="natural", samples_per_task=10)


def test_class_order_in_config_results_and_show(tmp_path, quick_run, capsys):
    out = tmp_path / "run"
    assert main(["run", "-b", "split-digits", "-m", "ann-mlp", "--model-param", "hidden=16",
                 "--samples-per-task", "40", "--test-samples-per-task", "20", "--epochs", "1",
                 "--class-order", "natural", "-q", "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["class_order"] == "natural"
    results = json.loads((out / "results.json").read_text())
    assert results["benchmark"]["class_order"] == list(range(10))
    capsys.readouterr()
    assert main(["show", str(out)]) == 0
    assert "class order (natural): 0,1,2,3,4,5,6,7,8,9" in capsys.readouterr().out
    result = neurosculpt.run({**quick_run, "class_order": list(range(10))})
    assert result.results["config"]["class_order"] == list(range(10))
    assert RunConfig(class_order="2,3,0,1,4,5,6,7,8,9").class_order[:2] == [2, 3]


def test_bad_class_order_exits_2_in_one_line(tmp_path, capsys):
    assert main(["run", "-b", "split-digits", "--class-order", "0,1,2", "--out",
                 str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "class_order 0,1,2 is not a permutation" in err


# --- balanced replay memory --------------------------------------------------------------------


def test_balanced_memory_keeps_an_equal_share_per_task_and_class():
    memory = Replay(buffer_size=12, memory="balanced")
    torch.manual_seed(0)
    for task in range(3):
        y = torch.tensor([2 * task, 2 * task + 1]).repeat(50)
        memory.add(torch.randn(len(y), 4), y, torch.full_like(y, task))
        _, stored, tasks = memory.memory()
        per_class = torch.bincount(stored, minlength=2 * task + 2)
        assert memory.filled == 12
        assert per_class.tolist() == [12 // (2 * task + 2)] * (2 * task + 2)
    with pytest.raises(ValueError, match="memory must be one of"):
        Replay(memory="ring")


def test_balanced_memory_is_uniform_within_a_group():
    counts = torch.zeros(20)
    for seed in range(200):
        torch.manual_seed(seed)
        memory = Replay(buffer_size=4, memory="balanced")
        ids = torch.arange(20)
        memory.add(ids[:, None].float(), ids % 2, torch.zeros(20, dtype=torch.long))
        x, _, _ = memory.memory()
        counts[x[:, 0].long()] += 1
    assert torch.allclose(counts / 200, torch.full((20,), 0.2), atol=0.1)


def test_balanced_memory_fills_at_task_end_and_auto_picks_it_for_the_class_scenario():
    seen = []

    class Probe(neurosculpt.strategies.Strategy):
        def before_batch(self, ctx):
            seen.append((ctx.task_id, ctx.task_ids.max().item() if len(ctx.task_ids) else -1))

    for scenario, mode in (("class", "balanced"), ("task", "reservoir")):
        bench = clusters(3, scenario, per_class=20)
        replay = Replay(buffer_size=30, replay_batch_size=8)
        seen.clear()
        torch.manual_seed(0)
        net = build_model({"kind": "ann-mlp", "hidden": (16,)}, bench.input_shape,
                          bench.n_outputs)
        result = Learner(net, bench, [replay, Probe()],
                         TrainConfig(epochs=1, batch_size=16, progress=False)).run()
        record = result["tasks"][-1]["replay"]
        assert record["memory"] == mode
        assert record["weighting"] == ("tasks" if scenario == "class" else "batch")
        if mode == "balanced":
            assert record["per_task"] == {"0": 10, "1": 10, "2": 10}
            # while a task trains, replayed samples all come from earlier tasks
            assert all(t == task for task, t in seen)


# --- EWC Fisher over the whole task ------------------------------------------------------------


def test_whole_task_fisher_uses_every_sample():
    bench = clusters(1, "task", per_class=10)
    torch.manual_seed(0)
    net = build_model({"kind": "ann-mlp", "hidden": (8,)}, bench.input_shape, bench.n_outputs)
    learner = Learner(net, bench, [], TrainConfig(progress=False))
    n = len(bench.tasks[0].train)
    whole = empirical_fisher(learner.ctx, None)
    counted = empirical_fisher(learner.ctx, n)
    part = empirical_fisher(learner.ctx, 3)
    assert all(torch.allclose(whole[k], counted[k]) for k in whole)
    assert not all(torch.allclose(whole[k], part[k]) for k in whole)
    assert EWC(fisher_samples="all").hparams["fisher_samples"] == "all"
    for bad in ("most", 0, 2.5):
        with pytest.raises(ValueError, match="fisher_samples must be"):
            make_strategy("ewc", {"fisher_samples": bad})


# --- task inference ----------------------------------------------------------------------------


def _run(strategy: str, scenario: str = "class", params: dict | None = None, tasks: int = 3,
         kind: str = "ann-mlp"):
    learner = cluster_learner(strategy, params, scenario, tasks, kind)
    return learner, learner.run()


@pytest.mark.parametrize("base", ["develop", "packnet"])
def test_task_inference_recovers_old_tasks_in_the_class_scenario(base):
    _, union = _run(base)
    learner, inferred = _run(f"{base}+task-inference")
    assert union["metrics"]["acc"] < 0.6  # the newest head wins every prediction
    assert inferred["metrics"]["acc"] > union["metrics"]["acc"] + 0.3
    record = inferred["tasks"][-1]["task_inference"]
    assert record["score"] == "analytic" and record["task_accuracy"] > 0.9
    assert 1.0 <= record["forward_passes_per_sample"] <= 3.0
    assert record["statistics_floats"] > 0


@pytest.mark.parametrize("score", SCORES)
def test_every_score_runs_and_predicts_a_task(score):
    kind = "snn-mlp" if score in ("energy", "ratio") else "ann-mlp"
    params = {"task-inference": {"score": score}}
    if score == "cascade":
        params["replay"] = {"buffer_size": 30}
    spec = "develop+replay+task-inference" if score == "cascade" else "develop+task-inference"
    _, result = _run(spec, params=params, kind=kind)
    record = result["tasks"][-1]["task_inference"]
    assert 0.0 <= record["task_accuracy"] <= 1.0 and record["score"] == score
    assert record["backward_passes_per_sample"] == (1 if score == "gradient" else 0)


def test_task_scenario_results_are_unchanged():
    _, plain = _run("develop", scenario="task")
    _, inferred = _run("develop+task-inference", scenario="task")
    assert plain["accuracy_matrix"] == inferred["accuracy_matrix"]


def test_negatives_change_training_only_outside_the_task_scenario():
    _, plain = _run("develop+task-inference", params={"task-inference": {"score": "energy"}})
    _, shuffled = _run("develop+task-inference",
                       params={"task-inference": {"score": "energy", "negatives": "shuffle"}})
    assert plain["tasks"][0]["loss"] != shuffled["tasks"][0]["loss"]


def test_statistics_survive_a_checkpoint():
    learner, _ = _run("develop+task-inference")
    inference = learner.strategies[-1]
    fresh = TaskInference()
    fresh.load_checkpoint_state(inference.state_dict(), learner.model)
    x, _ = learner.benchmark.tasks[0].test.get(torch.arange(10))
    tids = torch.zeros(10, dtype=torch.long)
    learner.model.eval()
    with torch.no_grad():
        a = inference.predict(learner.ctx, x, tids)
        b = fresh.predict(learner.ctx, x, tids)
    assert torch.equal(a, b)


def test_domain_scenario_infers_the_permutation():
    bench = make_benchmark("permuted-digits", n_tasks=3, scenario="domain", samples_per_task=300,
                           test_samples_per_task=100)
    torch.manual_seed(0)
    net = build_model({"kind": "ann-mlp", "hidden": (32, 32)}, bench.input_shape,
                      bench.n_outputs)
    learner = Learner(net, bench, make_strategies("develop+task-inference"),
                      TrainConfig(epochs=3, batch_size=32, lr=5e-3, progress=False))
    record = learner.run()["tasks"][-1]["task_inference"]
    assert record["task_accuracy"] > 0.9


def test_bad_task_inference_parameters_are_named():
    for params, message in (({"score": "vote"}, "score must be one of"),
                            ({"features": "first"}, "features must be one of"),
                            ({"negatives": "noise"}, "negatives must be one of"),
                            ({"shrinkage": -1}, "shrinkage must be")):
        with pytest.raises(ValueError, match=message):
            TaskInference(**params)


def test_task_weighted_replay_loss():
    from types import SimpleNamespace

    import torch.nn.functional as F

    logits = torch.randn(6, 4)
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    ctx = SimpleNamespace(task_id=2, task_ids=torch.tensor([2, 2, 2, 0, 1, 0]), logits=logits,
                          y=y)
    base = F.cross_entropy(logits, y)
    each = F.cross_entropy(logits, y, reduction="none")
    weighted = Replay(weighting="tasks").loss(ctx, base + 1.0)
    assert torch.allclose(weighted, 1.0 + each[:3].mean() / 3 + each[3:].mean() * 2 / 3)
    assert Replay().loss(ctx, base) is base  # ER: one mean over the joined batch
    with pytest.raises(ValueError, match="weighting must be one of"):
        Replay(weighting="equal")


# --- the analytic task predictor ----------------------------------------------------------------


@pytest.mark.parametrize("source, expand", [("subnetwork", 0), ("input", 40)])
def test_analytic_head_over_tasks_is_the_joint_ridge_head(source, expand):
    """Statistics added up task after task equal those of all the training data at once (the
    feature space is frozen), so the solved head is the jointly fitted ridge head."""
    params = {"task-inference": {"score": "analytic", "source": source, "expand": expand}}
    learner, result = _run("develop+task-inference", params=params)
    inference = learner.strategies[-1]
    ctx, model = learner.ctx, learner.model
    model.eval()
    feats, targets = [], []
    with torch.no_grad():
        for task in learner.benchmark.tasks:
            x, y = task.train.get(torch.arange(len(task.train)))
            feats.append(inference._analytic_features(ctx, x)[1].double())
            targets.append(torch.nn.functional.one_hot(y, 6).double())
    model.set_task(None)
    h, t = torch.cat(feats), torch.cat(targets)
    gram = inference.analytic_gram
    assert torch.allclose(gram, h.T @ h, rtol=1e-6, atol=1e-6)
    assert torch.allclose(inference.analytic_targets, h.T @ t, rtol=1e-6, atol=1e-6)
    assert inference.analytic_groups.tolist() == [[k // 2, k] for k in range(6)]
    lam = inference.ridge * float((h.T @ h).diagonal().mean())
    joint = torch.linalg.solve(h.T @ h + lam * torch.eye(h.shape[1], dtype=h.dtype), h.T @ t)
    x, _ = learner.benchmark.tasks[1].test.get(torch.arange(10))
    with torch.no_grad():
        probe = inference._analytic_features(ctx, x)[1]
    model.set_task(None)
    expected = (probe.double() @ joint).argmax(1) // 2
    assert torch.equal(inference._analytic_choice(probe, 3), expected)
    record = result["tasks"][-1]["task_inference"]
    assert record["score"] == "analytic" and record["task_accuracy"] > 0.7  # union: 1/3
    width = gram.shape[0]
    assert width == (expand or len(h.T))
    assert record["statistics_floats"] == width * width + width * 6 + 6 * 2
    passes = record["forward_passes_per_sample"]  # subnetwork 0, then the chosen one if not 0
    assert passes == 1.0 if source == "input" else 1.0 <= passes <= 2.0


def test_analytic_task_targets_are_the_summed_class_targets():
    learner, _ = _run("develop+task-inference", params={"task-inference": {
        "score": "analytic", "targets": "task", "expand": 30}})
    inference = learner.strategies[-1]
    h = torch.randn(50, 30).abs()
    by_task = inference._analytic_choice(h, 3)
    gram, corr = inference.analytic_gram, inference.analytic_targets
    lam = inference.ridge * float(gram.diagonal().mean())
    tasks = corr.view(30, 3, 2).sum(2)  # one-hot task targets: the class columns summed
    head = torch.linalg.solve(gram + lam * torch.eye(30, dtype=gram.dtype), tasks)
    assert torch.equal(by_task, (h.double() @ head).argmax(1))


def test_analytic_leaves_the_task_scenario_alone():
    _, plain = _run("develop", scenario="task")
    learner, inferred = _run("develop+task-inference", scenario="task",
                             params={"task-inference": {"score": "analytic"}})
    assert plain["accuracy_matrix"] == inferred["accuracy_matrix"]
    assert "analytic_gram" not in dict(learner.strategies[-1].named_buffers())


@pytest.mark.parametrize("params, message", [
    ({"expand": -1}, "expand must be an integer >= 0"),
    ({"expand": 2.5}, "expand must be an integer >= 0"),
    ({"ridge": 0}, "ridge must be a number > 0"),
    ({"ridge": "small"}, "ridge must be a number > 0"),
    ({"source": "pixels"}, "source must be one of"),
    ({"targets": "both"}, "targets must be one of"),
])
def test_bad_analytic_parameters_are_named(params, message):
    with pytest.raises(ValueError, match=message):
        TaskInference(**params)


def test_analytic_from_the_cli(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["run", "-b", "split-digits", "--scenario", "class", "-m", "ann-mlp",
            "--model-param", "hidden=16", "--samples-per-task", "40", "--test-samples-per-task",
            "20", "--epochs", "1", "-s", "develop+task-inference", "-q", "--out", str(out),
            "-p", "task-inference.score=analytic", "-p", "task-inference.expand=50"]
    assert main(args) == 0
    record = json.loads((out / "results.json").read_text())["tasks"][-1]["task_inference"]
    assert record["score"] == "analytic" and record["statistics_floats"] == 50 * 50 + 50 * 10 + 20
    capsys.readouterr()
    assert main(["show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert (f"task inference (analytic): task predicted right "
            f"{100 * record['task_accuracy']:.1f}% after the last task") in shown
    assert main(args[:-2] + ["-p", "task-inference.expand=-3", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "expand must be an integer >= 0, got -3" in err[0]


def test_list_task_inference_is_in_step_with_docs_results():
    """Every ``-p task-inference.KEY=VALUE`` in docs/results.md names a parameter that
    ``neurosculpt list task-inference`` prints, with the value it can take."""
    import re
    from pathlib import Path

    from neurosculpt.strategies.describe import parameters

    text = (Path(__file__).parents[1] / "docs" / "results.md").read_text()
    used = set(re.findall(r"task-inference\.(\w+)=", text))
    known = {p["name"] for p in parameters("task-inference") if p["doc"]}
    assert {"score", "source", "expand", "targets", "ridge"} <= used <= known
    default = re.search(r"^- `(\w[\w-]*)` \(default\)", text, re.M).group(1)
    assert default == TaskInference().score
