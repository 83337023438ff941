"""Turn a user's ``nn.Module`` into a network the strategies can grow, prune and consolidate.

:func:`adapt` keeps the module and its weights and

1. swaps every ``nn.Linear`` / ``nn.Conv2d`` it is told to (default: all) for a
   :class:`~neurosculpt.layers.PlasticLinear` / :class:`~neurosculpt.layers.PlasticConv2d`
   holding the same weights, so synapse masks, owners and frozen synapses (task masks) work;
2. finds which plastic layers' output units feed which layers' inputs, as **unit groups**: the
   units of one group are grown, removed and reinitialised together, in every layer that
   produces them (several when their outputs are added, as in a residual sum), in every
   per-unit module after them (BatchNorm / LayerNorm: parameters and running statistics), and
   in every layer that reads them (for a flatten between a convolution and a linear layer, all
   ``H * W`` inputs of a channel);
3. taps the output of the nonlinearity (ReLU, GELU, a spiking neuron) that follows each group,
   with forward hooks, so the plasticity signals, importance scores and ``develop`` see unit
   activity (``record_activity`` / ``activity``, as :class:`~neurosculpt.models.Network`).

How the graph is found: ``torch.fx`` traces the module (loops over time steps unroll; stateful
neurons such as ``snntorch.Leaky`` and every module without submodules are kept whole as leaves)
and the adapter follows each plastic layer's output through unit-preserving operations. When a
module cannot be traced (data-dependent control flow), ``chain=[...]`` declares the order of
layers and the modules after them instead.

Why not torch-pruning's DepGraph (Fang et al. 2023, "DepGraph: Towards Any Structural
Pruning"): tried (torch-pruning 1.6.1) on both examples, it finds the same coupled groups as the
adapter (the residual stream with its BatchNorms and the classifier; each block's inner
channels; ``fc1 -> fc2`` through the snnTorch time loop), from the autograd graph of an example
forward pass. But what it gives is pruning indices for editing ``nn.Linear`` / ``nn.Conv2d`` in
place: no growth, nothing of per-synapse masks, owners, frozen values, optimizer state or a
journal, and no answer to where each group's activity is (its graph holds autograd functions,
not the modules to hook). The adapter would use a small part of it and redo the rest, for a new
dependency; ``torch.fx`` gives that part with modules attached and nothing to install.

Of the layers summed in a residual stream the first leads: its unit operations resize all of
them (:meth:`AdaptedNetwork.grow_units`). Units of a group become **fixed** (still plastic
synapses, but no growth or removal) when changing them would change something the adapter does
not own: the group's output is added to something other than plastic layers (e.g. the input or
a plain ``nn.Linear``), or is read by a layer left as a plain ``nn.Linear``. The layer whose
units are the network's output is the output layer: its rows are the task heads. Everything
else the adapter cannot follow raises :class:`AdapterError` with a one-line reason.
"""

from __future__ import annotations

import copy
import fnmatch
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, fx, nn

from . import layers as L
from .network import Consumer, Coupled, PlasticNetwork, Units, recording, reset_optimizer_state
from .plasticity.structure import has_outputs
from .validation import UserError, first_line

NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm)
PASS_MODULES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Identity, nn.MaxPool2d, nn.AvgPool2d,
                nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
ACTIVATION_FUNCTIONS = {torch.relu, F.relu, F.gelu, torch.sigmoid, F.sigmoid, torch.tanh, F.tanh,
                        F.silu, F.elu, F.leaky_relu, torch.nn.functional.relu6}
PASS_FUNCTIONS = {F.dropout, F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d,
                  F.adaptive_max_pool2d, torch.stack}
ADDS = {operator.add, torch.add, operator.iadd}
SCALE = {operator.mul, operator.truediv, torch.mul, operator.neg}


class AdapterError(UserError):
    """A module the adapter cannot turn into a plastic network (the message says which, why)."""


@dataclass
class UnitGroup:
    """Units grown, removed and reinitialised together.

    ``producers``: plastic layers whose output rows are these units (several when their outputs
    are summed); ``followers``: per-unit modules after them (norms); ``consumers``: plastic
    layers reading the units, with the number of consecutive inputs each unit feeds (``H * W``
    after a flatten, else 1); ``tap``: the module whose output is the units' activity;
    ``activation``: a function applied to the tapped output (functional nonlinearities);
    ``fixed``: why these units may not grow or shrink (empty: they may).
    """

    producers: list[str]
    followers: list[str] = field(default_factory=list)
    consumers: dict[str, int] = field(default_factory=dict)
    tap: str | None = None
    activation: Callable[[Tensor], Tensor] | None = None
    fixed: str = ""


