"""Run folders: their files, strict JSON, safe checkpoints, and resuming after a crash (even a
real ``kill -9``) ending with exactly the results of an uninterrupted run."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from run_folders import simulate_crash

from neurosculpt import RunConfig, run, runs
from neurosculpt.strategies import available, hyper_parameters, make_strategies
from neurosculpt.strategies.base import Strategy
from neurosculpt.validation import UserError


def _strict_json(path: Path) -> dict:
    def reject(name):
        raise ValueError(f"{name} in {path}")

    return json.loads(path.read_text(), parse_constant=reject)


def _no_temp_files(folder: Path) -> None:
    leftovers = [p for p in folder.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]
    assert leftovers == []


def test_run_folder_contents(tmp_path, quick_run):
    out = tmp_path / "run"
    result = run(quick_run, out=out)
    assert sorted(p.name for p in out.iterdir()) == [
        "checkpoints", "config.json", "metrics.csv", "results.json"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["task_004.pt"]
    _no_temp_files(out)

    results = _strict_json(out / "results.json")
    assert results["status"] == "complete" and results["error"] is None
    assert {"accuracy_matrix", "metrics", "tasks", "config", "benchmark",
            "random_init_accuracy"} <= set(results)
    assert {"acc", "bwt", "fwt", "forgetting", "learning_acc"} <= set(results["metrics"])
    assert 0 < results["cpu_time_s"] and 0 < results["wall_time_s"]
    assert results["accuracy_matrix"] == result.accuracy_matrix
    assert len(results["accuracy_matrix"]) == 5 and len(results["tasks"]) == 5
    assert results["metrics"]["acc"] == pytest.approx(
        sum(results["accuracy_matrix"][-1]) / 5)
    config = _strict_json(out / "config.json")
    assert results["config"] == config
    assert config["model_params"]["hidden"] == [32, 32] and config["epochs"] == 1
    assert config["strategy_params"] == {"naive": {}}

    with (out / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["task"]) for r in rows] == list(range(5))
    assert [float(r["accuracy"]) for r in rows] == [t["accuracy"] for t in results["tasks"]]

    state = torch.load(out / "checkpoints" / "task_004.pt", weights_only=True)
    assert state["task"] == 4 and state["format"] == runs.CHECKPOINT_FORMAT
    assert state["learner"]["accuracy"] == results["accuracy_matrix"]
    assert torch.equal(state["model"]["layers.0.weight"], result.model.layers[0].weight)


def test_single_task_metrics_are_null_not_nan(tmp_path, quick_run):
    run({**quick_run, "benchmark": "permuted-digits", "tasks": 1}, out=tmp_path)
    results = _strict_json(tmp_path / "results.json")
    assert results["metrics"]["bwt"] is None


class _Grow(Strategy):
    """Adds four units to the first hidden layer before every task; keeps a buffer whose
    shape changes and Python state, both of which must come back from a checkpoint."""

    name = "grow"

    def __init__(self) -> None:
        super().__init__()
        self.grown = 0

    def before_task(self, ctx) -> None:
        ctx.model.grow_units(0, 4, ctx.optimizer)
        self.grown += 4
        self.set_buffer("sizes", torch.tensor(ctx.model.hidden_sizes()[:1] * (ctx.task_id + 1)))

    def get_extra_state(self) -> dict:
        return {"grown": self.grown}

    def set_extra_state(self, state: dict) -> None:
        self.grown = state["grown"]


def _assert_same_run(a, b) -> None:
    assert a.accuracy_matrix == b.accuracy_matrix
    assert a.metrics == b.metrics
    assert [t["loss"] for t in a.results["tasks"]] == [t["loss"] for t in b.results["tasks"]]
    assert a.model.hidden_sizes() == b.model.hidden_sizes()
    for (name, x), (_, y) in zip(a.model.state_dict().items(), b.model.state_dict().items(),
                                 strict=True):
        assert torch.equal(x, y), name


@pytest.mark.parametrize("grow", [False, True], ids=["naive", "growing"])
@pytest.mark.parametrize("finished", [0, 3])
def test_resume_repeats_the_uninterrupted_run(tmp_path, quick_run, monkeypatch, grow, finished):
    if grow:  # shapes differ from a fresh model; Adam moments of grown tensors are carried
        monkeypatch.setattr(runs, "make_strategies", lambda spec, params, log=None: [_Grow()])
        quick_run["reset_optimizer"] = False
    quick_run["keep_checkpoints"] = True  # every task's, to cut the run after any of them
    full = run(quick_run, out=tmp_path / "full")
    simulate_crash(tmp_path / "full", tmp_path / "cut", finished)
    resumed = runs.resume(tmp_path / "cut")
    _assert_same_run(resumed, full)
    if grow:
        assert resumed.model.hidden_sizes() == [32 + 4 * 5, 32]
        assert resumed.strategies[0].grown == 4 * 5  # restored from the checkpoint, then grown
        assert resumed.strategies[0].sizes.tolist() == [52] * 5
    results = _strict_json(tmp_path / "cut" / "results.json")
    assert results["status"] == "complete" and len(results["tasks"]) == 5
    _no_temp_files(tmp_path / "cut")


def test_keep_checkpoints_keeps_every_task(tmp_path, quick_run):
    run({**quick_run, "keep_checkpoints": True}, out=tmp_path)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        f"task_{k:03d}.pt" for k in range(5)]


def test_resume_of_a_finished_run_changes_nothing(tmp_path, quick_run):
    full = run(quick_run, out=tmp_path)
    again = runs.resume(tmp_path)
    assert again.accuracy_matrix == full.accuracy_matrix and again.metrics == full.metrics


def test_latest_checkpoint_orders_by_task_number(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for k in (998, 999, 1000):
        (folder / f"task_{k:03d}.pt").touch()
    (folder / ".task_1001.pt.x.tmp").touch()
    assert runs.latest_checkpoint(tmp_path).name == "task_1000.pt"


@pytest.mark.skipif(os.name != "posix", reason="needs SIGKILL")
def test_kill_9_then_resume(tmp_path, quick_run):
    out = tmp_path / "killed"
    args = ["run", "-b", "split-digits", "-m", "ann-mlp", "--epochs", "5", "--batch-size", "32",
            "--lr", "0.005", "--model-param", "hidden=32,32", "--threads", "1", "--quiet",
            "--out", str(out)]
    proc = subprocess.Popen([sys.executable, "-m", "neurosculpt.cli", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    def checkpointed() -> bool:
        return any((out / "checkpoints").glob("task_*.pt"))

    deadline = time.monotonic() + 60
    while not checkpointed() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert checkpointed(), proc.stderr.read().decode()
    if proc.returncode == 0:
        pytest.skip("the run finished before it could be killed")
    assert proc.returncode == -signal.SIGKILL
    assert _strict_json(out / "results.json")["status"] == "running"

    resumed = runs.resume(out)
    reference = run({**quick_run, "epochs": 5, "samples_per_task": None,
                     "test_samples_per_task": None, "model_params": {"hidden": [32, 32]}},
                    out=tmp_path / "reference")
    _assert_same_run(resumed, reference)


def test_unknown_toml_key_is_named(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('benchmark = "split-digits"\nepoch = 3\n\n[model_params]\nhidden = [8]\n')
    values = runs.load_toml(path)
    assert values["model_params"] == {"hidden": [8]}
    with pytest.raises(ValueError, match=r"\['epoch'\] in .*run\.toml.*epochs"):
        RunConfig.from_dict(values, source=str(path))
    with pytest.raises(FileNotFoundError, match="missing.toml"):
        runs.load_toml(tmp_path / "missing.toml")
    bad_model = RunConfig.from_dict({"model_params": {"hiden": 3}})
    with pytest.raises(ValueError, match=r"\['hiden'\].*hidden"):
        bad_model.model_config()


def test_write_json_is_atomic_and_strict(tmp_path):
    path = tmp_path / "x.json"
    runs.write_json(path, {"a": [1.0, float("nan"), float("inf")], "t": torch.tensor([1, 2])})
    assert _strict_json(path) == {"a": [1.0, None, None], "t": [1, 2]}
    with pytest.raises(TypeError):
        runs.write_json(path, {"a": object()})
    assert _strict_json(path)["t"] == [1, 2]  # the old file survives a failed write
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_unreadable_checkpoint_names_the_file(tmp_path):
    path = tmp_path / "task_000.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="task_000.pt cannot be read; delete it"):
        runs.load_checkpoint(path)


@pytest.mark.parametrize("name", available())
def test_every_strategy_rebuilds_from_its_recorded_parameters(name):
    """``resume`` rebuilds strategies from ``config.json``'s ``strategy_params``: the recorded
    parameters must be JSON and must rebuild the same strategy under its registry name."""
    built = make_strategies(name)
    recorded = json.loads(json.dumps(hyper_parameters(built)))
    assert list(recorded) == [name]
    rebuilt = make_strategies(name, recorded)
    assert hyper_parameters(rebuilt) == recorded


def test_resume_when_a_later_strategy_removes_units_after_ewc_recorded(tmp_path, quick_run):
    """The controller removes units in its after_task, after EWC stored its records: EWC
    follows the journal before the checkpoint (after_eval), so the resumed run, whose journal
    starts empty, repeats the uninterrupted one."""
    quick_run.update(strategy="ewc+neuroplastic", keep_checkpoints=True, strategy_params={
        "ewc": {"fisher_samples": 8},
        "neuroplastic": {"actions": "renew,reinit,prune", "maturity": 1, "prune_utility": 2.0,
                         "min_units": 4, "check_every": 0, "log_every": 0, "every": 1}})
    full = run(quick_run, out=tmp_path / "full")
    removed = [d for t in full.results["tasks"] for d in t["plasticity"]["decisions"]
               if d["action"] == "prune" and d["n"] > 0]
    assert removed, "the controller should remove units at task ends"
    simulate_crash(tmp_path / "full", tmp_path / "cut", 2)
    _assert_same_run(runs.resume(tmp_path / "cut"), full)


def test_run_files_get_the_umask_mode_not_mkstemp_private(tmp_path):
    import os
    import stat

    from neurosculpt.runs import _UMASK, write_json

    write_json(tmp_path / "results.json", {"a": 1})
    mode = stat.S_IMODE(os.stat(tmp_path / "results.json").st_mode)
    assert mode == 0o666 & ~_UMASK


def test_a_loaded_network_evaluates_the_subnetworks_of_the_saved_one():
    """The layers' training task is Python state; loading a state_dict restores it from the
    ``current_task`` buffer, so an earlier task's subnetwork hides the later tasks' synapses."""
    from neurosculpt.models import build_model

    def net():
        torch.manual_seed(0)
        return build_model({"kind": "ann-mlp", "hidden": (8,)}, (4,), 2)

    saved = net()
    layer = saved.plastic_layers[0]
    layer.owner[:, :2] = 0  # task 0 owns two input columns, task 1 the rest
    layer.owner[:, 2:] = 1
    saved.set_training_task(2)
    loaded = net()
    loaded.load_state_dict(saved.state_dict())
    x = torch.randn(5, 4)
    for model in (saved, loaded):
        model.eval()
        model.set_task(0)
    stale = net()  # the same weights with the layers' default training task: the union
    stale.eval()
    stale.set_task(0)
    with torch.no_grad():
        assert torch.equal(saved(x), loaded(x))
        assert not torch.equal(saved(x), stale(x))
