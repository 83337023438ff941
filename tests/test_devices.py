"""Devices: ``--device`` / ``RunConfig.device``, tensors that follow the model's device, and
checkpoints that load onto the run's device.

Only ``cpu`` exists on the machines these tests were written on; the tests parametrised by
:func:`neurosculpt.devices.available_devices` also run on ``cuda`` / ``mps`` where present. To
catch a tensor created on the CPU by default without a GPU, the loop runs with torch's default
device set to ``meta`` while the model and the data stay on the CPU: any tensor made without an
explicit device (``torch.zeros(n)``) lands on ``meta`` and the first operation mixing it with
the model's tensors fails.
"""

from __future__ import annotations

import json

import pytest
import torch
from run_folders import simulate_crash

import neurosculpt
from neurosculpt import runs
from neurosculpt.cli import main
from neurosculpt.devices import available_devices, resolve_device

FEW = {"ewc": {"fisher_samples": 4}, "online-ewc": {"fisher_samples": 4}, "mas": {"samples": 4},
       "dropin": {"dropout": 0.2, "every": 5}, "neuroplastic": {
           "check_every": 5, "maturity": 2, "plateau_window": 2, "replacement_rate": 0.05}}
QUICK = {"benchmark": "split-digits", "model": "snn-mlp", "steps": 6, "batch_size": 16,
         "samples_per_task": 32, "test_samples_per_task": 16, "progress": False,
         "energy_samples": 8, "model_params": {"hidden": (12, 12), "steps": 2}, "tasks": 5}


@pytest.mark.parametrize("device", available_devices())
@pytest.mark.parametrize("strategy", ["ewc", "replay", "develop"])
def test_run_and_resume_on_each_device(tmp_path, device, strategy):
    full = neurosculpt.run({**QUICK, "strategy": strategy, "device": device,
                            "strategy_params": FEW.get(strategy, {}), "keep_checkpoints": True},
                           out=tmp_path / "full")
    assert all(p.device.type == torch.device(device).type for p in full.model.parameters())
    assert json.loads((tmp_path / "full" / "config.json").read_text())["device"] == device
    state = torch.load(tmp_path / "full" / "checkpoints" / "task_004.pt", weights_only=True,
                       map_location="cpu")
    assert state["task"] == 4
    simulate_crash(tmp_path / "full", tmp_path / "cut", 2)
    resumed = runs.resume(tmp_path / "cut")
    assert resumed.accuracy_matrix == full.accuracy_matrix
    assert resumed.metrics == full.metrics


@pytest.mark.parametrize("device", available_devices())
def test_checkpoints_load_onto_the_runs_device(tmp_path, device):
    neurosculpt.run({**QUICK, "strategy": "ewc", "tasks": 2, "strategy_params": FEW["ewc"]},
                    out=tmp_path)
    checkpoint = runs.latest_checkpoint(tmp_path)
    for target in (device, "meta"):  # meta: proves map_location is the run's, not "cpu"
        state = runs.load_checkpoint(checkpoint, target)
        tensors = [v for v in state["model"].values() if torch.is_tensor(v)]
        tensors += [v for s in state["strategies"] for v in s.values() if torch.is_tensor(v)]
        assert tensors and all(t.device.type == torch.device(target).type for t in tensors)


def test_resume_moves_a_run_to_another_device(tmp_path):
    full = neurosculpt.run({**QUICK, "strategy": "si", "keep_checkpoints": True},
                           out=tmp_path / "full")
    simulate_crash(tmp_path / "full", tmp_path / "cut", 3)
    target = available_devices()[-1]  # cpu here; a GPU where there is one
    resumed = runs.resume(tmp_path / "cut", device=target)
    assert json.loads((tmp_path / "cut" / "config.json").read_text())["device"] == target
    if target == "cpu":
        assert resumed.accuracy_matrix == full.accuracy_matrix
    else:  # another device rounds differently: the same stream, close results
        assert len(resumed.accuracy_matrix) == len(full.accuracy_matrix)


