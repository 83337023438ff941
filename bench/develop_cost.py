"""Cost of the development cycle: CPU time of `develop` against `naive` and `dsd`, measured in one
run (issue targets: develop <= 1.5x naive fine-tuning, and less time than dsd).

The result tables (``bench/cl_results.py``) record every run's CPU time, but they run for an hour
with several jobs sharing the machine, so their times drift with the load. This bench runs the
same cells (settings, model and defaults of ``cl_results.py``) back to back, one torch thread,
strategies interleaved within each seed, without writing run folders, and reports the median
CPU time per strategy and the ratios of medians. CPU time of a whole run: data loading,
training, the evaluation of every task after every task and the energy pass, as the tables.

``--command`` measures instead what a user waits for: each cell runs as its own ``neurosculpt
run`` process (writing its run folder and checkpoints to a temporary folder), and the figure is
the CPU time (user + system) of that whole process, interpreter start and imports included;
wall time is printed too but moves with the load of the machine.

    python bench/develop_cost.py                       # the four task-incremental settings
    python bench/develop_cost.py --settings permuted-fmnist-10/task --seeds 0,1,2
    python bench/develop_cost.py --command --settings permuted-fmnist-10/task
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time

import cl_results

import neurosculpt

STRATEGIES = ("naive", "dsd", "develop")
DEFAULT_SETTINGS = ("split-fmnist/task", "permuted-fmnist-10/task", "fsdd-speakers/task",
                    "permuted-fmnist-50/task")


def cell(setting: str, strategy: str, seed: int) -> dict:
    """``neurosculpt.run`` keywords of one cell: the tables' settings with the fixed (not the
    tuned) strategy parameters."""
    params = cl_results.FIXED.get(setting, {}).get(strategy, {})
    return cl_results.run_args(setting, strategy, params, seed)


def cpu_time(setting: str, strategy: str, seed: int) -> float:
    result = neurosculpt.run(**cell(setting, strategy, seed))
    return result.results["cpu_time_s"]


def command(setting: str, strategy: str, seed: int, out: str) -> list[str]:
    """The ``neurosculpt run`` command line of one cell."""
    args = cell(setting, strategy, seed)
    line = ["neurosculpt", "run", "--out", out, "--no-progress", "--quiet"]
    flags = {"benchmark", "strategy", "model", "seed", "scenario", "tasks", "epochs",
             "batch_size", "samples_per_task", "test_samples_per_task", "threads"}
    for key in sorted(flags & args.keys()):
        line += [f"--{key.replace('_', '-')}", str(args[key])]
    for key, value in args["strategy_params"].items():
        line += ["-p", f"{key}={value}"]
    for key, value in args["model_params"].items():
        text = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
        line += ["--model-param", f"{key}={text}"]
    return line


def process_time(setting: str, strategy: str, seed: int) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of a whole ``neurosculpt run`` process for one cell."""
    folder = tempfile.mkdtemp(prefix="develop-cost-")
    try:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(command(setting, strategy, seed, os.path.join(folder, "run")),
                       check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--settings", default=",".join(DEFAULT_SETTINGS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--command", action="store_true",
                        help="time whole `neurosculpt run` processes (see above)")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    print("| setting | naive s | dsd s | develop s | develop / naive | develop / dsd |"
          + (" wall develop / naive |" if args.command else ""))
    print("|---|---|---|---|---|---|" + ("---|" if args.command else ""))
    for setting in args.settings.split(","):
        times: dict[str, list[float]] = {s: [] for s in STRATEGIES}
        walls: dict[str, list[float]] = {s: [] for s in STRATEGIES}
        for seed in seeds:
            for strategy in STRATEGIES:
                if args.command:
                    cpu, wall = process_time(setting, strategy, seed)
                    walls[strategy].append(wall)
                else:
                    cpu = cpu_time(setting, strategy, seed)
                times[strategy].append(cpu)
        med = {s: statistics.median(v) for s, v in times.items()}
        wall = (f" {statistics.median(walls['develop']) / statistics.median(walls['naive']):.2f} |"
                if args.command else "")
        print(f"| {setting} | {med['naive']:.1f} | {med['dsd']:.1f} | {med['develop']:.1f} | "
              f"{med['develop'] / med['naive']:.2f} | {med['develop'] / med['dsd']:.2f} |" + wall,
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
