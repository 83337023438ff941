"""Plain-text tables of runs: one run's matrix and metrics, and several runs side by side."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence

METRIC_COLUMNS = ("acc", "bwt", "fwt", "forgetting", "learning_acc", "avg_incremental_acc")


def _pct(value: float | None, width: int = 6) -> str:
    return f"{'-':>{width}}" if value is None else f"{100 * value:{width}.1f}"


def format_run(results: dict) -> str:
    """Accuracy matrix (percent; rows = after training task i) and the metrics of one run."""
    cfg = results.get("config", {})
    matrix = results.get("accuracy_matrix", [])
    n = len(results.get("benchmark", {}).get("train_sizes", [])) or (
        len(matrix[0]) if matrix else 0)
    scenario = cfg.get("scenario") or results.get("benchmark", {}).get("scenario")
    lines = [
        f"{benchmark_label(results)} ({scenario}), strategy {cfg.get('strategy')}, model "
        f"{cfg.get('model')}, seed {cfg.get('seed')}: {results.get('status')}",
    ]
    if n <= 20 and matrix:
        lines.append("accuracy (%), row i = after training task i, column j = task j")
        lines.append("        " + "".join(f"{'T' + str(j):>7}" for j in range(n)))
        for i, row in enumerate(matrix):
            lines.append(f"{'after ' + str(i):<8}" + "".join(_pct(v, 7) for v in row))
    elif matrix:
        diag = [matrix[i][i] for i in range(len(matrix))]
        lines.append(f"{len(matrix)} tasks; new-task accuracy (%) first 5: "
                     + " ".join(_pct(v, 5) for v in diag[:5]) + " ... last 5: "
                     + " ".join(_pct(v, 5) for v in diag[-5:]))
    m = results.get("metrics", {})
    lines.append("metrics (%): " + ", ".join(f"{k} {_pct(m.get(k), 1).strip()}"
                                             for k in METRIC_COLUMNS))
    tasks = results.get("tasks", [])
    if tasks:
        lines.append(
            f"wall time {results.get('wall_time_s', 0):.1f} s, CPU time "
            f"{results.get('cpu_time_s', math.nan):.1f} s, live synapses "
            f"{tasks[-1].get('live_synapses')}, parameters {tasks[-1].get('parameters')}, "
            f"peak memory {tasks[-1].get('peak_memory_mb', 0):.0f} MB"
        )
    decisions = _decision_counts(tasks)
    if decisions:
        lines.append("plasticity decisions (units): " + ", ".join(
            f"{action} {n}" for action, n in decisions.items()))
    if results.get("error"):
        lines.append(f"error: {results['error']}")
    return "\n".join(lines)


def _decision_counts(tasks: Sequence[dict]) -> dict[str, int]:
    """Units affected per action over the run, from every task's ``plasticity`` decisions."""
    counts: dict[str, int] = {}
    for task in tasks:
        for decision in task.get("plasticity", {}).get("decisions", []):
            counts[decision["action"]] = counts.get(decision["action"], 0) + decision["n"]
    return counts


# settings that do not change what a run computes, so runs differing in them are grouped
_NOT_COMPARED = ("seed", "progress", "threads", "data_root", "eval_batch_size")


def _settings(results: dict) -> dict:
    cfg = results.get("config", {})
    settings = {k: v for k, v in cfg.items() if k not in _NOT_COMPARED}
    settings["scenario"] = cfg.get("scenario") or results.get("benchmark", {}).get("scenario")
    return settings


def benchmark_label(results: dict) -> str:
    """The stream's name: the benchmark's own (a user's factory or object names it), else the
    configured one."""
    return results.get("benchmark", {}).get("name") or str(results.get("config", {}).get(
        "benchmark"))


def _group_key(results: dict) -> str:
    cfg = _settings(results)
    return f"{benchmark_label(results)}/{cfg['scenario']} {cfg.get('strategy')} {cfg.get('model')}"


def _group(all_results: Sequence[dict]) -> dict[str, list[dict]]:
    """Runs grouped by every setting but the seed, labelled by benchmark, strategy and model
    plus the settings that tell apart groups which would otherwise share a label."""
    groups: dict[str, list[dict]] = {}
    for res in all_results:
        groups.setdefault(json.dumps(_settings(res), sort_keys=True, default=str), []).append(res)
    labels: dict[str, list[str]] = {}
    for key, runs in groups.items():
        labels.setdefault(_group_key(runs[0]), []).append(key)
    out: dict[str, list[dict]] = {}
    for label, keys in labels.items():
        settings = [json.loads(k) for k in keys]
        differing = sorted(k for k in settings[0] if any(s.get(k) != settings[0].get(k)
                                                          for s in settings))
        for key, values in zip(keys, settings, strict=True):
            extra = " ".join(f"{k}={json.dumps(values.get(k))}" for k in differing)
            out[f"{label} {extra}" if extra else label] = groups[key]
    return out


def _mean_std(values: Sequence[float]) -> str:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return "-"
    mean = statistics.fmean(vals)
    std = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{mean:.2f} ± {std:.2f}"


def compare_table(all_results: Sequence[dict]) -> str:
    """Side-by-side table; runs that differ only by seed are grouped as mean ± std."""
    groups = _group(all_results)
    header = ["run", "seeds", *METRIC_COLUMNS, "live_synapses", "wall_s"]
    rows = []
    for key, runs in groups.items():
        row = [key, str(len(runs))]
        for col in METRIC_COLUMNS:
            vals = [r.get("metrics", {}).get(col) for r in runs]
            row.append(_mean_std([100 * v for v in vals if v is not None]))
        row.append(_mean_std([r["tasks"][-1]["live_synapses"] for r in runs if r.get("tasks")]))
        row.append(_mean_std([r.get("wall_time_s", math.nan) for r in runs]))
        rows.append(row)
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    out.append("metrics in %, mean ± std over seeds; wall time in seconds")
    return "\n".join(out)
