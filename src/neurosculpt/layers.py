"""Plastic layers: linear and convolutional layers whose connectivity is data.

Every plastic layer owns, next to its ``weight`` and ``bias``:

- ``mask``: which synapses exist (bool, same shape as the weight);
- ``owner``: per synapse, :data:`FREE` or the id of the task that consolidated it, i.e. the
  task-partitioned connectivity of PackNet (Mallya & Lazebnik 2018) and of the development
  cycle;
- ``frozen``: per synapse, whether its value is fixed; a frozen synapse reads its value from the
  ``frozen_weight`` buffer, so no optimizer (momentum, weight decay) can move it;
- the same three for the bias, per output unit.

All of it lives in parameters and buffers, so ``state_dict`` is the whole truth.

The primitive structural operations (grow, prune, freeze, compact) live here as functions on a
layer and on the optimizer that trains it; strategies compose them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .renames import deprecated_name

FREE = -1
"""Owner value of a synapse that no task has consolidated yet."""


def weight_bound(fan_in: int) -> float:
    """Half-width of the uniform init: He et al. (2015), ``sqrt(6 / fan_in)``.

    PyTorch's default (``1 / sqrt(fan_in)``) leaves spiking layers with threshold 1 silent after
    two or three layers (``snn-conv`` got no gradient at all), so every unit type uses He's.
    """
    return math.sqrt(6.0 / fan_in) if fan_in > 0 else 0.0


class PlasticLayer(nn.Module):
    """Common state and masking of :class:`PlasticLinear` and :class:`PlasticConv2d`.

    ``active_task`` selects a task's subnetwork for the forward pass. An earlier task (one below
    ``training_task``) sees the synapses owned by tasks ``<= active_task``; the task being
    trained, later tasks and ``None`` (class-incremental inference) see every live synapse.
    Until some synapse is owned (strategies without partitions), every task sees everything.
    """

    weight: nn.Parameter
    bias: nn.Parameter

    def _init_structure(self) -> None:
        shape = self.weight.shape
        self.register_buffer("mask", torch.ones(shape, dtype=torch.bool))
        self.register_buffer("owner", torch.full(shape, FREE, dtype=torch.int16))
        self.register_buffer("frozen", torch.zeros(shape, dtype=torch.bool))
        self.register_buffer("frozen_weight", torch.zeros(shape))
        n_out = shape[0]
        self.register_buffer("bias_owner", torch.full((n_out,), FREE, dtype=torch.int16))
        self.register_buffer("bias_frozen", torch.zeros(n_out, dtype=torch.bool))
        self.register_buffer("frozen_bias", torch.zeros(n_out))
        self.active_task: int | None = None
        self.training_task: int = 0

    def reinit_weights(self, rows: Tensor | None = None, cols: Tensor | None = None) -> None:
        """Fresh He-uniform weights (and PyTorch-default biases) for the given rows/columns
        (index tensors)."""
        shape = self.weight.shape
        fan_in = math.prod(shape[1:])
        bound = weight_bound(fan_in)
        bias_bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        with torch.no_grad():
            if rows is not None:
                n = len(rows)
                self.weight[rows] = self.weight.new_empty(n, *shape[1:]).uniform_(-bound, bound)
                self.bias[rows] = self.bias.new_empty(n).uniform_(-bias_bound, bias_bound)
            if cols is not None:
                fresh = torch.empty_like(self.weight[:, cols]).uniform_(-bound, bound)
                self.weight[:, cols] = fresh

    @property
    def n_out(self) -> int:
        return self.weight.shape[0]

    @property
    def n_in(self) -> int:
        return self.weight.shape[1]

    def synapse_mask(self, task: int | None = None) -> Tensor:
        """Live synapses visible to ``task`` (see the class docstring)."""
        if task is None or task >= self.training_task:
            return self.mask
        owned = self.owner >= 0
        if not bool(owned.any()):
            return self.mask
        return self.mask & owned & (self.owner <= task)

    def _forward_plan(self) -> tuple[Tensor | None, Tensor | None, bool]:
        """(trainable multiplier or None, constant part or None, any bias frozen).

        The effective weight is ``weight * trainable + constant``: ``trainable`` is 1 on visible
        synapses that are not frozen, ``constant`` holds the visible frozen values. Both are
        recomputed only when the structure changed: the key holds the identity, shape and
        in-place version counter of every structural buffer plus the task selection, so masking
        costs nothing on the hot path of a dense, unconsolidated layer and one fused
        multiply-add on a consolidated one.
        """
        buffers = (self.mask, self.owner, self.frozen, self.frozen_weight, self.bias_frozen)
        key = (self.active_task, self.training_task,
               *((id(b), tuple(b.shape), b._version) for b in buffers))
        if getattr(self, "_plan_key", None) != key:
            visible = self.synapse_mask(self.active_task)
            frozen = self.frozen & visible
            any_frozen = bool(frozen.any())
            trainable = None
            if any_frozen or not bool(visible.all()):
                trainable = (visible & ~self.frozen).to(self.weight.dtype)
            constant = self.frozen_weight * frozen if any_frozen else None
            self._plan = (trainable, constant, bool(self.bias_frozen.any()))
            self._plan_key = key
        return self._plan

    def effective_weight(self) -> Tensor:
        """Trainable values, frozen values where frozen, zero where no synapse is visible.

        Element-wise passes that would change nothing are skipped (see :meth:`_forward_plan`),
        which keeps plain fine-tuning at ``nn.Linear`` speed.
        """
        return self._weight_from(self._forward_plan())

    def effective_bias(self) -> Tensor:
        """Trainable biases, frozen values where frozen."""
        return self._bias_from(self._forward_plan())

    def effective_parameters(self) -> tuple[Tensor, Tensor]:
        """(:meth:`effective_weight`, :meth:`effective_bias`) from one look-up of the cached
        plan (building its key is a few microseconds, on every forward pass)."""
        plan = self._forward_plan()
        return self._weight_from(plan), self._bias_from(plan)

    def _weight_from(self, plan: tuple[Tensor | None, Tensor | None, bool]) -> Tensor:
        trainable, constant, _ = plan
        if trainable is None:
            return self.weight
        if constant is None:
            return self.weight * trainable
        return torch.addcmul(constant, self.weight, trainable)

    def _bias_from(self, plan: tuple[Tensor | None, Tensor | None, bool]) -> Tensor:
        if not plan[2]:
            return self.bias
        return torch.where(self.bias_frozen, self.frozen_bias, self.bias)

    def live_synapses(self, task: int | None = None) -> int:
        return int(self.synapse_mask(task).sum())

    def live_units(self) -> int:
        """Output units with at least one live input synapse."""
        return int(self.mask.flatten(1).any(1).sum())

    def live_neurons(self) -> int:
        """Deprecated name of :meth:`live_units` (:mod:`neurosculpt.renames`)."""
        deprecated_name("PlasticLayer.live_neurons", "live_units")
        return self.live_units()


class PlasticLinear(PlasticLayer):
    """``y = x W^T + b`` with a synapse mask, owners and frozen synapses."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_out, n_in))
        self.bias = nn.Parameter(torch.empty(n_out))
        self._init_structure()
        self.reinit_weights(rows=torch.arange(n_out))

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, *self.effective_parameters())

    def extra_repr(self) -> str:
        return f"n_in={self.n_in}, n_out={self.n_out}, live={self.live_synapses()}"


