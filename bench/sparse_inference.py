"""Event-driven versus dense inference of a pruned spiking MLP at several synapse sparsities.

Trains an snn-mlp (64-512-512-10, LIF decay 0.9, threshold 1, reset to zero, 10 steps, direct
coding, membrane readout) on scikit-learn's digits (all ten classes as one task), then for each
sparsity prunes every layer by weight magnitude and fine-tunes, so that the firing rates are the
ones a trained network of that sparsity really has. Each pruned network is then timed on the test
set with:

* ``dense (model)``: ``Network.forward`` (masked weights, one matrix product per layer over all
  steps, the C LIF kernel);
* ``dense (plain)``: the same computation on precomputed dense weights, with the first layer's
  current computed once (direct coding repeats the input), the strongest dense baseline here;
* ``event``: :class:`neurosculpt.sparse.EventDrivenNetwork`.

Batch size 1 (streaming, the setting event-driven hardware serves) and a batch of 256 are timed,
all on one thread (the event-driven kernel is single-threaded). Outputs are checked: largest
difference of the class scores, identical predictions, the difference of the total hidden spike
counts and the number of test samples whose scores differ by more than 1e-4 (a spike flipped
because a membrane landed within float32 rounding of the threshold: sums are taken in another
order than the dense matrix product's). The last line is ``speedup_at_90pct_sparsity: X.XX``,
event versus the faster dense path at batch size 1.

Run: ``PYTHONPATH=src python bench/sparse_inference.py`` (a few minutes on two cores).
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from neurosculpt import kernels
from neurosculpt import layers as L
from neurosculpt.benchmarks import make_benchmark
from neurosculpt.loop import Learner, TrainConfig
from neurosculpt.models import Network, build_model
from neurosculpt.sparse import EventDrivenNetwork

SPARSITIES = (0.0, 0.5, 0.8, 0.9, 0.95)


class PlainDense:
    """Dense inference on precomputed weights: the fair dense baseline."""

    def __init__(self, model: Network) -> None:
        self.weights = [(layer.effective_weight().detach().clone(),
                         layer.effective_bias().detach().clone()) for layer in model.layers]
        self.beta = float(model.neurons[0].beta)
        self.thr = float(model.neurons[0].threshold)
        self.rbeta = float(model.readout.beta)
        self.steps = model.config.steps
        self.surrogate = model.neurons[0].surrogate

    @torch.no_grad()
    def __call__(self, x: Tensor) -> Tensor:
        batch = x.shape[0]
        w, b = self.weights[0]
        h = F.linear(x.flatten(1), w, b).expand(self.steps, batch, -1).contiguous()
        for w, b in self.weights[1:]:
            s = kernels.lif_sequence(h, self.beta, self.thr, 0.0, self.surrogate)
            h = F.linear(s.view(-1, s.shape[-1]), w, b).view(self.steps, batch, -1)
        v = torch.zeros_like(h[0])
        total = torch.zeros_like(h[0])
        for t in range(self.steps):
            v = self.rbeta * v + h[t]
            total += v
        return total / self.steps


def prune_to(model: Network, sparsity: float) -> None:
    """Keep the ``1 - sparsity`` largest-magnitude synapses of every layer."""
    for layer in model.layers:
        n = layer.weight.numel()
        drop = int(round(sparsity * n)) - (n - layer.live_synapses())
        if drop <= 0:
            continue
        score = layer.weight.detach().abs().masked_fill(~layer.mask, float("inf")).flatten()
        remove = torch.zeros(n, dtype=torch.bool)
        remove[torch.topk(score, drop, largest=False).indices] = True
        L.prune_synapses(layer, remove.view_as(layer.weight))


def accuracy(fn: Callable[[Tensor], Tensor], x: Tensor, y: Tensor) -> float:
    with torch.no_grad():
        return float((fn(x).argmax(1) == y).float().mean())


def per_sample_us(fns: list[Callable[[Tensor], Tensor]], x: Tensor, batch: int,
                  repeats: int) -> list[float]:
    """Time per sample of each function (best of ``repeats`` rounds, run in turn in every round
    so that load from other processes on a shared machine hits all of them alike)."""
    best = [float("inf")] * len(fns)
    with torch.no_grad():
        for _ in range(repeats):
            for k, fn in enumerate(fns):
                start = time.perf_counter()
                for i in range(0, len(x), batch):
                    fn(x[i:i + batch])
                best[k] = min(best[k], (time.perf_counter() - start) / len(x) * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hidden", default="512,512")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--finetune", type=int, default=3)
    parser.add_argument("--samples", type=int, default=100, help="test samples timed at batch 1")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    bench = make_benchmark("split-digits", n_tasks=1, seed=args.seed)
    test = bench.tasks[0].test
    hidden = tuple(int(h) for h in args.hidden.split(","))
    torch.manual_seed(args.seed)
    base = build_model({"kind": "snn-mlp", "hidden": hidden, "steps": 10}, bench.input_shape,
                       bench.n_outputs)
    config = TrainConfig(epochs=args.epochs, batch_size=64, lr=2e-3, seed=args.seed,
                         progress=False)
    Learner(base, bench, [], config).run()
    threads = torch.get_num_threads()
    print(f"snn-mlp {bench.input_shape} -> {hidden} -> 10, 10 steps, direct coding; digits test "
          f"set ({len(test)} samples); torch {torch.__version__}, {threads} threads available")
    header = (f"{'sparsity':>8} {'acc':>6} {'rates (L1, L2)':>15} {'batch':>5} "
              f"{'dense model':>12} {'dense plain':>12} {'event':>9} {'speedup':>8} "
              f"{'max|diff|':>10} {'same pred':>9} {'spike count diff':>15} {'samples >1e-4':>9}")
    print("time per sample in microseconds; speedup = faster dense / event")
    print(header)
    summary = None
    for sparsity in SPARSITIES:
        model = copy.deepcopy(base)
        if sparsity > 0:
            prune_to(model, sparsity)
            Learner(model, bench, [], TrainConfig(epochs=args.finetune, batch_size=64, lr=1e-3,
                                                  seed=args.seed, progress=False)).run()
        model.eval()
        x, y = test.get(torch.arange(len(test)))  # labels mapped to output indices
        model.record_activity = True
        with torch.no_grad():
            expected = model(x)
        rates = [float(a.mean()) for a in model.activity]
        spikes = [int(a.sum()) for a in model.activity]
        model.record_activity = False
        event = EventDrivenNetwork(model)
        plain = PlainDense(model)
        got = event(x)
        spike_diff = sum(abs(a - b) for a, b in zip(event.spike_counts, spikes, strict=True))
        diff = float((got - expected).abs().max())
        same_pred = bool((got.argmax(1) == expected.argmax(1)).all())
        differing = int(((got - expected).abs().amax(1) > 1e-4).sum())
        acc = accuracy(model, x, y)
        live = 1 - model.live_synapses() / sum(layer.weight.numel() for layer in model.layers)
        torch.set_num_threads(1)
        xs = x[:args.samples]
        for batch in (1, 256):
            data = xs if batch == 1 else x
            t_model, t_plain, t_event = per_sample_us([model, plain, event], data, batch,
                                                      args.repeats)
            speedup = min(t_model, t_plain) / t_event
            print(f"{live:>8.3f} {acc:>6.3f} {rates[0]:>7.3f},{rates[1]:>7.3f} {batch:>5} "
                  f"{t_model:>12.1f} {t_plain:>12.1f} {t_event:>9.1f} {speedup:>8.2f} "
                  f"{diff:>10.2e} {same_pred!s:>9} {spike_diff:>6}/{sum(spikes):<8} "
                  f"{differing:>4}/{len(x)}", flush=True)
            if batch == 1 and sparsity == 0.9:
                summary = speedup
        torch.set_num_threads(threads)
    print(f"speedup_at_90pct_sparsity: {summary:.2f}")


if __name__ == "__main__":
    main()
