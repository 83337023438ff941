"""Final ACC with ``--precision bf16`` against fp32 on the same runs (several seeds).

Runs ``neurosculpt.run`` for each benchmark, seed and precision and prints mean ± std of ACC
per precision and the difference. On a machine without native bfloat16 the guard of
``--precision bf16`` would refuse; ``--emulated`` lifts it for this measurement only: PyTorch's
fallback kernels round the operands to bfloat16 and accumulate in float32 as the native ones
do, so the accuracies are the ones a bf16 machine gives, only slower. Example (the sizes of
docs/performance.md)::

    python bench/precision_acc.py --emulated --seeds 0 1 2 --samples 1000 --test 500
"""

from __future__ import annotations

import argparse
import statistics

import torch

import neurosculpt
from neurosculpt import loop

SETTINGS = {
    "split-fmnist": {"benchmark": "split-fmnist", "batch_size": 128},
    "permuted-fmnist-10": {"benchmark": "permuted-fmnist", "tasks": 10, "batch_size": 32},
}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--samples", type=int, default=None, help="training samples per task")
    p.add_argument("--test", type=int, default=None, help="test samples per task")
    p.add_argument("--strategy", default="naive")
    p.add_argument("--emulated", action="store_true",
                   help="run bf16 even where the CPU has no native bfloat16 (slow, same rounding)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.emulated:
        loop.bf16_supported = lambda device: True
    print(f"torch {torch.__version__}, strategy {args.strategy}, samples/task {args.samples}, "
          f"test/task {args.test}, seeds {args.seeds}, snn-mlp 256-256 T=8, 1 epoch")
    for name in args.settings:
        accs: dict[str, list[float]] = {"fp32": [], "bf16": []}
        for seed in args.seeds:
            for precision in ("fp32", "bf16"):
                result = neurosculpt.run(
                    **SETTINGS[name], strategy=args.strategy, model="snn-mlp", seed=seed,
                    samples_per_task=args.samples, test_samples_per_task=args.test,
                    precision=precision, progress=False, threads=1, energy_samples=0)
                accs[precision].append(result.metrics["acc"])
                print(f"  {name} seed {seed} {precision}: ACC {result.metrics['acc']:.4f} "
                      f"({result.results['cpu_time_s']:.1f} s CPU)", flush=True)
        line = []
        for precision, values in accs.items():
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            line.append(f"{precision} {100 * statistics.mean(values):.2f} ± {100 * sd:.2f}")
        diff = statistics.mean(accs["bf16"]) - statistics.mean(accs["fp32"])
        print(f"{name}: {', '.join(line)}; bf16 - fp32 = {100 * diff:+.2f} points")


if __name__ == "__main__":
    main()
