"""The strategy interface: a set of hooks on the one training loop (see :mod:`neurosculpt.loop`).

A strategy is an ``nn.Module`` so that whatever it accumulates (Fisher information, anchors,
replay buffers) lives in buffers and travels through ``state_dict`` into checkpoints. Buffers
whose shape changes during a run are registered with :meth:`Strategy.set_buffer`; checkpoints
record shapes, so loading rebuilds them (:func:`neurosculpt.runs.load_state_resizing`).
Strategies compose: the loop calls every hook of every strategy in order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from ..benchmarks import Split
from ..loop import Context


class Strategy(nn.Module):
    """No-op hooks. Subclasses override the ones they need and set ``name``."""

    name = "base"

    def set_buffer(self, name: str, value: Tensor) -> None:
        """Create or replace a buffer (any shape), kept in ``state_dict``."""
        if name in self._buffers:
            self._buffers[name] = value
        else:
            self.register_buffer(name, value)

    def load_checkpoint_state(self, state: dict, model: nn.Module) -> None:
        """Restore from a checkpoint into a freshly built strategy (shapes come from ``state``).

        Strategies that hold a copy of the model (LwF) override this to rebuild it first.
        """
        from ..runs import load_state_resizing

        load_state_resizing(self, state)

    def before_task(self, ctx: Context) -> None:
        """Before training a task (after the optimizer for it exists)."""

    def train_data(self, ctx: Context, sets: list[tuple[Split, int]]) -> list[tuple[Split, int]]:
        """The (split, task id) pairs to train on; the current task's training split by default."""
        return sets

    def before_batch(self, ctx: Context) -> None:
        """May replace ``ctx.x``, ``ctx.y``, ``ctx.task_ids`` (e.g. mix in replayed samples)."""

    def loss(self, ctx: Context, loss: Tensor) -> Tensor:
        """Return the loss to minimise; ``ctx.logits`` holds this batch's (masked) logits."""
        return loss

    def before_backward(self, ctx: Context) -> None:
        """Before ``loss.backward()``."""

    def after_backward(self, ctx: Context) -> None:
        """Gradients exist; they may be changed before the optimizer step."""

    def after_step(self, ctx: Context) -> None:
        """After the optimizer step (e.g. accumulate SI's path integral, reinitialise units)."""

    def after_epoch(self, ctx: Context) -> None:
        """After each pass over the task's training data."""

    def after_task(self, ctx: Context) -> None:
        """After training a task, before it is evaluated (consolidate, prune, ...)."""

    def before_eval(self, ctx: Context) -> None:
        """Before every task is evaluated."""

    def after_eval(self, ctx: Context) -> None:
        """After every task has been evaluated."""


@contextmanager
def scaled_learning_rate(optimizer: torch.optim.Optimizer, factor: float) -> Iterator[None]:
    """Multiply every parameter group's learning rate by ``factor`` inside the block (a
    retraining or recovery phase); the previous rates come back exactly afterwards."""
    groups = optimizer.param_groups
    rates = [group["lr"] for group in groups]
    for group in groups:
        group["lr"] = group["lr"] * factor
    try:
        yield
    finally:
        for group, rate in zip(groups, rates, strict=True):
            group["lr"] = rate


def fix_shared_parameters(ctx: Context) -> None:
    """After the first task only plastic-layer weights and biases may move: learnable neuron
    constants are shared by every task's subnetwork (PackNet fixes its batch norm likewise)."""
    if ctx.task_id == 0:
        return
    for p in ctx.model.shared_parameters():
        p.grad = None


class MonitoredStrategy(Strategy):
    """A strategy that logs the plasticity signals through ``self.monitor``
    (a :class:`neurosculpt.plasticity.signals.Monitor`, set by the subclass): these hooks feed
    it; subclasses that override one call ``super()`` in it."""

    def before_task(self, ctx: Context) -> None:
        self.monitor.before_task(ctx)

    def after_backward(self, ctx: Context) -> None:
        self.monitor.after_backward(ctx)

    def after_step(self, ctx: Context) -> None:
        self.monitor.after_step(ctx)

    def after_task(self, ctx: Context) -> None:
        self.monitor.after_task(ctx)


class Naive(Strategy):
    """Plain fine-tuning on each task in turn: the lower bound that forgets."""

    name = "naive"


def hyper_parameters(strategies: Sequence[Strategy]) -> dict:
    """The constructor arguments each strategy was built with (recorded in results.json)."""
    return {s.name: dict(getattr(s, "hparams", {})) for s in strategies}


def task_steps(ctx: Context) -> tuple[int, int]:
    """(mini-batches per epoch of the current task, steps of its main training phase)."""
    cfg = ctx.config
    n_batches = math.ceil(len(ctx.task.train) / cfg.batch_size)
    return n_batches, cfg.steps if cfg.steps is not None else cfg.epochs * n_batches


def task_batches(ctx: Context, n: int) -> list[tuple[Tensor, Tensor]]:
    """``n`` seeded mini-batches of the current task's training data (for importance scores)."""
    gen = torch.Generator().manual_seed(ctx.learner._seed(ctx.task_id, 99))
    out = []
    for batch in ctx.task.train.batches(ctx.config.batch_size, gen):
        if len(out) == n:
            break
        out.append(batch)
    return out


def task_forward(ctx: Context) -> Callable[[Tensor], Tensor]:
    """Logits of the current task with outputs it may not produce masked, for scoring."""
    return lambda x: ctx.forward(x, torch.full((len(x),), ctx.task_id, dtype=torch.long))


# --- the strategy -------------------------------------------------------------------------------
