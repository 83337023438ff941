"""NIR export and import of spiking networks (Pedersen et al. 2024, "Neuromorphic intermediate
representation", Nat. Commun. 15:8122; format of the ``nir`` package, written with ``nir.write``).

Mapping (forward Euler with the time step ``dt`` stored in the graph metadata; see
:class:`neurosculpt.neurons.LIF`):

* neurosculpt LIF ``v = beta*v + I; s = v > thr; v = 0 where s`` (``reset="zero"``) becomes NIR
  ``LIF(tau = dt / (1 - beta), r = 1, v_leak = 0, v_threshold = thr, v_reset = 0)`` and the
  ``Affine``/``Conv2d`` node feeding it carries our weights and bias times ``tau / dt``. With
  ``r = 1`` both snnTorch's and Norse's importers reproduce the spikes (with ``r = tau / dt`` and
  unscaled weights Norse, which ignores ``r``, does not).
* A non-leaky population (IF, or ``beta = 1``) becomes NIR ``IF(r = 1 / dt)`` with unscaled
  weights: ``dv/dt = r I`` integrated over ``dt`` adds exactly ``I``.
* The readout (a leaky integrator whose membrane, averaged over the time steps, gives the class
  scores) becomes ``Affine`` + ``LI`` (same scaling as LIF; ``I`` when its decay is 1). The graph
  output is the membrane at every step; averaging over ``time_steps`` happens outside the graph
  (metadata ``readout``). A spike readout (``readout="spikes"``) becomes ``Affine`` + ``LIF`` whose
  spikes are summed over the steps.
* ``AvgPool2d(2)`` stays ``AvgPool2d``, or, with ``pooling="sum"`` (for importers that only know
  ``SumPool2d``, such as Norse's), ``SumPool2d`` with the following layer's weights divided by 4.
* MLP inputs are flattened: the ``Input`` node has ``prod(input_shape)`` features; ``Flatten``
  (NIR convention, batch dimension excluded: ``start_dim=0``) sits between convolutions and the
  first ``Affine``.

Weights are written in float64: scaling by ``tau / dt`` and back then returns our float32 weights
bit for bit, so export followed by import gives the identical network. The encoder is not part
of the graph (a graph consumes encoded input, one tensor per time step); it is named in the
metadata. What NIR cannot express (reset by subtraction, non-spiking models) raises
:class:`NIRExportError` naming the setting.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..layers import PlasticConv2d, PlasticLayer, PlasticLinear
from ..models import ModelConfig, Network
from ..neurons import LI, LIF
from ..validation import check_choice

try:
    import nir
except ImportError:  # pragma: no cover - exercised only without the optional dependency
    nir = None

DEFAULT_DT = 1e-4
"""Time step written when none is given; snnTorch's NIR importer assumes exactly this value."""

ENCODER_NOTES = {
    "direct": "the same analog input is presented at each of time_steps steps",
    "rate": "Bernoulli spikes with p = clamp(gain*x, 0, 1) at each of time_steps steps",
    "latency": "one spike per input, brighter inputs earlier, within time_steps steps",
    "log-mel": "log-mel frames of the waveform, one frame per time step",
    "delta": "send-on-delta ON/OFF spikes of log-mel frames, one frame per time step",
    "sequence": "the input sequence [frames, features], one frame per time step",
}


class NIRExportError(ValueError):
    """The model uses a setting that a NIR graph cannot express."""


class NIRImportError(ValueError):
    """The NIR graph describes something a neurosculpt ``Network`` cannot hold."""


def _require_nir() -> None:
    if nir is None:
        raise NIRImportError("NIR export/import needs the nir package: pip install nir")


# --- export ------------------------------------------------------------------------------------


def _check_neuron(neuron: nn.Module, where: str) -> LIF:
    if not isinstance(neuron, LIF):
        raise NIRExportError(f"{where}: {type(neuron).__name__} has no NIR node")
    if neuron.reset != "zero":
        raise NIRExportError(
            f"{where}: reset by subtraction (reset='subtract') has no NIR equivalent: NIR LIF "
            "and IF nodes reset the membrane to v_reset; train with reset='zero' to export"
        )
    return neuron


def _neuron_node(neuron: LIF, shape: Sequence[int], dt: float) -> tuple[nir.NIRNode, float]:
    """NIR node for a spiking population and the factor its incoming weights are scaled by."""
    beta = float(neuron.beta.detach().clamp(0.0, 1.0))
    thr = np.full(tuple(shape), float(neuron.threshold.detach()), dtype=np.float64)
    reset = np.full(tuple(shape), neuron.reset_value, dtype=np.float64)
    if beta >= 1.0:
        return nir.IF(r=np.full(tuple(shape), 1.0 / dt), v_threshold=thr, v_reset=reset), 1.0
    tau = dt / (1.0 - beta)
    node = nir.LIF(tau=np.full(tuple(shape), tau), r=np.ones(tuple(shape)),
                   v_leak=np.zeros(tuple(shape)), v_threshold=thr, v_reset=reset)
    return node, tau / dt


