"""Importance scores: how much each synapse (and unit) of the plastic layers matters.

Every score returns one tensor per plastic layer, shaped like its weight; higher means more
important, and synapses that are not live score 0, so a pruning rule can rank the live ones.

- ``magnitude``: ``|w|`` (Han et al. 2015, "Learning both Weights and Connections for Efficient
  Neural Networks"; the criterion of PackNet).
- ``activity``: Hebbian co-activation ``|E[pre_i(t) post_j(t)]|`` over time steps and samples
  ("cells that fire together wire together", Hebb 1949): a synapse whose input never fires, or
  whose unit never fires, carries nothing. In spiking models ``pre``/``post`` are spikes; in
  non-spiking ones ReLU activations. The output layer has no spiking population, so its
  ``post`` is the teacher signal (the one-hot target, repeated over time steps): a supervised
  Hebbian term. For a convolution the product is averaged over positions as well.
- ``taylor``: first-order Taylor estimate of the loss change when the synapse is removed,
  ``|w dL/dw|``, averaged over mini-batches (Molchanov et al. 2017, "Pruning Convolutional
  Neural Networks for Resource Efficient Inference"; per weight as in Molchanov et al. 2019,
  "Importance Estimation for Neural Network Pruning", who square the product instead of taking
  its absolute value).
- ``obd``: Optimal Brain Damage saliency ``s_k = h_kk w_k^2 / 2`` (LeCun, Denker & Solla 1990,
  Eq. 6). Deviation: LeCun et al. back-propagate exact second derivatives; here the Hessian's
  diagonal is approximated by the mean squared mini-batch gradient ``E[(dL/dw)^2]`` (the
  empirical Fisher information, as EWC does), which needs no second backward pass and can be
  accumulated for free during training.

Gradient-based scores accumulate in a :class:`GradientStats` fed from a strategy's
``after_backward`` hook (no extra passes), or are computed from a few batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..layers import PlasticConv2d, PlasticLayer
from ..network import PlasticNetwork, recording
from ..renames import renamed_attribute

SYNAPSE_SCORES = ("magnitude", "activity", "taylor", "obd")
UNIT_SCORES = ("magnitude", "activity", "taylor", "obd")

Batches = Iterable[tuple[Tensor, Tensor]]


def current_weight(layer: PlasticLayer) -> Tensor:
    """The values the forward pass uses (frozen synapses read ``frozen_weight``), unmasked."""
    return torch.where(layer.frozen, layer.frozen_weight, layer.weight.detach())


class GradientStats:
    """Running sums of ``|w * dL/dw|`` and, with ``squares``, ``(dL/dw)^2`` per plastic layer.

    Call :meth:`update` after each backward pass (it reads ``weight.grad``); the gradient of a
    frozen or pruned synapse is zero, so only trainable synapses collect importance (and the
    trainable value is the one the forward pass used). The squared gradients (for ``obd`` and
    ``fisher``) cost two more passes per step, so they are kept only when asked for. The sums
    are tied to the layer shapes at creation: create new ones after growth or compaction.
    """

    def __init__(self, model: PlasticNetwork, squares: bool = True) -> None:
        self.layers = list(model.plastic_layers)
        self.taylor = [torch.zeros_like(layer.weight, dtype=torch.float32)
                       for layer in self.layers]
        self.sq_grad = [torch.zeros_like(t) for t in self.taylor] if squares else None
        self.steps = 0

    def update(self, grads: list[Tensor | None] | None = None) -> None:
        """Add one mini-batch's gradients (``grads`` per layer, or each ``weight.grad``)."""
        if grads is None:
            grads = [layer.weight.grad for layer in self.layers]
        for i, (layer, g) in enumerate(zip(self.layers, grads, strict=True)):
            if g is None:
                continue
            if g.shape != self.taylor[i].shape:
                raise ValueError(
                    f"layer {i} changed shape from {tuple(self.taylor[i].shape)} to "
                    f"{tuple(g.shape)} since these statistics were created; create new ones"
                )
            g = g.detach()
            self.taylor[i].add_(torch.mul(layer.weight.detach(), g).abs_())
            if self.sq_grad is not None:
                self.sq_grad[i].addcmul_(g, g)
        self.steps += 1

    def scores(self, kind: str) -> list[Tensor]:
        """``taylor``: mean ``|w g|``; ``obd``: ``0.5 w^2 E[g^2]``; ``fisher``: ``E[g^2]``."""
        if self.steps == 0:
            raise ValueError("no gradients accumulated yet")
        if kind in ("obd", "fisher") and self.sq_grad is None:
            raise ValueError(f"{kind!r} needs squared gradients: create the statistics with "
                             "squares=True")
        squares = self.sq_grad if self.sq_grad is not None else [None] * len(self.layers)
        out = []
        for layer, taylor, sq in zip(self.layers, self.taylor, squares, strict=True):
            if kind == "taylor":
                score = taylor / self.steps
            elif kind == "obd":
                score = 0.5 * current_weight(layer) ** 2 * (sq / self.steps)
            elif kind == "fisher":
                score = sq / self.steps
            else:
                raise ValueError(f"unknown gradient score {kind!r}; valid: taylor, obd, fisher")
            out.append(score * layer.mask)
        return out


def gradient_stats(model: PlasticNetwork, batches: Batches,
                   forward: Callable[[Tensor], Tensor] | None = None,
                   loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy) -> GradientStats:
    """Accumulate :class:`GradientStats` over ``batches`` without touching ``.grad``."""
    forward = forward or model
    stats = GradientStats(model)
    weights = [layer.weight for layer in stats.layers]
    with torch.enable_grad():
        for x, y in batches:
            loss = loss_fn(forward(x), y)
            grads = torch.autograd.grad(loss, weights, allow_unused=True)
            stats.update(list(grads))
    return stats