# --- swapping layers ---------------------------------------------------------------------------


def _matches(name: str, patterns: Sequence[str] | None) -> bool:
    return patterns is None or any(fnmatch.fnmatchcase(name, p) for p in patterns)


def to_plastic(module: nn.Linear | nn.Conv2d) -> L.PlasticLayer:
    """A plastic layer holding ``module``'s weights (a zero bias when it had none)."""
    if isinstance(module, nn.Linear):
        layer: L.PlasticLayer = L.PlasticLinear(module.in_features, module.out_features)
    else:
        k, s, p = module.kernel_size, module.stride, module.padding
        if (module.groups != 1 or module.dilation != (1, 1) or k[0] != k[1] or s[0] != s[1]
                or isinstance(p, str) or p[0] != p[1] or module.padding_mode != "zeros"):
            raise AdapterError(
                f"Conv2d {module} is not supported: plastic convolutions are square, ungrouped, "
                "undilated, zero-padded")
        layer = L.PlasticConv2d(module.in_channels, module.out_channels, k[0], p[0], stride=s[0])
    with torch.no_grad():
        layer.weight.copy_(module.weight)
        layer.bias.copy_(module.bias if module.bias is not None else torch.zeros(layer.n_out))
    return layer.to(module.weight.device)


def swap_layers(module: nn.Module, plastic: Sequence[str] | None = None) -> list[str]:
    """Replace the ``nn.Linear`` / ``nn.Conv2d`` submodules whose names match ``plastic``
    (glob patterns; ``None``: all) by plastic layers with the same weights; return their names
    in registration order."""
    names = []
    for name, sub in list(module.named_modules()):
        if isinstance(sub, L.PlasticLayer) and _matches(name, plastic):
            names.append(name)  # swapped already (a module adapted before)
        elif type(sub) in (nn.Linear, nn.Conv2d) and _matches(name, plastic):
            parent_name, _, attr = name.rpartition(".")
            parent = module.get_submodule(parent_name) if parent_name else module
            setattr(parent, attr, to_plastic(sub))
            names.append(name)
    if not names:
        raise AdapterError(f"{type(module).__name__} has no nn.Linear or nn.Conv2d layer"
                           + (f" matching {list(plastic)}" if plastic is not None else ""))
    return names


# --- finding the graph -------------------------------------------------------------------------


class _Tracer(fx.Tracer):
    """Keep plastic layers, torch.nn modules and every module without submodules whole."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, L.PlasticLayer) or next(m.children(), None) is None or \
            super().is_leaf_module(m, qualname)


def trace(module: nn.Module) -> fx.Graph:
    """The ``torch.fx`` graph of ``module`` (an :class:`AdapterError` when it cannot be
    traced, naming the reason and the ``chain`` alternative)."""
    try:
        return _Tracer().trace(module)
    except Exception as err:  # fx raises many kinds: control flow, unsupported ops
        reason = first_line(err)
        raise AdapterError(
            f"{type(module).__name__} cannot be traced by torch.fx ({reason}); declare its "
            "layers in order with chain=[...]") from err


@dataclass
class _Reach:
    """What one plastic layer's output units reach."""

    consumers: set[str] = field(default_factory=set)
    followers: list[str] = field(default_factory=list)
    tap: str | None = None
    activation: Callable | None = None
    added: set[str] = field(default_factory=set)
    fixed: str = ""
    output: bool = False


