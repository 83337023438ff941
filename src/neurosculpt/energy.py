"""Synaptic operations, sparsity, memory footprint and an energy estimate of a network.

Definitions follow NeuroBench (Yik et al. 2025, "The neurobench framework for benchmarking
neuromorphic computing algorithms and systems", Nat. Commun. 16:1545):

* effective synaptic operations: for every input activation that is not zero, one operation per
  connected synapse it reaches (biases are not counted). Connected = live (in the mask of the
  selected subnetwork) with a weight that is not exactly 0: NeuroBench sees only weights, so a
  live synapse whose weight is 0 (PackNet and the development cycle can leave such synapses)
  counts as absent there and here. A layer's operations are accumulates (ACs)
  when all its inputs are in {-1, 0, 1} (spikes), multiply-accumulates (MACs) otherwise (analog
  input such as direct-coded pixels, or average-pooled spikes);
* dense operations: every synapse of the layer's full weight tensor for every input, zero or
  not (the work of hardware that exploits no sparsity);
* activation sparsity: zeros / all outputs of the hidden neuron populations (over neurons, time
  steps and samples);
* connection sparsity: synapses with weight exactly 0 (absent, or live at 0) / all synapses of
  the plastic layers, as NeuroBench counts it; ``mask_sparsity`` is the same over the mask alone
  (absent synapses / all), and each layer reports ``live_synapses`` (mask) beside
  ``connected_synapses`` (mask and weight != 0).

Live synapses are ``layer.synapse_mask(layer.active_task)``: select a task's subnetwork with
``model.set_task`` (or the ``task`` argument) before measuring. Energy = ACs * 0.9 pJ + MACs *
4.6 pJ: a 32-bit float add costs 0.9 pJ and a multiply 3.7 pJ at 45 nm (Horowitz 2014, "Computing's
energy problem", ISSCC), so a MAC costs 4.6 pJ. Memory and data movement are not included.

The non-spiking network of the same topology (same layer shapes, ReLU units, one time step,
every synapse computed) is reported next to it: MACs = dense operations / time steps.

Footprint assumes ``bytes_per_weight`` (4: float32) for each stored weight, each bias and each
neuron's membrane potential (hidden and readout neurons, per sample). Each layer is stored in
the smaller of two layouts: dense (every weight) or compressed sparse (live weights plus a 4-byte
index per live synapse and 4-byte column pointers, as :mod:`neurosculpt.sparse` does); the
``dense_bytes`` figure stores every weight.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from .layers import PlasticConv2d, PlasticLayer
from .models import Network
from .network import PlasticNetwork, recording

E_AC_PJ = 0.9
"""Energy of one 32-bit float accumulate at 45 nm, in pJ (Horowitz 2014)."""
E_MAC_PJ = 4.6
"""Energy of one 32-bit float multiply-accumulate at 45 nm, in pJ (3.7 + 0.9, Horowitz 2014)."""


@dataclass
class _LayerCount:
    """Operation counts of one plastic layer, summed over the measured batches."""

    acs: float = 0.0
    macs: float = 0.0
    dense: float = 0.0
    spiking: list[bool] = field(default_factory=list)


def _binary(x: Tensor) -> bool:
    """NeuroBench's test for spiking input: every value is -1, 0 or 1."""
    return bool(((x == 0) | (x == 1) | (x == -1)).all())


def _ops(layer: PlasticLayer, x: Tensor) -> tuple[float, float]:
    """Effective and dense synaptic operations of ``layer`` on input ``x`` ``[N, ...]``."""
    live = _connected(layer).double()
    active = (x != 0).double()
    if isinstance(layer, PlasticConv2d):
        effective = F.conv2d(active, live, padding=layer.padding).sum()
        ones = torch.ones(1, *x.shape[1:], dtype=torch.float64, device=x.device)
        dense = F.conv2d(ones, torch.ones_like(live), padding=layer.padding).sum() * x.shape[0]
        return float(effective), float(dense)
    active = active.reshape(-1, x.shape[-1])  # a sequence's tokens each pass the layer once
    effective = active.sum(0) @ live.sum(0)
    return float(effective), float(active.shape[0] * layer.weight.numel())


def _connected(layer: PlasticLayer) -> Tensor:
    """Synapses that carry a weight: live in the selected subnetwork and not exactly 0."""
    return layer.synapse_mask(layer.active_task) & (layer.effective_weight().detach() != 0)


