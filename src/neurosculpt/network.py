"""The one interface between networks and everything that trains or reshapes them.

Every strategy, the plasticity controller and the learning signals see a network only through
:class:`PlasticNetwork`; the built-in :class:`neurosculpt.models.Network` is one implementation
of it. A network for neurosculpt is:

- a list of **plastic layers** (:class:`neurosculpt.layers.PlasticLayer`: weight, synapse
  ``mask``, per-synapse ``owner`` and ``frozen``); the last one is the output layer, every other
  one is a **hidden** plastic layer;
- the **units** of each hidden plastic layer: its output rows (neurons of a linear layer,
  channels of a convolution), and where they go (:class:`Units`): which input positions of which
  plastic layers they feed (:class:`Consumer`) and which other per-unit tensors change with them
  (:class:`Coupled`, e.g. a BatchNorm after the layer);
- **activity taps**: with ``record_activity`` on, the forward pass leaves one tensor per hidden
  plastic layer in ``activity`` (its units' outputs, ``[T, B, N, ...]``);
- **structural operations** with one verb each, from the layer to the controller: ``grow``,
  ``remove``, ``reinit`` units; each one is written into the **resize journal**
  (:meth:`PlasticNetwork.resizes_since`) that every stateful strategy and the learning signals
  follow with :func:`follow`, the one path by which state keeps up with a structural change;
- **task masks**: which task's subnetwork is evaluated (``set_task``) and trained
  (``set_training_task``).

A user network implements :attr:`PlasticNetwork.plastic_layers`, :meth:`PlasticNetwork.units`
and a ``forward`` that fills ``activity``; everything else has a working default here, written
in terms of those three. :func:`check_network` tells what is missing or inconsistent.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from . import layers as L
from .validation import check_choice

RESIZE_JOURNAL = 256
OPTIMIZER_RESETS = ("first", "all", "none")
SECOND_MOMENTS = ("exp_avg_sq", "max_exp_avg_sq")


@dataclass(frozen=True)
class Consumer:
    """Plastic layer ``layer`` reads the units of a hidden layer: unit ``u`` feeds its input
    positions ``u * width + k`` for ``0 <= k < width``.

    ``width`` is 1 when the layer reads the units directly (a linear layer after a linear one, a
    convolution after a convolution) and ``H * W`` for a linear layer reading a flattened
    ``[C, H, W]`` convolution output. The consumer's inputs must be exactly these units (its
    ``n_in`` is ``units * width``): a layer that reads a concatenation of several sources cannot
    be described yet.
    """

    layer: int
    width: int = 1

    def inputs(self, units: Tensor) -> Tensor:
        """Input positions of the consumer fed by ``units`` (unit-major, ascending within)."""
        units = torch.as_tensor(units, dtype=torch.long,
                                device=units.device if torch.is_tensor(units) else "cpu")
        if self.width == 1:
            return units
        offsets = torch.arange(self.width, device=units.device)
        return (units[:, None] * self.width + offsets).flatten()

    def source(self, units: Tensor) -> Tensor:
        """:func:`remap` index of the consumer's inputs from the units' (``-1``: new)."""
        inputs = self.inputs(units.clamp_min(0))
        if self.width > 1:
            inputs = inputs.view(-1, self.width)
            inputs = torch.where(units[:, None] >= 0, inputs, -1).flatten()
        else:
            inputs = torch.where(units >= 0, inputs, -1)
        return inputs


@dataclass(frozen=True)
class Coupled:
    """A per-unit tensor outside the plastic layers that must change with the units.

    ``getattr(module, name)`` (a parameter or a buffer) is indexed by unit along ``dim``: a
    BatchNorm's ``weight``, ``bias``, ``running_mean`` and ``running_var`` after a convolution,
    a LayerNorm's affine parameters, a per-unit learnable threshold. Grown and reinitialised
    units get ``fill`` there (1 for a norm's weight and running variance, 0 otherwise).
    """

    module: nn.Module
    name: str
    dim: int = 0
    fill: float = 0.0


@dataclass(frozen=True)
class Units:
    """What the units of one hidden plastic layer are connected to.

    ``consumers``: every plastic layer that reads them (several for a residual stream or a
    branch read by several layers). ``coupled``: per-unit tensors outside the plastic layers.
    ``fixed``: the units may not be grown, removed or reinitialised (e.g. outputs added into a
    residual stream of fixed width); their synapses may still be pruned and consolidated.
    """

    consumers: tuple[Consumer, ...]
    coupled: tuple[Coupled, ...] = ()
    fixed: bool = False


@dataclass(frozen=True)
class Resize:
    """One entry of the resize journal: a structural change of hidden layer ``layer``.

    ``source`` maps the layer's units after the change to their index before (``-1``: a new
    unit): ``arange(old) ++ [-1] * n`` for ``grow``, the kept units for ``remove``, the
    identity for ``reinit``. ``reset``: units (indices after the change) whose weights were
    drawn afresh (the grown or reinitialised ones). ``moves``: every parameter and buffer of the
    model whose entries moved, by its name in ``model.named_parameters()`` /
    ``named_buffers()``, as ``(dim, source along dim)``; ``inputs``: the same for the input side
    of each consumer, by plastic-layer index.
    """

    serial: int
    layer: int
    kind: str
    source: Tensor
    reset: Tensor
    inputs: dict[int, Tensor] = field(default_factory=dict)
    moves: dict[str, tuple[int, Tensor]] = field(default_factory=dict)

    def move(self, *, units: int | None = None, weight: int | None = None,
             name: str | None = None) -> tuple[int, Tensor] | None:
        """``(dim, source)`` of this resize for per-unit state of hidden layer ``units``, for
        state shaped like plastic layer ``weight``'s weight, or for the model tensor ``name``;
        ``None`` when it does not move."""
        if self.kind == "reinit":
            return None
        if units is not None:
            return (0, self.source) if units == self.layer else None
        if weight is not None:
            if weight == self.layer:
                return 0, self.source
            return (1, self.inputs[weight]) if weight in self.inputs else None
        return self.moves.get(name) if name is not None else None


def remap(value: Tensor, dim: int, source: Tensor, fill: float | int | bool = 0) -> Tensor:
    """``value`` re-indexed along ``dim``: entry ``k`` of the result is entry ``source[k]`` of
    ``value``, or ``fill`` where ``source[k]`` is ``-1`` (a new unit or input)."""
    source = source.to(value.device)
    shape = list(value.shape)
    shape[dim] = len(source)
    out = torch.full(shape, fill, dtype=value.dtype, device=value.device)
    known = torch.nonzero(source >= 0).flatten()
    out.index_copy_(dim, known, value.index_select(dim, source[known]))
    return out


def follow(value: Tensor, resizes: Iterable[Resize], *, units: int | None = None,
           weight: int | None = None, name: str | None = None, axis: int | None = None,
           fill: float | int | Tensor = 0.0, reinit: bool = False) -> Tensor:
    """Carry ``value``, state recorded for the network as it was, through ``resizes``.

    The one helper by which every stateful strategy keeps up with structural changes. Say what
    ``value`` is indexed by:

    - ``units=i``: per-unit state of hidden layer ``i`` (units along ``axis``, default 0);
    - ``weight=j``: state shaped like plastic layer ``j``'s weight (or its bias, whose only dim
      is the units): it follows the layer's own units along dim 0 and the units it reads along
      dim 1;
    - ``name=``: state shaped like the model's parameter or buffer of that name.

    Kept entries move with their unit, entries of new units take ``fill``: a number, or a tensor
    of the final shape to take them from (e.g. the current parameter values). With
    ``reinit=True`` the entries of reinitialised units (``units=`` state only) take ``fill``
    too, for state that describes a unit's history rather than its position.
    """
    tensor_fill = torch.is_tensor(fill)
    scalar = 0 if tensor_fill else fill
    fresh: Tensor | None = None  # entries to take from a tensor ``fill``, moved along
    for r in resizes:
        if reinit and units is not None and r.kind == "reinit" and r.layer == units:
            dim = 0 if axis is None else axis
            reset = r.reset.to(value.device)
            if tensor_fill:
                fresh = _none_fresh(fresh, value).index_fill(dim, reset, True)
            value = value.index_fill(dim, reset, scalar)
            continue
        move = r.move(units=units, weight=weight, name=name)
        if move is None:
            continue
        dim, source = move
        if axis is not None:
            dim = axis
        if weight is not None and value.dim() == 1 and dim != 0:
            continue  # a bias has no input side
        if tensor_fill:
            fresh = remap(_none_fresh(fresh, value), dim, source, True)
        value = remap(value, dim, source, scalar)
    if fresh is not None:
        value = torch.where(fresh, fill.to(value.dtype), value)  # type: ignore[union-attr]
    return value


def _none_fresh(fresh: Tensor | None, value: Tensor) -> Tensor:
    return torch.zeros_like(value, dtype=torch.bool) if fresh is None else fresh


def reset_optimizer_state(optimizer: torch.optim.Optimizer | None, param: Tensor, dim: int,
                          index: Tensor, mode: str = "first") -> None:
    """Reset the per-element optimizer state of ``param``'s entries ``index`` along ``dim``.

    ``all`` zeroes every per-element state (Adam's ``exp_avg`` and ``exp_avg_sq``, SGD's
    momentum), as Dohare et al. (2024) do; ``first`` (default) zeroes the first moment /
    momentum and keeps Adam's second moment; ``none`` leaves the state alone.

    Why ``first``: Dohare et al.'s AdamGnT also restarts each reset entry's step count, so its
    bias correction starts again. PyTorch's Adam has one step count per parameter; zeroing both
    moments without it makes the first updates of a reset unit up to ~6 times larger than lr
    for hundreds of steps. Keeping the second moment (a scale estimate for that position) avoids
    this; on the random-label digits protocol it matches AdamGnT far better than ``all``
    (docs/plasticity.md).
    """
    check_choice("optimizer reset", mode, OPTIMIZER_RESETS)
    if optimizer is None or len(index) == 0 or mode == "none":
        return
    state = optimizer.state.get(param)
    if not state:
        return
    for key, value in state.items():
        if mode == "first" and key in SECOND_MOMENTS:
            continue
        if torch.is_tensor(value) and value.shape == param.shape:
            value.index_fill_(dim, index, 0)


@contextmanager
def recording(model: PlasticNetwork, train: bool | None = None) -> Iterator[PlasticNetwork]:
    """Record hidden activity (``model.activity``) in the forward passes inside the block, in
    training mode ``train`` (``None``: as it is); afterwards the recording flag, the last
    recorded activity and the mode are as before, so a measurement never disturbs what the
    training loop recorded for its own batch."""
    was_recording, recorded, was_training = model.record_activity, model.activity, model.training
    model.record_activity = True
    if train is not None:
        model.train(train)
    try:
        yield model
    finally:
        model.record_activity, model.activity = was_recording, recorded
        model.train(was_training)


class PlasticNetwork(nn.Module):
    """A network whose structure neurosculpt may learn.

    To implement (see the module docstring for the terms):

    - :attr:`plastic_layers`: every :class:`~neurosculpt.layers.PlasticLayer` of the network,
      the output layer last; the order is fixed for the network's life (indices name layers
      in the journal, in checkpoints of strategies and in ``results.json``);
    - :meth:`units`: for every hidden plastic layer (index ``< len(plastic_layers) - 1``), the
      :class:`Units` description of its outputs;
    - ``forward(x)``: logits ``[B, outputs]``; when ``record_activity`` is true it sets
      ``activity`` to one tensor per hidden plastic layer, ``[T, B, N, ...]`` with the layer's
      ``N`` units on dim 2 (``T = 1`` for a non-spiking network; further dims such as space or
      tokens are averaged by the signals), holding the units' outputs after their
      non-linearity (spikes, ReLU activations) with their autograd graph intact;
    - :attr:`spiking` (class attribute or property): whether activity is spikes;
    - :meth:`initial_widths` if the network can be rebuilt narrower or wider than it was built
      (the default, the widths when first asked, does not survive a checkpoint of a grown
      network).

    Provided here, from those: the unit operations :meth:`grow_units`, :meth:`remove_units`,
    :meth:`reinit_units` (they resize the plastic layers, the consumers' inputs and the coupled
    tensors, move the optimizer state, and write the journal), the journal
    (:meth:`resizes_since`, :attr:`resize_serial`), the task masks (:meth:`set_task`,
    :meth:`set_training_task`, the ``current_task`` buffer), :meth:`shared_parameters`,
    :meth:`hidden_sizes`, :meth:`live_synapses` and :meth:`structure`. An implementation may
    override any of them (keeping what it promises), e.g. to record more per task.
    """

    spiking: bool = False

    def __init__(self) -> None:
        super().__init__()
        self.record_activity = False
        self.activity: list[Tensor] = []
        self.resizes: list[Resize] = []
        self._resize_serial = 0
        self._lost_resize = 0
        self._initial_widths: list[int] | None = None
        # the task being trained, in the state_dict so a checkpoint restores the task masks
        self.register_buffer("current_task", torch.zeros((), dtype=torch.long))
        # the layers' view of it is Python state: a loaded state_dict sets it again, so a
        # restored network evaluates each task's subnetwork like the one that was saved
        self.register_load_state_dict_post_hook(PlasticNetwork._follow_current_task)

    @staticmethod
    def _follow_current_task(module: nn.Module, _keys: object) -> None:
        module.set_training_task(int(module.current_task))

    # --- to implement ---------------------------------------------------------------------------
    @property
    def plastic_layers(self) -> list[L.PlasticLayer]:
        """Every plastic layer, the output layer last."""
        raise NotImplementedError(f"{type(self).__name__} must define plastic_layers")

    def units(self, layer: int) -> Units:
        """What the units of hidden plastic layer ``layer`` feed (see :class:`Units`)."""
        raise NotImplementedError(f"{type(self).__name__} must define units(layer)")

    def initial_widths(self) -> list[int]:
        """Units per hidden layer as the network was built (not as grown or compacted): the
        default capacity of the development cycle and the base of the controller's budget."""
        if self._initial_widths is None:
            self._initial_widths = self.hidden_sizes()
        return list(self._initial_widths)

    # --- derived --------------------------------------------------------------------------------
    def hidden_sizes(self) -> list[int]:
        """Current number of units of every hidden plastic layer."""
        return [layer.n_out for layer in self.plastic_layers[:-1]]

    def shared_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters outside the plastic layers (learnable neuron constants, norms),
        which every task's subnetwork shares."""
        plastic = {id(p) for layer in self.plastic_layers for p in layer.parameters()}
        return [p for p in self.parameters() if id(p) not in plastic]

    def live_synapses(self) -> int:
        return sum(layer.live_synapses() for layer in self.plastic_layers)

    def structure(self) -> list[dict]:
        """Per plastic layer: units, live synapses, partition sizes (JSON-friendly)."""
        return [
            {
                "layer": i,
                "type": type(layer).__name__,
                "units": layer.n_out,
                "live_units": layer.live_units(),
                "inputs": layer.n_in,
                "synapses": layer.weight.numel(),
                "live_synapses": layer.live_synapses(),
                "partitions": L.partition_sizes(layer),
            }
            for i, layer in enumerate(self.plastic_layers)
        ]

    def set_task(self, task: int | None) -> None:
        """Evaluate the subnetwork of ``task`` (``None``: the union of all live synapses)."""
        L.set_active_task(self.plastic_layers, task)

    def set_training_task(self, task: int) -> None:
        """The task being trained: it sees every live synapse; earlier tasks their own
        (recorded in the ``current_task`` buffer)."""
        self.current_task.fill_(task)
        L.set_training_task(self.plastic_layers, task)

    # --- unit operations ------------------------------------------------------------------------
    def _units(self, layer: int) -> Units:
        if not 0 <= layer < len(self.plastic_layers) - 1:
            raise IndexError(f"hidden layer index {layer} out of range "
                             f"(the network has {len(self.plastic_layers) - 1} hidden layers)")
        units = self.units(layer)
        if units.fixed:
            raise ValueError(f"the units of layer {layer} are fixed: they cannot be grown, "
                             "removed or reinitialised")
        return units

    def grow_units(self, layer: int, n: int,
                   optimizer: torch.optim.Optimizer | None = None) -> Tensor:
        """Append ``n`` units to hidden layer ``layer``: fresh incoming weights, fresh synapses
        onto every consumer, coupled tensors at their fill. Returns the new units' indices."""
        units = self._units(layer)
        layers = self.plastic_layers
        old = layers[layer].n_out
        new = L.grow_outputs(layers[layer], n, optimizer)
        for c in units.consumers:
            L.grow_inputs(layers[c.layer], n * c.width, optimizer)
        for c in units.coupled:
            _grow_coupled(c, n, optimizer)
        source = torch.cat([torch.arange(old, device=new.device),
                            torch.full((n,), -1, dtype=torch.long, device=new.device)])
        self._journal(layer, "grow", source, new, units)
        return new

    def remove_units(self, layer: int, units: Tensor,
                     optimizer: torch.optim.Optimizer | None = None) -> Tensor:
        """Apoptosis: delete ``units`` of hidden layer ``layer`` (the tensors really shrink,
        with the consumers' inputs and the coupled tensors). Returns the kept units' old
        indices, which now sit at ``0 .. len(kept) - 1``."""
        description = self._units(layer)
        layers = self.plastic_layers
        n, device = layers[layer].n_out, layers[layer].weight.device
        drop = torch.zeros(n, dtype=torch.bool, device=device)
        drop[torch.as_tensor(units, dtype=torch.long, device=device)] = True
        kept = torch.nonzero(~drop).flatten()
        removed = torch.nonzero(drop).flatten()
        L.remove_outputs(layers[layer], removed, optimizer)
        for c in description.consumers:
            L.remove_inputs(layers[c.layer], c.inputs(removed), optimizer)
        for c in description.coupled:
            _keep_coupled(c, kept, optimizer)
        self._journal(layer, "remove", kept, kept.new_zeros(0), description)
        return kept

    def reinit_units(self, layer: int, units: Tensor,
                     optimizer: torch.optim.Optimizer | None = None,
                     optimizer_reset: str = "first") -> None:
        """Reinitialise ``units`` of hidden layer ``layer`` (Dohare et al. 2024; Sokar et al.
        2023): incoming weights drawn again from the initial distribution (pruned synapses stay
        zero), bias zero, outgoing weights zero (the network's function does not jump), coupled
        tensors at their fill, optimizer state of all those entries reset
        (:func:`reset_optimizer_state`)."""
        description = self._units(layer)
        units = torch.as_tensor(units, dtype=torch.long,
                                device=self.plastic_layers[layer].weight.device)
        if len(units) == 0:
            return
        layers = self.plastic_layers
        cur = layers[layer]
        cur.reinit_weights(rows=units)
        with torch.no_grad():
            cur.weight[units] *= cur.mask[units]
            cur.bias[units] = 0.0
            for c in description.consumers:
                layers[c.layer].weight[:, c.inputs(units)] = 0.0
            for c in description.coupled:
                getattr(c.module, c.name).index_fill_(c.dim, units, c.fill)
        reset_optimizer_state(optimizer, cur.weight, 0, units, optimizer_reset)
        reset_optimizer_state(optimizer, cur.bias, 0, units, optimizer_reset)
        for c in description.consumers:
            reset_optimizer_state(optimizer, layers[c.layer].weight, 1, c.inputs(units),
                                  optimizer_reset)
        for c in description.coupled:
            value = getattr(c.module, c.name)
            if isinstance(value, nn.Parameter):
                reset_optimizer_state(optimizer, value, c.dim, units, optimizer_reset)
        self._journal(layer, "reinit", torch.arange(cur.n_out, device=units.device), units,
                      description)

    # --- the journal ----------------------------------------------------------------------------
    def _journal(self, layer: int, kind: str, source: Tensor, reset: Tensor,
                 units: Units) -> None:
        """Record a structural change so that state kept elsewhere can follow it
        (:meth:`resizes_since`); only the latest ``RESIZE_JOURNAL`` entries are kept."""
        inputs: dict[int, Tensor] = {}
        moves: dict[str, tuple[int, Tensor]] = {}
        if kind != "reinit":
            names = {id(m): n for n, m in self.named_modules()}
            layers = self.plastic_layers
            prefix = names.get(id(layers[layer]), "")
            for tensor in ("weight", "bias"):
                moves[_join(prefix, tensor)] = (0, source)
            for c in units.consumers:
                inputs[c.layer] = c.source(source)
                moves[_join(names.get(id(layers[c.layer]), ""), "weight")] = (1, inputs[c.layer])
            for c in units.coupled:
                moves[_join(names.get(id(c.module), ""), c.name)] = (c.dim, source)
        serial = self.resize_serial + 1
        self.resizes.append(Resize(serial, layer, kind, source, reset, inputs, moves))
        self._resize_serial = serial
        if len(self.resizes) > RESIZE_JOURNAL:
            # the oldest reinit goes first: a stream of renewals must not push out a resize
            # that a strategy following only shape changes has not seen yet
            drop = next((k for k, r in enumerate(self.resizes) if r.kind == "reinit"), 0)
            lost = self.resizes.pop(drop)
            if lost.kind != "reinit":
                self._lost_resize = lost.serial

    def resizes_since(self, serial: int) -> list[Resize]:
        """Journal entries after the one numbered ``serial`` (0: all kept), oldest first.

        The journal keeps the latest ``RESIZE_JOURNAL`` entries, dropping reinitialisations
        before grow / remove entries: state that follows shapes may follow rarely (once per
        task), state that follows reinitialisations should follow every few steps.
        """
        if serial < self._lost_resize:
            raise RuntimeError(f"resize {self._lost_resize} is no longer in the journal; "
                               "follow the model's resizes more often")
        if serial >= self._resize_serial:
            return []
        return [r for r in self.resizes if r.serial > serial]

    @property
    def resize_serial(self) -> int:
        """Number of the latest journal entry (0: none yet)."""
        return self._resize_serial


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _grow_coupled(c: Coupled, n: int, optimizer: torch.optim.Optimizer | None) -> None:
    old = getattr(c.module, c.name)
    size, device = old.shape[c.dim], old.device
    source = torch.cat([torch.arange(size, device=device),
                        torch.full((n,), -1, dtype=torch.long, device=device)])
    data = remap(old.detach(), c.dim, source, c.fill)
    if isinstance(old, nn.Parameter):
        kept = torch.arange(size, device=device)
        L.replace_parameter(c.module, c.name, data, optimizer, c.dim, kept, kept)
    else:
        setattr(c.module, c.name, data)