STRATEGIES = ["naive", "ewc", "online-ewc", "si", "mas", "lwf", "replay", "packnet", "develop",
              "dsd", "dropin", "cbp", "redo", "shrink-perturb", "l2-init", "neuroplastic",
              "develop+neuroplastic"]


# the class scenario's masks and heads once for the strategies that treat it apart
CASES = [(s, "task", None) for s in STRATEGIES] + [
    (s, "class", None) for s in ("naive", "lwf", "replay", "develop", "neuroplastic")] + [
    # task inference acts in the class scenario only: its statistics, projection and probe
    ("develop+task-inference", "class", {"task-inference": {"expand": 16}}),
    ("develop+task-inference", "class", {"task-inference": {"score": "ratio"}}),
    ("develop+replay+task-inference", "class",
     {"replay": {"buffer_size": 16}, "task-inference": {"score": "ratio-probe"}})]


@pytest.mark.parametrize(("strategy", "scenario", "params"), CASES)
def test_no_tensor_is_created_off_the_models_device(strategy, scenario, params):
    bench = neurosculpt.make_benchmark("split-digits", scenario=scenario, samples_per_task=32,
                                       test_samples_per_task=16)
    model = neurosculpt.build_model(neurosculpt.ModelConfig("snn-mlp", hidden=(12, 12),
                                                            steps=2),
                                    bench.input_shape, bench.n_outputs)
    if params is None:
        params = FEW.get(strategy, {}) if "+" not in strategy else {
            "neuroplastic": FEW["neuroplastic"]}
    strategies = neurosculpt.strategies.make_strategies(strategy, params)
    learner = neurosculpt.Learner(model, bench, strategies, neurosculpt.TrainConfig(
        steps=12, batch_size=8, progress=False, energy_samples=8))
    with torch.device("meta"):
        learner.run()
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert all(b.device.type == "cpu" for s in strategies for b in s.buffers())


def test_domain_stream_and_conv_model_create_nothing_off_device():
    bench = neurosculpt.make_benchmark("permuted-digits", n_tasks=2, samples_per_task=32,
                                       test_samples_per_task=16, scenario="domain")
    model = neurosculpt.build_model(neurosculpt.ModelConfig("snn-conv", channels=(4,),
                                                            hidden=(8,), steps=2),
                                    bench.input_shape, bench.n_outputs)
    strategies = neurosculpt.strategies.make_strategies("replay+ewc", {"ewc": FEW["ewc"]})
    learner = neurosculpt.Learner(model, bench, strategies, neurosculpt.TrainConfig(
        steps=4, batch_size=8, progress=False, energy_samples=8))
    with torch.device("meta"):
        learner.run()


def test_absent_devices_are_a_one_line_error(capsys, tmp_path):
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="not a device name"):
        resolve_device("gpu0")
    if "cuda" not in available_devices():
        with pytest.raises(ValueError, match="no CUDA GPU; available: cpu"):
            resolve_device("cuda:1")
        assert main(["run", "-b", "split-digits", "--device", "cuda", "--quiet",
                     "-o", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert "device 'cuda'" in err and len(err.strip().splitlines()) == 1
    if "mps" not in available_devices():
        with pytest.raises(ValueError, match="MPS"):
            resolve_device("mps")


def test_cli_resume_may_name_the_device(tmp_path, capsys):
    args = ["run", "-b", "split-digits", "-m", "ann-mlp", "--model-param", "hidden=8",
            "--steps", "3", "--tasks", "2", "--samples-per-task", "32", "--quiet"]
    assert main([*args, "--device", "cpu", "--keep-checkpoints", "-o", str(tmp_path)]) == 0
    first = capsys.readouterr().out
    (tmp_path / "checkpoints" / "task_001.pt").unlink()
    assert main(["run", "--resume", str(tmp_path), "--device", "cpu", "--quiet"]) == 0
    assert capsys.readouterr().out.splitlines()[:4] == first.splitlines()[:4]
