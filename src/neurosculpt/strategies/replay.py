"""Experience replay (ER) with a reservoir-sampled episodic memory.

Follows the ER baseline of Chaudhry et al. 2019 ("On Tiny Episodic Memories in Continual
Learning", Alg. 1 with the reservoir update of Sec. 4) and Rolnick et al. 2019 ("Experience
Replay for Continual Learning"): every training batch ``B`` is joined by ``B_M``, drawn uniformly
without replacement from the memory ``M``, the loss is the mean cross-entropy over ``B ∪ B_M``,
and ``M`` is updated from ``B`` by reservoir sampling (Vitter 1985, Algorithm R), so ``M`` is
always a uniform sample of the stream seen so far, whatever the number of tasks.

Two memories: ``reservoir`` (above) and ``balanced``, which keeps an equal share of the slots
per task and, within a task, per class (the default memory of public continual-learning
libraries, e.g. the experience-balanced buffer of Avalanche, Lomonaco et al. 2021, and the
ring buffer of Chaudhry et al. 2019, Sec. 4): it is updated when a task ends, from the task's
whole training split, so while a task trains the memory holds earlier tasks only; each (task,
class) group holds a uniform sample of its own examples (reservoir sampling within the group),
and when a new group arrives the shares shrink by dropping uniformly chosen members of the
groups over their new quota. ``auto`` picks
the balanced memory in the class scenario (where it measured better, docs/results.md) and the
reservoir elsewhere.

Which examples fill a group of the balanced memory (``selection``): ``random`` (the uniform
sample above) or ``herding`` (Welling 2009, as iCaRL's exemplar sets, Rebuffi et al. 2017,
Alg. 4, and the ``--sample-selection herding`` option of van de Ven et al.'s reference code):
the examples are chosen one at a time so that the mean of the chosen ones' features (the last
hidden layer, L2-normalised, from the model as the task ends) stays closest to the class mean;
when the shares shrink, each group keeps its first exemplars in that order. ``auto`` herds in
the class scenario, where 200 exemplars must stand for 10 classes (75.4% against 71.7% on
split-fmnist, docs/results.md), and keeps the random sample elsewhere.

Deviation: each training example enters the reservoir once, on its first presentation (the first
epoch of each task); later epochs and extra phases (PackNet's retraining) only replay. With
several epochs the memory therefore stays a uniform sample of distinct examples instead of
holding duplicates.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..benchmarks import Split
from ..loop import Context
from ..network import recording
from ..validation import check_choice
from .base import Strategy

MEMORIES = ("auto", "reservoir", "balanced")
WEIGHTINGS = ("auto", "batch", "tasks")
SELECTIONS = ("auto", "random", "herding")


class Replay(Strategy):
    """Reservoir replay memory of ``buffer_size`` samples (inputs after the task's transforms,
    output indices, task ids), mixed into every batch.

    ``replay_batch_size`` samples are appended per batch (default: the training batch size).
    ``memory`` is ``reservoir``, ``balanced`` (equal share per task and class) or ``auto``
    (balanced in the class scenario, else reservoir; reservoir when used outside a run);
    ``weighting`` (see :meth:`loss`) is ``batch``, ``tasks`` or ``auto`` (tasks in the class
    scenario); ``selection`` (balanced memory only) is ``random``, ``herding`` or ``auto``
    (herding in the class scenario, see the module docstring).
    The memory lives in buffers (``memory_x``, ``memory_y``, ``memory_task``, ``seen``; the
    balanced memory adds ``groups``: task, class and examples seen per group, and herding
    ``memory_rank``), so it goes through checkpoints; sampling uses torch's global RNG, which
    the loop seeds per task.

    Args:
        buffer_size: samples the memory holds.
        replay_batch_size: replayed samples appended to every batch (None: the training batch size).
        memory: ``auto``, ``reservoir`` or ``balanced``.
        weighting: ``auto``, ``batch`` or ``tasks``.
        selection: ``auto``, ``random`` or ``herding`` (exemplars of the balanced memory).
    """

    name = "replay"
    transient = ("_first_pass", "mode", "weighting", "selection")  # set by before_task

    def __init__(self, buffer_size: int = 500, replay_batch_size: int | None = None,
                 memory: str = "auto", weighting: str = "auto", selection: str = "auto") -> None:
        super().__init__()
        if buffer_size < 1:
            raise ValueError(f"buffer_size must be >= 1, got {buffer_size}")
        if replay_batch_size is not None and replay_batch_size < 0:
            raise ValueError(f"replay_batch_size must be >= 0, got {replay_batch_size}")
        check_choice("replay: memory", memory, MEMORIES)
        check_choice("replay: weighting", weighting, WEIGHTINGS)
        check_choice("replay: selection", selection, SELECTIONS)
        if selection == "herding" and memory == "reservoir":
            raise ValueError("replay: selection=herding picks a task's exemplars when it ends, "
                             "which needs memory=balanced (the reservoir stores the stream as "
                             "it comes)")
        self.selection_kind = selection
        self.selection = "random" if selection == "auto" else selection
        self.buffer_size = buffer_size
        self.replay_batch_size = replay_batch_size
        self.weighting_kind = weighting
        self.weighting = "batch" if weighting == "auto" else weighting
        self.memory_kind = memory
        self.mode = "reservoir" if memory == "auto" else memory
        self.hparams = {"buffer_size": buffer_size, "replay_batch_size": replay_batch_size,
                        "memory": memory, "weighting": weighting, "selection": selection}
        self.register_buffer("seen", torch.zeros((), dtype=torch.long))
        self._first_pass = False

    @property
    def filled(self) -> int:
        """Number of occupied memory slots."""
        if self.mode == "balanced":
            return int((self.memory_task >= 0).sum()) if "memory_task" in self._buffers else 0
        return min(int(self.seen), self.buffer_size)

    def memory(self) -> tuple[Tensor, Tensor, Tensor]:
        """The stored ``(x, y, task_ids)`` (empty tensors before anything was stored)."""
        if "memory_x" not in self._buffers:
            empty = self.seen.new_empty(0)
            return empty.float(), empty, empty
        if self.mode == "balanced":
            used = self.memory_task >= 0
            return self.memory_x[used], self.memory_y[used], self.memory_task[used]
        n = self.filled
        return self.memory_x[:n], self.memory_y[:n], self.memory_task[:n]

    def add(self, x: Tensor, y: Tensor, task_ids: Tensor) -> None:
        """Store a batch in the memory (reservoir or balanced, see the module docstring)."""
        if self.mode == "balanced":
            self._add_balanced(x, y, task_ids)
        else:
            self._add_reservoir(x, y, task_ids)

    def _add_reservoir(self, x: Tensor, y: Tensor, task_ids: Tensor) -> None:
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
        empty = -1 if self.mode == "balanced" else 0
        self.set_buffer("memory_task", torch.full((self.buffer_size,), empty, dtype=torch.long,
                                                  device=x.device))
        if self.mode == "balanced":
            self.set_buffer("groups", torch.zeros(0, 3, dtype=torch.long, device=x.device))

    # --- balanced memory ------------------------------------------------------------------------
    def quotas(self) -> Tensor:
        """Slots per group (rows of ``groups``): the memory split equally over the tasks seen,
        each task's share equally over its classes; remainders go to the earliest groups."""
        tasks = self.groups[:, 0].cpu()  # a few rows: counted on the host
        quota = torch.zeros(len(tasks), dtype=torch.long, device="cpu")
        task_ids = list(dict.fromkeys(tasks.tolist()))
        for i, task in enumerate(task_ids):
            share = self.buffer_size // len(task_ids) + (i < self.buffer_size % len(task_ids))
            members = torch.nonzero(tasks == task).flatten()
            quota[members] = share // len(members)
            quota[members[: share % len(members)]] += 1
        return quota

    def _add_balanced(self, x: Tensor, y: Tensor, task_ids: Tensor) -> None:
        """Reservoir sampling within each (task, class) group, up to the group's quota.

        The ``n``-th example of a full group (0-based) replaces a uniformly chosen member with
        probability ``quota / (n + 1)``, so every group holds a uniform sample of its examples;
        a new group first shrinks the others to their new quotas (uniformly chosen members go).
        """
        x = x.detach()
        self._allocate(x)
        device = self.memory_x.device
        x, y, task_ids = x.to(device), y.to(device), task_ids.to(device)
        pairs = torch.stack([task_ids, y], 1)
        fresh = [pair for pair in dict.fromkeys(map(tuple, pairs.tolist()))
                 if not bool(((self.groups[:, :2] == torch.tensor(pair, device=device))
                              .all(1)).any())]
        if fresh:
            rows = torch.tensor([[t, c, 0] for t, c in fresh], dtype=torch.long, device=device)
            self.set_buffer("groups", torch.cat([self.groups, rows]))
            self._shrink_to_quotas()
        quotas = self.quotas()
        for g, (task, label, seen) in enumerate(self.groups.tolist()):
            index = torch.nonzero((task_ids == task) & (y == label)).flatten()
            if len(index) == 0:
                continue
            quota = int(quotas[g])
            members = torch.nonzero((self.memory_task == task)
                                    & (self.memory_y == label)).flatten()
            n_fill = max(0, min(quota - len(members), len(index)))
            free = torch.nonzero(self.memory_task < 0).flatten()[:n_fill]
            targets, sources = [free], [index[:n_fill]]
            rest = index[n_fill:]
            slots = torch.cat([members, free])
            if len(rest) and quota > 0:
                # drawn on the host (torch's CPU generator): the same memory on every device
                stream = seen + n_fill + torch.arange(len(rest), device="cpu")
                draw = (torch.rand(len(rest), dtype=torch.float64, device="cpu")
                        * (stream + 1)).long()
                hit = torch.nonzero(draw < quota).flatten()
                if len(hit):  # the later of two examples drawing the same slot wins
                    last = torch.full((quota,), -1, dtype=torch.long, device="cpu").scatter_reduce(
                        0, draw[hit], hit, "amax")
                    hit = hit[last[draw[hit]] == hit]
                    targets.append(slots[draw[hit].to(device)])
                    sources.append(rest[hit.to(device)])
            target, source = torch.cat(targets), torch.cat(sources)
            self.memory_x[target] = x[source].to(self.memory_x.dtype)
            self.memory_y[target] = label
            self.memory_task[target] = task
            self.groups[g, 2] += len(index)
        self.seen += len(y)

    # --- herding selection ----------------------------------------------------------------------
    def _features(self, ctx: Context, split: Split) -> tuple[Tensor, Tensor]:
        """``[N, units]``: the last hidden layer's outputs for every example of ``split``
        (averaged over time steps and any spatial axes), L2-normalised, in eval mode; and the
        examples' labels."""
        feats, labels = [], []
        with recording(ctx.model, train=False) as model, torch.no_grad():
            for index in torch.arange(len(split), device="cpu").split(1000):
                x, y = split.get(index)
                model(x.to(ctx.device))
                a = model.activity[-1].float().mean(0)
                feats.append(F.normalize(a.flatten(2).mean(2) if a.dim() > 2 else a, dim=1))
                labels.append(y.to(feats[-1].device))
        return torch.cat(feats), torch.cat(labels)

    @staticmethod
    def herd(feats: Tensor, n: int) -> Tensor:
        """Indices of ``n`` rows of ``feats`` chosen greedily so that the mean of the chosen
        rows stays as close as possible to the mean of all rows (herding, Welling 2009;
        iCaRL, Rebuffi et al. 2017, Alg. 4): every prefix is a good summary of the class."""
        target = feats.mean(0)
        total = torch.zeros_like(target)
        taken = torch.zeros(len(feats), dtype=torch.bool, device=feats.device)
        chosen = []
        for k in range(min(n, len(feats))):
            gap = (target - (total + feats) / (k + 1)).pow(2).sum(1).masked_fill(taken, torch.inf)
            best = int(gap.argmin())
            chosen.append(best)
            taken[best] = True
            total += feats[best]
        return torch.tensor(chosen, dtype=torch.long, device=feats.device)

    def _add_herding(self, ctx: Context) -> None:
        """The task's share of the balanced memory, each class's slots filled in herding order
        (``memory_rank``), so that shrinking a group later keeps its first exemplars."""
        split, task = ctx.task.train, ctx.task_id
        feats, y = self._features(ctx, split)
        x0, _ = split.get(torch.arange(1, device="cpu"))
        self._allocate(x0.to(ctx.device))
        device = self.memory_x.device
        if "memory_rank" not in self._buffers:
            self.set_buffer("memory_rank", torch.zeros(self.buffer_size, dtype=torch.long,
                                                       device=device))
        labels = torch.unique(y).tolist()
        for label in labels:  # a task seen again is selected afresh
            self.memory_task[(self.memory_task == task) & (self.memory_y == label)] = -1
        known = self.groups[:, 0] == task
        rows = torch.tensor([[task, c, int((y == c).sum())] for c in labels], dtype=torch.long,
                            device=device)
        self.set_buffer("groups", torch.cat([self.groups[~known], rows]))
        self._shrink_to_quotas()
        quotas = self.quotas()
        for g in range(len(self.groups) - len(labels), len(self.groups)):
            label = int(self.groups[g, 1])
            index = torch.nonzero(y == label).flatten()
            chosen = index[self.herd(feats[index], int(quotas[g]))].cpu()
            free = torch.nonzero(self.memory_task < 0).flatten()[: len(chosen)]
            self.memory_x[free] = split.get(chosen)[0].to(device, self.memory_x.dtype)
            self.memory_y[free] = label
            self.memory_task[free] = task
            self.memory_rank[free] = torch.arange(len(chosen), device=device)
        self.seen += len(y)

    def _shrink_to_quotas(self) -> None:
        for (task, label, _), quota in zip(self.groups.tolist(), self.quotas().tolist(),
                                           strict=True):
            members = torch.nonzero((self.memory_task == task)
                                    & (self.memory_y == label)).flatten()
            if len(members) > quota and "memory_rank" in self._buffers:
                drop = members[self.memory_rank[members] >= quota]
                self.memory_task[drop] = -1
            elif len(members) > quota:
                order = torch.randperm(len(members), device="cpu").to(members.device)
                drop = members[order[: len(members) - quota]]
                self.memory_task[drop] = -1

    def sample(self, k: int) -> tuple[Tensor, Tensor, Tensor]:
        """``min(k, filled)`` stored samples, uniformly without replacement."""
        x, y, t = self.memory()
        index = torch.randperm(len(y), device="cpu")[:k].to(y.device)
        return x[index], y[index], t[index]

    # --- hooks ----------------------------------------------------------------------------------
    def before_task(self, ctx: Context) -> None:
        class_scenario = ctx.benchmark.scenario == "class"
        if self.memory_kind == "auto":
            self.mode = "balanced" if class_scenario else "reservoir"
        if self.weighting_kind == "auto":
            self.weighting = "tasks" if class_scenario else "batch"
        if self.selection_kind == "auto":
            self.selection = "herding" if class_scenario and self.mode == "balanced" else "random"
        elif self.selection == "herding" and self.mode != "balanced":
            raise ValueError("replay: selection=herding picks a task's exemplars when it ends, "
                             "which needs memory=balanced (the reservoir stores the stream as "
                             "it comes)")
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
        if self._first_pass and self.mode == "reservoir":
            self.add(x, y, t)

    def loss(self, ctx: Context, loss: Tensor) -> Tensor:
        """``weighting="tasks"``: the current task's samples weigh ``1/t`` and the replayed
        ones ``1 - 1/t`` after ``t`` tasks (van de Ven et al. 2020, "Brain-inspired replay",
        Nature Communications, Methods); ``batch``: one mean over the joined batch (ER);
        ``auto``: ``tasks`` in the class scenario (71.7% against 69.5% on split-fmnist with a
        balanced memory of 200, docs/results.md), else ``batch``."""
        new = ctx.task_ids == ctx.task_id
        if self.weighting == "batch" or bool(new.all()) or not bool(new.any()):
            return loss
        each = F.cross_entropy(ctx.logits, ctx.y, reduction="none")
        share = 1.0 / (ctx.task_id + 1)
        return loss - each.mean() + share * each[new].mean() + (1 - share) * each[~new].mean()

    def after_epoch(self, ctx: Context) -> None:
        self._first_pass = False

    def after_task(self, ctx: Context) -> None:
        """The balanced memory takes its share of the task that just ended: every training
        example offered once in a random order (``random``), or each class's exemplars picked
        by herding (``herding``)."""
        if self.mode == "balanced" and self.selection == "herding":
            self._add_herding(ctx)
        elif self.mode == "balanced":
            split = ctx.task.train
            for index in torch.randperm(len(split), device="cpu").split(1000):
                x, y = split.get(index)
                self.add(x.to(ctx.device), y.to(ctx.device),
                         torch.full((len(y),), ctx.task_id, dtype=torch.long, device=ctx.device))
        _, _, tasks = self.memory()
        ids, counts = torch.unique(tasks, return_counts=True)
        ctx.record["replay"] = {
            "memory": self.mode,
            "weighting": self.weighting,
            "selection": self.selection,
            "seen": int(self.seen),
            "stored": self.filled,
            "per_task": {str(int(i)): int(c) for i, c in zip(ids, counts, strict=True)},
        }