def _follow(modules: dict[str, nn.Module], start: fx.Node, plastic: set[str], reach: _Reach,
            name: str, fixed: bool = False) -> None:
    """Walk forward from ``start`` (an output of layer ``name``) through unit-preserving
    operations, filling ``reach``. An operation the walk cannot follow raises, unless the layer
    is declared ``fixed`` (its units never change, so nothing after it needs following)."""

    def cannot(what: str, node: fx.Node) -> None:
        if fixed:
            reach.fixed = reach.fixed or f"declared fixed; its units pass through {what}"
            return
        raise AdapterError(f"cannot follow the units of layer {name!r} through {what} (node "
                           f"{node.name}); declare it fixed=[{name!r}] or leave it out of "
                           "plastic=[...]")

    seen: set[fx.Node] = set()
    stack = [(start, True)]  # (node, still before the first nonlinearity)
    while stack:
        node, before = stack.pop()
        for user in list(node.users):
            if user in seen:
                continue
            seen.add(user)
            if user.op == "output":
                reach.output = True
                continue
            if user.op == "call_module":
                target = str(user.target)
                sub = modules[target]
                if user.args[0] is not node:  # state passed back into a neuron (membrane)
                    continue
                if target in plastic:
                    reach.consumers.add(target)
                    continue
                if isinstance(sub, (nn.Linear, nn.Conv2d)) or _mixes_units(sub):
                    # a reader the adapter does not own (a plain layer, attention): the units
                    # it reads cannot change
                    reach.fixed = reach.fixed or f"{target}, not plastic, reads its units"
                    continue
                if isinstance(sub, NORMS):
                    if before and target not in reach.followers:
                        reach.followers.append(target)
                    stack.append((user, before))
                    continue
                if isinstance(sub, (nn.Flatten, *PASS_MODULES)):
                    stack.append((user, before))
                    continue
                if before and reach.tap is None:
                    reach.tap = target
                stack.append((user, False))
                continue
            if user.op == "call_function":
                fn = user.target
                if fn is operator.getitem and isinstance(user.args[1], int):
                    stack.append((user, before))  # (spikes, membrane) of a neuron
                    continue
                if fn in ACTIVATION_FUNCTIONS:
                    if before and reach.tap is None:
                        reach.activation = fn
                    stack.append((user, False))
                    continue
                if fn in ADDS:
                    others = [a for a in user.args if isinstance(a, fx.Node) and a is not node]
                    for other in others:
                        sources = _plastic_sources(other, modules, plastic)
                        if sources is None:
                            reach.fixed = reach.fixed or (
                                f"its output is added to {other.name}, which no plastic layer "
                                "produces")
                        else:
                            reach.added |= sources
                    stack.append((user, before))
                    continue
                if fn in SCALE and sum(isinstance(a, fx.Node) for a in user.args) == 1:
                    stack.append((user, before))
                    continue
                if fn in PASS_FUNCTIONS or fn in (torch.flatten, torch.sum, torch.mean):
                    stack.append((user, before))
                    continue
                cannot(str(getattr(fn, "__name__", fn)), user)
                continue
            if user.op == "call_method":
                if user.target in ("flatten", "view", "reshape", "mean", "sum", "unsqueeze",
                                   "squeeze", "expand", "unflatten",
                                   "contiguous", "relu", "sigmoid", "tanh", "float"):
                    if user.target in ("relu", "sigmoid", "tanh") and before and reach.tap is None:
                        reach.activation = getattr(torch, str(user.target))
                        stack.append((user, False))
                    else:
                        stack.append((user, before))
                    continue
                if user.target in ("size", "dim"):
                    continue
                cannot(f".{user.target}()", user)
                continue
            cannot(f"{user.op} {user.target}", user)


def _plastic_sources(node: fx.Node, modules: dict[str, nn.Module],
                     plastic: set[str]) -> set[str] | None:
    """Plastic layers whose units a residual operand carries unchanged (``None``: it carries
    something else, e.g. the network's input)."""
    seen: set[fx.Node] = set()
    found: set[str] = set()
    stack = [node]
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        if n.op == "call_module" and str(n.target) in plastic:
            found.add(str(n.target))
            continue
        if n.op == "call_module" and isinstance(modules[str(n.target)], (nn.Linear, nn.Conv2d)):
            return None
        if n.op in ("placeholder", "get_attr"):
            return None
        if n.op == "call_function" and n.target in ADDS:
            stack.extend(a for a in n.args if isinstance(a, fx.Node))
            continue
        if n.args and isinstance(n.args[0], fx.Node):
            stack.append(n.args[0])
        else:
            return None
    return found


def _layer_width(layer: nn.Module) -> int:
    return int(layer.weight.shape[0])


def _union_groups(order: list[str], reaches: dict[str, _Reach]) -> list[list[str]]:
    """Producers whose outputs are summed share units: connected components of ``added``."""
    parent = {n: n for n in order}

    def root(n: str) -> str:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for name in order:
        for other in reaches[name].added:
            parent[root(other)] = root(name)
    components: dict[str, list[str]] = {}
    for name in order:
        components.setdefault(root(name), []).append(name)
    return list(components.values())


