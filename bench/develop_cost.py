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
    python bench/develop_cost.py -p initial_hidden=0.2 -p grow=0.1   # other develop parameters

Each row also gives the mean accuracy (ACC) and live synapses at the end of `develop` and `dsd`,
so a cheaper configuration shows what it costs.
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
from neurosculpt.cli import parse_params
from neurosculpt.runs import read_results

STRATEGIES = ("naive", "dsd", "develop")
DEFAULT_SETTINGS = ("split-fmnist/task", "permuted-fmnist-10/task", "fsdd-speakers/task",
                    "permuted-fmnist-50/task")


def cell(setting: str, strategy: str, seed: int, develop: dict | None = None) -> dict:
    """``neurosculpt.run`` keywords of one cell: the tables' settings with the fixed (not the
    tuned) strategy parameters, and for ``develop`` the overrides ``develop``."""
    params = dict(cl_results.FIXED.get(setting, {}).get(strategy, {}))
    if strategy == "develop":
        params.update(develop or {})
    return cl_results.run_args(setting, strategy, params, seed)


def outcome(results: dict) -> tuple[float, int]:
    """(ACC, live synapses at the end) of a finished run."""
    return results["metrics"]["acc"], results["tasks"][-1]["live_synapses"]


def in_process(args: dict) -> tuple[float, float, int]:
    """(CPU seconds of training and evaluation, ACC, live synapses) of one cell."""
    results = neurosculpt.run(**args).results
    return (results["cpu_time_s"], *outcome(results))


def command(args: dict, out: str) -> list[str]:
    """The ``neurosculpt run`` command line of one cell."""
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


def process_time(args: dict) -> tuple[float, float, float, int]:
    """(CPU seconds, wall seconds, ACC, live synapses) of a whole ``neurosculpt run`` process
    for one cell."""
    folder = tempfile.mkdtemp(prefix="develop-cost-")
    try:
        out = os.path.join(folder, "run")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(command(args, out), check=True, stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        acc, live = outcome(read_results(out))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, wall, acc, live


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--settings", default=",".join(DEFAULT_SETTINGS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--command", action="store_true",
                        help="time whole `neurosculpt run` processes (see above)")
    parser.add_argument("-p", "--develop-param", action="append", default=[],
                        metavar="KEY=VALUE", help="a develop parameter (repeatable)")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    develop = parse_params(args.develop_param, "--develop-param")
    if develop:
        print("develop with " + ", ".join(f"{k}={v}" for k, v in develop.items()))
    print("| setting | naive s | dsd s | develop s | develop / naive | develop / dsd | "
          "ACC % develop / dsd | live develop / dsd |"
          + (" wall develop / naive |" if args.command else ""))
    print("|---|---|---|---|---|---|---|---|" + ("---|" if args.command else ""))
    for setting in args.settings.split(","):
        times: dict[str, list[float]] = {s: [] for s in STRATEGIES}
        walls: dict[str, list[float]] = {s: [] for s in STRATEGIES}
        accs: dict[str, list[float]] = {s: [] for s in STRATEGIES}
        lives: dict[str, list[int]] = {s: [] for s in STRATEGIES}
        for seed in seeds:
            for strategy in STRATEGIES:
                run_args = cell(setting, strategy, seed, develop)
                if args.command:
                    cpu, wall, acc, live = process_time(run_args)
                    walls[strategy].append(wall)
                else:
                    cpu, acc, live = in_process(run_args)
                times[strategy].append(cpu)
                accs[strategy].append(acc)
                lives[strategy].append(live)
        med = {s: statistics.median(v) for s, v in times.items()}
        acc = {s: 100 * statistics.fmean(v) for s, v in accs.items()}
        live = {s: statistics.fmean(v) for s, v in lives.items()}
        wall = (f" {statistics.median(walls['develop']) / statistics.median(walls['naive']):.2f} |"
                if args.command else "")
        print(f"| {setting} | {med['naive']:.1f} | {med['dsd']:.1f} | {med['develop']:.1f} | "
              f"{med['develop'] / med['naive']:.2f} | {med['develop'] / med['dsd']:.2f} | "
              f"{acc['develop']:.1f} / {acc['dsd']:.1f} | {live['develop'] / live['dsd']:.2f} |"
              + wall, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
