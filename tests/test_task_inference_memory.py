"""Issue 19, section 2 with a replay memory: the task probe fitted on the memory (``probe``,
``ratio-probe``) and the memory's samples as each head's "none of mine" negatives."""

from __future__ import annotations

import json

import pytest
import torch
from tiny_streams import assert_restored_predicts_alike, cluster_learner

from neurosculpt.cli import main
from neurosculpt.loop import Learner
from neurosculpt.strategies.task_inference import MEMORY_SCORES, TaskInference


def _learner(strategy: str, params: dict | None = None, scenario: str = "class",
             kind: str = "ann-mlp") -> Learner:
    return cluster_learner(strategy, {"replay": {"buffer_size": 30}, **(params or {})},
                           scenario, kind=kind)


@pytest.mark.parametrize("kind", ["ann-mlp", "snn-mlp"])
@pytest.mark.parametrize("score", MEMORY_SCORES)
def test_memory_scores_find_the_task(score, kind):
    learner = _learner("develop+replay+task-inference", {"task-inference": {"score": score}},
                       kind=kind)
    shapes = []
    result = learner.run(on_task_end=lambda ln: shapes.append(
        tuple(ln.strategies[-1].probe_coef.shape) if hasattr(ln.strategies[-1], "probe_coef")
        else None))
    record = result["tasks"][-1]["task_inference"]
    assert record["score"] == score and record["task_accuracy"] > 0.75  # chance: 1/3
    assert record["forward_passes_per_sample"] == 3.0  # every subnetwork, every sample
    assert record["statistics_floats"] > 0
    # re-fitted at every task end over the features of every subnetwork so far
    assert shapes[0] is None and [s[1] for s in shapes[1:]] == [2, 3]
    assert shapes[2][0] > shapes[1][0]


def test_probe_reads_the_memory_of_earlier_tasks_and_the_whole_current_task():
    learner = _learner("develop+replay+task-inference", {"task-inference": {"score": "probe"}})
    learner.run()
    inference, replay = learner.strategies[-1], learner.strategies[1]
    _, _, stored = replay.memory()
    learner.model.eval()
    features, tasks = inference._probe_inputs(learner.ctx, 2)
    assert torch.equal(torch.unique(tasks), torch.tensor([0, 1, 2]))
    assert int((tasks == 2).sum()) == len(learner.benchmark.tasks[2].train)
    assert int((tasks < 2).sum()) == int((stored < 2).sum()) > 0
    assert features.shape[1] == inference.probe_coef.shape[0]


def test_ratio_probe_without_weight_is_the_soft_ratio_cascade():
    learner = _learner("develop+replay+task-inference",
                       {"task-inference": {"score": "ratio-probe", "probe_weight": 0.0}})
    learner.run()
    inference = learner.strategies[-1]
    x, _ = learner.benchmark.tasks[1].test.get(torch.arange(20))
    learner.model.eval()
    with torch.no_grad():
        scores, _ = inference._memory_scores(learner.ctx, x, 3)
        _, feats = inference._all_features(learner.ctx, x, 3)
        soft = inference._soft_ratio(feats, 3)
    assert torch.allclose(scores, soft)
    assert torch.allclose(soft.exp().sum(1), torch.ones(20), atol=1e-5)  # a distribution


def test_memory_scores_and_negatives_need_a_replay_memory():
    for params, what in (({"score": "probe"}, "score=probe"),
                         ({"negatives": "memory"}, "negatives=memory")):
        learner = _learner("develop+task-inference", {"task-inference": params})
        with pytest.raises(ValueError, match=f"{what} needs a replay memory"):
            learner.run()


def test_memory_negatives_change_training_in_the_class_scenario_only():
    losses = {}
    for scenario in ("class", "task"):
        for negatives in ("none", "memory"):
            learner = _learner("develop+replay+task-inference",
                               {"task-inference": {"score": "energy", "negatives": negatives}},
                               scenario=scenario)
            losses[scenario, negatives] = [t["loss"] for t in learner.run()["tasks"]]
    assert losses["class", "none"][0] == losses["class", "memory"][0]  # no memory in task 0
    assert losses["class", "none"][1:] != losses["class", "memory"][1:]
    assert losses["task", "none"] == losses["task", "memory"]


@pytest.mark.parametrize("params", [{"score": "ratio-probe"}, {"score": "analytic", "expand": 30}])
def test_score_state_survives_a_checkpoint(params):
    learner = _learner("develop+replay+task-inference", {"task-inference": params})
    learner.run()
    assert_restored_predicts_alike(learner)


def test_cli_run_folder_with_the_probe(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["run", "-b", "split-digits", "-m", "ann-mlp", "--model-param", "hidden=16",
            "--samples-per-task", "40", "--test-samples-per-task", "20", "--epochs", "1",
            "--scenario", "class", "-q", "--out", str(out)]
    assert main([*args, "-s", "develop+replay+task-inference", "-p", "replay.buffer_size=30",
                 "-p", "task-inference.score=ratio-probe", "-p",
                 "task-inference.probe_weight=1"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["tasks"][-1]["task_inference"]["score"] == "ratio-probe"
    assert results["config"]["strategy_params"]["task-inference"]["probe_weight"] == 1.0
    assert main([*args[:-1], str(tmp_path / "bad"), "-s", "develop+task-inference",
                 "-p", "task-inference.score=probe"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "score=probe needs a replay memory" in err[0]


def test_bad_probe_parameters_are_named():
    for params, message in (({"probe_l2": -1}, "probe_l2 must be >= 0"),
                            ({"probe_weight": -0.5}, "probe_weight must be >= 0"),
                            ({"negatives": "stored"}, "negatives must be one of")):
        with pytest.raises(ValueError, match=message):
            TaskInference(**params)
