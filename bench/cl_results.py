"""Run the continual-learning result tables of docs/results.md, resumably.

    python bench/cl_results.py tune      # tune each method's main hyper-parameter (validation)
    python bench/cl_results.py run       # 3 seeds x settings x strategies, with tuned values
    python bench/cl_results.py table     # print the markdown tables from the run folders

Every run is an ordinary ``neurosculpt.run`` writing a run folder under ``--root``; finished runs
are skipped, so the script can be stopped and restarted. Tuning uses ``validation=True`` (10% of
each task's training data held out, the test set never seen) and seed 100, and writes the chosen
values to ``<root>/tuned.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

import neurosculpt
from neurosculpt.runs import read_results

SPIKING_MLP = {"hidden": (256, 256), "steps": 8}

# Every setting: the run arguments shared by all strategies. Sizes keep a whole table within
# about an hour of this 2-core machine; docs/results.md states them.
SETTINGS: dict[str, dict] = {
    "split-fmnist/task": dict(benchmark="split-fmnist", scenario="task", epochs=1),
    "split-fmnist/class": dict(benchmark="split-fmnist", scenario="class", epochs=1),
    "permuted-fmnist-10/task": dict(benchmark="permuted-fmnist", scenario="task", tasks=10,
                                    epochs=1, batch_size=32, samples_per_task=3000,
                                    test_samples_per_task=500),
    "permuted-fmnist-50/task": dict(benchmark="permuted-fmnist", scenario="task", tasks=50,
                                    epochs=1, batch_size=32, samples_per_task=2000,
                                    test_samples_per_task=300),
    "fsdd-speakers/domain": dict(benchmark="fsdd-speakers", scenario="domain", epochs=3),
    "fsdd-speakers/task": dict(benchmark="fsdd-speakers", scenario="task", epochs=3),
}

BASELINES = ["naive", "joint", "ewc", "online-ewc", "si", "mas", "lwf", "replay", "packnet"]
STRUCTURAL = ["dsd", "develop"]

# Fixed (not tuned) settings of the structural methods, per setting. The 50-task stream keeps
# a smaller share per task so that late tasks still get synapses of their own, a budget of half
# of each hidden layer, and half of each head, to end well below PackNet's live synapses
# (seed-0 trials of other values: docs/results.md).
FIXED: dict[str, dict[str, dict]] = {
    "permuted-fmnist-50/task": {"develop": {"keep": 0.05, "budget": 0.5, "keep_output": 0.5}},
}

# the main hyper-parameter of each method and the values tried (develop: its recovery rate)
GRIDS: dict[str, tuple[str, list]] = {
    "ewc": ("lam", [100.0, 1000.0, 10000.0, 100000.0]),
    "online-ewc": ("lam", [100.0, 1000.0, 10000.0, 100000.0]),
    "si": ("c", [0.1, 1.0, 10.0, 100.0]),
    "mas": ("lam", [0.1, 1.0, 10.0]),
    "lwf": ("alpha", [0.5, 1.0, 2.0]),
    "packnet": ("prune_ratio", [0.5, 0.75]),
    "develop": ("recover_lr", [1.0, 3.0, 10.0]),
}

METRICS = ("acc", "bwt", "fwt", "forgetting", "learning_acc")


def _done(path: Path) -> bool:
    file = path / "results.json"
    return file.is_file() and json.loads(file.read_text()).get("status") == "complete"


THREADS = 1  # runs go two at a time on this 2-core machine, one torch thread each


def _run(path: Path, setting: str, strategy: str, params: dict, seed: int, model: str,
         validation: bool = False) -> dict:
    if not _done(path):
        print(f"running {path}", flush=True)
        if (path / "config.json").is_file():
            neurosculpt.resume(path)
        else:
            neurosculpt.run(out=path, **run_args(setting, strategy, params, seed, model,
                                                 validation))
    return read_results(path)


def run_args(setting: str, strategy: str, params: dict, seed: int, model: str = "snn-mlp",
             validation: bool = False) -> dict:
    """``neurosculpt.run`` keywords of one cell of the tables."""
    return dict(strategy=strategy, model=model, seed=seed, strategy_params=dict(params),
                model_params=dict(SPIKING_MLP), validation=validation, progress=False,
                threads=THREADS, **SETTINGS[setting])


def tune(root: Path, settings: list[str], model: str) -> None:
    tuned_file = root / "tuned.json"
    for setting in settings:
        for strategy, (key, values) in GRIDS.items():
            scores = {}
            for value in values:
                path = root / "tune" / setting.replace("/", "_") / f"{strategy}-{key}={value}"
                res = _run(path, setting, strategy, {key: value}, 100, model, validation=True)
                scores[value] = res["metrics"]["acc"]
            best = max(scores, key=lambda v: scores[v])
            # re-read: tuning of other settings may run in a parallel process
            tuned = json.loads(tuned_file.read_text()) if tuned_file.is_file() else {}
            tuned.setdefault(setting, {})[strategy] = {
                key: best, "validation_acc": {str(k): v for k, v in scores.items()}}
            root.mkdir(parents=True, exist_ok=True)
            tuned_file.write_text(json.dumps(tuned, indent=2))
            print(f"{setting} {strategy}: {key}={best} ({scores})", flush=True)


def _params(tuned: dict, setting: str, strategy: str) -> dict:
    """Tuned values (the 10-task value stands in for permuted-fmnist-50), then fixed ones."""
    entry = tuned.get(setting, tuned.get(setting.replace("-50/", "-10/"), {})).get(strategy, {})
    params = {k: v for k, v in entry.items() if k != "validation_acc"}
    return {**params, **FIXED.get(setting, {}).get(strategy, {})}


def run_all(root: Path, settings: list[str], strategies: list[str], seeds: list[int],
            model: str) -> None:
    tuned_file = root / "tuned.json"
    tuned = json.loads(tuned_file.read_text()) if tuned_file.is_file() else {}
    for seed in seeds:
        for setting in settings:
            for strategy in strategies:
                path = root / setting.replace("/", "_") / strategy / f"seed{seed}"
                _run(path, setting, strategy, _params(tuned, setting, strategy), seed, model)


def _fmt(values: list[float], scale: float = 100.0, digits: int = 1) -> str:
    vals = [scale * v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return "-"
    std = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{statistics.fmean(vals):.{digits}f} ± {std:.{digits}f}"


def table(root: Path, settings: list[str], strategies: list[str]) -> str:
    tuned_file = root / "tuned.json"
    tuned = json.loads(tuned_file.read_text()) if tuned_file.is_file() else {}
    out = []
    for setting in settings:
        out.append(f"\n### {setting}\n")
        out.append("| strategy | hyper-parameter | ACC % | BWT % | FWT % | forgetting % | "
                   "learning acc % | live synapses | wall time s | CPU time s | seeds |")
        out.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for strategy in strategies:
            runs = [read_results(p) for p in sorted(
                (root / setting.replace("/", "_") / strategy).glob("seed*")) if _done(p)]
            if not runs:
                continue
            cells = [_fmt([r["metrics"].get(m) for r in runs]) for m in METRICS]
            live = _fmt([r["tasks"][-1]["live_synapses"] for r in runs], 1.0, 0)
            wall = _fmt([r["wall_time_s"] for r in runs], 1.0, 0)
            cpu = _fmt([r.get("cpu_time_s") for r in runs], 1.0, 0)
            hp = ", ".join(f"{k}={v}" for k, v in _params(tuned, setting, strategy).items())
            out.append(f"| {strategy} | {hp or '-'} | " + " | ".join(cells)
                       + f" | {live} | {wall} | {cpu} | {len(runs)} |")
    return "\n".join(out)


def _mean(root: Path, setting: str, strategy: str, key: str) -> float | None:
    """Mean over the finished seeds of a metric, ``live`` synapses, ``wall`` or ``cpu`` time."""
    values = []
    for path in sorted((root / setting.replace("/", "_") / strategy).glob("seed*")):
        if not _done(path):
            continue
        r = read_results(path)
        value = {"live": r["tasks"][-1]["live_synapses"], "wall": r["wall_time_s"],
                 "cpu": r.get("cpu_time_s")}.get(key, r["metrics"].get(key))
        if value is not None:
            values.append(value)
    return statistics.fmean(values) if values else None


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or not b else f"{a / b:.2f}"


def _check_row(root: Path, setting: str) -> str | None:
    means = {(s, k): _mean(root, setting, s, k)
             for s in ("develop", "packnet", "dsd", "naive", "ewc")
             for k in ("acc", "bwt", "live", "wall", "cpu")}
    acc = means["develop", "acc"]
    if acc is None:
        return None
    clock = "cpu" if all(means[s, "cpu"] for s in ("develop", "dsd", "naive")) else "wall"
    diffs = {s: "-" if means[s, "acc"] is None else f"{100 * (acc - means[s, 'acc']):+.1f}"
             for s in ("packnet", "dsd", "ewc")}
    live, time = means["develop", "live"], means["develop", clock]
    return (f"| {setting} | {100 * (means['develop', 'bwt'] or 0.0):.1f} | {diffs['packnet']} | "
            f"{_ratio(live, means['packnet', 'live'])} | {diffs['dsd']} | "
            f"{_ratio(live, means['dsd', 'live'])} | {_ratio(time, means['dsd', clock])} | "
            f"{_ratio(time, means['naive', clock])} ({clock}) | {diffs['ewc']} |")


def checks(root: Path, settings: list[str]) -> str:
    """The development cycle against issue 4's targets, setting by setting (means over seeds)."""
    out = ["\n| setting | BWT % | ACC - PackNet | live / PackNet | ACC - dsd | live / dsd | "
           "time / dsd | time / naive | ACC - EWC |", "|---|---|---|---|---|---|---|---|---|"]
    out += [row for setting in settings if (row := _check_row(root, setting))]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["tune", "run", "table"])
    parser.add_argument("--root", default="runs/results", type=Path)
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--strategies", default=",".join(BASELINES + STRUCTURAL))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--model", default="snn-mlp")
    args = parser.parse_args(argv)
    settings = args.settings.split(",")
    unknown = [s for s in settings if s not in SETTINGS]
    if unknown:
        parser.error(f"unknown setting(s) {unknown}; valid: {', '.join(SETTINGS)}")
    strategies = args.strategies.split(",")
    if args.action == "tune":
        tune(args.root, settings, args.model)
    elif args.action == "run":
        run_all(args.root, settings, strategies, [int(s) for s in args.seeds.split(",")],
                args.model)
    print(table(args.root, settings, strategies))
    print(checks(args.root, settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
