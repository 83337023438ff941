"""Task inference (``strategies/task_inference.py``) on networks the adapter built from users'
modules: the snnTorch MLP, the residual network with BatchNorm and the transformer of
``examples/``, under ``develop`` and ``packnet``, on generated clusters (class scenario)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from expected_warnings import AT_CHANCE
from run_folders import simulate_crash
from tiny_streams import clusters

import neurosculpt
from neurosculpt.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
# name: (factory spec, sample shape of the 12 cluster features, model parameters)
MODELS = {
    "snntorch": (f"{EXAMPLES / 'snntorch_mlp.py'}:factory", (12,),
                 {"hidden": [32, 32], "steps": 5}),
    "resnet": (f"{EXAMPLES / 'resnet_bn.py'}:factory", (3, 2, 2),
               {"channels": 8, "inner": 8, "blocks": 1}),
    "transformer": (f"{EXAMPLES / 'transformer.py'}:build", (4, 3),
                    {"d_model": 16, "heads": 2, "hidden": 16, "blocks": 1}),
}
TASKS = 3
CHANCE = 1 / TASKS


def _run(model: str, strategy: str, scenario: str = "class", params: dict | None = None,
         epochs: int = 3) -> dict:
    spec, shape, model_params = MODELS[model]
    bench = clusters(TASKS, scenario, per_class=40, dim=12, seed=1, shape=shape)
    result = neurosculpt.run(benchmark=bench, strategy=strategy, model=spec,
                             model_params=model_params, epochs=epochs, batch_size=16, lr=5e-3,
                             progress=False, threads=1, strategy_params=params or {})
    return result.results


def _check_record(results: dict, score: str) -> dict:
    """The last evaluation's task-inference record, checked against the accuracy matrix: a
    sample classified right was given its own task (every task owns its outputs), so the
    final accuracy cannot exceed the task-prediction accuracy."""
    record = results["tasks"][-1]["task_inference"]
    assert record["score"] == score
    assert set(record["task_accuracy_per_task"]) == {str(t) for t in range(TASKS)}
    assert 0.0 <= record["task_accuracy"] <= 1.0
    final = results["accuracy_matrix"][-1]
    assert sum(final) / len(final) <= record["task_accuracy"] + 1e-9
    assert record["forward_passes_per_sample"] >= 1.0
    assert record["backward_passes_per_sample"] == (1 if score == "gradient" else 0)
    return record


@pytest.mark.parametrize("score", ["ratio", "gaussian"])
@pytest.mark.parametrize("base", ["develop", "packnet"])
@pytest.mark.parametrize("model", list(MODELS))
def test_feature_scores_find_the_task_of_adapted_networks(model, base, score):
    results = _run(model, f"{base}+task-inference", params={"task-inference": {"score": score}})
    record = _check_record(results, score)
    # 120 test samples: 0.5 is more than 3 standard deviations above chance (1/3)
    assert record["task_accuracy"] > 0.5
    assert results["tasks"][0]["task_inference"]["statistics_floats"] > 0


@pytest.mark.parametrize("source", ["input", "subnetwork"])
@pytest.mark.parametrize("model", list(MODELS))
def test_analytic_score_finds_the_task_of_adapted_networks(model, source):
    """The default score, from the raw input (any sample shape, flattened) or from subnetwork
    0's features (convolutional channels at every position, token features)."""
    params = {"task-inference": {"score": "analytic", "source": source, "expand": 64}}
    results = _run(model, "develop+task-inference", params=params)
    record = _check_record(results, "analytic")
    assert record["task_accuracy"] > 0.5
    assert record["statistics_floats"] >= 64 * 64


# the union network trains every new task against the old heads (training accuracy near 0 on
# these 15-step tasks), so a task the score sends elsewhere ends at chance, and the run says so
@pytest.mark.filterwarnings(f"ignore:{AT_CHANCE}:UserWarning")
@pytest.mark.parametrize("score", ["energy", "gradient"])
@pytest.mark.parametrize("base", ["develop", "packnet"])
@pytest.mark.parametrize("model", list(MODELS))
def test_logit_and_gradient_scores_run_on_adapted_networks(model, base, score):
    """Energy and SupSup's gradient score are weaker on these tiny streams (near or below
    chance for some pairs, as on the built-in models), so only their records are checked."""
    _check_record(_run(model, f"{base}+task-inference",
                       params={"task-inference": {"score": score}}), score)


@pytest.mark.parametrize("base", ["develop", "packnet"])
@pytest.mark.parametrize("model", list(MODELS))
def test_task_scenario_is_unchanged_on_adapted_networks(model, base):
    plain = _run(model, base, scenario="task", epochs=1)
    inferred = _run(model, f"{base}+task-inference", scenario="task", epochs=1)
    assert plain["accuracy_matrix"] == inferred["accuracy_matrix"]
    assert "task_inference" not in inferred["tasks"][-1]


def test_task_inference_on_a_factory_model_from_the_command_line(tmp_path):
    """Through the command line, with a run folder; a run killed after the first task and
    resumed (the statistics come back from the checkpoint) repeats the uninterrupted one."""
    stream = tmp_path / "stream.py"
    stream.write_text("from tiny_streams import clusters\n"
                      "def stream():\n"
                      "    return clusters(3, 'class', per_class=40, dim=12, seed=1, "
                      "shape=(3, 2, 2))\n")
    out = tmp_path / "run"
    assert main(["run", "-b", f"{stream}:stream", "-m", MODELS["resnet"][0],
                 "--model-param", "channels=8", "--model-param", "inner=8",
                 "--model-param", "blocks=1", "-s", "packnet+task-inference",
                 "-p", "task-inference.score=gaussian", "--epochs", "3", "--batch-size", "16",
                 "--lr", "0.005", "--threads", "1", "--keep-checkpoints", "-q",
                 "-o", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["model"] == MODELS["resnet"][0]
    record = _check_record(results, "gaussian")
    assert record["task_accuracy"] > 0.5
    simulate_crash(out, tmp_path / "cut", 1)
    assert main(["run", "--resume", str(tmp_path / "cut"), "-q"]) == 0
    resumed = json.loads((tmp_path / "cut" / "results.json").read_text())
    assert resumed["accuracy_matrix"] == results["accuracy_matrix"]
    for a, b in zip(resumed["tasks"], results["tasks"], strict=True):
        a, b = a["task_inference"], b["task_inference"]
        assert a.pop("time_per_sample_ms") > 0 and b.pop("time_per_sample_ms") > 0
        assert a == b
