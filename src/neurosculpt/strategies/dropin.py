"""Dropin: neurogenesis during training, with unit dropout and apoptosis ("drop in & out";
Li, Milling & Schuller 2025, "Neuroplasticity in Artificial Intelligence - An Overview and
Inspirations on Drop In & Out Learning", arXiv:2503.21419).

The paper proposes the concepts; the concrete rules here are ours:

- dropin (neurogenesis): ``grow`` fresh units join every hidden layer when the training loss is
  on a plateau (or every ``every`` steps), up to ``max_units``; incoming weights from the
  initial distribution, outgoing weights zero, so the network's output does not jump;
- unit dropout (temporary apoptosis, Srivastava et al. 2014): during training each unit is
  silenced for a whole sample with probability ``dropout`` (outputs rescaled by ``1/(1-p)``):
  the inputs it feeds in every consumer are zeroed, so it works on any
  :class:`~neurosculpt.network.PlasticNetwork` (the activity the signals see is the unit's own);
- apoptosis (permanent): at the end of a task mature units whose contribution utility (Dohare
  et al. 2024, Eq. 1) is below ``apoptosis`` times the layer mean are removed and the layer is
  compacted, never below ``min_units``.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor, nn

from ..loop import Context
from ..network import Consumer, PlasticNetwork
from ..plasticity.controller import apply_grow, apply_remove
from ..plasticity.signals import Monitor, log_decision
from ..plasticity.structure import budgets, hidden_layers
from .base import MonitoredStrategy


class Dropin(MonitoredStrategy):
    """Add units on loss plateaus (or on a schedule), drop units out, remove useless ones.

    Args:
        grow: units added per hidden layer at each growth (0: never grow).
        every: grow every this many steps (0: on loss plateaus instead).
        max_units: budget per hidden layer: int, float factor of the built width or per layer
            (None: 1.5x).
        dropout: probability of dropping a unit during training (unit dropout), in [0, 1).
        apoptosis: remove mature free units whose utility is below this times the layer mean at task
            end (0: off).
        min_units: apoptosis never shrinks a layer below this.
        maturity: steps a unit must have lived before apoptosis may remove it.
        log_every: steps between snapshots of the plasticity signals in results.json (0: only at the
            end of each task).
        probe: inputs of the forward pass that measures a snapshot's signals (dormancy, rank).
        plateau_window: steps per window of the loss-plateau detector.
        plateau_tol: relative improvement of the windowed mean loss below which it is a plateau.
        plateau_patience: windows without that improvement before a plateau is flagged.
    """

    name = "dropin"
    transient = ("_hooks",)  # unit-dropout hooks on the model, registered again by before_task

    def __init__(self, grow: int = 8, every: int = 0, max_units: int | float | list | None = None,
                 dropout: float = 0.0, apoptosis: float = 0.0, min_units: int = 8,
                 maturity: int = 100, log_every: int = 1000, probe: int = 256,
                 plateau_window: int = 100, plateau_tol: float = 0.01,
                 plateau_patience: int = 3) -> None:
        super().__init__()
        if grow < 0 or every < 0 or not 0.0 <= dropout < 1.0 or apoptosis < 0:
            raise ValueError("grow, every, apoptosis must be >= 0 and dropout in [0, 1)")
        self.hparams = {"grow": grow, "every": every, "max_units": max_units,
                        "dropout": dropout, "apoptosis": apoptosis, "min_units": min_units,
                        "maturity": maturity, "log_every": log_every, "probe": probe,
                        "plateau_window": plateau_window, "plateau_tol": plateau_tol,
                        "plateau_patience": plateau_patience}
        self.grow_n = grow
        self.every = every
        self.max_units = max_units
        self.dropout = dropout
        self.apoptosis = apoptosis
        self.min_units = min_units
        self.maturity = maturity
        self.monitor = Monitor(self.name, log_every=log_every, probe=probe,
                               plateau_window=plateau_window, plateau_tol=plateau_tol,
                               plateau_patience=plateau_patience)
        self.budget: list[int] = []
        self._hooks: list = []
        self._masks: dict[int, Tensor] = {}
        self._batch = 0

    def _install_dropout(self, model: PlasticNetwork) -> None:
        """Hooks: the network's forward notes the batch size and forgets the last masks; every
        consumer of a hidden layer's units drops the inputs of that layer's dropped units."""
        def start(module: nn.Module, args: tuple) -> None:
            self._batch = args[0].shape[0]
            self._masks = {}

        self._hooks = [model.register_forward_pre_hook(start)]
        for i in hidden_layers(model):
            for c in model.units(i).consumers:
                hook = functools.partial(self._drop_inputs, model, i, c)
                self._hooks.append(model.plastic_layers[c.layer].register_forward_pre_hook(hook))

    def _drop_inputs(self, model: PlasticNetwork, layer: int, consumer: Consumer,
                     module: nn.Module, args: tuple) -> tuple | None:
        """Zero the inputs fed by dropped units; one mask per sample and layer, the same at
        every time step (inputs are ``[T * B, ...]``)."""
        if not module.training:
            return None
        x = args[0]
        mask = self._masks.get(layer)
        if mask is None:
            n = model.plastic_layers[layer].n_out
            keep = torch.rand(self._batch, n, device=x.device) >= self.dropout
            mask = self._masks[layer] = keep.to(x.dtype) / (1.0 - self.dropout)
        m = mask.repeat_interleave(consumer.width, 1) if consumer.width > 1 else mask
        steps = x.shape[0] // self._batch
        shape = (1, *m.shape) + (1,) * (x.dim() - 2)
        return ((x.view(steps, self._batch, *x.shape[1:]) * m.view(shape)).view_as(x),)

    def before_task(self, ctx: Context) -> None:
        if not self.budget:
            self.budget = budgets(self.max_units, ctx.model.initial_widths())
        self.monitor.budget = list(self.budget)
        if self.dropout > 0 and not self._hooks:
            self._install_dropout(ctx.model)
        super().before_task(ctx)

    def after_step(self, ctx: Context) -> None:
        monitor = self.monitor
        monitor.after_step(ctx)
        if self.grow_n == 0:
            return
        due = (ctx.step + 1) % self.every == 0 if self.every else monitor.plateau.plateau
        if not due:
            return
        model = ctx.model
        for i in hidden_layers(model):
            n = model.plastic_layers[i].n_out
            k = min(self.grow_n, self.budget[i] - n)
            if k <= 0:
                continue
            apply_grow(monitor, model, i, k, ctx.optimizer)
            log_decision(ctx, "grow", i, k, {
                "plateau": monitor.plateau.plateau, "loss_window": monitor.plateau.last,
                "units": n, "budget": self.budget[i], "every": self.every})
        monitor.plateau.reset()

    def after_task(self, ctx: Context) -> None:
        self.monitor.invalidate()
        if self.apoptosis > 0:
            self._apoptosis(ctx)
        super().after_task(ctx)

    def _apoptosis(self, ctx: Context) -> None:
        model, stats = ctx.model, self.monitor.stats
        stats.follow(model)
        for i in hidden_layers(model):
            n = model.plastic_layers[i].n_out
            util = stats.utility(i)
            mean_util = float(util.mean())
            low = (util < self.apoptosis * mean_util) & (stats.age(i) > self.maturity)
            low &= self.monitor.free_units(model, i)
            k = min(int(low.sum()), max(n - self.min_units, 0))
            if k == 0:
                continue
            idx = torch.nonzero(low).flatten()
            units = idx[torch.topk(-util[idx], k).indices].sort().values
            apply_remove(self.monitor, model, i, units, ctx.optimizer)
            log_decision(ctx, "prune", i, k, {"utility_mean": mean_util,
                                              "threshold": self.apoptosis * mean_util,
                                              "units": n})

    def get_extra_state(self) -> dict:
        return {"budget": self.budget}

    def set_extra_state(self, state: dict) -> None:
        self.budget = [int(b) for b in state["budget"]]