def _keep_coupled(c: Coupled, kept: Tensor, optimizer: torch.optim.Optimizer | None) -> None:
    old = getattr(c.module, c.name)
    data = old.detach().index_select(c.dim, kept).clone()
    if isinstance(old, nn.Parameter):
        L.replace_parameter(c.module, c.name, data, optimizer, c.dim, kept,
                            torch.arange(len(kept), device=kept.device))
    else:
        setattr(c.module, c.name, data)


def check_network(model: nn.Module, example: Tensor | None = None) -> list[str]:
    """Problems that keep ``model`` from being a :class:`PlasticNetwork` (empty: none).

    With ``example`` (a batch of inputs) it also runs ``forward`` with activity recorded and
    checks one activity tensor per hidden layer with the right number of units.
    """
    if not isinstance(model, PlasticNetwork):
        return [f"{type(model).__name__} is not a neurosculpt.network.PlasticNetwork"]
    problems: list[str] = []
    layers = model.plastic_layers
    if not layers:
        return ["plastic_layers is empty"]
    for i, layer in enumerate(layers):
        if not isinstance(layer, L.PlasticLayer):
            problems.append(f"plastic_layers[{i}] is a {type(layer).__name__}, not a PlasticLayer")
    if problems:
        return problems
    for i in range(len(layers) - 1):
        units = model.units(i)
        if not units.consumers and not units.fixed:
            problems.append(f"layer {i}: its units feed no plastic layer")
        for c in units.consumers:
            if not 0 <= c.layer < len(layers):
                problems.append(f"layer {i}: consumer {c.layer} is not a plastic layer")
            elif layers[c.layer].n_in != layers[i].n_out * c.width:
                problems.append(f"layer {i}: {layers[i].n_out} units x width {c.width} != "
                                f"{layers[c.layer].n_in} inputs of layer {c.layer}")
        for c in units.coupled:
            value = getattr(c.module, c.name, None)
            if not torch.is_tensor(value) or value.shape[c.dim] != layers[i].n_out:
                problems.append(f"layer {i}: coupled {c.name} does not have "
                                f"{layers[i].n_out} entries along dim {c.dim}")
    if example is not None and not problems:
        with recording(model), torch.no_grad():
            model(example)
            activity = model.activity
        if len(activity) != len(layers) - 1:
            problems.append(f"forward recorded {len(activity)} activity tensors for "
                            f"{len(layers) - 1} hidden layers")
        else:
            for i, h in enumerate(activity):
                if h.dim() < 3 or h.shape[2] != layers[i].n_out:
                    problems.append(f"activity[{i}] has shape {tuple(h.shape)}: expected "
                                    f"[T, B, {layers[i].n_out}, ...]")
    return problems

