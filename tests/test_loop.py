"""The training loop: it learns, it is deterministic, hooks run in the documented order,
divergence stops the run with a clear message, ``steps`` and ``eval_scope`` do what they say."""

from __future__ import annotations

import json
import math

import pytest
import torch

from neurosculpt import TrainingDiverged, build_model, make_benchmark, run
from neurosculpt.loop import Learner, TrainConfig
from neurosculpt.strategies.base import Naive, Strategy


def _learner(bench, kind: str, model_params: dict, strategies=None, **config) -> Learner:
    torch.manual_seed(config.get("seed", 0))
    model = build_model({"kind": kind, **model_params}, bench.input_shape, bench.n_outputs,
                        sequence=bench.sequence)
    cfg = TrainConfig(**{"batch_size": 32, "lr": 5e-3, "progress": False, **config})
    return Learner(model, bench, strategies or [Naive()], cfg)


@pytest.mark.parametrize("kind", ["ann-mlp", "snn-mlp"])
def test_split_digits_is_learned(digits, kind, tiny_model):
    learner = _learner(digits, kind, tiny_model, epochs=3)
    summary = learner.run()
    diagonal = [summary["accuracy_matrix"][k][k] for k in range(len(digits))]
    assert min(diagonal) > 0.8
    assert summary["metrics"]["learning_acc"] > 0.9
    # the untrained model is at chance on two-class tasks
    assert max(summary["random_init_accuracy"]) < 0.75
    assert len(learner.tasks) == 5 and learner.tasks[-1]["train"][0]["steps"] == 27


def test_same_seed_same_matrix(tiny_model):
    bench = make_benchmark("split-digits", samples_per_task=64, test_samples_per_task=40)
    matrices = [_learner(bench, "snn-mlp", tiny_model, epochs=1, seed=s).run()["accuracy_matrix"]
                for s in (3, 3, 4)]
    assert matrices[0] == matrices[1]
    assert matrices[0] != matrices[2]


class _NanOnTask(Strategy):
    name = "nan"

    def __init__(self, task: int) -> None:
        super().__init__()
        self.task = task
        self.hparams = {"task": task}

    def loss(self, ctx, loss):
        return loss * math.nan if ctx.task_id == self.task else loss


def test_nan_loss_raises_with_a_clear_message(digits, tiny_model):
    learner = _learner(digits, "ann-mlp", tiny_model, steps=2, strategies=[_NanOnTask(1)])
    with pytest.raises(TrainingDiverged, match=r"loss became nan on task 1 .*--lr"):
        learner.run()
    assert len(learner.accuracy) == 1


def test_huge_learning_rate_diverges(tiny_model):
    bench = make_benchmark("split-digits", samples_per_task=64)
    learner = _learner(bench, "ann-mlp", tiny_model, lr=1e30, epochs=3, optimizer="sgd")
    with pytest.raises(TrainingDiverged, match="lower the learning rate"):
        learner.run()


def _strict_json(path):
    def reject(name):
        raise ValueError(f"{name} in {path}")

    return json.loads(path.read_text(), parse_constant=reject)


def test_diverged_run_leaves_valid_results(tmp_path, quick_run, monkeypatch):
    from neurosculpt import runs

    monkeypatch.setattr(runs, "make_strategies", lambda spec, params, log=None: [_NanOnTask(2)])
    with pytest.raises(TrainingDiverged):
        run(quick_run, out=tmp_path)
    results = _strict_json(tmp_path / "results.json")
    assert results["status"] == "diverged"
    assert "task 2" in results["error"]
    assert len(results["accuracy_matrix"]) == 2 and len(results["tasks"]) == 2
    assert results["metrics"]["acc"] is not None
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["task_001.pt"]


class _Recorder(Strategy):
    """Writes down every hook call."""

    name = "recorder"

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def before_task(self, ctx):
        self.calls.append("before_task")

    def train_data(self, ctx, sets):
        self.calls.append("train_data")
        return sets

    def before_batch(self, ctx):
        self.calls.append("before_batch")

    def loss(self, ctx, loss):
        self.calls.append("loss")
        return loss

    def before_backward(self, ctx):
        self.calls.append("before_backward")

    def after_backward(self, ctx):
        self.calls.append("after_backward")

    def after_step(self, ctx):
        self.calls.append("after_step")

    def after_epoch(self, ctx):
        self.calls.append("after_epoch")

    def after_task(self, ctx):
        self.calls.append("after_task")

    def before_eval(self, ctx):
        self.calls.append("before_eval")

    def after_eval(self, ctx):
        self.calls.append("after_eval")


def test_hooks_run_in_the_documented_order(digits, tiny_model):
    recorder = _Recorder()
    learner = _learner(digits, "ann-mlp", tiny_model, steps=2, strategies=[recorder, Naive()])
    learner.train_task(0)
    step = ["before_batch", "loss", "before_backward", "after_backward", "after_step"]
    assert recorder.calls == ["before_task", "train_data", *step, *step, "after_epoch",
                              "after_task", "before_eval", "after_eval"]


