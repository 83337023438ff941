"""L2 Init (Kumar, Marklund & Van Roy 2023, "Maintaining Plasticity in Continual Learning via
Regenerative Regularization"): ``loss + lam * ||theta - theta_0||^2``.

The penalty's gradient ``2 lam (theta - theta_0)`` is added to the parameters' gradients after
the backward pass: the same update as putting the penalty in the loss, without a second pass of
the parameters through autograd (which cost +73% training time on a small MLP). The logged
training loss is therefore the task's loss alone.

``theta_0`` are the plastic layers' weights and biases when the first task starts (neuron
parameters such as a learnable threshold are not regularised). Synapses pruned or frozen by
another strategy are left out. The anchors follow the network's resize journal: entries of
grown units are anchored at their initial value, removed units take their anchors with them.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..loop import Context
from ..network import follow
from ..plasticity.signals import Monitor
from .base import MonitoredStrategy


class L2Init(MonitoredStrategy):
    """Regenerative regularisation towards the initial parameters.

    Args:
        lam: strength of the L2 pull towards the initial parameters.
        log_every: steps between snapshots of the plasticity signals in results.json (0: only at the
            end of each task).
        probe: inputs of the forward pass that measures a snapshot's signals (dormancy, rank).
    """

    name = "l2-init"
    # journal position (see ParameterPenalty) and the keep-mask cache, rebuilt when needed
    transient: tuple[str, ...] = ("_serial", "_keeps")

    def __init__(self, lam: float = 1e-3, log_every: int = 1000, probe: int = 256) -> None:
        super().__init__()
        if lam < 0:
            raise ValueError("lam must be >= 0")
        self.hparams = {"lam": lam, "log_every": log_every, "probe": probe}
        self.lam = lam
        self.monitor = Monitor(self.name, log_every=log_every, probe=probe)
        self._serial: int | None = None
        self._keeps: dict[int, tuple[tuple, tuple[Tensor | None, Tensor | None]]] = {}

    def _anchors(self, ctx: Context) -> None:
        """Anchor every plastic layer when first seen; follow the journal since the last call
        (new units' entries take their current, i.e. initial, values)."""
        model = ctx.model
        resizes = [] if self._serial is None else model.resizes_since(self._serial)
        self._serial = model.resize_serial
        for i, layer in enumerate(model.plastic_layers):
            for kind, param in (("w", layer.weight), ("b", layer.bias)):
                key = f"anchor_{kind}{i}"
                have = self._buffers.get(key)
                if have is None:
                    self.set_buffer(key, param.detach().clone())
                elif resizes:
                    self.set_buffer(key, follow(have, resizes, weight=i, fill=param.detach()))

    def before_task(self, ctx: Context) -> None:
        self._anchors(ctx)
        super().before_task(ctx)

    def after_backward(self, ctx: Context) -> None:
        super().after_backward(ctx)
        if self.lam == 0:
            return
        self._anchors(ctx)
        grads, params, anchors, masked = [], [], [], []
        for i, layer in enumerate(ctx.model.plastic_layers):
            keeps = self._keep(i, layer)
            for kind, param, keep in (("w", layer.weight, keeps[0]), ("b", layer.bias, keeps[1])):
                if param.grad is None:
                    continue
                grads.append(param.grad)
                params.append(param)
                anchors.append(self._buffers[f"anchor_{kind}{i}"])
                if keep is not None:
                    masked.append((param.grad, keep))
        if not grads:
            return
        with torch.no_grad():  # two fused passes over all parameters: grad += 2 lam (w - w0)
            torch._foreach_add_(grads, params, alpha=2.0 * self.lam)
            torch._foreach_add_(grads, anchors, alpha=-2.0 * self.lam)
            for grad, keep in masked:  # the task's gradient is already zero there
                grad.mul_(keep)

    def _keep(self, i: int, layer) -> tuple[Tensor | None, Tensor | None]:
        """Where the pull applies (live, unfrozen weights; unfrozen biases) as 0/1 tensors, None
        where that is everywhere; rebuilt only when the layer's structure buffers change."""
        mask, frozen, bias_frozen = layer.mask, layer.frozen, layer.bias_frozen
        key = (id(mask), mask._version, mask.shape, id(frozen), frozen._version,
               id(bias_frozen), bias_frozen._version)
        cached = self._keeps.get(i)
        if cached is None or cached[0] != key:
            keep_w, keep_b = mask & ~frozen, ~bias_frozen
            cached = self._keeps[i] = (key, (
                None if bool(keep_w.all()) else keep_w.to(layer.weight.dtype),
                None if bool(keep_b.all()) else keep_b.to(layer.bias.dtype)))
        return cached[1]

    def after_eval(self, ctx: Context) -> None:
        self._anchors(ctx)  # catch up before the checkpoint
