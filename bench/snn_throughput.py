"""Training throughput of one spiking MLP in neurosculpt and in peer SNN libraries.

Every library trains the same network (784-400-400-10, LIF with decay 0.9, threshold 1, reset to
zero, spike-count readout, cross-entropy, Adam, BPTT) on the same random input currents with the
same initial weights. Libraries run interleaved, in alternating order, for several rounds so that
a noisy shared machine slows all of them alike; the fastest round is reported. The same run times a
large single-precision GEMM, so each library's throughput is also shown as the fraction of this
machine's GEMM rate it reaches (nominal model FLOPs: forward GEMM plus two backward GEMMs per
layer).

Run with neurosculpt importable, e.g. ``PYTHONPATH=src python bench/snn_throughput.py``; peers
that are not installed are reported and skipped.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SIZES = (784, 400, 400, 10)
BETA = 0.9
THRESHOLD = 1.0
LR = 1e-3


@dataclass
class Runner:
    """One library's training step on one fixed batch."""

    name: str
    version: str
    step: Callable[[], float]


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def _base_layers(seed: int) -> list[nn.Linear]:
    """Initial weights shared by every library, so spike rates (and any sparsity) match."""
    torch.manual_seed(seed)
    return [nn.Linear(a, b) for a, b in zip(SIZES[:-1], SIZES[1:], strict=True)]


def _copy_layers(base: list[nn.Linear], scale: float = 1.0) -> list[nn.Linear]:
    layers = []
    for src in base:
        dst = nn.Linear(src.in_features, src.out_features)
        with torch.no_grad():
            dst.weight.copy_(src.weight * scale)
            dst.bias.copy_(src.bias * scale)
        layers.append(dst)
    return layers


def _train_step(model: nn.Module, opt: torch.optim.Optimizer, x: Tensor, y: Tensor,
                bf16: bool = False) -> float:
    opt.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return float(loss.detach())


def _adam(params, fast: bool) -> torch.optim.Optimizer:
    """Fused Adam when this torch has it on CPU, else the multi-tensor one; peers get defaults."""
    if not fast:
        return torch.optim.Adam(params, lr=LR)
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=LR, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=LR, foreach=True)


class TorchLoopMLP(nn.Module):
    """``[Linear -> LIF] x L`` with neurosculpt's reference (un-fused) LIF loop."""

    def __init__(self, layers: list[nn.Linear]) -> None:
        super().__init__()
        from neurosculpt.kernels import lif_sequence_reference
        from neurosculpt.surrogate import get_surrogate

        self.fcs = nn.ModuleList(layers)
        self.lif = lif_sequence_reference
        self.surrogate = get_surrogate("fast-sigmoid", 25.0)

    def forward(self, x: Tensor) -> Tensor:
        steps, batch = x.shape[:2]
        h = x.reshape(steps * batch, -1)
        for fc in self.fcs:
            cur = fc(h).view(steps, batch, -1)
            spikes = self.lif(cur, BETA, THRESHOLD, 0.0, self.surrogate)
            h = spikes.view(steps * batch, -1)
        return spikes.sum(0)


def make_neurosculpt(base: list[nn.Linear], x: Tensor, y: Tensor, bf16: bool = False
                     ) -> Runner:
    """The library's own model (plastic layers, LIF modules, spike-count readout), fed the same
    time-major currents: ``x.transpose(0, 1)`` is a view the sequence encoder turns back."""
    from neurosculpt.models import build_model

    steps = x.shape[0]
    model = build_model(
        {"kind": "snn-mlp", "hidden": SIZES[1:-1], "beta": BETA, "threshold": THRESHOLD,
         "reset": "zero", "surrogate": "fast-sigmoid", "slope": 25.0, "readout": "spikes",
         "steps": steps},
        (steps, SIZES[0]), SIZES[-1], sequence=True)
    with torch.no_grad():
        for dst, src in zip(model.layers, base, strict=True):
            dst.weight.copy_(src.weight)
            dst.bias.copy_(src.bias)
    opt = _adam(model.parameters(), fast=True)
    x_batch_major = x.transpose(0, 1)
    return Runner("neurosculpt-bf16" if bf16 else "neurosculpt", _version("neurosculpt"),
                  lambda: _train_step(model, opt, x_batch_major, y, bf16))