def traced_groups(module: nn.Module, plastic: Sequence[str],
                  fixed: Sequence[str] = ()) -> tuple[list[UnitGroup], list[str], str | None]:
    """Unit groups of ``module`` (plastic layers swapped in already) found with ``torch.fx``,
    the plastic layers in the order the forward pass first calls them (output last), and the
    module after the output layer (its neurons or readout, if any)."""
    graph = trace(module)
    modules = dict(module.named_modules())
    names = set(plastic)
    reaches: dict[str, _Reach] = {}
    order: list[str] = []
    for node in graph.nodes:
        if node.op == "call_module" and str(node.target) in names:
            name = str(node.target)
            if name not in reaches:
                reaches[name] = _Reach()
                order.append(name)
            _follow(modules, node, names, reaches[name], name, _matches(name, fixed))
    unused = sorted(names - set(order))
    if unused:
        raise AdapterError(f"layer(s) {unused} are never called by {type(module).__name__}."
                           "forward; leave them out of plastic=[...]")
    outputs = [n for n in order if reaches[n].output]
    if len(outputs) != 1 or not isinstance(modules[outputs[0]], L.PlasticLinear):
        found = ", ".join(outputs) or "none"
        raise AdapterError(f"{type(module).__name__}: the network's output must come from one "
                           f"plastic nn.Linear (the task heads); found {found}")
    out = outputs[0]
    if reaches[out].consumers or reaches[out].added:
        raise AdapterError(f"output layer {out!r} also feeds other layers; its units are the "
                           "task heads and must only be the network's output")
    taps: dict[str, int] = {}
    for name in order:
        if reaches[name].tap is not None:
            taps[reaches[name].tap] = taps.get(reaches[name].tap, 0) + 1
    groups = []
    for producers in _union_groups([n for n in order if n != out], reaches):
        groups.append(_group(producers, reaches, modules, taps, fixed))
    return groups, [n for n in order if n != out] + [out], reaches[out].tap


def _group(producers: list[str], reaches: dict[str, _Reach], modules: dict[str, nn.Module],
           taps: dict[str, int], fixed: Sequence[str]) -> UnitGroup:
    rs = [reaches[p] for p in producers]
    widths = {_layer_width(modules[p]) for p in producers}
    if len(widths) != 1:
        raise AdapterError(f"layers {producers} are summed but have different widths {widths}")
    units = widths.pop()
    group = UnitGroup(producers=list(producers))
    for r in rs:
        group.followers += [f for f in r.followers if f not in group.followers]
        for c in sorted(r.consumers):
            group.consumers[c] = 0
        group.fixed = group.fixed or r.fixed
    declared = [p for p in producers if _matches(p, fixed)] if fixed else []
    if declared:
        group.fixed = group.fixed or f"declared fixed ({', '.join(declared)})"
    if not group.consumers:
        group.fixed = group.fixed or "no plastic layer reads its units"
    for c in group.consumers:
        n_in = modules[c].weight.shape[1]
        if n_in % units:
            raise AdapterError(f"layer {c!r} reads {n_in} inputs from the {units} units of "
                               f"{producers}: not a whole number per unit")
        group.consumers[c] = n_in // units
    for f in group.followers:
        norm = modules[f]
        if isinstance(norm, nn.LayerNorm) and tuple(norm.normalized_shape) != (units,):
            raise AdapterError(f"LayerNorm {f!r} normalises {tuple(norm.normalized_shape)}, "
                               f"not the {units} units of {producers}")
    tapped = next((r for r in rs if r.tap is not None), None)
    if tapped is not None and taps[tapped.tap] == 1:
        group.tap = tapped.tap
        if not group.fixed:  # fixed units are never resized: per-unit parameters may stay
            _check_neuron(tapped.tap, modules[tapped.tap], units)
    else:
        # a shared stateless module (one nn.ReLU used everywhere) or a functional nonlinearity:
        # tap the last per-unit module before it and apply the nonlinearity there
        group.tap = group.followers[-1] if group.followers else producers[-1]
        if tapped is not None:
            group.activation = modules[tapped.tap]
        else:
            group.activation = next((r.activation for r in rs if r.activation is not None), None)
    return group


def _mixes_units(module: nn.Module) -> bool:
    """A module whose weights mix its input units (a matrix, e.g. ``nn.MultiheadAttention``'s
    projections), as opposed to a neuron or nonlinearity acting on each unit apart."""
    return any(p.dim() >= 2 for p in module.parameters())


