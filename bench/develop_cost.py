"""Cost of the development cycle: CPU time of `develop` against `naive` and `dsd`, measured in one
run (issue targets: develop <= 1.5x naive fine-tuning, and less time than dsd).

The result tables (``bench/cl_results.py``) record every run's CPU time, but they run for an hour
with several jobs sharing the machine, so their times drift with the load. This bench runs the
same cells (settings, model and defaults of ``cl_results.py``) back to back, one torch thread,
strategies interleaved within each seed, without writing run folders, and reports the median
CPU time per strategy and the ratios of medians. CPU time of a whole run: data loading,
training, the evaluation of every task after every task and the energy pass, as the tables.

    python bench/develop_cost.py                       # the four task-incremental settings
    python bench/develop_cost.py --settings permuted-fmnist-10/task --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import statistics

import cl_results

import neurosculpt

STRATEGIES = ("naive", "dsd", "develop")
DEFAULT_SETTINGS = ("split-fmnist/task", "permuted-fmnist-10/task", "fsdd-speakers/task",
                    "permuted-fmnist-50/task")


def cpu_time(setting: str, strategy: str, seed: int) -> float:
    params = cl_results.FIXED.get(setting, {}).get(strategy, {})
    result = neurosculpt.run(**cl_results.run_args(setting, strategy, params, seed))
    return result.results["cpu_time_s"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--settings", default=",".join(DEFAULT_SETTINGS))
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    print("| setting | naive s | dsd s | develop s | develop / naive | develop / dsd |")
    print("|---|---|---|---|---|---|")
    for setting in args.settings.split(","):
        times: dict[str, list[float]] = {s: [] for s in STRATEGIES}
        for seed in seeds:
            for strategy in STRATEGIES:
                times[strategy].append(cpu_time(setting, strategy, seed))
        med = {s: statistics.median(v) for s, v in times.items()}
        print(f"| {setting} | {med['naive']:.1f} | {med['dsd']:.1f} | {med['develop']:.1f} | "
              f"{med['develop'] / med['naive']:.2f} | {med['develop'] / med['dsd']:.2f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
