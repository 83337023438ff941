"""Shrink & Perturb (Ash & Adams 2020, "On Warm-Starting Neural Network Training", NeurIPS).

At every task boundary each trainable weight and bias becomes ``w <- shrink * w + noise * e``.
Deviation: Ash & Adams draw ``e`` from one isotropic Gaussian; here ``e`` is a fresh draw from
each layer's own initial distribution (:meth:`neurosculpt.layers.PlasticLayer.reinit_weights`:
He-uniform weights, PyTorch-default biases), so one ``noise`` value suits layers of any width,
and ``shrink=0, noise=1`` is exactly a fresh network. Frozen (consolidated) synapses and biases
are left alone.
"""

from __future__ import annotations

import math

import torch

from ..layers import weight_bound
from ..loop import Context
from ..plasticity.signals import Monitor, log_decision
from .base import MonitoredStrategy


class ShrinkPerturb(MonitoredStrategy):
    """Shrink every free parameter towards zero and add init-scaled noise before each new task.

    Args:
        shrink: factor free parameters are multiplied by before each new task, in [0, 1].
        noise: scale of the added fresh initialisation noise.
        log_every: steps between snapshots of the plasticity signals in results.json (0: only at the
            end of each task).
        probe: inputs of the forward pass that measures a snapshot's signals (dormancy, rank).
    """

    name = "shrink-perturb"

    def __init__(self, shrink: float = 0.4, noise: float = 0.1, log_every: int = 1000,
                 probe: int = 256) -> None:
        super().__init__()
        if not 0.0 <= shrink <= 1.0 or noise < 0:
            raise ValueError("shrink must be in [0, 1] and noise >= 0")
        self.hparams = {"shrink": shrink, "noise": noise, "log_every": log_every,
                        "probe": probe}
        self.shrink = shrink
        self.noise = noise
        self.monitor = Monitor(self.name, log_every=log_every, probe=probe)

    @torch.no_grad()
    def before_task(self, ctx: Context) -> None:
        if ctx.task_id > 0:
            for i, layer in enumerate(ctx.model.plastic_layers):
                fan_in = layer.weight[0].numel()
                bound = weight_bound(fan_in)
                bias_bound = 1.0 / math.sqrt(fan_in) if fan_in else 0.0
                train_w = layer.mask & ~layer.frozen
                fresh = torch.empty_like(layer.weight).uniform_(-bound, bound)
                new_w = self.shrink * layer.weight + self.noise * fresh
                layer.weight.copy_(torch.where(train_w, new_w, layer.weight))
                fresh_b = torch.empty_like(layer.bias).uniform_(-bias_bound, bias_bound)
                new_b = self.shrink * layer.bias + self.noise * fresh_b
                layer.bias.copy_(torch.where(layer.bias_frozen, layer.bias, new_b))
                log_decision(ctx, "shrink-perturb", i, int(train_w.sum()),
                             {"shrink": self.shrink, "noise": self.noise})
        super().before_task(ctx)