class Unsupported(RuntimeError):
    """A runner this machine cannot run meaningfully (reported and skipped)."""


FORCE_BF16 = False


def make_neurosculpt_bf16(base: list[nn.Linear], x: Tensor, y: Tensor) -> Runner:
    """neurosculpt's model trained as ``--precision bf16`` does: the forward pass and loss under
    ``torch.autocast(bfloat16)``, membranes, parameters and the fused Adam in float32."""
    from neurosculpt.loop import bf16_supported, check_precision

    if not (FORCE_BF16 or bf16_supported(torch.device("cpu"))):
        try:
            check_precision("bf16", torch.device("cpu"))
        except ValueError as exc:
            raise Unsupported(f"{exc} (--force-bf16 times the emulation anyway)") from exc
    return make_neurosculpt(base, x, y, bf16=True)


def make_torch_loop(base: list[nn.Linear], x: Tensor, y: Tensor) -> Runner:
    """Same network with the plain per-step torch loop and default Adam: the un-fused baseline."""
    model = TorchLoopMLP(_copy_layers(base))
    opt = _adam(model.parameters(), fast=False)
    return Runner("torch-loop", torch.__version__, lambda: _train_step(model, opt, x, y))


class SnnTorchMLP(nn.Module):
    """snnTorch ``Leaky`` neurons, layer by layer: one GEMM per layer, then a loop over time."""

    def __init__(self, layers: list[nn.Linear]) -> None:
        super().__init__()
        import snntorch
        from snntorch import surrogate

        self.fcs = nn.ModuleList(layers)
        grad = surrogate.fast_sigmoid(slope=25)
        self.lifs = nn.ModuleList(
            snntorch.Leaky(beta=BETA, threshold=THRESHOLD, reset_mechanism="zero", spike_grad=grad)
            for _ in layers
        )

    def forward(self, x: Tensor) -> Tensor:
        h = x
        for fc, lif in zip(self.fcs, self.lifs, strict=True):
            cur = fc(h)
            mem = lif.init_leaky()
            out = []
            for t in range(cur.shape[0]):
                spk, mem = lif(cur[t], mem)
                out.append(spk)
            h = torch.stack(out)
        return h.sum(0)


def make_snntorch(base: list[nn.Linear], x: Tensor, y: Tensor) -> Runner:
    model = SnnTorchMLP(_copy_layers(base))
    opt = _adam(model.parameters(), fast=False)
    return Runner("snntorch", _version("snntorch"), lambda: _train_step(model, opt, x, y))


def make_spikingjelly(base: list[nn.Linear], x: Tensor, y: Tensor) -> Runner:
    """SpikingJelly multi-step mode: ``LIFNode`` with ``decay_input=False`` is ``v = 0.9 v + I``."""
    from spikingjelly.activation_based import functional, layer, neuron, surrogate

    mods: list[nn.Module] = []
    for src in _copy_layers(base):
        fc = layer.Linear(src.in_features, src.out_features, step_mode="m")
        fc.load_state_dict(src.state_dict())
        lif = neuron.LIFNode(
            tau=1.0 / (1.0 - BETA),
            decay_input=False,
            v_threshold=THRESHOLD,
            v_reset=0.0,
            surrogate_function=surrogate.ATan(),
            detach_reset=True,
            step_mode="m",
        )
        mods += [fc, lif]
    net = nn.Sequential(*mods)
    opt = _adam(net.parameters(), fast=False)

    def step() -> float:
        functional.reset_net(net)
        return _train_step(_SpikeCount(net), opt, x, y)

    return Runner("spikingjelly", _version("spikingjelly"), step)


class _SpikeCount(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).sum(0)


