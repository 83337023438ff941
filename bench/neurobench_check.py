"""Cross-check :func:`neurosculpt.energy.measure_energy` against the NeuroBench library.

Trains a small ``snn-mlp`` with PackNet on split-digits (so it has pruned synapses and realistic
spikes), copies one task's subnetwork into a plain ``nn.Linear`` + snnTorch ``Leaky`` network,
checks both produce the same hidden spikes, then compares NeuroBench's ``SynapticOperations``,
``ActivationSparsity`` and ``ConnectionSparsity`` with neurosculpt's ``measure_energy`` on the same
inputs.

Run (NeuroBench and snnTorch live in the peers venv)::

    PYTHONPATH=/work/main/src /work/peers-venv/bin/python bench/neurobench_check.py
"""

from __future__ import annotations

import argparse
from importlib.metadata import version

import snntorch as snn
import torch
from neurobench.metrics.static import ConnectionSparsity
from neurobench.metrics.workload import ActivationSparsity, SynapticOperations
from neurobench.models import SNNTorchModel
from torch import nn

import neurosculpt
from neurosculpt.energy import measure_energy


class LeakyReadout(nn.Module):
    """Non-spiking leaky integrator readout, like neurosculpt's ``LI`` (not a SpikingNeuron,
    so NeuroBench does not count it as an activation layer)."""

    def __init__(self, beta: float) -> None:
        super().__init__()
        self.beta = beta
        self.mem: torch.Tensor | None = None

    def reset(self) -> None:
        self.mem = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.mem = x if self.mem is None else self.beta * self.mem + x
        return self.mem


class PlainSNN(nn.Module):
    """nn.Linear + snnTorch Leaky copy of a neurosculpt snn-mlp; one time step per call."""

    def __init__(self, model: neurosculpt.models.Network, spiking_output: bool = False) -> None:
        super().__init__()
        cfg = model.config
        linears = []
        for layer in model.plastic_layers:
            lin = nn.Linear(layer.n_in, layer.n_out)
            with torch.no_grad():
                lin.weight.copy_(layer.effective_weight())
                lin.bias.copy_(layer.effective_bias())
            linears.append(lin)
        self.linears = nn.ModuleList(linears)
        self.lifs = nn.ModuleList(
            snn.Leaky(beta=cfg.beta, threshold=cfg.threshold, reset_mechanism="zero",
                      init_hidden=False)
            for _ in linears[:-1]
        )
        self.spiking_output = spiking_output
        self.out_lif = snn.Leaky(beta=cfg.beta, threshold=cfg.threshold,
                                 reset_mechanism="zero") if spiking_output else None
        self.readout = LeakyReadout(cfg.readout_beta)
        self.hidden: list[list[torch.Tensor]] = [[] for _ in self.lifs]

    def reset(self) -> None:
        self.mems = [lif.init_leaky() for lif in self.lifs]
        self.out_mem = self.out_lif.init_leaky() if self.out_lif is not None else None
        self.readout.reset()
        self.hidden = [[] for _ in self.lifs]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = x.flatten(1)
        for i, (lin, lif) in enumerate(zip(self.linears[:-1], self.lifs, strict=True)):
            h, self.mems[i] = lif(lin(h), self.mems[i])
            self.hidden[i].append(h)
        out = self.linears[-1](h)
        if self.out_lif is not None:
            spk, self.out_mem = self.out_lif(out, self.out_mem)
            return spk, self.out_mem
        mem = self.readout(out)
        return mem, mem


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b), 1e-12)


