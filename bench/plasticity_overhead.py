"""Overhead of the plasticity signals and strategies over plain training (target: <= 15%).

Trains the same short stream with ``naive`` and with each strategy, interleaved and repeated,
and reports the CPU time of training (every hook included, evaluation excluded; with one thread
CPU time is far less disturbed by other processes than wall time) relative to ``naive``, using
the minimum over repeats. Because two runs on a shared machine still differ by several percent,
it also times the strategy's own hooks inside the same run: ``hooks`` is their CPU time relative
to the rest of training, the overhead with the noise between runs taken out (only hooks the
strategy overrides are timed: ``naive`` has none). Example (the
numbers in docs/plasticity.md)::

    python bench/plasticity_overhead.py --model ann-mlp --repeats 5
    python bench/plasticity_overhead.py --model snn-mlp --steps 300 --repeats 3
"""

from __future__ import annotations

import argparse
import time

import torch

from neurosculpt.benchmarks import make_benchmark
from neurosculpt.cli import parse_params
from neurosculpt.loop import Learner, TrainConfig
from neurosculpt.models import ModelConfig, build_model
from neurosculpt.strategies import make_strategies
from neurosculpt.strategies.base import Strategy

DEFAULT = ("naive", "neuroplastic:actions=none", "cbp", "redo", "l2-init", "shrink-perturb",
           "dropin", "neuroplastic")


HOOKS = ("before_task", "train_data", "before_batch", "loss", "before_backward",
         "after_backward", "after_step", "after_epoch", "after_task")


def _timed(method, spent: list[float]):
    def wrapper(*args, **kwargs):
        start = time.process_time()
        try:
            return method(*args, **kwargs)
        finally:
            spent[0] += time.process_time() - start
    return wrapper


def train_time(spec: str, args: argparse.Namespace) -> tuple[float, float]:
    """CPU seconds spent training ``args.tasks`` tasks with strategy ``spec``
    (``name:key=value;...``), and the part of it spent in the strategy's hooks."""
    name, _, params = spec.partition(":")
    bench = make_benchmark("random-label-digits", n_tasks=args.tasks)
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind=args.model, hidden=tuple(args.hidden)),
                        bench.input_shape, bench.n_outputs)
    strategies = make_strategies(name, parse_params(params.split(";") if params else [], "spec"))
    learner = Learner(model, bench, strategies, TrainConfig(
        steps=args.steps, batch_size=args.batch_size, seed=0, progress=False,
        eval_scope="seen"))
    evaluate, spent = learner.evaluate, [0.0]

    def timed_evaluate(upto: int | None = None) -> list:
        start = time.process_time()
        row = evaluate(upto)
        spent[0] += time.process_time() - start
        return row

    learner.evaluate = timed_evaluate
    in_hooks = [0.0]
    for strategy in strategies:  # the base class's empty hooks are the loop's, not overhead
        for hook in HOOKS:
            if getattr(type(strategy), hook) is not getattr(Strategy, hook):
                setattr(strategy, hook, _timed(getattr(strategy, hook), in_hooks))
    start = time.process_time()
    for t in range(args.tasks):
        learner.train_task(t)
    return time.process_time() - start - spent[0], in_hooks[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="ann-mlp")
    p.add_argument("--hidden", type=int, nargs="+", default=[128, 128])
    p.add_argument("--tasks", type=int, default=2)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--strategies", nargs="+", default=list(DEFAULT),
                   help="name or name:key=value;key=value")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    times: dict[str, list[float]] = {s: [] for s in args.strategies}
    hooks: dict[str, list[float]] = {s: [] for s in args.strategies}
    start = time.perf_counter()
    for _ in range(args.repeats):
        for spec in args.strategies:
            total, in_hooks = train_time(spec, args)
            times[spec].append(total)
            hooks[spec].append(in_hooks / (total - in_hooks))
    base = min(times["naive"]) if "naive" in times else None
    print(f"{args.model} {args.hidden}, {args.tasks} tasks x {args.steps} steps, batch "
          f"{args.batch_size}, {args.repeats} repeats, {args.threads} thread(s); "
          f"{time.perf_counter() - start:.0f} s in all")
    for spec, values in times.items():
        best = min(values)
        rel = f"{100 * (best / base - 1):+6.1f}%" if base else ""
        share = sorted(hooks[spec])[len(values) // 2]
        print(f"  {spec:32s} min {best:7.2f} s  median {sorted(values)[len(values) // 2]:7.2f} s"
              f"  {rel}   hooks {100 * share:5.1f}%")


if __name__ == "__main__":
    main()
