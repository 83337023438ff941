"""Structural operations on any :class:`~neurosculpt.network.PlasticNetwork`, in terms of its
interface only: who a layer's units feed, which units no task owns, growing within a capacity,
removing orphaned units, releasing and consolidating a task's synapses.

Shared by the development cycle (``develop``), DSD (``dsd``), the plasticity controller
(``neuroplastic``) and the unit-level baselines (``cbp``, ``redo``, ``dropin``). Every change of
a network's units goes through :meth:`~neurosculpt.network.PlasticNetwork.grow_units`,
:meth:`~neurosculpt.network.PlasticNetwork.remove_units` or
:meth:`~neurosculpt.network.PlasticNetwork.reinit_units`, so it lands in the resize journal that
every stateful strategy follows. The functions of the same names here add what a plasticity rule
wants around them (silent outgoing weights for grown units, the bias correction of Dohare et
al.).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from .. import layers as L
from ..network import PlasticNetwork

if TYPE_CHECKING:
    from ..loop import Context


# --- connectivity -------------------------------------------------------------------------------


def unit_columns(model: PlasticNetwork, layer: int,
                 of: Callable[[L.PlasticLayer], Tensor]) -> Tensor:
    """``[units of layer, ...]``: row ``j`` holds everything of the consumers that reads unit
    ``j`` (for a convolution flattened into a linear layer, all ``H * W`` positions of channel
    ``j``), from ``of(consumer)``, a tensor shaped like each consumer's weight."""
    layers = model.plastic_layers
    n = layers[layer].n_out
    cols = [of(layers[c.layer]).transpose(0, 1).flatten(1).reshape(n, -1)
            for c in model.units(layer).consumers]
    return cols[0] if len(cols) == 1 else torch.cat(cols, 1)


def outgoing_weight(model: PlasticNetwork, layer: int) -> Tensor:
    """Sum of |outgoing weights| of every unit of hidden layer ``layer`` (live synapses)."""
    return unit_columns(model, layer, lambda c: c.effective_weight().detach().abs()).sum(1)


def has_outputs(model: PlasticNetwork, layer: int) -> Tensor:
    """Per unit of hidden layer ``layer``: does it feed any live synapse of a consumer?"""
    return unit_columns(model, layer, lambda c: c.mask).any(1)


def free_units(model: PlasticNetwork, layer: int) -> Tensor:
    """Units no task owns: none of their incoming, bias or outgoing synapses is consolidated.

    Only these may be reinitialised or removed without changing an earlier task's subnetwork.
    """
    cur = model.plastic_layers[layer]
    owned_in = ((cur.owner != L.FREE) | cur.frozen).flatten(1).any(1)
    owned_in |= (cur.bias_owner != L.FREE) | cur.bias_frozen
    owned_out = unit_columns(model, layer, lambda c: (c.owner != L.FREE) | c.frozen).any(1)
    return ~(owned_in | owned_out)


def hidden_layers(model: PlasticNetwork) -> list[int]:
    """Hidden layers whose units may be grown, removed and reinitialised (not ``fixed``)."""
    return [i for i in range(len(model.plastic_layers) - 1) if not model.units(i).fixed]



# --- unit operations with what plasticity rules add ----------------------------------------


@torch.no_grad()
def absorb_mean_output(model: PlasticNetwork, layer: int, units: Tensor,
                       mean_act: Tensor) -> None:
    """Add the mean contribution of ``units`` to their consumers' biases before they go, so the
    consumers' output is unchanged on average (Dohare et al.'s bias correction; for a
    convolution the kernel sum, exact away from the padded border)."""
    layers = model.plastic_layers
    for c in model.units(layer).consumers:
        nxt = layers[c.layer]
        w = nxt.effective_weight()[:, c.inputs(units)]
        w = w.reshape(nxt.n_out, len(units), -1).sum(2)  # [outputs, units]
        nxt.bias += w @ mean_act[units]


def reinit_units(model: PlasticNetwork, layer: int, units: Tensor,
                 optimizer: torch.optim.Optimizer | None,
                 mean_act: Tensor | None = None, optimizer_reset: str = "first") -> None:
    """:meth:`~neurosculpt.network.PlasticNetwork.reinit_units`; with ``mean_act`` (the units'
    mean activity) their mean contribution first moves into the consumers' biases."""
    units = torch.as_tensor(units, dtype=torch.long,
                            device=model.plastic_layers[layer].weight.device)
    if len(units) == 0:
        return
    if mean_act is not None:
        absorb_mean_output(model, layer, units, mean_act)
    model.reinit_units(layer, units, optimizer, optimizer_reset)


