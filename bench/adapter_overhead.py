"""What the adapter costs: training time of an adapted plain-PyTorch network against the
built-in model of the same shape, in one run (target: ratio <= 1.05).

``ann``: ``nn.Sequential(Flatten, Linear, ReLU, Linear, ReLU, Linear)`` adapted, against
``ann-mlp``. ``snn`` (with ``--snn``): a plain module that computes what ``snn-mlp`` computes
(first layer once per sample, the library's LIF over ``[T, B, N]``, leaky-integrator readout),
adapted, against ``snn-mlp``; written this way so that the ratio measures the adapter (hooks, the
wrapper) and not a different model code (an snnTorch loop recomputes the first layer each step).

Both networks train the same stream with ``naive`` (the loop, no strategy hooks), interleaved
and repeated; the figure is the ratio of the minimum CPU times of training (evaluation
excluded; one thread, so CPU time is little disturbed by other processes). Example::

    python bench/adapter_overhead.py --repeats 5
    python bench/adapter_overhead.py --snn --steps 100 --repeats 3
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import Tensor, nn

from neurosculpt.adapter import adapt
from neurosculpt.benchmarks import make_benchmark
from neurosculpt.loop import Learner, TrainConfig
from neurosculpt.models import ModelConfig, build_model
from neurosculpt.neurons import LI, LIF
from neurosculpt.strategies import make_strategies


class PlainSNN(nn.Module):
    """``snn-mlp``'s computation as a user would write it with the library's neurons."""

    def __init__(self, n_in: int, hidden: list[int], n_out: int, steps: int) -> None:
        super().__init__()
        self.steps = steps
        widths = [n_in, *hidden]
        self.fcs = nn.ModuleList(nn.Linear(a, b)
                                 for a, b in zip(widths[:-1], widths[1:], strict=True))
        self.lifs = nn.ModuleList(LIF(beta=0.9) for _ in hidden)
        self.out = nn.Linear(widths[-1], n_out)
        self.readout = LI(beta=0.9)

    def forward(self, x: Tensor) -> Tensor:
        batch, steps = x.shape[0], self.steps
        h = self.fcs[0](x.flatten(1))
        h = h.unsqueeze(0).expand(steps, -1, -1)
        for i, lif in enumerate(self.lifs):
            s = lif(h).reshape(steps * batch, -1)
            nxt = self.fcs[i + 1] if i + 1 < len(self.fcs) else self.out
            h = nxt(s).unflatten(0, (steps, batch))
        return self.readout(h).mean(0)


def build(kind: str, adapted: bool, bench, hidden: list[int], steps: int) -> nn.Module:
    torch.manual_seed(0)
    n_in = 1
    for d in bench.input_shape:
        n_in *= int(d)
    if not adapted:
        return build_model(ModelConfig(kind=f"{kind}-mlp", hidden=tuple(hidden), steps=steps),
                           bench.input_shape, bench.n_outputs)
    if kind == "snn":
        module: nn.Module = PlainSNN(n_in, hidden, bench.n_outputs, steps)
    else:
        widths = [n_in, *hidden]
        parts: list[nn.Module] = [nn.Flatten()]
        for a, b in zip(widths[:-1], widths[1:], strict=True):
            parts += [nn.Linear(a, b), nn.ReLU()]
        module = nn.Sequential(*parts, nn.Linear(widths[-1], bench.n_outputs))
    return adapt(module, bench.input_shape)


def train_time(kind: str, adapted: bool, args: argparse.Namespace) -> float:
    """CPU seconds spent training ``args.tasks`` tasks with ``naive`` (evaluation excluded)."""
    bench = make_benchmark(args.benchmark, n_tasks=args.tasks, samples_per_task=args.samples)
    model = build(kind, adapted, bench, args.hidden, args.time_steps)
    learner = Learner(model, bench, make_strategies("naive"), TrainConfig(
        steps=args.steps, batch_size=args.batch_size, seed=0, progress=False,
        energy_samples=0))
    learner.evaluate = lambda upto=None: [0.0] * len(bench.tasks)  # type: ignore[assignment]
    start = time.process_time()
    for t in range(args.tasks):
        learner.train_task(t)
    return time.process_time() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--benchmark", default="split-digits")
    p.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    p.add_argument("--tasks", type=int, default=2)
    p.add_argument("--samples", type=int, default=None, help="training samples per task")
    p.add_argument("--steps", type=int, default=400, help="training steps per task")
    p.add_argument("--time-steps", type=int, default=10, help="time steps of the spiking net")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--snn", action="store_true", help="also the spiking pair")
    args = p.parse_args()
    torch.set_num_threads(1)
    kinds = ["ann", "snn"] if args.snn else ["ann"]
    times = {(k, a): [] for k in kinds for a in (False, True)}
    for _ in range(args.repeats):
        for k in kinds:
            for a in (False, True):
                times[(k, a)].append(train_time(k, a, args))
    print(f"{args.benchmark}, hidden {args.hidden}, {args.tasks} tasks x {args.steps} steps, "
          f"batch {args.batch_size}, {args.repeats} repeats, 1 thread; min CPU s of training")
    ratios = []
    for k in kinds:
        built, adapted = min(times[(k, False)]), min(times[(k, True)])
        ratios.append(adapted / built)
        print(f"  {k}: built-in {k}-mlp {built:.2f} s, adapted plain module {adapted:.2f} s, "
              f"ratio {adapted / built:.3f}")
    print(f"adapter_overhead: {max(ratios):.2f}")


if __name__ == "__main__":
    main()