class PlasticConv2d(PlasticLayer):
    """2-D convolution with per-synapse (per kernel weight) mask, owners and freezing."""

    def __init__(self, n_in: int, n_out: int, kernel_size: int = 3, padding: int = 1,
                 stride: int = 1) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.padding = padding
        self.stride = stride
        self.weight = nn.Parameter(torch.empty(n_out, n_in, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(n_out))
        self._init_structure()
        self.reinit_weights(rows=torch.arange(n_out))

    def forward(self, x: Tensor) -> Tensor:
        weight, bias = self.effective_parameters()
        return F.conv2d(x, weight, bias, stride=self.stride, padding=self.padding)

    def extra_repr(self) -> str:
        return (
            f"n_in={self.n_in}, n_out={self.n_out}, kernel_size={self.kernel_size}, "
            f"padding={self.padding}, stride={self.stride}, live={self.live_synapses()}"
        )


def plastic_layers(model: nn.Module) -> list[PlasticLayer]:
    return [m for m in model.modules() if isinstance(m, PlasticLayer)]


# --- optimizer bookkeeping ---------------------------------------------------------------------


def _remap_state(value: Tensor, old_shape: torch.Size, new_shape: torch.Size, dim: int,
                 old_index: Tensor, new_index: Tensor) -> Tensor:
    if not torch.is_tensor(value) or value.shape != old_shape:
        return value
    out = torch.zeros(new_shape, dtype=value.dtype, device=value.device)
    out.index_copy_(dim, new_index, value.index_select(dim, old_index))
    return out


def clear_optimizer_state(optimizer: torch.optim.Optimizer, param: Tensor, where: Tensor) -> None:
    """Zero the per-entry optimizer state (momenta) of ``param`` at ``where``: reopened synapses
    are new connections, as new entries are in :func:`replace_parameter`."""
    for value in optimizer.state.get(param, {}).values():
        if torch.is_tensor(value) and value.shape == param.shape:
            value[where] = 0


def replace_parameter(
    module: nn.Module,
    name: str,
    new_data: Tensor,
    optimizer: torch.optim.Optimizer | None,
    dim: int,
    old_index: Tensor,
    new_index: Tensor,
) -> nn.Parameter:
    """Swap ``module.<name>`` for a parameter holding ``new_data`` and carry the optimizer over.

    Entries ``old_index`` along ``dim`` of the old parameter moved to ``new_index`` of the new one;
    their optimizer state (e.g. Adam's moments) moves with them, new entries start from zero
    state. Everything else in the optimizer is untouched.
    """
    old = getattr(module, name)
    new = nn.Parameter(new_data, requires_grad=old.requires_grad)
    setattr(module, name, new)
    if optimizer is None:
        return new
    for group in optimizer.param_groups:
        for i, p in enumerate(group["params"]):
            if p is old:
                group["params"][i] = new
    if old in optimizer.state:
        state = optimizer.state.pop(old)
        optimizer.state[new] = {
            k: _remap_state(v, old.shape, new.shape, dim, old_index, new_index)
            for k, v in state.items()
        }
    return new


def _resize_buffer(layer: nn.Module, name: str, new_shape: Sequence[int], dim: int,
                   old_index: Tensor, new_index: Tensor, fill: float | int | bool) -> None:
    old = getattr(layer, name)
    new = torch.full(tuple(new_shape), fill, dtype=old.dtype, device=old.device)
    new.index_copy_(dim, new_index, old.index_select(dim, old_index))
    setattr(layer, name, new)


_WEIGHT_BUFFERS = (("mask", True), ("owner", FREE), ("frozen", False), ("frozen_weight", 0.0))
_BIAS_BUFFERS = (("bias_owner", FREE), ("bias_frozen", False), ("frozen_bias", 0.0))


def _resize(layer: PlasticLayer, dim: int, new_size: int, old_index: Tensor, new_index: Tensor,
            optimizer: torch.optim.Optimizer | None) -> None:
    """Resize ``layer`` along ``dim`` (0 = output units, 1 = inputs), moving kept entries."""
    new_shape = list(layer.weight.shape)
    new_shape[dim] = new_size
    data = layer.weight.new_zeros(new_shape)
    data.index_copy_(dim, new_index, layer.weight.detach().index_select(dim, old_index))
    replace_parameter(layer, "weight", data, optimizer, dim, old_index, new_index)
    for name, fill in _WEIGHT_BUFFERS:
        _resize_buffer(layer, name, new_shape, dim, old_index, new_index, fill)
    if dim == 0:
        bias = layer.bias.new_zeros(new_size)
        bias.index_copy_(0, new_index, layer.bias.detach().index_select(0, old_index))
        replace_parameter(layer, "bias", bias, optimizer, 0, old_index, new_index)
        for name, fill in _BIAS_BUFFERS:
            _resize_buffer(layer, name, (new_size,), 0, old_index, new_index, fill)


# --- structural operations ---------------------------------------------------------------------


def grow_outputs(layer: PlasticLayer, n: int, optimizer: torch.optim.Optimizer | None = None
                 ) -> Tensor:
    """Append ``n`` output units with fresh weights; return their indices."""
    old, device = layer.n_out, layer.weight.device
    kept = torch.arange(old, device=device)
    _resize(layer, 0, old + n, kept, kept, optimizer)
    new_rows = torch.arange(old, old + n, device=device)
    layer.reinit_weights(rows=new_rows)
    return new_rows


def grow_inputs(layer: PlasticLayer, n: int, optimizer: torch.optim.Optimizer | None = None
                ) -> Tensor:
    """Append ``n`` input channels (new units of the layer it reads); return their indices.

    The new synapses start at fresh small values (they are free and trainable), so the layer's
    output on old inputs is unchanged only up to the contribution of new units, which is zero
    until those units are active.
    """
    old, device = layer.n_in, layer.weight.device
    kept = torch.arange(old, device=device)
    _resize(layer, 1, old + n, kept, kept, optimizer)
    new_cols = torch.arange(old, old + n, device=device)
    layer.reinit_weights(cols=new_cols)
    return new_cols


def remove_outputs(layer: PlasticLayer, units: Tensor,
                   optimizer: torch.optim.Optimizer | None = None) -> None:
    """Compaction: delete output units ``units`` so the tensors really shrink."""
    keep = _complement(layer.n_out, units, layer.weight.device)
    _resize(layer, 0, len(keep), keep, torch.arange(len(keep), device=keep.device), optimizer)


def remove_inputs(layer: PlasticLayer, inputs: Tensor,
                  optimizer: torch.optim.Optimizer | None = None) -> None:
    """Compaction of the input side, matching :func:`remove_outputs` on the layer it reads."""
    keep = _complement(layer.n_in, inputs, layer.weight.device)
    _resize(layer, 1, len(keep), keep, torch.arange(len(keep), device=keep.device), optimizer)


def _complement(n: int, remove: Tensor, device: torch.device) -> Tensor:
    drop = torch.zeros(n, dtype=torch.bool, device=device)
    drop[torch.as_tensor(remove, dtype=torch.long, device=device)] = True
    return torch.nonzero(~drop).flatten()


def top_by_position(values: Tensor, k: int) -> Tensor:
    """Boolean mask of the ``k`` largest ``values``, ties broken by position (earlier wins): the
    first ``k`` of a stable descending sort, found with ``kthvalue`` in linear time (a stable
    sort of 200k scores takes ~20 ms on one core, this ~2 ms; pruning sorts every layer at
    every pruning step). NaN counts as largest, as in ``torch.sort``."""
    n = len(values)
    if k >= n:
        return torch.ones(n, dtype=torch.bool, device=values.device)
    if k <= 0:
        return torch.zeros(n, dtype=torch.bool, device=values.device)
    if bool(torch.isnan(values).any()):  # kthvalue does not order NaN; sort (rare)
        top = torch.zeros(n, dtype=torch.bool, device=values.device)
        top[torch.argsort(values, descending=True, stable=True)[:k]] = True
        return top
    kth = torch.kthvalue(values, n - k + 1).values
    above = values > kth
    tied = values == kth
    return above | (tied & (torch.cumsum(tied, 0) <= k - int(above.sum())))


def prune_synapses(layer: PlasticLayer, remove: Tensor) -> int:
    """Remove the synapses in boolean ``remove`` (frozen ones are never removed); return count."""
    remove = remove & layer.mask & ~layer.frozen
    with torch.no_grad():
        layer.mask &= ~remove
        layer.weight[remove] = 0.0
    return int(remove.sum())


def reopen_free_synapses(layer: PlasticLayer) -> int:
    """Re-open every free (unowned) synapse with a fresh value; return how many were reopened."""
    closed = ~layer.mask & (layer.owner == FREE)
    if closed.any():
        bound = weight_bound(layer.weight[0].numel())
        with torch.no_grad():
            layer.weight[closed] = layer.weight.new_empty(int(closed.sum())).uniform_(-bound,
                                                                                      bound)
            layer.mask |= closed
    return int(closed.sum())


def consolidate(layer: PlasticLayer, task: int, freeze: bool = True) -> int:
    """Give every live free synapse (and bias) to ``task``; with ``freeze`` fix their values."""
    claim = layer.mask & (layer.owner == FREE)
    claim_bias = layer.bias_owner == FREE
    with torch.no_grad():
        layer.owner[claim] = task
        layer.bias_owner[claim_bias] = task
        if freeze:
            layer.frozen_weight[claim] = layer.weight[claim]
            layer.frozen |= claim
            layer.frozen_bias[claim_bias] = layer.bias[claim_bias]
            layer.bias_frozen |= claim_bias
    return int(claim.sum())


def free_synapse_mask(layer: PlasticLayer) -> Tensor:
    """Live synapses that no task owns: the ones the current task may change and prune."""
    return layer.mask & (layer.owner == FREE)


def partition_sizes(layer: PlasticLayer) -> dict[str, int]:
    """Live synapses per owner: ``{"free": n, "0": n0, "1": n1, ...}``."""
    owners = layer.owner[layer.mask]
    values, counts = torch.unique(owners, return_counts=True)
    return {("free" if int(v) == FREE else str(int(v))): int(c)
            for v, c in zip(values, counts, strict=True)}


def set_active_task(layers: Iterable[PlasticLayer], task: int | None) -> None:
    for layer in layers:
        layer.active_task = task


def set_training_task(layers: Iterable[PlasticLayer], task: int) -> None:
    for layer in layers:
        layer.training_task = task