def grow_units(model: PlasticNetwork, layer: int, n: int,
               optimizer: torch.optim.Optimizer | None) -> Tensor:
    """Append ``n`` units to hidden layer ``layer`` as reinitialised ones (zero outgoing
    weights: the network's output is unchanged until they learn); the optimizer state of every
    old entry is kept."""
    new = model.grow_units(layer, n, optimizer)
    model.reinit_units(layer, new, optimizer)
    return new


def remove_units(model: PlasticNetwork, layer: int, units: Tensor,
                 optimizer: torch.optim.Optimizer | None,
                 mean_act: Tensor | None = None) -> Tensor:
    """Apoptosis of ``units`` of hidden layer ``layer`` (with ``mean_act``: their mean
    contribution moves into the consumers' biases first); returns the kept units."""
    units = torch.as_tensor(units, dtype=torch.long,
                            device=model.plastic_layers[layer].weight.device)
    if mean_act is not None and len(units):
        absorb_mean_output(model, layer, units, mean_act)
    return model.remove_units(layer, units, optimizer)


def budgets(max_units: int | float | list | tuple | None, widths: list[int]) -> list[int]:
    """Per-layer budget: an int for every layer, a list per layer, or a float factor of the
    configured widths (``None``: 1.5 times the configured width)."""
    if max_units is None:
        max_units = 1.5
    if isinstance(max_units, (list, tuple)):
        if len(max_units) != len(widths):
            raise ValueError(f"max_units has {len(max_units)} entries for {len(widths)} "
                             "hidden layers")
        return [int(m) for m in max_units]
    if isinstance(max_units, float):
        return [int(math.ceil(max_units * w)) for w in widths]
    return [int(max_units)] * len(widths)



# --- development: capacity, growth, apoptosis, release, consolidation ---------------------------


def capacity(model: PlasticNetwork, max_units: int | Sequence[int] | None) -> list[int]:
    """Maximum units per hidden layer; default: the widths the model was built with
    (:meth:`~neurosculpt.network.PlasticNetwork.initial_widths`, the same after growth,
    compaction and resume)."""
    built = model.initial_widths()
    if max_units is None:
        return built
    return per_layer(max_units, built, "max_units", allow_fraction=False)


def per_layer(value: int | float | Sequence[int | float], caps: Sequence[int], name: str,
              allow_fraction: bool = True) -> list[int]:
    """An int (count), a float (fraction of each layer's capacity) or one value per layer."""
    values = list(value) if isinstance(value, (list, tuple)) else [value] * len(caps)
    if len(values) != len(caps):
        raise ValueError(f"{name} has {len(values)} values but the model has {len(caps)} hidden "
                         "layers")
    out = []
    for v, cap in zip(values, caps, strict=True):
        if isinstance(v, float):
            if not allow_fraction:
                raise ValueError(f"{name} must be whole numbers of units, got {v}")
            v = round(v * cap)
        if v < 0:
            raise ValueError(f"{name} must be >= 0, got {v}")
        out.append(int(v))
    return out


def head_rows(ctx: Context) -> Tensor:
    """Boolean ``[n_outputs]``: the outputs the current task may produce (the rows it trains)."""
    return ctx.benchmark.output_mask(torch.tensor([ctx.task_id], device=ctx.device),
                                     ctx.task_id)[0]


def release_free_pool(ctx: Context, limits: Sequence[int | None] | None = None) -> list[int]:
    """Reopen every free synapse of the hidden layers and of the current head; close the free
    synapses of outputs this task does not produce. ``limits[l]``: at most that many free
    synapses stay open in hidden layer ``l`` (a uniformly random subset, from the seeded global
    generator). Returns reopened counts per layer."""
    layers = ctx.model.plastic_layers
    out = layers[-1]
    other = ~head_rows(ctx)[:, None].expand_as(out.mask)
    reopened = []
    for index, layer in enumerate(layers):
        closed = ~layer.mask & (layer.owner == L.FREE)
        L.reopen_free_synapses(layer)
        L.clear_optimizer_state(ctx.optimizer, layer.weight, closed)
        limit = limits[index] if limits is not None and layer is not out else None
        free = L.free_synapse_mask(layer)
        if limit is not None and int(free.sum()) > limit:
            position = torch.nonzero(free.flatten()).flatten()
            excess = position[torch.randperm(len(position), device="cpu")[limit:]]
            remove = torch.zeros_like(free)
            remove.view(-1)[excess] = True
            L.prune_synapses(layer, remove)
            closed &= layer.mask
        reopened.append(int((closed & ~other).sum()) if layer is out else int(closed.sum()))
    L.prune_synapses(out, L.free_synapse_mask(out) & other)
    return reopened


