"""DSD-SNN: Dynamic Structure Development of spiking networks, in neurosculpt's terms.

Han, Zhao, Zeng, Pan & Shen, "Enhancing Efficient Continual Learning with Dynamic Structure
Development of Spiking Neural Networks", IJCAI 2023 (code: BrainCog,
``examples/Structural_Development/DSD-SNN``). The mechanism:

- A network of fixed maximum size (here: the widths the model was built with, or
  ``max_units``) of which the first task activates a fraction ``init_fraction`` (0.3) of the
  units of every hidden layer; every later task grows ``grow_fraction`` (0.15) of the maximum
  as new units, fully connected to every unit of the previous layer, so they reuse
  (share) what earlier tasks learnt. When the maximum is reached a task grows fewer.
- While a task trains, only its new units may be pruned. Each round, a new unit's score is
  the summed magnitude of its incoming weights, min-max normalised over the layer (units that
  are not candidates count as the maximum), ``d = 2 * unit(score) - c`` with ``c`` = 1.3 for the
  first task and 1.0 later (linear layers; 0.8 and 0.5 for convolutions), plus a bonus of 3 when
  ``d > 0``. It accumulates as ``R <- 0.999 R + d * exp(-floor((r - 1) / 12))`` from ``R = 5``
  and the unit is pruned once ``R < 0``: weak units go after several consecutive bad rounds,
  and pruned units return to the pool of units later tasks can grow.
- After the task its units' incoming weights are fixed for good (frozen).

Deviations, and why:

- Rounds: the paper updates ``R`` once per epoch for 30-50 epochs per task; here ``rounds``
  updates are spread evenly over the task's training steps (after the first slice, as the
  paper skips epoch 0), so the schedule fits short runs. The constants are the paper's.
- Pruned units are really removed (compaction) and growth appends fresh ones, instead of
  masking rows of a preallocated tensor; capacity bookkeeping is the same.
- Old units keep their synapses from units grown later, but those synapses belong to the
  later task: an earlier task's subnetwork (task scenario) does not see them. BrainCog keeps them
  at fixed values inside the old units' rows, so new units can disturb old tasks; here they
  cannot, and a later task may train them.
- Heads: one output row per class as everywhere in neurosculpt; the paper's extra task-
  prediction network for class-incremental inference is not reproduced (the class scenario
  uses the union of all subnetworks, like every strategy here).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .. import layers as L
from ..loop import Context
from ..network import PlasticNetwork, follow
from ..plasticity.importance import unit_scores
from ..plasticity.structure import (
    capacity,
    consolidate_task,
    grow_within,
    per_layer,
    release_free_pool,
    shrink_to,
    structure_summary,
)
from .base import Strategy, fix_shared_parameters, task_steps


class DSD(Strategy):
    """Grow a fixed fraction of units per task, prune new units by an accumulated
    normalised weight-magnitude score during training, then freeze them.

    ``c_linear``/``c_conv``: the pruning offsets ``c`` for (first task, later tasks);
    ``start``, ``bonus``, ``decay``: the accumulator's initial value, positive-score bonus and
    per-round decay (Han et al. 2023; see the module docstring).

    Args:
        init_fraction: fraction of the capacity the first task starts with.
        grow_fraction: fraction of the capacity grown for every later task.
        rounds: pruning rounds during a task.
        max_units: capacity per hidden layer (None: the widths the model was built with).
        c_linear: pruning offsets ``c`` of linear layers for (first task, later tasks).
        c_conv: pruning offsets ``c`` of convolutional layers for (first task, later tasks).
        start: initial value of each unit's accumulated score.
        bonus: added to the accumulator when a unit's score is positive.
        decay: per-round decay of the accumulator.
    """

    name = "dsd"
    transient: tuple[str, ...] = ("_serial", "_accumulated", "_schedule", "_step", "_pruned",
                                  "_structure")  # journal position; per-task working state

    def __init__(self, init_fraction: float = 0.3, grow_fraction: float = 0.15,
                 rounds: int = 10, max_units: int | list | None = None,
                 c_linear: Sequence[float] = (1.3, 1.0), c_conv: Sequence[float] = (0.8, 0.5),
                 start: float = 5.0, bonus: float = 3.0, decay: float = 0.999) -> None:
        super().__init__()
        if not 0.0 < init_fraction <= 1.0 or not 0.0 <= grow_fraction <= 1.0:
            raise ValueError("init_fraction must be in (0, 1] and grow_fraction in [0, 1]")
        if rounds < 0:
            raise ValueError(f"rounds must be >= 0, got {rounds}")
        if len(c_linear) != 2 or len(c_conv) != 2:
            raise ValueError("c_linear and c_conv take two values: (first task, later tasks)")
        self.init_fraction = float(init_fraction)
        self.grow_fraction = float(grow_fraction)
        self.rounds = rounds
        self.max_units = max_units
        self.c_linear = [float(c) for c in c_linear]
        self.c_conv = [float(c) for c in c_conv]
        self.start = start
        self.bonus = bonus
        self.decay = decay
        self.hparams = {
            "init_fraction": self.init_fraction, "grow_fraction": self.grow_fraction,
            "rounds": rounds, "max_units": max_units, "c_linear": self.c_linear,
            "c_conv": self.c_conv, "start": start, "bonus": bonus, "decay": decay,
        }
        self._accumulated: list[Tensor] = []
        self._serial = 0
        self._schedule: dict[int, int] = {}
        self._step = -1
        self._pruned: list[int] = []
        self._structure: dict = {}

    # --- hooks ----------------------------------------------------------------------------------
    def before_task(self, ctx: Context) -> None:
        """First task: activate ``init_fraction`` of each layer; later: grow ``grow_fraction``."""
        model = ctx.model
        caps = capacity(model, self.max_units)
        grown = [0] * len(caps)
        if ctx.task_id == 0:
            shrink_to(ctx, per_layer(self.init_fraction, caps, "init_fraction"))
            self._structure = {"before_expand": structure_summary(model)}
        else:
            self._structure = {"before_expand": structure_summary(model)}
            grown = grow_within(ctx, per_layer(self.grow_fraction, caps, "grow_fraction"), caps)
        release_free_pool(ctx)
        self._structure["after_expand"] = structure_summary(model)
        ctx.record["structure"] = self._structure
        ctx.record["dsd"] = {"capacity": caps, "grown": grown}
        hidden = model.plastic_layers[:-1]
        self._accumulated = [torch.full((layer.n_out,), self.start, device=layer.weight.device)
                             for layer in hidden]
        self._serial = model.resize_serial
        self._pruned = [0] * len(hidden)
        _, total = task_steps(ctx)
        self._schedule = {round(r * total / (self.rounds + 1)): r
                          for r in range(1, self.rounds + 1)}
        self._step = 0

    def after_backward(self, ctx: Context) -> None:
        fix_shared_parameters(ctx)

    def after_step(self, ctx: Context) -> None:
        """Run a pruning round at the scheduled steps of the task's training."""
        if self._step < 0:
            return
        self._step += 1
        if self._step in self._schedule:
            self.prune_round(ctx, self._schedule[self._step])

    def after_task(self, ctx: Context) -> None:
        """Freeze everything the task trained; record the structure."""
        self._step = -1
        self._structure["after_prune"] = structure_summary(ctx.model)
        claimed = consolidate_task(ctx, freeze=True)
        self._structure["after_consolidate"] = structure_summary(ctx.model, partitions=True)
        ctx.record["structure"] = self._structure
        ctx.record["dsd"].update({"pruned_units": self._pruned, "claimed": claimed})

    # --- pieces ---------------------------------------------------------------------------------
    def prune_round(self, ctx: Context, r: int) -> list[int]:
        """One update of the accumulated scores; prune (compact away) new units below zero."""
        model = ctx.model
        self._follow_resizes(model)
        scores = unit_scores(model, "magnitude")
        removed = []
        for index, layer in enumerate(model.plastic_layers[:-1]):
            if model.units(index).fixed:
                removed.append(0)
                continue
            candidate = layer.bias_owner == L.FREE
            score = scores[index].clone()
            if not bool(candidate.any()):
                removed.append(0)
                continue
            score[~candidate] = score.max()
            span = score.max() - score.min()
            unit = (score - score.min()) / span if span > 0 else torch.full_like(score, 0.5)
            c_first, c_later = self.c_conv if isinstance(layer, L.PlasticConv2d) else self.c_linear
            delta = 2.0 * unit - (c_first if ctx.task_id == 0 else c_later)
            delta = torch.where(delta > 0, delta + self.bonus, delta)
            acc = self.decay * self._accumulated[index] + delta * math.exp(-((r - 1) // 12))
            prune = candidate & (acc < 0)
            if bool(prune.all()):
                prune[torch.argmax(acc)] = False
            self._accumulated[index] = acc
            if bool(prune.any()):
                model.remove_units(index, torch.nonzero(prune).flatten(), ctx.optimizer)
            self._follow_resizes(model)
            removed.append(int(prune.sum()))
            self._pruned[index] += int(prune.sum())
        return removed

    def _follow_resizes(self, model: PlasticNetwork) -> None:
        """Carry the accumulated scores through every structural change since the last call,
        whoever made it (new units start at ``start``)."""
        resizes = model.resizes_since(self._serial)
        self._accumulated = [follow(acc, resizes, units=i, fill=self.start)
                             for i, acc in enumerate(self._accumulated)]
        self._serial = model.resize_serial