def _check_neuron(name: str, module: nn.Module, units: int) -> None:
    """A tapped neuron with per-unit parameters would need resizing too (not supported yet)."""
    for key, value in [*module.named_parameters(), *module.named_buffers()]:
        if value.dim() >= 1 and value.shape[0] == units and value.numel() > 1:
            raise AdapterError(f"{name}.{key} holds one value per unit; per-unit neuron "
                               "parameters are not resized by the adapter yet")


def chain_groups(module: nn.Module, chain: Sequence[str]
                 ) -> tuple[list[UnitGroup], list[str], str | None]:
    """Unit groups from a declared chain of module names: each plastic layer, then optionally
    its norm and its nonlinearity / neuron; the next plastic layer reads its units."""
    groups: list[UnitGroup] = []
    layers: list[str] = []
    for name in chain:
        try:
            sub = module.get_submodule(name)
        except AttributeError:
            raise AdapterError(f"chain names {name!r}, which {type(module).__name__} does not "
                               "have") from None
        if isinstance(sub, L.PlasticLayer):
            layers.append(name)
            groups.append(UnitGroup(producers=[name]))
        elif not groups:
            raise AdapterError(f"chain must start with an nn.Linear or nn.Conv2d, not {name!r}")
        elif isinstance(sub, NORMS):
            groups[-1].followers.append(name)
        elif groups[-1].tap is None:
            groups[-1].tap = name
    if len(layers) < 2:
        raise AdapterError("chain must name at least two layers (a hidden and the output one)")
    if not isinstance(module.get_submodule(layers[-1]), L.PlasticLinear):
        raise AdapterError(f"the chain's last layer {layers[-1]!r} must be an nn.Linear (the "
                           "task heads)")
    output_tap = groups.pop().tap  # the output layer's neurons or readout
    for group, nxt in zip(groups, layers[1:], strict=True):
        units = _layer_width(module.get_submodule(group.producers[0]))
        n_in = module.get_submodule(nxt).weight.shape[1]
        if n_in % units:
            raise AdapterError(f"chain: {nxt!r} reads {n_in} inputs after the {units} units "
                               f"of {group.producers[0]!r}")
        group.consumers[nxt] = n_in // units
        if group.tap is None:
            raise AdapterError(f"chain: name the nonlinearity or neuron module after "
                               f"{group.producers[0]!r} (its units' activity)")
        _check_neuron(group.tap, module.get_submodule(group.tap), units)
    return groups, layers, output_tap


# --- the adapted network -----------------------------------------------------------------------


@dataclass
class AdaptedConfig:
    """What strategies read from a model's config: the built widths and whether it spikes."""

    kind: str
    spiking: bool
    hidden: tuple[int, ...]
    channels: tuple[int, ...] = ()
    conv: bool = False

    def to_dict(self) -> dict:
        return {"kind": self.kind, "spiking": self.spiking, "hidden": list(self.hidden)}


def _norm_tensors(norm: nn.Module) -> tuple[Coupled, ...]:
    """A BatchNorm's / LayerNorm's per-unit tensors, each with the value a new unit starts at."""
    fills = (("weight", 1.0), ("bias", 0.0), ("running_mean", 0.0), ("running_var", 1.0))
    return tuple(Coupled(norm, name, 0, fill) for name, fill in fills
                 if getattr(norm, name, None) is not None)


def _sync_norm(norm: nn.Module, size: int) -> None:
    """A norm's width attribute after its tensors were resized (LayerNorm's forward reads it)."""
    if isinstance(norm, nn.LayerNorm):
        norm.normalized_shape = (size,)
    else:
        norm.num_features = size


