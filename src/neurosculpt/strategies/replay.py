"""Experience replay (ER) with a reservoir-sampled episodic memory.

Follows the ER baseline of Chaudhry et al. 2019 ("On Tiny Episodic Memories in Continual
Learning", Alg. 1 with the reservoir update of Sec. 4) and Rolnick et al. 2019 ("Experience
Replay for Continual Learning"): every training batch ``B`` is joined by ``B_M``, drawn uniformly
without replacement from the memory ``M``, the loss is the mean cross-entropy over ``B ∪ B_M``,
and ``M`` is updated from ``B`` by reservoir sampling (Vitter 1985, Algorithm R), so ``M`` is
always a uniform sample of the stream seen so far, whatever the number of tasks.

Deviation: each training example enters the reservoir once, on its first presentation (the first
epoch of each task); later epochs and extra phases (PackNet's retraining) only replay. With
several epochs the memory therefore stays a uniform sample of distinct examples instead of
holding duplicates.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..loop import Context
from .base import Strategy


class Replay(Strategy):
    """Reservoir replay memory of ``buffer_size`` samples (inputs after the task's transforms,
    output indices, task ids), mixed into every batch.

    ``replay_batch_size`` samples are appended per batch (default: the training batch size).
    The memory lives in buffers (``memory_x``, ``memory_y``, ``memory_task``, ``seen``), so it
    goes through checkpoints; sampling uses torch's global RNG, which the loop seeds per task.

    Args:
        buffer_size: samples the reservoir memory holds.
        replay_batch_size: replayed samples appended to every batch (None: the training batch size).
    """

    name = "replay"
    transient = ("_first_pass",)

    def __init__(self, buffer_size: int = 500, replay_batch_size: int | None = None) -> None:
        super().__init__()
        if buffer_size < 1:
            raise ValueError(f"buffer_size must be >= 1, got {buffer_size}")
        if replay_batch_size is not None and replay_batch_size < 0:
            raise ValueError(f"replay_batch_size must be >= 0, got {replay_batch_size}")
        self.buffer_size = buffer_size
        self.replay_batch_size = replay_batch_size
        self.hparams = {"buffer_size": buffer_size, "replay_batch_size": replay_batch_size}
        self.register_buffer("seen", torch.zeros((), dtype=torch.long))
        self._first_pass = False

    @property
    def filled(self) -> int:
        """Number of occupied memory slots."""
        return min(int(self.seen), self.buffer_size)

    def memory(self) -> tuple[Tensor, Tensor, Tensor]:
        """The stored ``(x, y, task_ids)`` (empty tensors before anything was stored)."""
        if "memory_x" not in self._buffers:
            empty = self.seen.new_empty(0)
            return empty.float(), empty, empty
        n = self.filled
        return self.memory_x[:n], self.memory_y[:n], self.memory_task[:n]

    def add(self, x: Tensor, y: Tensor, task_ids: Tensor) -> None:
        """Reservoir update with a batch, equal in distribution to one sample at a time.

        The ``i``-th example of the stream (0-based) takes slot ``i`` while the memory is not
        full, otherwise slot ``j ~ U{0..i}`` if ``j < buffer_size``; when two examples of the
        batch draw the same slot, the later one wins, as in the sequential algorithm.
        """
        x = x.detach()
        self._allocate(x)
        n, size = len(y), self.buffer_size
        # slots are drawn on the host (torch's CPU generator): the same memory on every device
        stream = int(self.seen) + torch.arange(n, device="cpu")
        draw = (torch.rand(n, dtype=torch.float64, device="cpu") * (stream + 1)).long()
        slot = torch.where(stream < size, stream, draw)
        index = torch.nonzero(slot < size).flatten()
        slot = slot[index]
        last = torch.full((size,), -1, dtype=torch.long, device="cpu").scatter_reduce(
            0, slot, index, "amax")
        win = last[slot] == index
        slot, index = slot[win].to(x.device), index[win].to(x.device)
        self.memory_x[slot] = x[index].to(self.memory_x.dtype)
        self.memory_y[slot] = y[index]
        self.memory_task[slot] = task_ids[index]
        self.seen += n

    def _allocate(self, x: Tensor) -> None:
        shape = (self.buffer_size, *x.shape[1:])
        if "memory_x" in self._buffers:
            if self.memory_x.shape != shape:
                raise ValueError(
                    f"replay memory holds inputs of shape {tuple(self.memory_x.shape[1:])}, "
                    f"got {tuple(x.shape[1:])}"
                )
            return
        self.set_buffer("memory_x", x.new_zeros(shape))
        self.set_buffer("memory_y", torch.zeros(self.buffer_size, dtype=torch.long,
                                                device=x.device))
        self.set_buffer("memory_task", torch.zeros(self.buffer_size, dtype=torch.long,
                                                   device=x.device))

    def sample(self, k: int) -> tuple[Tensor, Tensor, Tensor]:
        """``min(k, filled)`` stored samples, uniformly without replacement."""
        x, y, t = self.memory()
        index = torch.randperm(len(y), device="cpu")[:k].to(y.device)
        return x[index], y[index], t[index]

    # --- hooks ----------------------------------------------------------------------------------
    def before_task(self, ctx: Context) -> None:
        self._first_pass = True

    def before_batch(self, ctx: Context) -> None:
        """Append ``B_M`` drawn from the memory, then store the incoming batch ``B``.

        Sampling precedes the update (as in ER), so a batch never replays itself and replayed
        samples are never stored again.
        """
        x, y, t = ctx.x, ctx.y, ctx.task_ids
        k = ctx.config.batch_size if self.replay_batch_size is None else self.replay_batch_size
        if k > 0 and self.filled > 0:
            mx, my, mt = self.sample(k)
            ctx.x = torch.cat([x, mx.to(x.dtype)])
            ctx.y = torch.cat([y, my])
            ctx.task_ids = torch.cat([t, mt])
        if self._first_pass:
            self.add(x, y, t)

    def after_epoch(self, ctx: Context) -> None:
        self._first_pass = False

    def after_task(self, ctx: Context) -> None:
        _, _, tasks = self.memory()
        ids, counts = torch.unique(tasks, return_counts=True)
        ctx.record["replay"] = {
            "seen": int(self.seen),
            "stored": self.filled,
            "per_task": {str(int(i)): int(c) for i, c in zip(ids, counts, strict=True)},
        }