def _readout_node(readout: LI, n: int, dt: float) -> tuple[nir.NIRNode, float]:
    beta = float(readout.beta.detach().clamp(0.0, 1.0))
    if beta >= 1.0:
        return nir.I(r=np.full(n, 1.0 / dt)), 1.0
    tau = dt / (1.0 - beta)
    return nir.LI(tau=np.full(n, tau), r=np.ones(n), v_leak=np.zeros(n)), tau / dt


def _weights(layer: PlasticLayer, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Effective (masked, frozen-aware) weight and bias times ``scale``, in float64."""
    weight, bias = layer.effective_parameters()
    w = weight.detach().double().numpy() * scale
    b = bias.detach().double().numpy() * scale
    return w, b


READOUTS = ("li", "affine")
"""How a membrane readout is written: ``li`` (``Affine`` + NIR ``LI``: the readout itself, read
by neurosculpt; snnTorch's importer rejects ``LI`` and Norse's drops it) or ``affine`` (the
graph ends in the output ``Affine``, whose per-step output is the readout's input current;
class scores = the sum over steps of ``readout_weights[t]`` times that output, the closed form
of the leaky integrator's mean, so snnTorch and Norse load the whole graph and give the same
scores)."""


READOUT_NOTES = {
    "spike-count": "class scores = sum over time_steps of the output spikes",
    "membrane-mean": "class scores = mean over time_steps of the output LI membrane",
    "weighted-sum": "class scores = sum over time_steps t of readout_weights[t] times the "
                    "graph output at step t (the mean of a leaky integrator with decay "
                    "readout_beta fed by it)",
}
"""``readout_note`` of the graph metadata, per ``readout``."""


def readout_weights(beta: float, steps: int) -> list[float]:
    """Weight of step ``s``'s current in the mean over ``steps`` of ``v = beta*v + I``:
    ``sum_{t>=s} beta^(t-s) / steps``."""
    return [sum(beta ** k for k in range(steps - s)) / steps for s in range(steps)]


def _metadata(model: Network, task: int | None, dt: float, pooling: str,
              readout_form: str = "li") -> dict:
    cfg = model.config
    encoder = "sequence" if model.sequence else cfg.encoder
    steps = int(model.input_shape[0]) if model.sequence else cfg.steps
    readout = "spike-count" if cfg.readout == "spikes" else "membrane-mean"
    extra: dict = {}
    if readout == "membrane-mean" and readout_form == "affine":
        beta = float(model.readout.beta.detach().clamp(0.0, 1.0))
        readout = "weighted-sum"
        extra = {"readout_beta": beta,
                 "readout_weights": json.dumps(readout_weights(beta, steps))}
    return {**extra,
        "producer": f"neurosculpt {__version__}",
        "dt": float(dt),
        "time_steps": steps,
        "encoder": encoder,
        "encoder_note": ENCODER_NOTES.get(encoder, encoder),
        "input_shape": json.dumps(list(model.input_shape)),
        "input_flattened": int(not cfg.conv),
        "sequence": int(model.sequence),
        "readout": readout,
        "readout_note": READOUT_NOTES[readout],
        "weight_scaling": (
            "Affine/Conv2d weights and biases feeding LIF and LI nodes are neurosculpt's times "
            "tau/dt (r = 1), so forward Euler with dt gives v = beta*v + I exactly"
        ),
        "pooling": pooling,
        "task": -1 if task is None else int(task),
        "neurosculpt_config": json.dumps(cfg.to_dict()),
    }


def to_nir(model: Network, task: int | None = None, *, dt: float = DEFAULT_DT,
           pooling: str = "avg", readout: str = "li") -> nir.NIRGraph:
    """NIR graph of ``model``, or of ``task``'s subnetwork (``model.set_task(task)``).

    ``dt`` only sets the physical time constants (``tau = dt / (1 - beta)``); the discrete
    dynamics are the same for any ``dt``. ``pooling`` is ``"avg"`` or ``"sum"`` (see module doc);
    ``readout`` is ``"li"`` or ``"affine"`` (see :data:`READOUTS`).
    """
    _require_nir()
    if not model.config.spiking:
        raise NIRExportError(
            f"{model.config.kind} is not spiking: NIR describes spiking networks (it has no ReLU "
            "node); export snn-mlp or snn-conv models"
        )
    if pooling not in ("avg", "sum"):
        raise ValueError(f"pooling must be 'avg' or 'sum', got {pooling!r}")
    if not dt > 0.0:
        raise ValueError(f"dt must be > 0, got {dt}")
    from ..adapter import AdaptedNetwork

    adapted = isinstance(model, AdaptedNetwork)
    check_choice("readout", readout, READOUTS)
    if adapted and readout != "li":
        raise NIRExportError("an adapted network exports its readout as an LI node only")
    if readout == "affine" and model.config.readout == "spikes":
        raise NIRExportError("the model's readout is spiking (an output LIF population, which "
                             "snnTorch and Norse load); readout='affine' is for membrane "
                             "readouts")
    previous = model.plastic_layers[0].active_task
    model.set_task(task)
    try:
        with torch.no_grad():
            nodes = (_adapted_nodes(model, dt) if adapted
                     else _export_nodes(model, dt, pooling, readout))
    finally:
        model.set_task(previous)
    names = list(nodes)
    edges = list(zip(names[:-1], names[1:], strict=True))
    metadata = (_adapted_metadata(model, task, dt) if adapted
                else _metadata(model, task, dt, pooling, readout))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)


def _as_lif(module: nn.Module, where: str) -> LIF:
    """The library's LIF with the dynamics of ``module``: a LIF, or an ``snntorch.Leaky`` with
    reset to zero (snnTorch's delayed reset, ``v = beta * (1 - s_prev) * v + I``, spikes
    exactly as a LIF that resets in the step it fires)."""
    if isinstance(module, LIF):
        return _check_neuron(module, where)
    if type(module).__name__ == "Leaky" and hasattr(module, "reset_mechanism"):
        if module.reset_mechanism != "zero" or not getattr(module, "reset_delay", True):
            raise NIRExportError(f"{where}: snntorch.Leaky with reset_mechanism="
                                 f"{module.reset_mechanism!r} has no NIR equivalent; use 'zero'")
        if float(module.graded_spikes_factor) != 1.0 or module.inhibition or module.state_quant:
            raise NIRExportError(f"{where}: graded spikes, inhibition and state quantisation "
                                 "of snntorch.Leaky have no NIR equivalent")
        return LIF(beta=float(module.beta.detach().clamp(0.0, 1.0)),
                   threshold=float(module.threshold), reset="zero")
    raise NIRExportError(f"{where}: {type(module).__name__} has no NIR node")


def _as_readout(module: nn.Module | None, where: str) -> LI:
    """The library's LI with the dynamics of the output population: an LI, or an
    ``snntorch.Leaky`` that never resets (``reset_mechanism="none"``), read as its mean
    membrane potential over the time steps."""
    if isinstance(module, LI):
        return module
    if type(module).__name__ == "Leaky" and getattr(module, "reset_mechanism", None) == "none":
        return LI(beta=float(module.beta.detach().clamp(0.0, 1.0)))
    raise NIRExportError(f"{where}: {type(module).__name__} is not a leaky-integrator readout "
                         "(an LI, or snntorch.Leaky(reset_mechanism='none'))")


def _adapted_nodes(model, dt: float) -> dict[str, nir.NIRNode]:
    """Nodes of an adapted chain of linear layers, each followed by its spiking neurons, the
    output layer by a leaky-integrator readout (direct-coded input at every step)."""
    layers = model.plastic_layers
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type=np.array([layers[0].n_in]))}
    for i, layer in enumerate(layers[:-1]):
        units = model.units(i)
        where = f"layer {model.layer_names[i]!r}"
        if not isinstance(layer, PlasticLinear) or [
                (c.layer, c.width) for c in units.consumers] != [(i + 1, 1)] or units.coupled:
            raise NIRExportError(f"{where}: NIR export of adapted networks covers chains of "
                                 "linear layers without norms")
        node, scale = _neuron_node(_as_lif(model.neurons[i], where), [layer.n_out], dt)
        nodes[f"fc{i}"], nodes[f"lif{i}"] = nir.Affine(*_weights(layer, scale)), node
    last = layers[-1]
    readout = model.net.get_submodule(model.output_tap) if model.output_tap else None
    node, scale = _readout_node(_as_readout(readout, "output layer"), last.n_out, dt)
    nodes["fc_out"], nodes["readout"] = nir.Affine(*_weights(last, scale)), node
    nodes["output"] = nir.Output(output_type=np.array([last.n_out]))
    return nodes


def _adapted_metadata(model, task: int | None, dt: float) -> dict:
    return {
        "producer": f"neurosculpt {__version__} adapter",
        "dt": float(dt),
        "time_steps": int(model.time_steps),
        "encoder": "direct",
        "encoder_note": ENCODER_NOTES["direct"],
        "input_shape": json.dumps(list(model.input_shape)),
        "input_flattened": 1,
        "sequence": 0,
        "readout": "membrane-mean",
        "readout_note": READOUT_NOTES["membrane-mean"],
        "weight_scaling": "as neurosculpt's own export: weights times tau/dt (r = 1)",
        "task": -1 if task is None else int(task),
        "neurosculpt_model": model.config.kind,
    }


def _export_nodes(model: Network, dt: float, pooling: str, readout: str = "li"
                  ) -> dict[str, nir.NIRNode]:
    cfg = model.config
    shape = [int(d) for d in model.input_shape] if cfg.conv else [model.layers[0].n_in]
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type=np.array(shape))}
    carry = 1.0  # factor from a preceding SumPool2d, folded into the next layer's weights
    for i, (layer, module) in enumerate(zip(model.layers[:-1], model.neurons, strict=True)):
        neuron = _check_neuron(module, f"hidden layer {i}")
        if isinstance(layer, PlasticConv2d):
            out_shape = [layer.n_out, shape[1], shape[2]]
            node, scale = _neuron_node(neuron, out_shape, dt)
            w, b = _weights(layer, scale)
            nodes[f"conv{i}"] = nir.Conv2d(
                input_shape=(shape[1], shape[2]), weight=w * carry, stride=1,
                padding=layer.padding, dilation=1, groups=1, bias=b)
            nodes[f"lif{i}"] = node
            size = np.array([2, 2])
            if pooling == "sum":
                nodes[f"pool{i}"] = nir.SumPool2d(kernel_size=size, stride=size,
                                                  padding=np.array([0, 0]))
                carry = 0.25
            else:
                nodes[f"pool{i}"] = nir.AvgPool2d(kernel_size=size, stride=size,
                                                  padding=np.array([0, 0]))
            shape = [layer.n_out, shape[1] // 2, shape[2] // 2]
            if i == model.n_conv - 1:
                nodes["flatten"] = nir.Flatten(input_type={"input": np.array(shape)},
                                               start_dim=0, end_dim=-1)
                shape = [int(np.prod(shape))]
        else:
            node, scale = _neuron_node(neuron, [layer.n_out], dt)
            w, b = _weights(layer, scale)
            nodes[f"fc{i}"] = nir.Affine(weight=w * carry, bias=b)
            nodes[f"lif{i}"] = node
            shape, carry = [layer.n_out], 1.0
    last = model.layers[-1]
    if cfg.readout == "spikes":
        node, scale = _neuron_node(_check_neuron(model.output_neurons, "output neurons"),
                                   [last.n_out], dt)
    elif readout == "affine":  # the readout's input current; its mean is readout_weights
        node, scale = None, 1.0
    else:
        node, scale = _readout_node(model.readout, last.n_out, dt)
    w, b = _weights(last, scale)
    nodes["fc_out"] = nir.Affine(weight=w * carry, bias=b)
    if node is not None:
        nodes["readout"] = node
    nodes["output"] = nir.Output(output_type=np.array([last.n_out]))
    return nodes


LEGACY_NIR = "1.0.4"
"""The last nir release without ``v_reset`` on ``LIF``/``IF``/``CubaLIF`` (its reader rejects any
field it does not know); sinabs 3.1.3 and rockpool 3.1.0 pin ``nir <= 1.0.4``."""


def _version_tuple(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(".")[:3])
    except ValueError:
        raise ValueError(f"nir version {text!r}: expected numbers such as 1.0.4") from None


def export_nir(model: Network, path: str | Path, task: int | None = None, *,
               dt: float = DEFAULT_DT, pooling: str = "avg", readout: str = "li",
               nir_version: str | None = None) -> nir.NIRGraph:
    """Write :func:`to_nir` of ``model`` to ``path`` with ``nir.write``; return the graph.

    ``nir_version`` (default: the installed nir's format) at or below :data:`LEGACY_NIR`
    writes a file that nir <= 1.0.4 reads: without the ``v_reset`` fields (all 0 here, which
    is also how those readers reset, see docs/deployment.md) and with that version recorded.
    """
    legacy = nir_version is not None and _version_tuple(nir_version) <= \
        _version_tuple(LEGACY_NIR)
    graph = to_nir(model, task, dt=dt, pooling=pooling, readout=readout)
    try:
        nir.write(str(path), graph)
    except OSError as exc:
        text = str(exc.strerror or exc)
        found = re.search(r"error message = '([^']*)'", text)  # h5py's wording
        raise NIRExportError(f"cannot write {path}: {found.group(1) if found else text}"
                             ) from exc
    if legacy:
        _write_legacy(Path(path), nir_version)
    return graph


def _write_legacy(path: Path, version: str) -> None:
    """Remove the fields nir <= 1.0.4 does not know from a file ``nir.write`` wrote."""
    import h5py

    with h5py.File(str(path), "r+") as f:
        for name, group in f["node/nodes"].items():
            if "v_reset" in group:
                if np.any(np.asarray(group["v_reset"][()]) != 0):
                    raise NIRExportError(f"{name}: v_reset != 0 has no form in nir "
                                         f"{version} files")
                del group["v_reset"]
        del f["version"]
        f.create_dataset("version", data=version)


# --- import ------------------------------------------------------------------------------------


def _chain(graph: nir.NIRGraph) -> list[tuple[str, nir.NIRNode]]:
    """Nodes of a feed-forward chain from its Input to its Output, in order."""
    inputs = [k for k, n in graph.nodes.items() if isinstance(n, nir.Input)]
    if len(inputs) != 1:
        raise NIRImportError(f"expected one Input node, found {len(inputs)}")
    succ: dict[str, list[str]] = {k: [] for k in graph.nodes}
    for a, b in graph.edges:
        succ[a].append(b)
    order, name, seen = [], inputs[0], set()
    while True:
        if name in seen:
            raise NIRImportError(f"node {name!r} is reached twice: recurrent graphs are not "
                                 "supported (neurosculpt networks are feed-forward)")
        seen.add(name)
        order.append((name, graph.nodes[name]))
        if isinstance(graph.nodes[name], nir.Output):
            break
        nxt = succ[name]
        if len(nxt) != 1:
            raise NIRImportError(f"node {name!r} has {len(nxt)} successors: only feed-forward "
                                 "chains (one path from Input to Output) can be imported")
        name = nxt[0]
    if len(order) != len(graph.nodes):
        raise NIRImportError("graph has nodes outside the Input-to-Output chain")
    return order


def _uniform(values: np.ndarray, what: str, name: str) -> float:
    flat = np.asarray(values, dtype=np.float64).ravel()
    if flat.size == 0 or not np.all(flat == flat[0]):
        raise NIRImportError(f"{name}: {what} differs between neurons; neurosculpt populations "
                             "share one value")
    return float(flat[0])


def _neuron_params(node: nir.NIRNode, name: str, dt: float) -> tuple[str, float, np.ndarray,
                                                                    float, float]:
    """(kind, beta, per-neuron input gain, threshold, reset) of a spiking NIR node."""
    if isinstance(node, nir.LIF):
        if np.any(np.asarray(node.v_leak) != 0):
            raise NIRImportError(f"{name}: v_leak != 0 (a resting potential) is not expressible "
                                 "by neurosculpt's LIF")
        tau = _uniform(node.tau, "tau", name)
        if tau < dt:
            raise NIRImportError(f"{name}: tau={tau} < dt={dt}; forward Euler would be unstable")
        gain = np.asarray(node.r, dtype=np.float64) * dt / tau
        kind, beta = "lif", 1.0 - dt / tau
    elif isinstance(node, nir.IF):
        gain = np.asarray(node.r, dtype=np.float64) * dt
        kind, beta = "if", 1.0
    else:
        raise NIRImportError(f"{name}: expected a LIF or IF node after a weight layer, found "
                             f"{type(node).__name__}")
    thr = _uniform(node.v_threshold, "v_threshold", name)
    reset = _uniform(node.v_reset, "v_reset", name)
    return kind, beta, gain, thr, reset


def _layer_weights(node: nir.NIRNode, name: str) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(node, nir.Affine):
        return np.asarray(node.weight, np.float64), np.asarray(node.bias, np.float64)
    if isinstance(node, nir.Linear):
        w = np.asarray(node.weight, np.float64)
        return w, np.zeros(w.shape[0])
    if isinstance(node, nir.Conv2d):
        def pair(v: object) -> tuple[int, int]:
            arr = np.broadcast_to(np.asarray(v), (2,))
            return int(arr[0]), int(arr[1])

        w = np.asarray(node.weight, np.float64)
        if isinstance(node.padding, str) or pair(node.padding) != (1, 1) or \
                pair(node.stride) != (1, 1) or pair(node.dilation) != (1, 1) or \
                int(node.groups) != 1 or w.shape[2:] != (3, 3):
            raise NIRImportError(f"{name}: neurosculpt convolutions are 3x3, stride 1, padding "
                                 "1, no dilation or groups")
        return w, np.asarray(node.bias, np.float64)
    raise NIRImportError(f"{name}: expected Affine, Linear or Conv2d, found {type(node).__name__}")


def _fold_gain(w: np.ndarray, b: np.ndarray, gain: np.ndarray, name: str
               ) -> tuple[np.ndarray, np.ndarray]:
    """Fold a per-neuron input gain into the weights (per output channel for convolutions)."""
    rows = gain.reshape(w.shape[0], -1) if gain.size % w.shape[0] == 0 else None
    if rows is None or not np.all(rows == rows[:, :1]):
        raise NIRImportError(f"{name}: input gain r*dt/tau must be uniform per output channel")
    g = rows[:, 0]
    return w * g.reshape(-1, *([1] * (w.ndim - 1))), b * g


def _meta(graph: nir.NIRGraph, key: str) -> object:
    meta = graph.metadata if isinstance(graph.metadata, dict) else {}
    value = meta.get(key)
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, np.generic):
        value = value.item()
    return value


WEIGHT_NODES = ("Affine", "Linear", "Conv2d")

MAX_GRAPH_BYTES = 2**30
"""Largest total size of the arrays a NIR file may declare before :func:`read_graph` refuses it
(1 GiB: a 16,000 x 16,000 float32 weight). Checked on the HDF5 headers, before reading."""
MAX_TIME_STEPS = 100_000
"""Largest ``time_steps`` accepted from a graph or ``--steps`` (each step is one pass)."""


def _known_node_types() -> set[str]:
    found, todo = set(), [nir.NIRNode]
    while todo:
        cls = todo.pop()
        found.add(cls.__name__)
        todo.extend(cls.__subclasses__())
    return found


def read_graph(path: str | Path, max_bytes: int = MAX_GRAPH_BYTES) -> nir.NIRGraph:
    """``nir.read`` of ``path`` after checking, on the HDF5 headers alone, that it is a NIR file
    of known node types whose arrays fit in ``max_bytes``: a garbage file or one declaring a
    huge weight is refused with its name instead of failing inside h5py or allocating."""
    _require_nir()
    import h5py

    path = Path(path)
    if not path.is_file():
        raise NIRImportError(f"{path} does not exist or is not a file")
    if path.stat().st_size == 0:
        raise NIRImportError(f"{path} is empty (0 bytes); a NIR file is an HDF5 file")
    if not h5py.is_hdf5(str(path)):
        head = path.read_bytes()[:8]
        raise NIRImportError(f"{path} is not a NIR file: not HDF5 (it starts with {head!r})")
    sizes: list[tuple[int, str, tuple[int, ...]]] = []
    types: list[tuple[str, str]] = []

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset):
            shape = tuple(int(d) for d in (obj.shape or ()))
            sizes.append((math.prod(shape) * obj.dtype.itemsize, name, shape))
            if name.rsplit("/", 1)[-1] == "type" and shape == ():
                value = obj[()]
                types.append((name, value.decode() if isinstance(value, bytes) else str(value)))

    try:
        with h5py.File(str(path), "r") as f:
            f.visititems(visit)
    except (OSError, KeyError, ValueError, RuntimeError) as exc:
        raise NIRImportError(f"{path} is not a readable NIR file ({exc})") from exc
    total = sum(s for s, _, _ in sizes)
    if total > max_bytes:
        size, name, shape = max(sizes)
        raise NIRImportError(f"{path} declares {total / 2**30:.1f} GiB of arrays (largest: "
                             f"{name} of shape {shape}); refusing to load more than "
                             f"{max_bytes / 2**30:.1f} GiB")
    known = _known_node_types()
    unknown = [(name, kind) for name, kind in types if kind not in known]
    if unknown:
        name, kind = unknown[0]
        raise NIRImportError(f"{path}: node {name.rsplit('/', 1)[0]!r} has type {kind!r}, which "
                             f"nir {getattr(nir, '__version__', '')} does not define")
    try:
        return nir.read(str(path))
    except Exception as exc:  # noqa: BLE001 - nir/h5py raise many kinds; all mean a bad file
        raise NIRImportError(f"{path} is not a valid NIR graph ({type(exc).__name__}: "
                             f"{exc})") from exc


def check_graph(graph: nir.NIRGraph) -> None:
    """Refuse non-finite numbers in any node's parameters, naming the node and field."""
    for name, node in graph.nodes.items():
        for key, value in vars(node).items():
            if isinstance(value, (dict, str, bytes)) or value is None:
                continue
            try:
                array = np.asarray(value, dtype=np.float64)
            except (TypeError, ValueError):
                continue
            if array.size and not np.all(np.isfinite(array)):
                bad = int(np.size(array) - np.isfinite(array).sum())
                raise NIRImportError(f"node {name!r} has {bad} non-finite value(s) (NaN or "
                                     f"infinite) in {key}")


def _checked_number(what: str, value: object, low: float, high: float,
                    integer: bool = False, open_low: bool = False) -> float:
    """``value`` as a finite float in ``[low, high]`` (``(low, high]`` if ``open_low``)."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise NIRImportError(f"{what} = {value!r} is not a number") from None
    above = number > low if open_low else number >= low
    if not (math.isfinite(number) and above and number <= high):
        raise NIRImportError(f"{what} = {value!r} is out of range ({'>' if open_low else '>='} "
                             f"{low:g} and <= {high:g})")
    if integer and number != int(number):
        raise NIRImportError(f"{what} = {value!r} is not a whole number")
    return number


def from_nir(graph: nir.NIRGraph | str | Path, *, dt: float | None = None,
             steps: int | None = None, encoder: str | None = None) -> Network:
    """Build a neurosculpt ``Network`` from a NIR graph (or a ``.nir`` file), ready to train on.

    Accepts feed-forward chains ``[Conv2d -> LIF|IF -> AvgPool2d|SumPool2d]* [Flatten]
    [Affine|Linear -> LIF|IF]* Affine|Linear [-> LI|I|LIF|IF] -> Output`` such as
    :func:`to_nir` writes; a graph ending in a weight layer gets a readout that averages its
    output over the steps (``readout_beta = 0``). ``dt``, ``steps`` and ``encoder`` default to
    the graph metadata, else ``1e-4`` (snnTorch's convention), 10 and ``"direct"``. Synapses whose
    weight is exactly zero become pruned synapses (``mask`` false); no task owns any synapse.
    """
    _require_nir()
    if isinstance(graph, (str, Path)):
        path = Path(graph)
        try:
            return from_nir(read_graph(path), dt=dt, steps=steps, encoder=encoder)
        except NIRImportError as exc:
            if str(exc).startswith(str(path)):
                raise
            raise NIRImportError(f"{path}: {exc}") from exc
    check_graph(graph)
    dt = _checked_number("dt" if dt is not None else "metadata dt",
                         dt if dt is not None else (_meta(graph, "dt") or DEFAULT_DT),
                         0.0, math.inf, open_low=True)
    if steps is not None or _meta(graph, "time_steps") is not None:
        steps = int(_checked_number(
            "steps" if steps is not None else "metadata time_steps",
            steps if steps is not None else _meta(graph, "time_steps"), 1, MAX_TIME_STEPS,
            integer=True))
    chain = _chain(graph)[1:-1]
    weights: list[tuple[np.ndarray, np.ndarray]] = []
    neurons: list[tuple[str, float, float, float]] = []
    channels: list[int] = []
    meta_beta = _meta(graph, "readout_beta")  # written with readout="affine"
    readout_beta = 0.0 if meta_beta is None else _checked_number("metadata readout_beta",
                                                                 meta_beta, 0.0, 1.0)
    readout, carry, pos = "membrane", 1.0, 0
    while pos < len(chain):
        name, node = chain[pos]
        w, b = _layer_weights(node, name)
        w, carry, pos = w * carry, 1.0, pos + 1
        rest = chain[pos:]
        if not any(type(n).__name__ in WEIGHT_NODES for _, n in rest):
            if len(rest) > 1:
                raise NIRImportError(f"after {name}: expected at most one readout node, found "
                                     f"{[type(n).__name__ for _, n in rest]}")
            if isinstance(node, nir.Conv2d):
                raise NIRImportError(f"{name}: the last weight layer must be Affine or Linear")
            if rest and isinstance(rest[0][1], (nir.LI, nir.I)):
                gain, readout_beta = _readout_params(rest[0][1], rest[0][0], dt)
                w, b = _fold_gain(w, b, gain, rest[0][0])
            elif rest:
                kind, beta, gain, thr, reset = _neuron_params(rest[0][1], rest[0][0], dt)
                w, b = _fold_gain(w, b, gain, rest[0][0])
                neurons.append((kind, beta, thr, reset))
                readout = "spikes"
            weights.append((w, b))
            break
        if pos >= len(chain):
            raise NIRImportError(f"{name}: a hidden weight layer must feed a LIF or IF node")
        kind, beta, gain, thr, reset = _neuron_params(chain[pos][1], chain[pos][0], dt)
        weights.append(_fold_gain(w, b, gain, chain[pos][0]))
        neurons.append((kind, beta, thr, reset))
        pos += 1
        if isinstance(node, nir.Conv2d):
            channels.append(w.shape[0])
            carry = _pool_factor(chain[pos][1] if pos < len(chain) else None, name)
            pos += 1
            if pos < len(chain) and isinstance(chain[pos][1], nir.Flatten):
                pos += 1
    return _build(graph, weights, neurons, channels, readout, readout_beta, steps, encoder)


def _readout_params(node: nir.NIRNode, name: str, dt: float) -> tuple[np.ndarray, float]:
    """Per-neuron input gain and decay of an LI (or I) readout."""
    if isinstance(node, nir.I):
        return np.asarray(node.r, np.float64) * dt, 1.0
    if np.any(np.asarray(node.v_leak) != 0):
        raise NIRImportError(f"{name}: v_leak != 0 (a resting potential) is not expressible")
    tau = _uniform(node.tau, "tau", name)
    return np.asarray(node.r, np.float64) * dt / tau, 1.0 - dt / tau


def _pool_factor(pool: nir.NIRNode | None, name: str) -> float:
    """Factor for the next layer's weights: 1 after average pooling, 4 after sum pooling (our
    network averages, ``W' * sum == 4 W' * mean``)."""
    ok = isinstance(pool, (nir.AvgPool2d, nir.SumPool2d)) and all(
        np.all(np.asarray(v) == want) for v, want in
        ((pool.kernel_size, 2), (pool.stride, 2), (pool.padding, 0)))
    if not ok:
        raise NIRImportError(f"after {name}: neurosculpt convolution blocks end with a 2x2 "
                             "average (or sum) pooling of stride 2 and no padding")
    return 4.0 if isinstance(pool, nir.SumPool2d) else 1.0


def _short(value: float) -> float:
    """The shortest decimal with the same float32 value (``0.8999999761...`` -> ``0.9``), so
    configs read as written while the float32 buffers stay identical."""
    return float(str(np.float32(value)))


def _build(graph: nir.NIRGraph, weights: list[tuple[np.ndarray, np.ndarray]],
           neurons: list[tuple[str, float, float, float]], channels: list[int], readout: str,
           readout_beta: float, steps: int | None, encoder: str | None) -> Network:
    """A ``Network`` with the parsed structure and weights (one neuron setting for all)."""
    if not weights:
        raise NIRImportError("graph has no weight layer")
    if len({n[0] for n in neurons}) > 1:
        raise NIRImportError("graph mixes LIF and IF populations; neurosculpt uses one kind")
    for label, idx in (("tau (decay)", 1), ("v_threshold", 2)):
        if len({n[idx] for n in neurons}) > 1:
            raise NIRImportError(f"{label} differs between populations; neurosculpt uses one")
    if any(n[3] != 0.0 for n in neurons):
        raise NIRImportError("v_reset != 0 is not supported: neurosculpt resets to zero")
    kind, beta, thr, _ = neurons[0] if neurons else ("lif", 0.9, 1.0, 0.0)
    input_node = next(n for n in graph.nodes.values() if isinstance(n, nir.Input))
    input_shape = tuple(int(d) for d in np.asarray(input_node.input_type["input"]).ravel())
    meta_shape = _meta(graph, "input_shape")
    if isinstance(meta_shape, str):
        input_shape = tuple(json.loads(meta_shape))
    enc = encoder or _meta(graph, "encoder") or "direct"
    sequence = enc == "sequence"
    defaults = ModelConfig()
    config = ModelConfig(
        kind="snn-conv" if channels else "snn-mlp",
        hidden=tuple(w.shape[0] for w, _ in weights[len(channels):-1]),
        channels=tuple(channels) if channels else defaults.channels,
        steps=int(steps or _meta(graph, "time_steps") or defaults.steps),
        encoder="direct" if sequence else str(enc), neuron=kind,
        beta=_short(beta) if kind == "lif" else defaults.beta, threshold=_short(thr),
        readout=readout, readout_beta=_short(readout_beta),
    )
    model = Network(config, input_shape, weights[-1][0].shape[0], sequence=sequence)
    with torch.no_grad():
        for layer, (w, b) in zip(model.layers, weights, strict=True):
            if tuple(layer.weight.shape) != w.shape:
                raise NIRImportError(f"weight shape {w.shape} does not fit input shape "
                                     f"{input_shape}: expected {tuple(layer.weight.shape)}")
            layer.weight.copy_(torch.from_numpy(w).float())
            layer.bias.copy_(torch.from_numpy(b).float())
            layer.mask.copy_(layer.weight != 0)
    return model


def read_nir(path: str | Path, **kwargs: object) -> Network:
    """``from_nir`` of a ``.nir`` file."""
    return from_nir(Path(path), **kwargs)


def describe(graph: nir.NIRGraph) -> list[str]:
    """One line per node (name, type, shape) and the metadata, for CLI summaries."""
    lines = []
    for name, node in graph.nodes.items():
        if isinstance(node, (nir.Affine, nir.Linear, nir.Conv2d)):
            detail = f"weight {tuple(np.asarray(node.weight).shape)}"
        elif isinstance(node, (nir.LIF, nir.LI)):
            tau = np.asarray(node.tau).ravel()
            detail = f"{np.asarray(node.r).size} neurons, tau {tau[0]:.4g}"
        elif isinstance(node, (nir.IF, nir.I)):
            detail = f"{np.asarray(node.r).size} neurons"
        elif isinstance(node, (nir.Input, nir.Output)):
            shape = (node.input_type if isinstance(node, nir.Input) else node.output_type)
            detail = f"shape {tuple(int(d) for d in np.asarray(next(iter(shape.values()))))}"
        else:
            detail = ""
        lines.append(f"  {name:<10} {type(node).__name__:<10} {detail}")
    meta = graph.metadata if isinstance(graph.metadata, dict) else {}
    for key in ("dt", "time_steps", "encoder", "readout", "task"):
        if key in meta:
            lines.append(f"  {key}: {_meta(graph, key)}")
    return lines