class AdaptedNetwork(PlasticNetwork):
    """A user's module as a :class:`~neurosculpt.network.PlasticNetwork` (see the module
    docstring). ``net`` is the user's module; its forward pass is unchanged. Hidden plastic
    layer ``i`` is ``plastic_layers[i]``. Of the layers summed in a residual stream the first
    leads: growing, removing or reinitialising its units does the same in the others, which
    are reported fixed so that no strategy resizes them alone."""

    def __init__(self, net: nn.Module, groups: list[UnitGroup], layers: list[str],
                 input_shape: Sequence[int], spiking: bool | None = None,
                 kind: str = "adapted", output_tap: str | None = None) -> None:
        super().__init__()
        self.net = net
        self.groups = groups
        self.output_tap = output_tap
        self.layer_names = list(layers)
        self.group_of = {p: g for g, group in enumerate(groups) for p in group.producers}
        self.input_shape = tuple(int(d) for d in input_shape)
        self.sequence = False
        self.constant_input = False  # energy accounting: the user's forward computes every step
        self._records: list[list[Tensor]] | None = None
        self._batch = 0
        self._tap_hooks: list[tuple[str, int]] = []
        self._register_taps()
        self.time_steps = 1
        probed = self._probe_spiking()
        self.spiking = probed if spiking is None else spiking
        self._initial_widths = self.hidden_sizes()
        self.config = AdaptedConfig(kind=kind, spiking=self.spiking,
                                    hidden=tuple(self._initial_widths))

    # --- the interface --------------------------------------------------------------------------
    @property
    def plastic_layers(self) -> list[L.PlasticLayer]:
        """Every plastic layer in forward order; the last one is the output layer."""
        return [self.net.get_submodule(n) for n in self.layer_names]  # type: ignore[misc]

    def units(self, layer: int) -> Units:
        """A group's units, as the interface sees them: the first layer of a residual sum leads
        (its operations resize every summed layer, see :meth:`grow_units`), the others are
        reported fixed so no strategy resizes them on their own."""
        name = self.layer_names[layer]
        group = self.groups[self.group_of[name]]
        consumers = tuple(Consumer(self.layer_names.index(c), f)
                          for c, f in group.consumers.items())
        if name != group.producers[0]:
            return Units(consumers=consumers, fixed=True)
        coupled = tuple(c for norm in group.followers
                        for c in _norm_tensors(self.net.get_submodule(norm)))
        return Units(consumers=consumers, coupled=coupled, fixed=bool(group.fixed))

    def _partners(self, layer: int) -> list[int]:
        """The other layers summed with ``layer`` (a residual stream's units live in each)."""
        group = self.groups[self.group_of[self.layer_names[layer]]]
        return [self.layer_names.index(p) for p in group.producers[1:]]

    def grow_units(self, layer: int, n: int,
                   optimizer: torch.optim.Optimizer | None = None) -> Tensor:
        """The interface's growth, then the same units in every layer summed with ``layer``:
        their new rows start at zero, so a residual branch adds nothing to a new unit until it
        learns to (one journal entry per layer, so per-layer state follows each)."""
        new = super().grow_units(layer, n, optimizer)
        source = self.resizes[-1].source  # the leader's growth, just journalled
        for p in self._partners(layer):
            partner = self.plastic_layers[p]
            L.grow_outputs(partner, n, optimizer)
            with torch.no_grad():
                partner.weight[new] = 0.0
                partner.bias[new] = 0.0
            self._journal(p, "grow", source, new, Units(consumers=()))
        self._sync_norms(layer)
        return new

    def remove_units(self, layer: int, units: Tensor,
                     optimizer: torch.optim.Optimizer | None = None) -> Tensor:
        kept = super().remove_units(layer, units, optimizer)
        for p in self._partners(layer):
            L.remove_outputs(self.plastic_layers[p], units, optimizer)
            self._journal(p, "remove", kept, torch.zeros(0, dtype=torch.long),
                          Units(consumers=()))
        self._sync_norms(layer)
        return kept

    def reinit_units(self, layer: int, units: Tensor,
                     optimizer: torch.optim.Optimizer | None = None,
                     optimizer_reset: str = "first") -> None:
        """The interface's reinitialisation; the units' rows in layers summed with ``layer``
        restart at zero (a fresh unit carries only what ``layer`` gives it)."""
        super().reinit_units(layer, units, optimizer, optimizer_reset)
        units = torch.as_tensor(units, dtype=torch.long)
        for p in self._partners(layer) if len(units) else ():
            partner = self.plastic_layers[p]
            with torch.no_grad():
                partner.weight[units] = 0.0
                partner.bias[units] = 0.0
            reset_optimizer_state(optimizer, partner.weight, 0, units, optimizer_reset)
            reset_optimizer_state(optimizer, partner.bias, 0, units, optimizer_reset)
            self._journal(p, "reinit", torch.arange(partner.n_out), units, Units(consumers=()))

    def _sync_norms(self, layer: int) -> None:
        group = self.groups[self.group_of[self.layer_names[layer]]]
        for name in group.followers:
            _sync_norm(self.net.get_submodule(name), self.plastic_layers[layer].n_out)

    def compact(self, optimizer: torch.optim.Optimizer | None = None) -> list[int]:
        """Remove the units that no live synapse reads (every outgoing synapse pruned) from every
        hidden layer whose units may change; return how many per hidden layer. The outputs do
        not change: such a unit reaches nothing (a BatchNorm acts on each unit alone; a
        LayerNorm mixes units, so layers it follows change slightly). Every layer keeps a unit.
        """
        removed = []
        layers = self.plastic_layers
        for i in range(len(layers) - 1):
            n = layers[i].n_out
            if self.units(i).fixed:
                removed.append(0)
                continue
            read = has_outputs(self, i)
            if not bool(read.any()):
                read[0] = True
            if not bool(read.all()):
                self.remove_units(i, torch.nonzero(~read).flatten(), optimizer)
            removed.append(n - int(read.sum()))
        return removed

    # --- activity taps --------------------------------------------------------------------------
    def _register_taps(self) -> None:
        for g, group in enumerate(self.groups):
            handle = self.net.get_submodule(group.tap).register_forward_hook(self._tap_hook(g))
            self._tap_hooks.append((group.tap, handle.id))

    def _tap_hook(self, g: int):
        def hook(module: nn.Module, args: tuple, out: object) -> None:
            if self._records is None:
                return
            h = out[0] if isinstance(out, (tuple, list)) else out
            activation = self.groups[g].activation
            if activation is not None:
                h = activation(h)
            self._records[g].append(self._time_major(h, g))
        return hook

    def _time_major(self, h: Tensor, g: int) -> Tensor:
        """``[T, B, units, ...]`` from one call's output: images ``[B, C, H, W]``, vectors
        ``[B, n]``, sequences ``[B, L, n]`` (tokens count as time steps), or already time-major
        ``[T, B, ...]``."""
        batch = self._batch
        producer = self.net.get_submodule(self.groups[g].producers[0])
        if isinstance(producer, L.PlasticConv2d):
            return h.unsqueeze(0) if h.dim() == 4 else h
        if h.dim() == 2:
            return h.unsqueeze(0)
        if h.shape[0] == batch:
            return h.reshape(batch, -1, h.shape[-1]).transpose(0, 1)
        return h.reshape(-1, batch, h.shape[-1])

    def forward(self, x: Tensor) -> Tensor:
        self._batch = x.shape[0]
        self._records = [[] for _ in self.groups] if self.record_activity else None
        try:
            out = self.net(x)
        finally:
            records, self._records = self._records, None
        if records is not None:
            per_group = [torch.cat(r, 0) for r in records]
            self.activity = [per_group[self.group_of[n]] for n in self.layer_names[:-1]]
        return out

    @torch.no_grad()
    def _probe_spiking(self) -> bool:
        """Spiking when every tapped population emits only 0 and 1 on a random input."""
        device = next(self.net.parameters()).device
        with recording(self, train=False):
            self(torch.rand(2, *self.input_shape, device=device))
            activity = self.activity
        self.time_steps = int(activity[0].shape[0]) if activity else 1
        return bool(activity) and all(bool(((a == 0) | (a == 1)).all()) for a in activity)

    def __deepcopy__(self, memo: dict) -> AdaptedNetwork:
        """A copy whose taps record into the copy. Neuron state left in buffers by the last
        forward pass (snnTorch keeps the membrane there) is copied detached."""
        for buffer in self.buffers():
            if buffer.grad_fn is not None and id(buffer) not in memo:
                memo[id(buffer)] = buffer.detach().clone()
        new = object.__new__(type(self))
        memo[id(self)] = new
        new.__dict__.update(copy.deepcopy(self.__dict__, memo))
        for name, hook_id in new._tap_hooks:
            new.net.get_submodule(name)._forward_hooks.pop(hook_id, None)
        new._tap_hooks = []
        new._register_taps()
        return new

    @property
    def neurons(self) -> list[nn.Module]:
        """The module whose output is each hidden layer's activity (``dropin`` hooks them)."""
        return [self.net.get_submodule(self.groups[self.group_of[n]].tap)
                for n in self.layer_names[:-1]]

    # --- the rest -------------------------------------------------------------------------------
    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        for i in range(len(self.layer_names) - 1):  # norms learn their width from their tensors
            self._sync_norms(i)
        return result

    def describe(self) -> str:
        """One line per unit group: layers, norms, readers, tap, fixed or not."""
        lines = []
        for g, group in enumerate(self.groups):
            n = self.net.get_submodule(group.producers[0]).n_out
            reads = ", ".join(f"{c}" + (f" (x{f})" if f > 1 else "")
                              for c, f in group.consumers.items())
            lead = f" (led by {group.producers[0]})" if len(group.producers) > 1 else ""
            lines.append(f"group {g}: {n} units of {'+'.join(group.producers)}{lead}"
                         + (f", norms {', '.join(group.followers)}" if group.followers else "")
                         + f", read by {reads or 'nothing'}, activity at {group.tap}"
                         + (f", fixed: {group.fixed}" if group.fixed else ""))
        lines.append(f"output layer (task heads): {self.layer_names[-1]}")
        return "\n".join(lines)