class NorseMLP(nn.Module):
    """Norse ``LIFBoxCell`` (no synaptic current) stepped over time after each layer's GEMM.

    Norse integrates ``v += dt * tau_mem_inv * (I - v)``; with ``dt * tau_mem_inv = 0.1`` the
    decay is 0.9 and the input is scaled by 0.1, so its weights are the shared ones times 10.
    """

    def __init__(self, layers: list[nn.Linear]) -> None:
        super().__init__()
        from norse.torch import LIFBoxCell, LIFBoxParameters

        self.fcs = nn.ModuleList(layers)
        params = LIFBoxParameters(
            tau_mem_inv=torch.as_tensor(100.0),
            v_th=torch.as_tensor(THRESHOLD),
            v_reset=torch.as_tensor(0.0),
            method="super",
            alpha=torch.as_tensor(25.0),
        )
        self.cells = nn.ModuleList(LIFBoxCell(params, dt=1e-3) for _ in layers)

    def forward(self, x: Tensor) -> Tensor:
        h = x
        for fc, cell in zip(self.fcs, self.cells, strict=True):
            cur = fc(h)
            state = None
            out = []
            for t in range(cur.shape[0]):
                spk, state = cell(cur[t], state)
                out.append(spk)
            h = torch.stack(out)
        return h.sum(0)


def make_norse(base: list[nn.Linear], x: Tensor, y: Tensor) -> Runner:
    model = NorseMLP(_copy_layers(base, scale=1.0 / (1.0 - BETA)))
    opt = _adam(model.parameters(), fast=False)
    return Runner("norse", _version("norse"), lambda: _train_step(model, opt, x, y))


BUILDERS: dict[str, Callable[[list[nn.Linear], Tensor, Tensor], Runner]] = {
    "neurosculpt": make_neurosculpt,
    "neurosculpt-bf16": make_neurosculpt_bf16,
    "torch-loop": make_torch_loop,
    "snntorch": make_snntorch,
    "spikingjelly": make_spikingjelly,
    "norse": make_norse,
}


PEERS = ("snntorch", "spikingjelly", "norse")