def quiet_inputs_of_owned_units(model: PlasticNetwork) -> int:
    """Set every free synapse onto a unit an earlier task owns to zero; return how many.

    Such synapses (reopened after pruning, or from newly grown units) would otherwise start at
    random values and scramble the features earlier tasks built before the new task can use
    them; from zero the task's gradient grows the ones it needs (PackNet's official code also
    reopens freed weights at zero).
    """
    count = 0
    with torch.no_grad():
        for layer in model.plastic_layers:
            shape = (-1,) + (1,) * (layer.weight.dim() - 1)
            target = L.free_synapse_mask(layer) & (layer.bias_owner != L.FREE).view(shape)
            layer.weight[target] = 0.0
            count += int(target.sum())
    return count


def shrink_to(ctx: Context, sizes: Sequence[int]) -> None:
    """Compact hidden layers wider than ``sizes`` to their first ``sizes[l]`` units."""
    model = ctx.model
    for index, size in enumerate(sizes):
        n = model.plastic_layers[index].n_out
        if n > size and not model.units(index).fixed:
            keep = max(size, 1)
            model.remove_units(index, torch.arange(keep, n, device=ctx.device), ctx.optimizer)
            ctx.log(f"layer {index}: starting from {keep} units instead of {n}")


def grow_within(ctx: Context, amounts: Sequence[int], caps: Sequence[int]) -> list[int]:
    """Grow ``amounts[l]`` units per hidden layer, never beyond ``caps[l]``; log shortfalls."""
    model = ctx.model
    grown = []
    for index, (want, cap) in enumerate(zip(amounts, caps, strict=True)):
        if model.units(index).fixed:
            grown.append(0)
            continue
        n_out = model.plastic_layers[index].n_out
        n = max(0, min(want, cap - n_out))
        if n < want:
            ctx.log(f"capacity: layer {index} holds {n_out} of at most {cap} units; growing "
                    f"{n} instead of {want}, task {ctx.task_id} shares more of the existing "
                    "network")
        if n > 0:
            model.grow_units(index, n, ctx.optimizer)
        grown.append(n)
    return grown


def apoptosis(model: PlasticNetwork, optimizer: torch.optim.Optimizer | None) -> list[int]:
    """Remove hidden units no task owns that have no live inputs or no live outputs.

    Repeats until nothing changes (removing a unit can orphan units around it); compaction
    really shrinks the tensors. Every layer keeps at least one unit. Returns counts per layer.
    """
    layers = model.plastic_layers
    removed = [0] * (len(layers) - 1)
    changed = True
    while changed:
        changed = False
        for index in hidden_layers(model):
            layer = layers[index]
            alive = layer.mask.flatten(1).any(1) & has_outputs(model, index)
            dead = (layer.bias_owner == L.FREE) & ~alive
            if bool(dead.all()):
                dead[0] = False
            if not bool(dead.any()):
                continue
            model.remove_units(index, torch.nonzero(dead).flatten(), optimizer)
            removed[index] += int(dead.sum())
            changed = True
    return removed


def consolidate_task(ctx: Context, freeze: bool) -> list[int]:
    """Give every live free synapse (and bias) to the current task; output biases only for the
    outputs the task produces, so later heads keep theirs. Returns claimed synapses per layer."""
    task = ctx.task_id
    layers = ctx.model.plastic_layers
    claimed = [L.consolidate(layer, task, freeze=freeze) for layer in layers]
    out = layers[-1]
    with torch.no_grad():
        release = ~head_rows(ctx) & (out.bias_owner == task)
        out.bias_owner[release] = L.FREE
        out.bias_frozen[release] = False
    return claimed


def structure_summary(model: PlasticNetwork, partitions: bool = False) -> dict:
    """Units and synapses per layer (compact lists, one entry per plastic layer)."""
    layers = model.plastic_layers
    summary = {
        "units": [layer.n_out for layer in layers],
        "live_units": [layer.live_units() for layer in layers],
        "synapses": [layer.weight.numel() for layer in layers],
        "live_synapses": [layer.live_synapses() for layer in layers],
        "free_synapses": [int(L.free_synapse_mask(layer).sum()) for layer in layers],
    }
    if partitions:
        summary["partitions"] = [L.partition_sizes(layer) for layer in layers]
        summary["sparsity"] = [1.0 - layer.live_synapses() / max(layer.weight.numel(), 1)
                               for layer in layers]
    return summary
