"""Tiny generated streams shared by several test modules."""

from __future__ import annotations

import torch

import neurosculpt
from neurosculpt.loop import Learner, TrainConfig
from neurosculpt.models import build_model
from neurosculpt.strategies import make_strategies


def clusters(n_tasks: int, scenario: str, per_class: int = 30, dim: int = 12, seed: int = 0,
             shape: tuple[int, ...] | None = None):
    """Two Gaussian clusters per task (well separated, overlapping a little across tasks);
    ``shape`` presents each sample's ``dim`` values as an image ``[C, H, W]`` or a sequence
    ``[tokens, features]``."""
    gen = torch.Generator().manual_seed(seed)
    n_classes = 2 * n_tasks
    centers = torch.randn(n_classes, dim, generator=gen) * 3.0

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n_classes).repeat_interleave(n)
        x = centers[y] + torch.randn(len(y), dim, generator=gen)
        return x.view(len(y), *(shape or (dim,))), y

    (x, y), (xt, yt) = sample(per_class), sample(per_class // 2)
    tasks = [[2 * k, 2 * k + 1] for k in range(n_tasks)]
    return neurosculpt.from_tensors(x, y, xt, yt, tasks, scenario=scenario)


def cluster_learner(strategy: str, params: dict | None = None, scenario: str = "class",
                    tasks: int = 3, kind: str = "ann-mlp") -> Learner:
    """A learner for ``strategy`` on :func:`clusters` (40 samples per class, 12 features), with
    a seeded 24-24 ``kind`` network: the setting of the class-incremental tests."""
    bench = clusters(tasks, scenario, per_class=40, dim=12, seed=1)
    torch.manual_seed(0)
    net = build_model({"kind": kind, "hidden": (24, 24), "steps": 3}, bench.input_shape,
                      bench.n_outputs)
    return Learner(net, bench, make_strategies(strategy, params or {}),
                   TrainConfig(epochs=3, batch_size=16, lr=5e-3, progress=False))


def assert_restored_predicts_alike(learner: Learner) -> None:
    """A fresh copy of ``learner``'s task-inference strategy, loaded from its checkpoint state,
    predicts exactly what the original predicts."""
    from neurosculpt.strategies.base import state_lost_in_checkpoint
    from neurosculpt.strategies.task_inference import TaskInference

    inference = next(s for s in learner.strategies if isinstance(s, TaskInference))
    state = inference.state_dict()
    assert state_lost_in_checkpoint(inference, state, learner.model) == []
    fresh = TaskInference(**inference.hparams)
    fresh.load_checkpoint_state(state, learner.model)
    x, _ = learner.benchmark.tasks[0].test.get(torch.arange(10))
    tids = torch.zeros(10, dtype=torch.long)
    learner.model.eval()
    with torch.no_grad():
        assert torch.equal(inference.predict(learner.ctx, x, tids),
                           fresh.predict(learner.ctx, x, tids))