def _batches(data: object, max_samples: int) -> Iterator[Tensor]:
    """Input tensors from a ``Split``, a tensor or an iterable of tensors / (x, y) pairs."""
    if hasattr(data, "batches"):
        data = (x for x, _ in data.batches(min(max_samples, 256)))
    elif isinstance(data, Tensor):
        data = [data]
    seen = 0
    for item in data if isinstance(data, Iterable) else [data]:
        x = item[0] if isinstance(item, (tuple, list)) else item
        if seen >= max_samples:
            return
        x = x[: max_samples - seen]
        seen += len(x)
        yield x


def _index_bytes(layer: PlasticLayer, live: int, bpw: int) -> int:
    """Index bytes of compressed sparse column storage (:mod:`neurosculpt.sparse`): one row
    index per live synapse and one pointer per input column plus one."""
    return live * bpw + (layer.n_in + 1) * bpw


@torch.no_grad()
def measure_energy(model: PlasticNetwork, split_or_batches: object, max_samples: int = 256, *,
                   task: int | None | str = "current", e_ac: float = E_AC_PJ,
                   e_mac: float = E_MAC_PJ, bytes_per_weight: int = 4) -> dict:
    """Per-layer and total operations, sparsity, footprint and energy, per sample (JSON-friendly).

    ``split_or_batches``: a ``Split`` (its test data, say), an input tensor, or an iterable of
    input tensors or ``(x, y)`` pairs; at most ``max_samples`` samples are used. ``task`` selects
    a subnetwork for the measurement (default: keep the model's current selection).
    """
    if max_samples < 1:
        raise ValueError(f"max_samples must be >= 1, got {max_samples}")
    layers = model.plastic_layers
    previous = layers[0].active_task
    if task != "current":
        model.set_task(task)  # type: ignore[arg-type]
    counts = [_LayerCount() for _ in layers]

    def make_hook(i: int):
        def hook(module: PlasticLayer, args: tuple[Tensor, ...]) -> None:
            x = args[0]
            spiking = _binary(x)
            effective, dense = _ops(module, x)
            if i == 0 and isinstance(model, Network) and model.constant_input:
                # the model computes a constant input's current once; a chip without a current
                # cache (and the peers' convention) repeats it at every step, so count it so
                effective, dense = effective * model.encoder.steps, dense * model.encoder.steps
            counts[i].spiking.append(spiking)
            counts[i].dense += dense
            if spiking:
                counts[i].acs += effective
            else:
                counts[i].macs += effective
        return hook

    handles = [layer.register_forward_pre_hook(make_hook(i)) for i, layer in enumerate(layers)]
    samples, steps = 0, 1
    spikes: list[float] = [0.0] * (len(layers) - 1)
    outputs: list[float] = [0.0] * (len(layers) - 1)
    neurons: list[int] = [0] * (len(layers) - 1)
    try:
        with recording(model, train=False):
            device = next(model.parameters()).device
            for x in _batches(split_or_batches, max_samples):
                model(x.to(device))
                samples += len(x)
                for i, act in enumerate(model.activity):
                    steps = act.shape[0]
                    spikes[i] += float((act != 0).sum())
                    outputs[i] += act.numel()
                    neurons[i] = math.prod(act.shape[2:])
            if samples == 0:
                raise ValueError("measure_energy got no samples")
            return _report(model, counts, spikes, outputs, neurons, samples, steps, e_ac, e_mac,
                           bytes_per_weight)
    finally:
        for h in handles:
            h.remove()
        model.set_task(previous)


