"""Task inference for partitioned networks: every score on the same trained runs.

Trains ``STRATEGY+task-inference`` (``develop`` by default; ``--replay N`` adds a replay memory
of ``N`` samples: ``develop+replay+task-inference``) once per seed with the feature statistics
kept, then evaluates the final network once per task-inference score (the scores only differ at
test time, so one training run serves them all; ``--negatives shuffle`` changes training and
needs its own runs). Per score: ACC over all tasks after the last one (mean ± std over seeds),
task-prediction accuracy, forward / backward passes per test sample, milliseconds per test
sample (one torch thread), live synapses and the size of the kept statistics. ``union`` is the
strategy without task inference (the union of the subnetworks answers).

    python bench/task_inference.py                                 # split-fmnist, ann-mlp
    python bench/task_inference.py --model snn-mlp --model-param steps=8
    python bench/task_inference.py --replay 200 --scores cascade,gaussian,energy
    python bench/task_inference.py --replay 200 --scores ratio,probe,ratio-probe
    python bench/task_inference.py --benchmark fsdd-digits --epochs 5
    python bench/task_inference.py --benchmark permuted-fmnist --scenario domain --tasks 5
    python bench/task_inference.py --scores analytic,ratio --expand 2000 --targets class,task

``analytic`` (the ridge head over accumulated statistics) keeps its statistics only when it is
the score, so naming it trains the runs with ``score=analytic`` (``--source``, ``--expand``,
``--ridge``); its rows are one per ``--targets``.
``probe`` and ``ratio-probe`` (the task probe fitted on the replay memory) need ``--replay N``
and likewise are fitted only when one of them is the run's score, so they cannot share a run
with ``analytic``; ``--replay-memory``, ``--replay-weighting`` and ``--replay-selection`` set
the memory (default: replay's own, ``auto``).

Protocol defaults: natural class order, hidden 400-400, Adam lr 1e-3, batch 128, 2 epochs per
task, all data, class scenario, seeds 0-2 (issue 19).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from neurosculpt.cli import parse_params
from neurosculpt.runs import Run, RunConfig
from neurosculpt.strategies.task_inference import MEMORY_SCORES, SCORES, TaskInference


def one_seed(args: argparse.Namespace, seed: int) -> dict[str, dict]:
    parts = [args.strategy] + (["replay"] if args.replay else []) + ["task-inference"]
    # the probe of the memory scores is fitted only when the run's score is one of them
    fitted = next((s for s in args.scores if s in MEMORY_SCORES), "ratio")
    params = {args.strategy: parse_params(args.param, "--param"),
              "task-inference": {"statistics": True, "score": fitted,
                                 "negatives": args.negatives, "covariance": args.covariance,
                                 "features": args.features, "probe_l2": args.probe_l2,
                                 "probe_weight": args.probe_weight}}
    if "analytic" in args.scores:  # its statistics are kept only when it is the score
        params["task-inference"].update(score="analytic", source=args.source,
                                        expand=args.expand, ridge=args.ridge)
    if args.replay:
        params["replay"] = {"buffer_size": args.replay, "memory": args.replay_memory,
                            "weighting": args.replay_weighting,
                            "selection": args.replay_selection}
    class_split = args.benchmark.startswith("split-") or args.benchmark == "fsdd-digits"
    config = RunConfig(
        benchmark=args.benchmark, scenario=args.scenario, tasks=args.tasks, model=args.model,
        strategy="+".join(parts), strategy_params=params, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, seed=seed, threads=1, progress=False,
        class_order="natural" if class_split else "seed",
        samples_per_task=args.samples_per_task, test_samples_per_task=args.test_samples_per_task,
        model_params={"hidden": args.hidden, **parse_params(args.model_param, "--model-param")},
        energy_samples=0)
    start = time.process_time()
    run = Run(config, None)
    run.execute()
    train_cpu = time.process_time() - start
    learner = run.learner
    inference = next(s for s in run.strategies if isinstance(s, TaskInference))
    last = len(run.benchmark) - 1
    prefixes = {"gaussian": ("means", "precision", "calibration"),
                "ratio": ("ratio_means", "ratio_scatter", "ratio_count"),
                "probe": ("probe_",),
                "ratio-probe": ("ratio_means", "ratio_scatter", "ratio_count", "probe_"),
                "energy": ("score_calibration",), "max-softmax": ("score_calibration",),
                "entropy": ("score_calibration",),
                "analytic": ("analytic_gram", "analytic_targets")}
    out = {}
    rows = [(s, t) for s in args.scores for t in (args.targets if s == "analytic" else [None])]
    for score, targets in [("union", None), *rows]:
        composed = learner.strategies
        if score == "union":  # without task inference: the loop's own forward answers
            learner.strategies = [s for s in composed if s is not inference]
        else:
            inference.score = score
            inference.targets = targets or inference.targets
        start = time.perf_counter()
        row = learner.evaluate(upto=last)
        seconds = time.perf_counter() - start
        learner.strategies = composed
        record = learner.ctx.record.get("task_inference", {}) if score != "union" else {}
        n_test = sum(len(t.test) for t in run.benchmark.tasks)
        name = f"{score} ({targets} targets)" if targets else score
        out[name] = {
            "acc": sum(row) / len(row),
            "task_acc": record.get("task_accuracy"),
            "passes": record.get("forward_passes_per_sample", 1.0),
            "backward": record.get("backward_passes_per_sample", 0.0),
            "ms": 1000 * seconds / n_test,
            "live": run.model.live_synapses(),
            "kept": sum(int(b.numel()) for name, b in inference.named_buffers()
                        if name.startswith(prefixes.get(score, ("-",)))),
            "train_cpu_s": train_cpu,
        }
        task_acc = record.get("task_accuracy")
        shown = "-" if task_acc is None else f"{100 * task_acc:.1f}"
        print(f"seed {seed} {name:12s} acc {100 * out[name]['acc']:.1f} task acc {shown} "
              f"passes {out[name]['passes']:.2f} {out[name]['ms']:.3f} ms/sample", flush=True)
    return out


def mean_std(values: list[float], scale: float = 1.0, digits: int = 1) -> str:
    vals = [scale * v for v in values if v is not None]
    if not vals:
        return "-"
    std = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{statistics.fmean(vals):.{digits}f} ± {std:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", default="split-fmnist")
    parser.add_argument("--scenario", default="class")
    parser.add_argument("--tasks", type=int)
    parser.add_argument("--model", default="ann-mlp")
    parser.add_argument("--hidden", default="400,400",
                        type=lambda t: [int(v) for v in t.split(",")])
    parser.add_argument("--model-param", action="append", default=[])
    parser.add_argument("--strategy", default="develop", help="develop or packnet")
    parser.add_argument("--param", "-p", action="append", default=[],
                        help="parameter of the strategy (develop or packnet)")
    parser.add_argument("--replay", type=int, default=0, help="replay memory size (0: none)")
    parser.add_argument("--replay-memory", default="auto",
                        help="replay memory: auto (balanced in the class scenario), reservoir or "
                        "balanced")
    parser.add_argument("--replay-weighting", default="auto",
                        help="replay loss: auto (tasks in the class scenario), batch or tasks")
    parser.add_argument("--replay-selection", default="auto",
                        help="exemplars of the balanced memory: auto, random or herding")
    parser.add_argument("--probe-l2", type=float, default=0.1,
                        help="L2 penalty of the memory-fitted task probe (probe, ratio-probe)")
    parser.add_argument("--probe-weight", type=float, default=0.5,
                        help="weight of the probe against the soft ratio cascade (ratio-probe)")
    parser.add_argument("--negatives", default="none", help="none, shuffle or memory")
    parser.add_argument("--covariance", default="full", help="full or diagonal")
    parser.add_argument("--features", default="last", help="last or all hidden populations")
    parser.add_argument("--scores", default="energy,max-softmax,entropy,gaussian,gradient",
                        type=lambda t: t.split(","))
    parser.add_argument("--source", default="input",
                        help="analytic score: input or subnetwork (subnetwork 0's features)")
    parser.add_argument("--expand", type=int, default=2000,
                        help="analytic score: width of the random ReLU expansion (0: none)")
    parser.add_argument("--ridge", type=float, default=1e-3,
                        help="analytic score: ridge relative to the Gram matrix's mean diagonal")
    parser.add_argument("--targets", default="class", type=lambda t: t.split(","),
                        help="analytic score: class and/or task targets (one row each)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--samples-per-task", type=int)
    parser.add_argument("--test-samples-per-task", type=int)
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    unknown = sorted(set(args.scores) - set(SCORES + MEMORY_SCORES))
    if unknown:
        parser.error(f"unknown score(s) {unknown}; valid: {', '.join(SCORES + MEMORY_SCORES)}")
    if not args.replay and (set(args.scores) & set(MEMORY_SCORES) or args.negatives == "memory"):
        parser.error("the scores probe and ratio-probe and --negatives memory need --replay N")
    if "analytic" in args.scores and set(args.scores) & set(MEMORY_SCORES):
        parser.error("analytic and the memory scores (probe, ratio-probe) keep their statistics "
                     "only as the run's score: measure them in separate runs")
    torch.set_num_threads(1)
    results = [one_seed(args, int(s)) for s in args.seeds.split(",")]
    analytic = (f"analytic source {args.source} expand {args.expand} ridge {args.ridge:g}, "
                if "analytic" in args.scores else "")
    replay = (f" + replay {args.replay} ({args.replay_memory}, {args.replay_weighting}, "
              f"{args.replay_selection})"
              if args.replay else "")
    print(f"\n{args.benchmark}/{args.scenario} {args.model} {args.strategy}{replay}, "
          f"negatives {args.negatives}, "
          f"features {args.features}, "
          f"{analytic}"
          f"seeds {args.seeds}")
    print("| score | ACC % | task-prediction % | forward passes / sample | backward / sample "
          "| ms / sample | live synapses | statistics kept (floats) |")
    print("|---|---|---|---|---|---|---|---|")
    for score in results[0]:
        cells = [r[score] for r in results]
        print(f"| {score} | {mean_std([c['acc'] for c in cells], 100)} | "
              f"{mean_std([c['task_acc'] for c in cells], 100)} | "
              f"{mean_std([c['passes'] for c in cells], digits=2)} | "
              f"{mean_std([c['backward'] for c in cells], digits=0)} | "
              f"{mean_std([c['ms'] for c in cells], digits=3)} | "
              f"{mean_std([c['live'] for c in cells], digits=0)} | "
              f"{mean_std([c['kept'] for c in cells], digits=0)} |")
    print(f"training CPU s per seed: {mean_std([r['union']['train_cpu_s'] for r in results])}")


if __name__ == "__main__":
    main()