@torch.no_grad()
def cofiring(model: PlasticNetwork, batches: Batches,
             forward: Callable[[Tensor], Tensor] | None = None) -> list[Tensor]:
    """``|E[pre * post]|`` per synapse of every plastic layer (see the module docstring)."""
    forward = forward or model
    layers = model.plastic_layers
    inputs: dict[int, Tensor] = {}
    hooks = [layer.register_forward_pre_hook(
        lambda _module, args, i=i: inputs.__setitem__(i, args[0]))
        for i, layer in enumerate(layers)]
    sums = [torch.zeros_like(layer.weight, dtype=torch.float32) for layer in layers]
    count = 0
    try:
        with recording(model):
            for x, y in batches:
                logits = forward(x)
                posts = [a.reshape(-1, *a.shape[2:]) for a in model.activity]
                steps = len(posts[0]) // len(y) if posts else 1
                target = F.one_hot(y, logits.shape[-1]).to(inputs[0].dtype)
                posts.append(target.repeat(steps, 1))
                for i, layer in enumerate(layers):
                    pre = inputs[i]
                    if len(pre) != len(posts[i]):  # direct coding: one input for all steps
                        pre = pre.repeat(steps, *[1] * (pre.dim() - 1))
                    post = posts[i].to(pre.dtype)
                    if isinstance(layer, PlasticConv2d):
                        total = torch.nn.grad.conv2d_weight(
                            pre, layer.weight.shape, post, padding=layer.padding)
                        sums[i] += total / (post.shape[-1] * post.shape[-2])
                    else:
                        sums[i] += post.t() @ pre
                count += len(posts[-1])
    finally:
        for hook in hooks:
            hook.remove()
    if count == 0:
        raise ValueError("the activity score needs at least one batch")
    return [(s / count).abs() * layer.mask for s, layer in zip(sums, layers, strict=True)]


def synapse_scores(model: PlasticNetwork, kind: str, batches: Batches | None = None, *,
                   forward: Callable[[Tensor], Tensor] | None = None,
                   stats: GradientStats | None = None,
                   loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy
                   ) -> list[Tensor]:
    """Importance of every synapse of every plastic layer (see the module docstring).

    ``batches`` of ``(x, y)`` feed ``activity`` and, when no accumulated ``stats`` are given,
    the gradient scores; ``forward`` maps ``x`` to logits (e.g. with the task's output mask;
    default: the model).
    """
    if kind not in SYNAPSE_SCORES:
        raise ValueError(f"unknown score {kind!r}; valid: {', '.join(SYNAPSE_SCORES)}")
    if kind == "magnitude":
        return [current_weight(layer).abs() * layer.mask for layer in model.plastic_layers]
    if kind == "activity":
        if batches is None:
            raise ValueError("the activity score needs batches")
        return cofiring(model, batches, forward)
    if stats is None or stats.steps == 0:
        if batches is None:
            raise ValueError(f"the {kind} score needs batches or accumulated gradient stats")
        stats = gradient_stats(model, batches, forward, loss_fn)
    return stats.scores(kind)


@torch.no_grad()
def firing_rates(model: PlasticNetwork, batches: Batches,
                 forward: Callable[[Tensor], Tensor] | None = None) -> list[Tensor]:
    """Mean activity per unit of each hidden layer, and mean ``|current|`` of each output."""
    forward = forward or model
    out_layer = model.plastic_layers[-1]
    currents: list[Tensor] = []
    hook = out_layer.register_forward_hook(
        lambda _module, _args, output: currents.append(output.detach().abs().mean(0)))
    sums: list[Tensor] | None = None
    n = 0
    try:
        with recording(model):
            for x, _y in batches:
                forward(x)
                means = [a.flatten(3).mean(-1) if a.dim() > 3 else a for a in model.activity]
                rates = [m.mean((0, 1)) for m in means] + [currents.pop()]
                sums = rates if sums is None else [s + r for s, r in zip(sums, rates, strict=True)]
                n += 1
    finally:
        hook.remove()
    if sums is None:
        raise ValueError("the activity score needs at least one batch")
    return [s / n for s in sums]


def unit_scores(model: PlasticNetwork, kind: str, batches: Batches | None = None, *,
                forward: Callable[[Tensor], Tensor] | None = None,
                stats: GradientStats | None = None) -> list[Tensor]:
    """Importance of every output unit of every plastic layer (one vector per layer).

    ``activity``: mean firing rate (hidden layers; mean |current| for outputs), the "use it or
    lose it" signal of dormant-neuron methods. Other kinds: the sum of the unit's incoming
    synapse scores; ``magnitude`` is then the summed ``|w|`` that DSD-SNN (Han et al. 2023)
    normalises and accumulates to decide which units to prune.
    """
    if kind not in UNIT_SCORES:
        raise ValueError(f"unknown score {kind!r}; valid: {', '.join(UNIT_SCORES)}")
    if kind == "activity":
        if batches is None:
            raise ValueError("the activity score needs batches")
        return firing_rates(model, batches, forward)
    scores = synapse_scores(model, kind, batches, forward=forward, stats=stats)
    return [s.flatten(1).sum(1) for s in scores]


def __getattr__(name: str) -> object:  # old names (neuron_scores): neurosculpt.renames
    return renamed_attribute(__name__, name, globals())
