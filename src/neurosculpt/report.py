"""Tables of runs: one run's matrix and metrics, and several runs side by side (text, Markdown,
LaTeX, CSV). The HTML report (:mod:`neurosculpt.html_report`) shows the same numbers."""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

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
    order = results.get("benchmark", {}).get("class_order")
    if order is not None:
        setting = cfg.get("class_order", "seed")
        lines.append(f"class order ({setting if isinstance(setting, str) else 'given'}): "
                     + ",".join(str(c) for c in order))
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
    inference = tasks[-1].get("task_inference") if tasks else None
    if inference and "task_accuracy" in inference:
        lines.append(
            f"task inference ({inference.get('score')}): task predicted right "
            f"{100 * inference['task_accuracy']:.1f}% after the last task, "
            f"{inference.get('forward_passes_per_sample', math.nan):.2f} forward passes and "
            f"{inference.get('time_per_sample_ms', math.nan):.3f} ms per test sample")
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
_NOT_COMPARED = ("seed", "progress", "threads", "data_root", "eval_batch_size", "curves")


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


def group_runs(all_results: Sequence[dict]) -> dict[str, list[dict]]:
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


# two-sided 95% quantiles of Student's t distribution for 1..30 degrees of freedom
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
        2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t95(df: int) -> float:
    """Two-sided 95% quantile of Student's t with ``df`` degrees of freedom (a table up to 30,
    the Cornish-Fisher expansion beyond, accurate to 1e-3 there)."""
    if df < 1:
        return math.nan
    if df <= len(_T95):
        return _T95[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


@dataclass(frozen=True)
class Spread:
    """Mean, sample standard deviation and 95% confidence half-width (Student's t) over seeds.

    ``bounds``: the range the metric can take; the interval is clipped to it (with two seeds
    t(1) = 12.7 stretches an accuracy's interval past 100%, where no run can lie).
    """

    mean: float
    std: float
    n: int
    bounds: tuple[float, float] = (-math.inf, math.inf)

    @property
    def half_width(self) -> float:
        return t95(self.n - 1) * self.std / math.sqrt(self.n) if self.n > 1 else math.nan

    @property
    def interval(self) -> tuple[float, float]:
        low, high = self.bounds
        return (max(self.mean - self.half_width, low), min(self.mean + self.half_width, high))


def spread(values: Sequence[float | None],
           bounds: tuple[float, float] = (-math.inf, math.inf)) -> Spread | None:
    """:class:`Spread` of the defined values (None and NaN left out); None if there are none.
    ``bounds``: the metric's range, which the 95% interval is clipped to."""
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return None
    std = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return Spread(statistics.fmean(vals), std, len(vals), bounds)


def _mean_std(s: Spread | None, digits: int = 2) -> str:
    if s is None:
        return "-"
    return f"{s.mean:.{digits}f} ± {s.std:.{digits}f}"


def _interval(s: Spread | None, digits: int = 1) -> str:
    if s is None or s.n < 2:
        return "-"
    low, high = s.interval
    return f"[{low:.{digits}f}, {high:.{digits}f}]"


# the columns of ``compare``: name, unit scale, digits of the text form
# (column, decimals printed)
COMPARE_COLUMNS = (*((m, 2) for m in METRIC_COLUMNS), ("live_synapses", 0), ("wall_s", 1))
# the range of each column (metrics in %): accuracies lie in [0, 100], differences of
# accuracies (BWT, FWT, forgetting) in [-100, 100], counts and times are not negative
BOUNDS = {**{m: (-100.0, 100.0) for m in METRIC_COLUMNS},
          **{m: (0.0, 100.0) for m in ("acc", "learning_acc", "avg_incremental_acc")},
          "live_synapses": (0.0, math.inf), "wall_s": (0.0, math.inf)}
COMPARE_FORMATS = ("text", "markdown", "latex", "csv")


def compare_rows(all_results: Sequence[dict]) -> list[dict]:
    """One row per group of runs that differ only by seed: its label, number of seeds and the
    :class:`Spread` of every column of :data:`COMPARE_COLUMNS` (metrics in percent)."""
    rows = []
    for label, runs in group_runs(all_results).items():
        row: dict = {"run": label, "seeds": len(runs)}
        for col in METRIC_COLUMNS:
            vals = [r.get("metrics", {}).get(col) for r in runs]
            row[col] = spread([100 * v for v in vals if v is not None], BOUNDS[col])
        row["live_synapses"] = spread([r["tasks"][-1]["live_synapses"]
                                       for r in runs if r.get("tasks")], BOUNDS["live_synapses"])
        row["wall_s"] = spread([r.get("wall_time_s", math.nan) for r in runs], BOUNDS["wall_s"])
        rows.append(row)
    return rows


def _cells(row: dict) -> list[str]:
    return [row["run"], str(row["seeds"]),
            *(_mean_std(row[name], digits) for name, digits in COMPARE_COLUMNS),
            _interval(row["acc"])]


def compare_table(all_results: Sequence[dict], fmt: str = "text") -> str:
    """Side-by-side table; runs that differ only by seed are grouped as mean ± std, with the
    95% interval of ACC over seeds (clipped to [0, 100]). ``fmt``: text, markdown, latex or csv
    (csv: mean, std and the 95% interval of every column as numbers, each clipped to the
    column's range, :data:`BOUNDS`)."""
    if fmt not in COMPARE_FORMATS:
        raise ValueError(f"unknown table format {fmt!r}; valid: {', '.join(COMPARE_FORMATS)}")
    rows = compare_rows(all_results)
    if fmt == "csv":
        return _csv(rows)
    header = ["run", "seeds", *(name for name, _ in COMPARE_COLUMNS), "acc_95%_interval"]
    cells = [_cells(r) for r in rows]
    note = ("metrics in %, mean ± std over seeds, 95% interval of ACC (Student's t, clipped "
            "to [0, 100]); live synapses at the end; wall time in seconds")
    if fmt == "markdown":
        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in cells]
        return "\n".join([*out, "", note])
    if fmt == "latex":
        return _latex(header, cells, note)
    widths = [max(len(str(x)) for x in col) for col in zip(header, *cells, strict=True)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    out.append(note)
    return "\n".join(out)


_LATEX_SPECIAL = {"\\": "\\textbackslash{}", "~": "\\textasciitilde{}", "^": "\\^{}",
                  "±": "$\\pm$", **{c: "\\" + c for c in "&%$#_{}"}}


def _latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(char, char) for char in text)