def adapt(module: nn.Module, input_shape: Sequence[int], *, plastic: Sequence[str] | None = None,
          fixed: Sequence[str] = (), chain: Sequence[str] | None = None,
          spiking: bool | None = None, kind: str = "adapted") -> AdaptedNetwork:
    """Turn ``module`` (inputs ``[B, *input_shape]``, outputs ``[B, n_outputs]`` logits) into a
    network every strategy can train, grow, prune and consolidate, keeping its weights.

    ``plastic``: glob patterns of the ``nn.Linear`` / ``nn.Conv2d`` modules to make plastic
    (default all; the rest stay plain layers trained as shared parameters, e.g. attention
    projections). ``fixed``: patterns of plastic layers whose units must never grow or shrink
    (their synapses stay prunable). ``chain``: module names in forward order (layer, its norm,
    its neuron, next layer, ...) for modules ``torch.fx`` cannot trace; every layer it names is
    plastic and reads the units of the one before. ``spiking``: whether the
    tapped units spike (default: detected on a random input).
    """
    if isinstance(module, AdaptedNetwork):
        return module
    if not isinstance(module, nn.Module):
        raise AdapterError(f"adapt needs an nn.Module, got {type(module).__name__}")
    if chain is not None:
        swap_layers(module, list(chain))
        groups, layers, output_tap = chain_groups(module, chain)
    else:
        names = swap_layers(module, plastic)
        groups, layers, output_tap = traced_groups(module, names, fixed)
    return AdaptedNetwork(module, groups, layers, input_shape, spiking=spiking, kind=kind,
                          output_tap=output_tap)