class _Counter(Strategy):
    name = "counter"

    def __init__(self) -> None:
        super().__init__()
        self.steps = 0
        self.epochs = 0

    def after_step(self, ctx) -> None:
        self.steps += 1

    def after_epoch(self, ctx) -> None:
        self.epochs += 1


def test_steps_mode_trains_exactly_n_steps(digits, tiny_model):
    counter = _Counter()
    # 272 samples in batches of 128: 3 per epoch, so 7 steps span three epochs
    learner = _learner(digits, "ann-mlp", tiny_model, steps=7, batch_size=128,
                       strategies=[counter])
    learner.train_task(0)
    assert counter.steps == 7 and counter.epochs == 3
    assert learner.ctx.step == 7
    assert learner.tasks[0]["train"][0]["steps"] == 7
    state = learner.ctx.optimizer.state[learner.model.layers[0].weight]
    assert int(state["step"]) == 7


def test_seen_scope_skips_far_future_tasks(digits, tiny_model):
    learner = _learner(digits, "ann-mlp", tiny_model, steps=1, eval_scope="seen")
    summary = learner.run()
    matrix = summary["accuracy_matrix"]
    for k, row in enumerate(matrix):
        assert all(v is not None for v in row[:k + 2])
        assert all(v is None for v in row[k + 2:])
    assert summary["metrics"]["acc"] is not None
    everything = _learner(digits, "ann-mlp", tiny_model, steps=1, eval_scope="all").run()
    assert all(v is not None for row in everything["accuracy_matrix"] for v in row)


def test_current_scope_tests_only_the_new_task(digits, tiny_model):
    learner = _learner(digits, "ann-mlp", tiny_model, steps=5, eval_scope="current")
    summary = learner.run()
    matrix = summary["accuracy_matrix"]
    for k, row in enumerate(matrix):
        assert row[k] is not None
        assert all(v is None for j, v in enumerate(row) if j != k)
    metrics = summary["metrics"]
    assert metrics["learning_acc"] == pytest.approx(
        sum(row[k] for k, row in enumerate(matrix)) / len(matrix))
    assert metrics["acc"] is None and metrics["bwt"] is None and metrics["fwt"] is None
    assert summary["random_init_accuracy"] == [None] * len(digits)


def test_unknown_eval_scope_is_refused():
    with pytest.raises(ValueError, match="eval_scope must be one of"):
        TrainConfig(eval_scope="old")


def test_steps_on_an_empty_task_do_not_hang(tiny_model):
    x, y = torch.randn(8, 4), torch.arange(8) % 4
    from neurosculpt import from_tensors

    bench = from_tensors(x, y, x, y, [[0, 1], [2, 3]])
    empty = bench.tasks[1].train.subset(torch.arange(0))
    bench.tasks[1].train = empty
    learner = _learner(bench, "ann-mlp", tiny_model, steps=3)
    learner.run()
    assert learner.tasks[1]["train"][0]["steps"] == 0


class _Retrain(Strategy):
    name = "retrain"

    def after_task(self, ctx) -> None:
        ctx.fit(steps=2, label="retrain")


def test_fit_from_a_hook_runs_the_same_loop_and_is_recorded(digits, tiny_model):
    counter = _Counter()
    learner = _learner(digits, "ann-mlp", tiny_model, steps=3, strategies=[_Retrain(), counter])
    learner.train_task(0)
    assert [(r["phase"], r["steps"]) for r in learner.tasks[0]["train"]] == [
        ("train", 3), ("retrain", 2)]
    assert counter.steps == 5 and learner.ctx.step == 5


def test_outputs_a_sample_may_not_use_are_masked(tiny_model):
    bench = make_benchmark("split-digits", scenario="class", samples_per_task=64)
    learner = _learner(bench, "ann-mlp", tiny_model, steps=5)
    learner.run()
    # after task 0 the later classes are not predictable yet: zero accuracy on task 1
    assert learner.accuracy[0][1] == 0.0
    assert learner.accuracy[1][1] > 0.0
    x, _ = bench.tasks[0].test.get(torch.arange(4))
    learner.ctx.task_id = 1
    logits = learner.ctx.forward(x, torch.zeros(4, dtype=torch.long))
    assert torch.isfinite(logits[:, :4]).all() and torch.isinf(logits[:, 4:]).all()


class _BatchFigures(Strategy):
    name = "batch-figures"

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[float, int, float, int]] = []

    def after_step(self, ctx) -> None:
        expected_correct = int((ctx.logits.argmax(1) == ctx.y).sum())
        self.seen.append((ctx.batch_loss, ctx.batch_correct, float(ctx.loss.detach()),
                          expected_correct))


def test_after_step_hooks_see_the_batch_loss_and_correct_count(digits, tiny_model):
    """Hooks read the batch's loss and correct predictions without recomputing them."""
    figures = _BatchFigures()
    learner = _learner(digits, "ann-mlp", tiny_model, steps=5, strategies=[figures])
    learner.train_task(0)
    assert len(figures.seen) == 5
    for loss, correct, expected_loss, expected_correct in figures.seen:
        assert isinstance(loss, float) and loss == expected_loss
        assert correct == expected_correct
    train = learner.tasks[0]["train"][0]
    assert train["loss"] == pytest.approx(sum(s[0] for s in figures.seen) / 5)