def _latex(header: list[str], cells: list[list[str]], note: str) -> str:
    """A booktabs table (``\\usepackage{booktabs}``)."""
    out = ["\\begin{tabular}{l" + "r" * (len(header) - 1) + "}", "\\toprule",
           " & ".join(_latex_escape(h) for h in header) + " \\\\", "\\midrule"]
    out += [" & ".join(_latex_escape(c) for c in r) + " \\\\" for r in cells]
    out += ["\\bottomrule", "\\end{tabular}", "% " + note]
    return "\n".join(out)


def _csv(rows: list[dict]) -> str:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    stats = ("mean", "std", "ci95_low", "ci95_high")
    writer.writerow(["run", "seeds", *(f"{name}_{s}" for name, _ in COMPARE_COLUMNS
                                       for s in stats)])
    for row in rows:
        values: list = [row["run"], row["seeds"]]
        for name, _ in COMPARE_COLUMNS:
            s = row[name]
            if s is None:
                values += [""] * 4
            else:
                interval = [repr(v) for v in s.interval] if s.n > 1 else ["", ""]
                values += [repr(s.mean), repr(s.std), *interval]
        writer.writerow(values)
    return text.getvalue()


def find_runs(paths: Sequence[str | Path]) -> list[Path]:
    """Run folders: the given ones, and every folder with a ``results.json`` under the others."""
    found: list[Path] = []
    for path in map(Path, paths):
        if (path / "results.json").is_file() or path.suffix == ".json":
            found.append(path)
        elif path.is_dir():
            found += sorted(p.parent for p in path.rglob("results.json"))
        else:
            raise FileNotFoundError(f"{path} does not exist")
    if not found:
        raise FileNotFoundError(f"no results.json under {', '.join(map(str, paths))}")
    return found
