"""The development cycle: expand, train, prune, recover, consolidate, release, for every task.

Structural development in the spirit of brain development (overproduction of neurons and
synapses, then activity-dependent elimination) applied to continual learning:

1. **expand**: give the free pool back (synapses pruned by earlier tasks reopen, as in PackNet,
   Mallya & Lazebnik 2018) and grow ``grow`` new units per hidden layer, never beyond the
   capacity ``max_units`` (when it is reached the task grows less and shares more of the
   existing network; the log says so). The first task starts from a small network
   (``initial_hidden``). Free synapses onto units earlier tasks own start at zero, so the
   features those tasks built are intact when the new task begins to use them; synapses of new
   units start at fresh random values.
2. **train** the task; gradient-based importance (first-order Taylor, Optimal Brain Damage)
   accumulates from the training gradients at no extra cost
   (:mod:`neurosculpt.plasticity.importance`).
3. **prune**, gradually while the task trains (``prune_rounds`` steps of the cubic schedule of
   Zhu & Gupta 2017, reaching the target at the fraction ``prune_end`` of the training phase):
   keep only the fraction ``keep`` (``keep_output`` in the output layer) of the task's free
   synapses with the highest importance ``score``, or, with ``threshold``, the ones whose score
   is at least ``threshold`` times the layer's mean (one step); optionally also all synapses of
   the task's least important new units, down to the fraction ``keep_units``. After each step,
   **apoptosis**: units that no task owns and that are left without live inputs or outputs
   are removed and the tensors really shrink (compaction,
   :meth:`neurosculpt.network.PlasticNetwork.remove_units`), which also makes the rest of the
   training cheaper.
4. **recover**: a short fine-tune of the survivors (``recover_fraction`` of the training phase's
   steps, so it scales with ``--epochs`` and data size), at ``recover_lr`` times the learning
   rate.
5. **consolidate**: the survivors become this task's partition (``owner``). ``freeze`` fixes
   their values (exactly zero forgetting with task identity); ``regularize`` keeps them
   trainable under an EWC-style penalty ``lam / 2 * sum_i F_i (w_i - w*_i)^2`` (Kirkpatrick et
   al. 2017, Eq. 3) with ``F`` the empirical Fisher information of the task, normalised to mean
   1 per layer, so later tasks may still adjust shared synapses a little (biases the task
   claims are fixed; the penalty covers synapses only).
6. **release**: pruned synapses stay free; the next task's expand reopens them.

Budget: ``keep`` is a fraction of each task's free pool, so without a budget the live total
after ``T`` tasks at full capacity approaches ``1 - (1 - keep)^T`` of the network. ``budget``
caps what all tasks together may own (a fraction of each hidden layer at full capacity): a task
opens at most what is left of it (:meth:`Develop.budget_left`) and keeps ``keep`` of that, so
the first tasks, whose features the later ones share, get the most, a stream of any length ends
within the budget, and once it is spent a task trains its head on the shared features.

Inference: with task identity a task uses its own partition plus what it shares from earlier
tasks (:meth:`neurosculpt.layers.PlasticLayer.synapse_mask`); without it, the union.

Output layer: each task trains, prunes and consolidates only the rows of the outputs it may
produce (its head in the task scenario, every class seen so far in the class scenario, all in
the domain scenario); synapses to later tasks' outputs stay closed until their task.

Shared parameters outside the plastic layers (learnable neuron constants) are fixed after the
first task, so freezing really fixes every earlier task's function.

Every phase's structure goes into ``results.json`` under ``tasks[k]["structure"]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .. import layers as L
from ..loop import Context
from ..network import PlasticNetwork, follow
from ..plasticity.importance import GradientStats, gradient_stats, synapse_scores
from ..plasticity.structure import (
    apoptosis,
    capacity,
    consolidate_task,
    grow_within,
    hidden_layers,
    per_layer,
    quiet_inputs_of_owned_units,
    release_free_pool,
    shrink_to,
    structure_summary,
)
from .base import (
    Strategy,
    fix_shared_parameters,
    scaled_learning_rate,
    task_batches,
    task_forward,
    task_steps,
)

CONSOLIDATIONS = ("freeze", "regularize")
SCORES = ("magnitude", "activity", "taylor", "obd")


def _schedule(start: float, final: float, progress: float) -> float:
    """Amount kept at ``progress`` of the cubic schedule of Zhu & Gupta 2017 (Eq. 1)."""
    return final + (start - final) * (1.0 - progress) ** 3


class Develop(Strategy):
    """Expand, train, prune by importance, recover, consolidate and release, for every task.

    ``grow``/``initial_hidden``: units per hidden layer (int), a fraction of the capacity
    (float) or one value per hidden layer; ``max_units``: capacity per hidden layer (default:
    the widths the model was built with); ``keep``/``keep_output``: fraction of the task's free
    synapses kept in hidden layers / the output layer, unless ``threshold`` is set;
    ``budget``: fraction of each hidden layer (at full capacity) that all tasks together may
    own (see the module docstring); ``keep_units``: fraction of the task's new units kept
    (1: only apoptosis); ``score``:
    magnitude, activity, taylor or obd; ``prune_rounds`` pruning steps reach the target at the
    fraction ``prune_end`` of the task's training; ``recover_steps`` overrides
    ``recover_fraction``; ``recover_lr`` multiplies the learning rate during recovery (short
    tasks may recover better with a larger one; PackNet retrains at a tenth); ``score_batches``:
    batches for the activity score and the Fisher information of ``regularize``.

    Defaults (measured on split-fmnist and permuted-fmnist, docs/results.md): start at the full
    built width (``initial_hidden=1.0``: overproduction, so the capacity is reached at once and
    later tasks share rather than grow), keep 10% of each task's open synapses, a 60% budget,
    heads kept whole. Long streams want a smaller ``keep`` (0.05 served 50 tasks best).

    Args:
        grow: units grown per hidden layer per task: an int, a fraction (float) of the capacity or
            one value per layer.
        max_units: capacity per hidden layer (None: the widths the model was built with).
        initial_hidden: units the first task starts with (int, fraction or per layer; 1.0: the
            full width).
        keep: fraction of the task's free synapses kept in hidden layers (unless ``threshold``).
        keep_output: fraction of the task's free synapses kept in the output layer.
        keep_units: fraction of the task's new units kept (1: only apoptosis removes units).
        budget: fraction of each hidden layer (at full capacity) all tasks together may own.
        threshold: if set, keep synapses scoring at least this times the layer's mean score (one
            pruning step) instead of ``keep``.
        score: importance score for pruning: ``magnitude``, ``activity``, ``taylor`` or ``obd``.
        prune_rounds: pruning steps of the cubic schedule (Zhu & Gupta 2017) during a task.
        prune_end: fraction of the task's training at which pruning reaches its target.
        recover_fraction: length of the recovery fine-tune, as a fraction of the training phase's
            steps.
        recover_steps: recovery steps (overrides ``recover_fraction``).
        recover_lr: learning rate during recovery, as a factor of the run's.
        consolidation: ``freeze`` (fix the task's synapses) or ``regularize`` (EWC-style penalty).
        lam: strength of the ``regularize`` penalty.
        score_batches: batches for the activity score and the Fisher of ``regularize``.
    """

    name = "develop"
    transient = ("_stats", "_structure", "_pool", "_target", "_serial", "_new", "_rounds",
                 "_step", "_pruned", "_removed")

    def __init__(self, grow: int | float | list = 0.1,
                 max_units: int | list | None = None,
                 initial_hidden: int | float | list | None = 1.0,
                 keep: float = 0.1, keep_output: float = 1.0, keep_units: float = 1.0,
                 budget: float = 0.6, threshold: float | None = None,
                 score: str = "taylor", prune_rounds: int = 4, prune_end: float = 1.0,
                 recover_fraction: float = 0.5, recover_steps: int | None = None,
                 recover_lr: float = 1.0, consolidation: str = "freeze", lam: float = 100.0,
                 score_batches: int = 4) -> None:
        super().__init__()
        if score not in SCORES:
            raise ValueError(f"unknown score {score!r}; valid: {', '.join(SCORES)}")
        if consolidation not in CONSOLIDATIONS:
            raise ValueError(f"unknown consolidation {consolidation!r}; valid: "
                             f"{', '.join(CONSOLIDATIONS)}")
        for key, value in (("keep", keep), ("keep_output", keep_output),
                           ("keep_units", keep_units), ("budget", budget),
                           ("prune_end", prune_end)):
            if not 0.0 < value <= 1.0:
                raise ValueError(f"{key} must be in (0, 1], got {value}")
        if threshold is not None and threshold < 0:
            raise ValueError(f"threshold must be >= 0, got {threshold}")
        if recover_fraction < 0 or (recover_steps is not None and recover_steps < 0):
            raise ValueError("recover_fraction and recover_steps must be >= 0")
        if recover_lr <= 0:
            raise ValueError(f"recover_lr must be > 0, got {recover_lr}")
        if lam < 0 or score_batches < 1 or prune_rounds < 1:
            raise ValueError("lam must be >= 0, score_batches and prune_rounds >= 1")
        self.grow = grow
        self.max_units = max_units
        self.initial_hidden = initial_hidden
        self.keep = keep
        self.keep_output = keep_output
        self.keep_units = keep_units
        self.budget = budget
        self.threshold = threshold
        self.score = score
        self.prune_rounds = prune_rounds
        self.prune_end = prune_end
        self.recover_fraction = recover_fraction
        self.recover_steps = recover_steps
        self.recover_lr = recover_lr
        self.consolidation = consolidation
        self.lam = lam
        self.score_batches = score_batches
        self.hparams = {
            "grow": grow, "max_units": max_units, "initial_hidden": initial_hidden,
            "keep": keep, "keep_output": keep_output, "keep_units": keep_units,
            "budget": budget, "threshold": threshold, "score": score,
            "prune_rounds": prune_rounds, "prune_end": prune_end,
            "recover_fraction": recover_fraction, "recover_steps": recover_steps,
            "recover_lr": recover_lr,
            "consolidation": consolidation, "lam": lam, "score_batches": score_batches,
        }
        # per-task working state; nothing here outlives a task, so checkpoints need none of it
        self._stats: GradientStats | None = None
        self._structure: dict = {}
        self._pool: list[int] = []
        self._target: list[int] = []
        self._serial: int | None = None
        self._new: list[int] = []
        self._rounds: dict[int, float] = {}
        self._step = -1
        self._pruned: list[int] = []
        self._removed: list[int] = []

    # --- hooks ----------------------------------------------------------------------------------
    def before_task(self, ctx: Context) -> None:
        """Expand: start small (first task), grow within capacity, reopen the free pool."""
        model = ctx.model
        if self._serial is None:  # this strategy's state matches the model as it is now
            self._serial = model.resize_serial
        caps = capacity(model, self.max_units)
        if ctx.task_id == 0:
            start = caps if self.initial_hidden is None else [
                min(n, cap) for n, cap in
                zip(per_layer(self.initial_hidden, caps, "initial_hidden"), caps, strict=True)]
            shrink_to(ctx, start)
        self._structure = {"before_expand": structure_summary(model)}
        grown = grow_within(ctx, per_layer(self.grow, caps, "grow"), caps)
        self._follow_resizes(model)
        reopened = release_free_pool(ctx, self.budget_left(ctx, caps))
        quiet_inputs_of_owned_units(model)
        self._structure["after_expand"] = structure_summary(model)
        ctx.record["structure"] = self._structure
        ctx.record["develop"] = {"capacity": caps, "grown": grown, "reopened": reopened}
        self._stats = (GradientStats(model, squares=self.score == "obd")
                       if self.score in ("taylor", "obd") else None)
        self._pool = self._structure["after_expand"]["free_synapses"]
        self._target = [round(self.keep * n) for n in self._pool[:-1]] + [
            round(self.keep_output * self._pool[-1])]
        self._new = [int((layer.bias_owner == L.FREE).sum()) for layer in model.plastic_layers]
        self._pruned = [0] * len(model.plastic_layers)
        self._removed = [0] * (len(model.plastic_layers) - 1)
        _, total = task_steps(ctx)
        rounds = self.prune_rounds if self.threshold is None else 1
        self._rounds = {max(1, round(k / rounds * self.prune_end * total)): k / rounds
                        for k in range(1, rounds + 1)}
        self._step = 0

    def loss(self, ctx: Context, loss: Tensor) -> Tensor:
        """``regularize``: add the importance-weighted pull towards consolidated values."""
        if self.consolidation != "regularize" or self.lam == 0:
            return loss
        self._follow_resizes(ctx.model)
        penalty = loss.new_zeros(())
        for index, layer in enumerate(ctx.model.plastic_layers):
            importance = self._buffers.get(f"importance{index}")
            if importance is not None:
                anchor = self._buffers[f"anchor{index}"]
                penalty = penalty + (importance * (layer.weight - anchor) ** 2).sum()
        return loss + 0.5 * self.lam * penalty

    def after_backward(self, ctx: Context) -> None:
        fix_shared_parameters(ctx)
        if self._step >= 0 and self._stats is not None:
            self._follow_resizes(ctx.model)
            self._stats.update()

    def after_step(self, ctx: Context) -> None:
        """Gradual pruning during the task's training phase (not during recovery)."""
        if self._step < 0:
            return
        self._step += 1
        progress = self._rounds.pop(self._step, None)
        if progress is not None:
            self.prune_round(ctx, progress)

    def after_task(self, ctx: Context) -> None:
        """Finish pruning, recover, consolidate; record every phase."""
        model = ctx.model
        self._step = -1
        self._follow_resizes(model)
        if self._rounds:  # the training phase ended before the schedule did
            self.prune_round(ctx, 1.0)
        self._structure["after_prune"] = structure_summary(model)
        _, total = task_steps(ctx)
        steps = (self.recover_steps if self.recover_steps is not None
                 else math.ceil(self.recover_fraction * total))
        if steps > 0:
            with scaled_learning_rate(ctx.optimizer, self.recover_lr):
                ctx.fit(steps=steps, label="recover")
        self._structure["before_consolidate"] = structure_summary(model)
        fisher = None
        if self.consolidation == "regularize":
            fisher = gradient_stats(model, task_batches(ctx, self.score_batches),
                                    task_forward(ctx)).scores("fisher")
        claimed = consolidate_task(ctx, freeze=self.consolidation == "freeze")
        if fisher is not None:
            self._anchor(ctx, fisher)
        self._structure["after_consolidate"] = structure_summary(model, partitions=True)
        ctx.record["structure"] = self._structure
        ctx.record["develop"].update({"pruned": self._pruned, "removed_units": self._removed,
                                      "recover_steps": steps, "claimed": claimed})
        self._stats = None
        self._rounds = {}

    def after_eval(self, ctx: Context) -> None:
        """Catch up with changes made by strategies composed after this one, before the
        checkpoint."""
        if self._serial is not None:
            self._follow_resizes(ctx.model)

    # --- pieces ---------------------------------------------------------------------------------
    def prune_round(self, ctx: Context, progress: float) -> None:
        """Prune towards the schedule's target at ``progress``, then remove dead units."""
        if "before_prune" not in self._structure:
            self._structure["before_prune"] = structure_summary(ctx.model)
        pruned = self.prune(ctx, progress)
        self._pruned = [a + b for a, b in zip(self._pruned, pruned, strict=True)]
        removed = apoptosis(ctx.model, ctx.optimizer)
        self._follow_resizes(ctx.model)
        self._removed = [a + b for a, b in zip(self._removed, removed, strict=True)]
        if progress >= 1.0:
            self._rounds = {}

    def prune(self, ctx: Context, progress: float) -> list[int]:
        """Remove the task's free synapses of lowest importance, layer by layer.

        Gradual pruning (Zhu & Gupta 2017, "To prune, or not to prune", Eq. 1): at schedule
        progress ``p`` a layer keeps ``keep + (1 - keep) (1 - p)^3`` of the free synapses it had
        when the task began, so the network adapts while it is thinned and the rest of the
        training phase doubles as recovery. Returns pruned counts per layer.
        """
        model = ctx.model
        accumulated = self._stats is not None and self._stats.steps > 0
        needs_batches = self.score == "activity" or (
            self.score in ("taylor", "obd") and not accumulated)
        batches = task_batches(ctx, self.score_batches) if needs_batches else None
        scores = synapse_scores(model, self.score, batches, forward=task_forward(ctx),
                                stats=self._stats if accumulated else None)
        layers = model.plastic_layers
        pruned = [0] * len(layers)
        if self.keep_units < 1.0:
            self.prune_units(model, scores, progress, pruned)
        for index, (layer, score) in enumerate(zip(layers, scores, strict=True)):
            pool, target = self._pool[index], self._target[index]
            n_keep = pool if self.threshold is not None else round(_schedule(pool, target,
                                                                             progress))
            n_keep = max(n_keep, min(1, pool))  # a task with a pool keeps at least a synapse
            pruned[index] += L.prune_synapses(layer, self.to_remove(layer, score, n_keep))
        return pruned

    def budget_left(self, ctx: Context, caps: Sequence[int]) -> list[int | None]:
        """Free synapses each hidden layer may open for this task (``None``: all).

        ``budget`` is the fraction of each hidden layer at full capacity that all tasks together
        may own. A task opens at most what is left of it and keeps ``keep`` of what it opened,
        so a stream of any length stays within the budget, early tasks (whose features the
        later ones share) get the most, and a task arriving with the budget spent trains only
        its head on the shared features instead of training synapses it could not keep.
        """
        if self.budget >= 1.0:
            return [None] * len(caps)
        model = ctx.model
        layers = model.plastic_layers
        # the hidden layer whose units a layer reads: its fan-in at full capacity scales with it
        producer = {c.layer: k for k in range(len(layers) - 1)
                    for c in model.units(k).consumers}
        out: list[int | None] = []
        for index, layer in enumerate(layers[:-1]):
            row = layer.weight[0].numel()
            k = producer.get(index)
            if k is not None:
                row = row * caps[k] // max(layers[k].n_out, 1)
            owned = int((layer.mask & (layer.owner != L.FREE)).sum())
            left = max(0, round(self.budget * row * caps[index]) - owned)
            pool = int((layer.owner == L.FREE).sum())
            if left < pool:
                ctx.log(f"budget: layer {index} opens {left} of its {pool} free synapses "
                        f"(the rest of its budget {self.budget:g})")
            out.append(left)
        return out

    def prune_units(self, model: PlasticNetwork, scores: list[Tensor], progress: float,
                    pruned: list[int]) -> None:
        """Cut every synapse of the task's new units with the least summed importance (in and
        out), on the same schedule with target ``keep_units``; apoptosis then removes them.

        Like DSD-SNN's unit pruning (Han et al. 2023), but ranked by the chosen synapse score
        instead of an accumulated weight magnitude, and reaching a set fraction.
        """
        layers = model.plastic_layers
        for index in hidden_layers(model):
            layer = layers[index]
            new = layer.bias_owner == L.FREE
            target = max(1, round(_schedule(1.0, self.keep_units, progress) * self._new[index]))
            n_cut = int(new.sum()) - target
            if n_cut <= 0:
                continue
            consumers = model.units(index).consumers
            importance = scores[index].flatten(1).sum(1)
            for c in consumers:
                outgoing = scores[c.layer].transpose(0, 1).flatten(1).sum(1)
                importance = importance + outgoing.view(layer.n_out, -1).sum(1)
            importance = importance.masked_fill(~new, float("inf"))
            cut = torch.argsort(importance, stable=True)[:n_cut]
            rows = layer.mask.new_zeros(layer.n_out)
            rows[cut] = True
            shape = (-1,) + (1,) * (layer.weight.dim() - 1)
            pruned[index] += L.prune_synapses(layer, rows.view(shape).expand_as(layer.mask))
            for c in consumers:
                nxt = layers[c.layer]
                cols = nxt.mask.new_zeros(nxt.n_in)
                cols[c.inputs(cut)] = True
                shape = (1, -1) + (1,) * (nxt.weight.dim() - 2)
                pruned[c.layer] += L.prune_synapses(nxt, cols.view(shape).expand_as(nxt.mask))

    def to_remove(self, layer: L.PlasticLayer, score: Tensor, n_keep: int) -> Tensor:
        """Boolean mask of free synapses to prune: all but the ``n_keep`` best by score (ties
        broken by position); with ``threshold``, those below ``threshold`` times the
        mean score, and beyond ``n_keep`` the lowest of the rest."""
        free = L.free_synapse_mask(layer)
        remove = torch.zeros_like(free)
        position = torch.nonzero(free.flatten()).flatten()
        if len(position) == 0:
            return remove
        values = score.flatten()[position]
        if self.threshold is not None:
            n_keep = min(n_keep, int((values >= self.threshold * values.mean()).sum()))
        remove.view(-1)[position[~L.top_by_position(values, n_keep)]] = True
        return remove

    def _anchor(self, ctx: Context, fisher: list[Tensor]) -> None:
        """Store this task's values and normalised Fisher as the penalty's anchor/importance;
        freeze the biases it claimed (the penalty covers synapses only)."""
        task = ctx.task_id
        for index, (layer, f) in enumerate(zip(ctx.model.plastic_layers, fisher, strict=True)):
            mine = layer.mask & (layer.owner == task)
            importance = self._buffers.get(f"importance{index}")
            if importance is None:
                importance = torch.zeros_like(layer.weight)
                anchor = torch.zeros_like(layer.weight)
            else:
                anchor = self._buffers[f"anchor{index}"]
            if bool(mine.any()):
                scale = f[mine].mean().clamp_min(1e-12)
                importance = torch.where(mine, f / scale, importance)
                anchor = torch.where(mine, layer.weight.detach(), anchor)
            self.set_buffer(f"importance{index}", importance)
            self.set_buffer(f"anchor{index}", anchor)
            bias = (layer.bias_owner == task) & ~layer.bias_frozen
            with torch.no_grad():
                layer.frozen_bias[bias] = layer.bias[bias]
                layer.bias_frozen |= bias

    def _follow_resizes(self, model: PlasticNetwork) -> None:
        """Keep per-synapse state (gradient statistics, the penalty's buffers) aligned with
        every structural change of the model since the last call, whoever made it (this
        strategy, or a composed one such as the plasticity controller), through the journal;
        :meth:`before_task` sets the starting point. New synapses start at zero."""
        resizes = model.resizes_since(self._serial)
        if not resizes:
            return
        if self._stats is not None:
            self._stats.taylor = [follow(t, resizes, weight=j)
                                  for j, t in enumerate(self._stats.taylor)]
            if self._stats.sq_grad is not None:
                self._stats.sq_grad = [follow(t, resizes, weight=j)
                                       for j, t in enumerate(self._stats.sq_grad)]
        for name in ("importance", "anchor"):
            for j in range(len(model.plastic_layers)):
                if f"{name}{j}" in self._buffers:
                    self.set_buffer(f"{name}{j}",
                                    follow(self._buffers[f"{name}{j}"], resizes, weight=j))
        self._serial = resizes[-1].serial