def gemm_probe(n: int = 1536) -> Runner:
    """An ``n x n x n`` single-precision GEMM, timed like a library so it sees the same noise."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.empty(n, n)

    def step() -> float:
        torch.mm(a, b, out=out)
        return 2.0 * n**3

    return Runner("sgemm", f"{n}^3", step)


def model_flops(steps: int, batch: int) -> float:
    """Nominal FLOPs of one training step: 3 GEMMs (forward + 2 backward) per layer."""
    macs = sum(a * b for a, b in zip(SIZES[:-1], SIZES[1:], strict=True))
    return 3 * 2.0 * steps * batch * macs


def _best_rate(probe: Runner, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        flops = probe.step()
        best = min(best, time.perf_counter() - start)
    return flops / best


@dataclass
class Timing:
    """Per-runner result: seconds per step, and how many rounds passed the quiet-machine check."""

    seconds: float
    quiet_rounds: int
    rounds: int


def measure(
    runners: list[Runner],
    probe: Runner,
    steps_per_round: int,
    rounds: int,
    warmup: int,
    quiet: float,
) -> tuple[dict[str, Timing], float]:
    """Seconds per training step of each runner, and the best GEMM rate seen.

    Rounds are interleaved in alternating order. Other jobs on a shared 2-core machine slow a
    round down (badly so, since two OpenMP threads then wait on each other), so a GEMM probe is
    timed right before and right after every runner's round, and the round only counts as quiet
    when both probes reach ``quiet`` times the best GEMM rate of the run. Each runner's result is
    the median of its quiet rounds (of all rounds, flagged, when none was quiet).
    """
    for runner in runners:
        for _ in range(warmup):
            runner.step()
    samples: dict[str, list[tuple[float, float]]] = {r.name: [] for r in runners}
    best_rate = _best_rate(probe)
    for rnd in range(rounds):
        order = runners if rnd % 2 == 0 else runners[::-1]
        for runner in order:
            before = _best_rate(probe)
            start = time.perf_counter()
            for _ in range(steps_per_round):
                runner.step()
            elapsed = (time.perf_counter() - start) / steps_per_round
            after = _best_rate(probe)
            best_rate = max(best_rate, before, after)
            samples[runner.name].append((elapsed, min(before, after)))
    result = {}
    for name, rows in samples.items():
        calm = [sec for sec, rate in rows if rate >= quiet * best_rate]
        chosen = calm or [sec for sec, _ in rows]
        result[name] = Timing(statistics.median(chosen), len(calm), rounds)
    return result, best_rate


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 25], help="time steps T")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--steps-per-round", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--quiet", type=float, default=0.85, help="GEMM-rate fraction for a round to count"
    )
    parser.add_argument("--libs", nargs="+", default=list(BUILDERS), choices=list(BUILDERS))
    parser.add_argument("--force-bf16", action="store_true",
                        help="time neurosculpt-bf16 even where bfloat16 is only emulated")
    args = parser.parse_args(argv)
    global FORCE_BF16
    FORCE_BF16 = args.force_bf16
    from neurosculpt.loop import bf16_supported

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    probe = gemm_probe()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cpus, torch {torch.__version__}, "
        f"{args.threads} threads, flush denormals on"
    )

    measured_peers: dict[str, str] = {}
    ratios: list[float] = []
    bf16_ratios: list[float] = []
    for steps in args.steps:
        gen = torch.Generator().manual_seed(steps)
        x = torch.rand(steps, args.batch, SIZES[0], generator=gen)
        y = torch.randint(0, SIZES[-1], (args.batch,), generator=gen)
        base = _base_layers(seed=0)
        runners = []
        for name in args.libs:
            try:
                runners.append(BUILDERS[name](base, x, y))
            except ImportError as exc:
                print(f"T={steps}: {name} not installed ({exc}); skipped")
            except Unsupported as exc:
                print(f"T={steps}: {name} skipped: {exc}")
        timings, peak = measure(
            runners, probe, args.steps_per_round, args.rounds, args.warmup, args.quiet
        )
        secs = {name: t.seconds for name, t in timings.items()}
        flops = model_flops(steps, args.batch)
        ref = secs.get("neurosculpt")
        print(
            f"\nT={steps}, batch={args.batch}, model GFLOP/step={flops / 1e9:.2f}, "
            f"sgemm {probe.version}: {peak / 1e9:.1f} GFLOP/s"
        )
        print(
            f"{'library':<18}{'version':<10}{'samples/s':>11}{'ms/step':>10}"
            f"{'vs neurosculpt':>16}{'% GEMM rate':>13}{'quiet rounds':>14}"
        )
        for runner in runners:
            sec = secs[runner.name]
            ratio = f"{ref / sec:.2f}x" if ref else "-"
            quiet = f"{timings[runner.name].quiet_rounds}/{args.rounds}"
            print(
                f"{runner.name:<18}{runner.version:<10}{args.batch / sec:>11.0f}"
                f"{sec * 1e3:>10.1f}{ratio:>16}{100 * flops / sec / peak:>12.1f}%{quiet:>14}"
            )
            if runner.name in PEERS:
                measured_peers[runner.name] = runner.version
        peer_secs = [s for n, s in secs.items() if n in PEERS]
        if ref and peer_secs:
            ratios.append(min(peer_secs) / ref)
        if ref and "neurosculpt-bf16" in secs:
            bf16_ratios.append(ref / secs["neurosculpt-bf16"])
    if "neurosculpt-bf16" in args.libs:
        if len(bf16_ratios) == len(args.steps):
            native = ("native" if bf16_supported(torch.device("cpu"))
                      else "EMULATED: this CPU has no native bf16")
            print(f"bf16_speedup_min: {min(bf16_ratios):.2f} (bf16 / fp32 throughput, min over "
                  f"T; {native})")
        else:
            print("bf16_speedup_min: n/a (bf16 skipped: see above)")
    if ratios and len(ratios) == len(args.steps):
        peers = ", ".join(f"{n} {v}" for n, v in measured_peers.items())
        print(f"speedup_vs_fastest_peer: {min(ratios):.2f} (min over T; peers measured: {peers})")
    else:
        print("speedup_vs_fastest_peer: n/a (no peer or no neurosculpt measurement)")


if __name__ == "__main__":
    main()