def model_name(model: object) -> str:
    """How a run records a user's model: the spec string as given, ``module:qualname`` of an
    importable factory (so ``--resume`` can rebuild it), else ``<ClassName instance>``."""
    if isinstance(model, str):
        return model
    if isinstance(model, nn.Module):
        return f"<{type(model).__name__} instance>"
    module, qualname = getattr(model, "__module__", None), getattr(model, "__qualname__", "")
    if module and qualname and "<" not in qualname and module != "__main__":
        return f"{module}:{qualname}"
    return f"<{getattr(model, '__name__', type(model).__name__)}>"


def build_user_model(model: object, input_shape: Sequence[int], n_outputs: int,
                     params: dict | None = None) -> AdaptedNetwork:
    """The network of a user's model: ``model`` is a factory spec (``path/to/file.py:name`` or
    ``package.module:name``), a factory, or an ``nn.Module``.

    A factory is called as ``factory(input_shape, n_outputs, **params)`` (``params``: the
    ``--model-param`` values) and returns an ``nn.Module`` (adapted here with the defaults) or
    an :class:`AdaptedNetwork` (when it needs ``plastic``, ``fixed`` or ``chain``).
    """
    from .loading import load_object

    params = dict(params or {})
    name = model_name(model)
    if isinstance(model, str):
        model = load_object(model, "model factory")
    if isinstance(model, nn.Module):
        if params:
            raise AdapterError(f"model parameters {sorted(params)} need a factory; {name} is "
                               "already built")
        net = model
    elif callable(model):
        try:
            net = model(tuple(int(d) for d in input_shape), int(n_outputs), **params)
        except TypeError as err:
            raise AdapterError(f"model factory {name} cannot be called as "
                               f"factory(input_shape, n_outputs, **{params}): {err}") from err
    else:
        raise AdapterError(f"model {name} is neither a factory nor an nn.Module")
    if not isinstance(net, nn.Module):
        raise AdapterError(f"model factory {name} returned {type(net).__name__}, not an "
                           "nn.Module")
    adapted = adapt(net, input_shape, kind=name)
    n_out = adapted.plastic_layers[-1].n_out
    if n_out != n_outputs:
        raise AdapterError(f"model {name} has {n_out} outputs; the benchmark needs {n_outputs}")
    return adapted
