"""Loss-of-plasticity streams for the plasticity strategies (numbers in docs/plasticity.md).

The default, ``random-label-digits`` with 30 tasks of 2,000 steps, is the reference protocol of
issue 5 (all 1,797 scikit-learn digits, raw pixel values, fresh random labels every task,
train = test). Any named benchmark works too::

    python bench/plasticity_streams.py -s cbp --seeds 0,1,2
    python bench/plasticity_streams.py -b permuted-fmnist --tasks 100 --steps 250 \
        --samples-per-task 2000 --test-samples-per-task 500 -s neuroplastic

A user's model (``-m path/to/file.py:factory``, options from ``--model-param``) runs the same
way; ``--sequence`` presents images as rows (the transformer of ``examples/transformer.py``).

Prints per run: mean end-of-task accuracy over the first 10, last 10 and last 5 tasks, the
average accuracy over all tasks at the end (ACC; not with ``--new-task-only``), the largest
hidden layer seen, wall and CPU time; ``--out`` writes them (and the per-task
accuracies and end-of-task signals) as JSON.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from neurosculpt.benchmarks import make_benchmark
from neurosculpt.cli import parse_params
from neurosculpt.loading import is_spec
from neurosculpt.loop import Learner, TrainConfig
from neurosculpt.models import ModelConfig, build_model
from neurosculpt.strategies import make_strategies


def run_one(args: argparse.Namespace, seed: int) -> dict:
    bench = make_benchmark(args.benchmark, n_tasks=args.tasks, seed=seed,
                           scenario=args.scenario, samples_per_task=args.samples_per_task,
                           test_samples_per_task=args.test_samples_per_task,
                           sequence=args.sequence)
    model_params = parse_params(args.model_param, "--model-param")
    torch.manual_seed(seed)
    if is_spec(args.model):
        from neurosculpt.adapter import build_user_model

        model = build_user_model(args.model, bench.input_shape, bench.n_outputs, model_params)
    else:
        model = build_model(ModelConfig(kind=args.model, **{"hidden": tuple(args.hidden),
                                                            **model_params}),
                            bench.input_shape, bench.n_outputs, sequence=bench.sequence)
    strategies = make_strategies(args.strategy, parse_params(args.param, "--param"))
    config = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=seed,
                         eval_scope="current" if args.new_task_only else "seen", progress=False,
                         reset_optimizer=not args.keep_optimizer)
    learner = Learner(model, bench, strategies, config)
    learner.random_init_accuracy = [None] * len(bench)  # FWT baseline not needed here
    wall, cpu = time.perf_counter(), time.process_time()
    widest = 0
    for t in range(len(bench)):
        learner.train_task(t)
        widest = max(widest, *model.hidden_sizes())
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    acc = [row[t] for t, row in enumerate(learner.accuracy)]
    last_row = [a for a in learner.accuracy[-1] if a is not None]
    ends = [_end_signals(rec) for rec in learner.tasks]
    return {"seed": seed, "strategy": args.strategy, "model": args.model,
            "first10": sum(acc[:10]) / len(acc[:10]), "last10": sum(acc[-10:]) / len(acc[-10:]),
            "last5": sum(acc[-5:]) / len(acc[-5:]), "widest": widest,
            "final_acc": None if args.new_task_only else sum(last_row) / len(last_row),
            "final_sizes": model.hidden_sizes(), "wall_s": wall, "cpu_s": cpu,
            "accuracy": acc, "end_signals": ends,
            "decisions": _count_decisions(learner.tasks)}


def _end_signals(record: dict) -> list[dict] | None:
    snaps = record.get("plasticity", {}).get("signals", [])
    ends = [s for s in snaps if s.get("end_of_task")]
    return ends[-1]["layers"] if ends else None


def _count_decisions(tasks: list[dict]) -> dict:
    counts: dict = {}
    for rec in tasks:
        for d in rec.get("plasticity", {}).get("decisions", []):
            counts[d["action"]] = counts.get(d["action"], 0) + d["n"]
    return counts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-b", "--benchmark", default="random-label-digits")
    p.add_argument("-s", "--strategy", default="naive")
    p.add_argument("-m", "--model", default="ann-mlp")
    p.add_argument("--hidden", type=int, nargs="+", default=[128, 128],
                   help="hidden widths of a built-in model")
    p.add_argument("-p", "--param", action="append", default=[])
    p.add_argument("--model-param", action="append", default=[])
    p.add_argument("--tasks", type=int, default=30)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--scenario", choices=["task", "class", "domain"])
    p.add_argument("--new-task-only", action="store_true",
                   help="evaluate only the task just trained (the accuracy matrix's diagonal)")
    p.add_argument("--sequence", action="store_true", help="present images as rows")
    p.add_argument("--samples-per-task", type=int)
    p.add_argument("--test-samples-per-task", type=int)
    p.add_argument("--keep-optimizer", action="store_true",
                   help="one optimizer for the whole stream (the loop resets it every task)")
    p.add_argument("--seeds", default="0")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", help="JSON file for the results")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    results = []
    for seed in (int(s) for s in args.seeds.split(",")):
        r = run_one(args, seed)
        results.append(r)
        acc = "" if r["final_acc"] is None else f" ACC {r['final_acc']:.3f}"
        print(f"{args.benchmark} {args.model} {args.strategy} {' '.join(args.param)} seed {seed}:"
              f" first10 {r['first10']:.3f} last10 {r['last10']:.3f} last5 {r['last5']:.3f}{acc}"
              f" widest {r['widest']} wall {r['wall_s']:.0f}s cpu {r['cpu_s']:.0f}s"
              f" decisions {r['decisions']}", flush=True)
    if len(results) > 1:
        mean = {k: sum(r[k] for r in results) / len(results) for k in ("first10", "last10",
                                                                         "last5")}
        print("mean over seeds: " + " ".join(f"{k} {v:.3f}" for k, v in mean.items()))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f)


if __name__ == "__main__":
    main()
