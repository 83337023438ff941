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
from typing import Any

import torch
from torch import Tensor, nn

from ..benchmarks import Split
from ..loop import Context


class Strategy(nn.Module):
    """No-op hooks. Subclasses override the ones they need and set ``name``.

    State that must survive a checkpoint lives in parameters, buffers (:meth:`set_buffer`) or
    ``get_extra_state`` / ``set_extra_state`` (JSON-like values). ``transient`` names plain
    attributes that do not need to (working state that ``before_task`` rebuilds); any other
    attribute that a checkpoint would lose stops the run at that checkpoint
    (:func:`state_lost_in_checkpoint`).
    """

    name = "base"
    transient: tuple[str, ...] = ()

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

    def predict(self, ctx: Context, x: Tensor, task_ids: Tensor) -> Tensor | None:
        """Evaluation logits for a test batch (``[B, n_outputs]``, argmax = prediction), or None
        to leave it to the next strategy and finally to :meth:`Context.forward`. Task inference
        answers here; ``task_ids`` are the true tasks, for scoring a guess only."""
        return None


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


_MODULE_ATTRIBUTES = frozenset(vars(nn.Module()))


def state_lost_in_checkpoint(strategy: Strategy, state: dict, model: nn.Module) -> list[str]:
    """Attributes of ``strategy`` that differ in a strategy rebuilt from its recorded
    parameters and loaded from ``state``: what a resumed run would not get back.

    Every attribute of the strategy itself counts (but those in its ``transient``); of its
    submodules and helper objects, the public ones (private ones are their caches).

    Raises ``ValueError`` when the strategy cannot be rebuilt from ``hparams`` at all.
    """
    params = dict(getattr(strategy, "hparams", {}))
    try:
        fresh = type(strategy)(**params)
    except TypeError as err:
        raise ValueError(
            f"strategy {strategy.name!r} cannot be rebuilt from its recorded parameters {params} "
            f"({err}), so a run with it cannot resume: set self.hparams to its constructor's "
            "keyword arguments") from None
    if not hasattr(fresh, "hparams"):
        fresh.hparams = params
    fresh.load_checkpoint_state(state, model)
    old_modules = dict(strategy.named_modules())
    lost = []
    for prefix, new in fresh.named_modules():
        old = old_modules.get(prefix)
        if old is None:
            continue
        skip = _MODULE_ATTRIBUTES | set(getattr(old, "transient", ()))
        for key, value in vars(old).items():
            if key in skip or (prefix and key.startswith("_")):  # parts' private caches
                continue
            if not _same(value, vars(new).get(key, _MISSING)):
                lost.append(f"{prefix}.{key}" if prefix else key)
    return lost


_MISSING = object()


def _same(a: Any, b: Any, depth: int = 0) -> bool:
    """Value equality for what strategies keep in attributes (tensors, containers, numbers,
    plain objects); modules are compared through their own attributes and ``state_dict``."""
    if a is b or isinstance(a, nn.Module) or isinstance(b, nn.Module):
        return True
    if torch.is_tensor(a):
        return (torch.is_tensor(b) and a.shape == b.shape and a.dtype == b.dtype
                and bool(torch.equal(a.detach().cpu(), b.detach().cpu())))
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b or (a != a and b != b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k], depth) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y, depth) for x, y in zip(a, b, strict=False))
    if callable(a):
        return getattr(a, "__qualname__", None) == getattr(b, "__qualname__", None)
    if hasattr(a, "__dict__") and depth < 3:  # a plain helper object: its public attributes
        va, vb = vars(a), vars(b)
        return all(_same(v, vb.get(k, _MISSING), depth + 1) for k, v in va.items()
                   if not k.startswith("_"))
    try:
        return bool(a == b)
    except Exception:  # values without a usable equality cannot be checked
        return True


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
    gen = torch.Generator().manual_seed(ctx.learner.seed_for(ctx.task_id, 99))
    out = []
    for x, y in ctx.task.train.batches(ctx.config.batch_size, gen):
        if len(out) == n:
            break
        out.append((x.to(ctx.device), y.to(ctx.device)))
    return out


def task_forward(ctx: Context) -> Callable[[Tensor], Tensor]:
    """Logits of the current task with outputs it may not produce masked, for scoring."""
    return lambda x: ctx.forward(x, torch.full((len(x),), ctx.task_id, dtype=torch.long,
                                               device=x.device))


# --- the strategy -------------------------------------------------------------------------------