def neurobench_metrics(net: PlainSNN, data: torch.Tensor) -> dict:
    """NeuroBench's metrics on ``data`` ``[B, T, ...]`` (the library's own classes)."""
    wrapped = SNNTorchModel(net)
    wrapped.register_hooks()
    synops, act = SynapticOperations(), ActivationSparsity()
    labels = torch.zeros(len(data), dtype=torch.long)
    with torch.no_grad():
        preds = wrapped(data)
    ops = synops(wrapped, preds, (data, labels))
    out = {"ACs": ops["Effective_ACs"], "MACs": ops["Effective_MACs"], "dense": ops["Dense"],
           "activation_sparsity": act(wrapped, preds, (data, labels)),
           "connection_sparsity": ConnectionSparsity()(wrapped)}
    wrapped.cleanup_hooks()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--task", type=int, default=0, help="PackNet subnetwork to measure")
    parser.add_argument("--samples", type=int, default=256)
    args = parser.parse_args()
    torch.manual_seed(0)

    result = neurosculpt.run(benchmark="split-digits", strategy="packnet", model="snn-mlp",
                             epochs=args.epochs, progress=False)
    model = result.model.eval()
    model.set_task(args.task)
    split = result.benchmark.tasks[args.task].test
    x, _ = split.get(torch.arange(min(args.samples, len(split))))
    steps = model.config.steps

    # the same time-major encoded input for both models: neurosculpt encodes [B, ...] to
    # [T, B, ...]; NeuroBench's SNNTorchModel takes [B, T, ...]
    encoded = model.encoder(x)  # [T, B, ...]
    nb_input = encoded.transpose(0, 1).contiguous()

    live_zero = sum(int(((layer.effective_weight() == 0)
                         & layer.synapse_mask(layer.active_task)).sum())
                    for layer in model.plastic_layers)

    # 1. same hidden spikes
    net = PlainSNN(model)
    model.record_activity = True
    with torch.no_grad():
        ns_out = model(x)
        ns_spikes = [a.clone() for a in model.activity]
        nb_out = SNNTorchModel(net)(nb_input).mean(1)
    model.record_activity = False
    model.activity = []
    flips = [int((torch.stack(h) != s).sum()) for h, s in zip(net.hidden, ns_spikes, strict=True)]
    total_spikes = sum(int(s.sum()) for s in ns_spikes)
    print(f"neurobench {version('neurobench')}, snntorch {version('snntorch')}, "
          f"torch {torch.__version__}, neurosculpt {version('neurosculpt')}")
    print(f"model: snn-mlp hidden {model.config.hidden}, {steps} steps, packnet task "
          f"{args.task}, {len(x)} test samples; live synapses with weight exactly 0: {live_zero}")
    print(f"hidden spikes: {total_spikes} in neurosculpt, differing entries per layer {flips}; "
          f"max |output difference| {float((ns_out - nb_out).abs().max()):.2e}")

    # 2. metrics
    ns = measure_energy(model, x, max_samples=len(x), task=args.task)
    nb = neurobench_metrics(PlainSNN(model), nb_input)
    rows = [
        ("effective ACs / sample", ns["per_sample"]["acs"], nb["ACs"]),
        ("effective MACs / sample", ns["per_sample"]["macs"], nb["MACs"]),
        ("dense ops / sample", ns["per_sample"]["dense_ops"], nb["dense"]),
        ("activation sparsity", ns["activation_sparsity"], nb["activation_sparsity"]),
        ("connection sparsity", ns["connection_sparsity"], nb["connection_sparsity"]),
    ]
    print()
    print("| metric | neurosculpt | NeuroBench | rel. diff |")
    print("|---|---|---|---|")
    worst = 0.0
    for name, a, b in rows:
        d = rel(a, b)
        worst = max(worst, d)
        print(f"| {name} | {a:.6g} | {b:.6g} | {d:.2e} |")

    # 3. variant: a spiking snnTorch output neuron, as many NeuroBench examples use; its spikes
    # then count in NeuroBench's activation sparsity (neurosculpt counts hidden layers only)
    variant = neurobench_metrics(PlainSNN(model, spiking_output=True), nb_input)
    print(f"\nvariant with a spiking Leaky output layer: NeuroBench activation sparsity "
          f"{variant['activation_sparsity']:.6g} (neurosculpt, hidden only: "
          f"{ns['activation_sparsity']:.6g}); ACs/MACs unchanged: "
          f"{variant['ACs'] == nb['ACs'] and variant['MACs'] == nb['MACs']}")
    print(f"neurobench_max_rel_diff: {worst:.4f}")


if __name__ == "__main__":
    main()