def _report(model: PlasticNetwork, counts: list[_LayerCount], spikes: list[float],
            outputs: list[float], neurons: list[int], samples: int, steps: int, e_ac: float,
            e_mac: float, bpw: int) -> dict:
    layers = model.plastic_layers
    per_layer = []
    for i, (layer, c) in enumerate(zip(layers, counts, strict=True)):
        live = int(layer.synapse_mask(layer.active_task).sum())
        connected = int(_connected(layer).sum())
        row = {
            "layer": i,
            "type": type(layer).__name__,
            "input": "spikes" if c.spiking and all(c.spiking) else "analog",
            "acs": c.acs / samples,
            "macs": c.macs / samples,
            "dense_ops": c.dense / samples,
            "synapses": layer.weight.numel(),
            "live_synapses": live,
            "connected_synapses": connected,
            "connection_sparsity": 1.0 - connected / max(layer.weight.numel(), 1),
            "mask_sparsity": 1.0 - live / max(layer.weight.numel(), 1),
            "energy_pj": (c.acs * e_ac + c.macs * e_mac) / samples,
        }
        if i < len(spikes):
            row["neurons"] = neurons[i]
            row["activation_sparsity"] = 1.0 - spikes[i] / max(outputs[i], 1.0)
            row["firing_rate"] = spikes[i] / max(outputs[i], 1.0)
        per_layer.append(row)
    acs = sum(r["acs"] for r in per_layer)
    macs = sum(r["macs"] for r in per_layer)
    dense = sum(r["dense_ops"] for r in per_layer)
    total = sum(layer.weight.numel() for layer in layers)
    live = sum(r["live_synapses"] for r in per_layer)
    connected = sum(r["connected_synapses"] for r in per_layer)
    biases = sum(layer.n_out for layer in layers)
    state = sum(neurons) + layers[-1].n_out
    weight_bytes = index_bytes = 0
    for layer, r in zip(layers, per_layer, strict=True):
        sparse = _index_bytes(layer, r["live_synapses"], bpw)
        r["storage"] = "sparse" if sparse + r["live_synapses"] * bpw < r["synapses"] * bpw \
            else "dense"
        stored = r["live_synapses"] if r["storage"] == "sparse" else r["synapses"]
        weight_bytes += stored * bpw
        index_bytes += sparse if r["storage"] == "sparse" else 0
    energy = acs * e_ac + macs * e_mac
    ann_macs = dense / steps
    ann_energy = ann_macs * e_mac
    return {
        "samples": samples,
        "time_steps": steps,
        "spiking": model.spiking,
        "per_sample": {
            "acs": acs,
            "macs": macs,
            "synaptic_ops": acs + macs,
            "dense_ops": dense,
            "energy_pj": energy,
        },
        "activation_sparsity": 1.0 - sum(spikes) / max(sum(outputs), 1.0),
        "connection_sparsity": 1.0 - connected / max(total, 1),
        "mask_sparsity": 1.0 - live / max(total, 1),
        "live_synapses": live,
        "connected_synapses": connected,
        "footprint": {
            "bytes_per_weight": bpw,
            "weight_bytes": weight_bytes,
            "index_bytes": index_bytes,
            "bias_bytes": biases * bpw,
            "state_bytes": state * bpw,
            "total_bytes": weight_bytes + index_bytes + (biases + state) * bpw,
            "dense_bytes": (total + biases + state) * bpw,
        },
        "non_spiking": {
            "macs": ann_macs,
            "energy_pj": ann_energy,
            "footprint_bytes": (total + biases) * bpw,
        },
        "energy_ratio": energy / ann_energy if ann_energy else None,
        "energy_model": {"e_ac_pj": e_ac, "e_mac_pj": e_mac,
                         "source": "Horowitz 2014, 32-bit float, 45 nm"},
        "layers": per_layer,
    }


def format_energy(report: dict, title: str = "") -> str:
    """A short text table of one :func:`measure_energy` report."""
    ps, fp, ann = report["per_sample"], report["footprint"], report["non_spiking"]
    lines = [title] if title else []
    lines.append(f"{'layer':<6}{'input':<8}{'ACs':>12}{'MACs':>12}{'live syn':>10}"
                 f"{'w != 0':>10}{'conn sp':>9}{'act sp':>8}")
    for r in report["layers"]:
        act = f"{r['activation_sparsity']:.3f}" if "activation_sparsity" in r else "-"
        lines.append(f"{r['layer']:<6}{r['input']:<8}{r['acs']:>12.4g}{r['macs']:>12.4g}"
                     f"{r['live_synapses']:>10}{r['connected_synapses']:>10}"
                     f"{r['connection_sparsity']:>9.3f}{act:>8}")
    ratio = report["energy_ratio"]
    lines.append(
        f"per sample: {ps['acs']:.4g} ACs + {ps['macs']:.4g} MACs = {ps['energy_pj'] / 1e3:.4g} nJ"
        f" | non-spiking same topology: {ann['macs']:.4g} MACs = {ann['energy_pj'] / 1e3:.4g} nJ"
        + (f" (ratio {ratio:.3f})" if ratio is not None else "")
    )
    lines.append(
        f"activation sparsity {report['activation_sparsity']:.3f}, connection sparsity "
        f"{report['connection_sparsity']:.3f} (mask alone {report['mask_sparsity']:.3f}), "
        f"footprint {fp['total_bytes'] / 1024:.1f} KiB "
        f"(dense {fp['dense_bytes'] / 1024:.1f} KiB, {fp['bytes_per_weight']} B/weight)"
    )
    return "\n".join(lines)
