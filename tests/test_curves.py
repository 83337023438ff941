"""Per-step curves: curves.csv and TensorBoard files written by the loop's observer."""

from __future__ import annotations

import csv
import json

import pytest
from expected_warnings import AT_CHANCE, SHORT_TASK

from neurosculpt import read_results, resume, run
from neurosculpt.cli import main

# random labels in 30-step tasks: the chance-level warning and neuroplastic's short-task warning
# are expected here (the runs sit in module fixtures, so they are filtered, not asserted)
pytestmark = [pytest.mark.filterwarnings(f"ignore:{pattern}:UserWarning")
              for pattern in (AT_CHANCE, SHORT_TASK)]

CONFIG = {"benchmark": "random-label-digits", "tasks": 2, "steps": 30, "batch_size": 16,
          "model": "ann-mlp", "model_params": {"hidden": [16, 16]}, "strategy": "neuroplastic",
          "strategy_params": {"log_every": 10, "every": 1}, "samples_per_task": 64,
          "test_samples_per_task": 40, "threads": 1, "progress": False,
          "keep_checkpoints": True}


def _rows(folder) -> list[dict]:
    with (folder / "curves.csv").open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    pytest.importorskip("tensorboard")
    folder = tmp_path_factory.mktemp("curves") / "run"
    run({**CONFIG, "curves": ["csv", "tensorboard"]}, out=folder)
    return folder


def test_csv_holds_every_step_signal_decision_and_accuracy(logged):
    rows = _rows(logged)
    results = read_results(logged)
    losses = [r for r in rows if r["tag"] == "train/loss"]
    assert [int(r["step"]) for r in losses] == list(range(60))
    signals = [e for t in results["tasks"] for e in t["plasticity"]["signals"]]
    dormant = [r for r in rows if r["tag"] == "signals/dormant/layer0"]
    assert [(int(r["step"]), float(r["value"])) for r in dormant] == [
        (e["step"], e["layers"][0]["dormant"]) for e in signals]
    decisions = [d for t in results["tasks"] for d in t["plasticity"]["decisions"]]
    logged_decisions = [r for r in rows if r["tag"].startswith("decisions/")]
    assert sum(int(float(r["value"])) for r in logged_decisions) == sum(
        d["n"] for d in decisions)
    for i, row in enumerate(results["accuracy_matrix"]):
        for j, acc in enumerate(row):
            found = [r for r in rows if r["tag"] == f"accuracy/task{j}" and r["task"] == str(i)]
            assert [float(r["value"]) for r in found] == [acc]
    units = [r for r in rows if r["tag"] == "structure/units/layer0"]
    assert [int(float(r["value"])) for r in units] == [
        t["units"][0] for t in results["tasks"]]


def test_tensorboard_events_match_the_csv(logged):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(logged / "tensorboard"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"train/loss", "signals/erank/layer1", "accuracy/task1",
            "structure/live_synapses"} <= set(tags)
    loss = [(e.step, e.value) for e in events.Scalars("train/loss")]
    from_csv = [(int(r["step"]), float(r["value"])) for r in _rows(logged)
                if r["tag"] == "train/loss"]
    assert [s for s, _ in loss] == [s for s, _ in from_csv]
    assert [v for _, v in loss] == pytest.approx([v for _, v in from_csv], rel=1e-6)


def test_resumed_run_logs_the_curves_of_an_uninterrupted_one(logged, tmp_path):
    folder = tmp_path / "run"
    run({**CONFIG, "curves": ["csv"]}, out=folder)
    full = (folder / "curves.csv").read_text()
    assert full == "".join(  # the same rows as the run that also wrote TensorBoard files
        (logged / "curves.csv").read_text())
    # stop after task 0: later checkpoint gone, results say running, curves of task 1 half there
    (folder / "checkpoints" / "task_001.pt").unlink()
    results = read_results(folder)
    (folder / "results.json").write_text(json.dumps({
        **results, "status": "running", "accuracy_matrix": results["accuracy_matrix"][:1],
        "tasks": results["tasks"][:1]}))
    lines = full.splitlines(keepends=True)
    cut = next(k for k, line in enumerate(lines) if ",1,train/loss," in line) + 5
    (folder / "curves.csv").write_text("".join(lines[:cut]))
    resume(folder)
    assert (folder / "curves.csv").read_text() == full


def test_bad_log_requests(tmp_path, capsys):
    with pytest.raises(ValueError, match="run folder"):
        run({**CONFIG, "curves": ["csv"]})
    with pytest.raises(ValueError, match="unknown curve log"):
        run({**CONFIG, "curves": ["wandb"]}, out=tmp_path / "x")
    with pytest.raises(SystemExit):
        main(["run", "--log", "wandb"])
    assert "invalid choice" in capsys.readouterr().err
