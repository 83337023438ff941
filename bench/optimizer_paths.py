"""Adam's three CPU implementations in the training loop: speed and how much results move.

``Learner.make_optimizer`` uses PyTorch's fused Adam where the device has it and the multi-tensor
(``foreach``) one otherwise; before session 3 it used the default, which on CPU is the
single-tensor loop. The same runs are trained with each implementation, interleaved, and the
CPU time of the whole run (one thread) and the final ACC are printed side by side. Rounding is
the only difference between the three (same algorithm), so the ACC differences show how far
rounding alone moves a result. Configurations (documented protocols, shortened to fit a shared
2-core machine; ``--help``)::

    python bench/optimizer_paths.py                  # all three configurations, seed 0
    python bench/optimizer_paths.py --configs digits --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from neurosculpt.benchmarks import make_benchmark
from neurosculpt.loop import Learner, TrainConfig
from neurosculpt.models import build_model
from neurosculpt.strategies import make_strategies

PATHS = ("fused", "foreach", "single")
CONFIGS = {
    # docs/results.md, split-fmnist task scenario (spiking MLP, batch 128), 2,000 images a task
    "split-fmnist": {"benchmark": "split-fmnist", "model": "snn-mlp", "strategy": "ewc",
                     "params": {"lam": 1000.0}, "batch": 128, "samples": 2000, "test": 500,
                     "epochs": 1, "steps": None, "tasks": None},
    # docs/results.md, permuted-fmnist-10 (batch 32, 3,000 images a task), PackNet
    "permuted-fmnist": {"benchmark": "permuted-fmnist", "model": "snn-mlp", "strategy": "packnet",
                        "params": {}, "batch": 32, "samples": 1000, "test": 300, "epochs": 1,
                        "steps": None, "tasks": 5},
    # docs/plasticity.md, reference protocol (ann-mlp 128-128, batch 32), 6 tasks of 500 steps
    "digits": {"benchmark": "random-label-digits", "model": "ann-mlp", "strategy": "naive",
               "params": {}, "batch": 32, "samples": None, "test": None, "epochs": 1,
               "steps": 500, "tasks": 6, "hidden": (128, 128)},
}


class PathLearner(Learner):
    """The loop with one chosen Adam implementation."""

    path = "fused"

    def make_optimizer(self) -> torch.optim.Optimizer:
        params = [p for p in self.model.parameters() if p.requires_grad]
        flags = {"fused": {"fused": True}, "foreach": {"foreach": True},
                 "single": {"foreach": False}}[self.path]
        return torch.optim.Adam(params, lr=self.config.lr, **flags)


def run_once(name: str, path: str, seed: int) -> tuple[float, float]:
    """CPU seconds of the whole run (data loading excluded) and its final ACC."""
    cfg = CONFIGS[name]
    bench = make_benchmark(cfg["benchmark"], n_tasks=cfg["tasks"], seed=seed,
                           samples_per_task=cfg["samples"], test_samples_per_task=cfg["test"])
    torch.manual_seed(seed)
    model = build_model({"kind": cfg["model"], "hidden": cfg.get("hidden", (256, 256)),
                         "steps": 8}, bench.input_shape, bench.n_outputs,
                        sequence=bench.sequence)
    cls = type(f"{path}Learner", (PathLearner,), {"path": path})
    learner = cls(model, bench, make_strategies(cfg["strategy"], cfg["params"]),
                          TrainConfig(epochs=cfg["epochs"], steps=cfg["steps"],
                                      batch_size=cfg["batch"], seed=seed, progress=False,
                                      energy_samples=0))
    start = time.process_time()
    summary = learner.run()
    spent = time.process_time() - start
    metrics = summary["metrics"]
    acc = metrics["acc"] if metrics.get("acc") is not None else metrics["learning_acc"]
    return spent, acc


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--repeats", type=int, default=2, help="timed runs per (config, path, seed)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread; CPU time of whole runs (median), final ACC")
    for name in args.configs:
        times: dict[str, list[float]] = {k: [] for k in PATHS}
        accs: dict[str, list[float]] = {k: [] for k in PATHS}
        for seed in args.seeds:
            for r in range(args.repeats):
                for path in PATHS if r % 2 == 0 else PATHS[::-1]:
                    spent, acc = run_once(name, path, seed)
                    times[path].append(spent)
                    if r == 0:
                        accs[path].append(acc)
        base = statistics.median(times["fused"])
        for path in PATHS:
            t = statistics.median(times[path])
            diffs = [a - f for a, f in zip(accs[path], accs["fused"], strict=True)]
            print(f"{name:16s} {path:8s} {t:7.2f} s  x{t / base:5.2f}  ACC "
                  f"{' '.join(f'{a:.4f}' for a in accs[path])}  (vs fused: "
                  f"{' '.join(f'{d:+.4f}' for d in diffs)})", flush=True)


if __name__ == "__main__":
    main()
