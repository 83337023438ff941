"""Figures of runs with matplotlib (the ``plot`` extra), drawn from ``results.json`` alone.

Every function takes results dicts (``runs.read_results``) and returns a matplotlib
``Figure``, or None when the runs hold no data for it (e.g. no structural record, no
plasticity signals), so the report can say so instead of drawing an empty frame. Figures are
built with the object-oriented API on the Agg canvas: no pyplot state, no display needed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .report import _decision_counts, spread
from .validation import require

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SUMMARY_METRICS = ("acc", "bwt", "forgetting", "learning_acc")
"""The metrics compared side by side."""

SIGNALS = ("dormant", "utility_mean", "erank", "firing_rate", "weight_mag", "grad_norm")
"""Per-layer plasticity signals drawn over the steps, when a run logged them."""


def require_matplotlib() -> None:
    """A one-line error naming the extra when matplotlib is missing (imported only here: the
    core package never needs it)."""
    require("matplotlib", "plots need matplotlib: pip install 'neurosculpt[plot]'")


def _figure(width: float, height: float) -> Figure:
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)  # the Agg canvas: PNG and SVG without a display or pyplot state
    return fig


def _mean_band(ax, x: Sequence[float], series: Sequence[Sequence[float | None]], label: str,
               color=None, marker: str | None = "o") -> None:
    """Mean over runs (``series``: one list per run) with a band of ± one standard deviation."""
    stats = [spread([s[i] if i < len(s) else None for s in series]) for i in range(len(x))]
    xs = [xi for xi, st in zip(x, stats, strict=True) if st is not None]
    mean = [st.mean for st in stats if st is not None]
    std = [st.std for st in stats if st is not None]
    if not xs:
        return
    line, = ax.plot(xs, mean, marker=marker, markersize=3, label=label, color=color)
    if len(series) > 1:
        ax.fill_between(xs, [m - s for m, s in zip(mean, std, strict=True)],
                        [m + s for m, s in zip(mean, std, strict=True)],
                        color=line.get_color(), alpha=0.2, linewidth=0)


def _task_axis(ax, n: int, label: str = "after training task") -> None:
    ax.set_xlabel(label)
    if n <= 20:
        ax.set_xticks(range(n))


# --- accuracy -----------------------------------------------------------------------------------


def metrics_bars(groups: dict[str, list[dict]]) -> Figure | None:
    """ACC, BWT, forgetting and learning accuracy of every group side by side (mean, error bar
    = standard deviation over seeds)."""
    labels = list(groups)
    if not labels or not any(r.get("metrics") for runs in groups.values() for r in runs):
        return None
    fig = _figure(max(6.0, 1.2 * len(labels) * len(SUMMARY_METRICS) / 2 + 2), 4.0)
    ax = fig.add_subplot()
    width = 0.8 / len(labels)
    for k, label in enumerate(labels):
        stats = [spread([100 * r["metrics"][m] for r in groups[label]
                         if r.get("metrics", {}).get(m) is not None]) for m in SUMMARY_METRICS]
        xs = [i + (k - (len(labels) - 1) / 2) * width for i in range(len(SUMMARY_METRICS))]
        ax.bar(xs, [s.mean if s else math.nan for s in stats], width,
               yerr=[s.std if s else 0 for s in stats], capsize=3, label=label)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(SUMMARY_METRICS)), ["ACC", "BWT", "forgetting", "learning acc"])
    ax.set_ylabel("%")
    ax.legend(fontsize="small", loc="best")
    ax.set_title("metrics (mean ± std over seeds)")
    return fig


def accuracy_heatmap(results: dict, title: str) -> Figure | None:
    """The accuracy matrix: row i = after training task i, column j = task j (percent)."""
    matrix = results.get("accuracy_matrix") or []
    if not matrix:
        return None
    n_rows, n_cols = len(matrix), len(matrix[0])
    values = [[math.nan if v is None else 100 * v for v in row] for row in matrix]
    size = min(0.45 * max(n_rows, n_cols) + 2.0, 12.0)
    fig = _figure(size + 1.0, size)
    ax = fig.add_subplot()
    image = ax.imshow(values, vmin=0, vmax=100, cmap="viridis", aspect="auto")
    fig.colorbar(image, ax=ax, label="accuracy (%)")
    if n_rows * n_cols <= 400:
        for i, row in enumerate(values):
            for j, v in enumerate(row):
                if not math.isnan(v):
                    ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=7,
                            color="white" if v < 60 else "black")
    ax.set_xlabel("tested on task")
    ax.set_ylabel("after training task")
    if n_cols <= 20:
        ax.set_xticks(range(n_cols))
        ax.set_yticks(range(n_rows))
    ax.set_title(title, fontsize="medium")
    return fig


def accuracy_over_stream(runs: Sequence[dict], title: str) -> Figure | None:
    """Accuracy of every task after each task (mean over seeds, band = ± std), plus the mean
    over the tasks seen so far."""
    matrices = [r.get("accuracy_matrix") or [] for r in runs]
    n_rows = max((len(m) for m in matrices), default=0)
    if n_rows == 0:
        return None
    n_tasks = len(next(m for m in matrices if m)[0])
    fig = _figure(8.0, 4.5)
    ax = fig.add_subplot()
    x = list(range(n_rows))
    shown = range(n_tasks) if n_tasks <= 10 else sorted({0, n_tasks // 2, n_tasks - 1})
    for j in shown:
        series = [[100 * row[j] if row[j] is not None else None for row in m] for m in matrices]
        _mean_band(ax, x, series, f"task {j}")
    seen = [[100 * r["average_seen_accuracy"] if r.get("average_seen_accuracy") is not None
             else None for r in run.get("tasks", [])] for run in runs]
    _mean_band(ax, x, seen, "mean of seen tasks", color="black", marker=None)
    _task_axis(ax, n_rows)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 102)
    ax.legend(fontsize="small", ncol=2, loc="lower left")
    ax.set_title(title, fontsize="medium")
    return fig


# --- structure ----------------------------------------------------------------------------------


def _last_phase(task: dict) -> dict | None:
    """The last structural snapshot of a task (``tasks[k].structure``: phase -> per layer)."""
    structure = task.get("structure")
    if not structure:
        return None
    return structure[list(structure)[-1]]


def layer_synapses(task: dict) -> list[int] | None:
    """Live synapses per plastic layer after a task: from the structural record, else from the
    energy measurement (the synapses the evaluated network uses)."""
    phase = _last_phase(task)
    if phase and phase.get("live_synapses"):
        return list(phase["live_synapses"])
    layers = task.get("energy", {}).get("layers")
    if layers:
        return [layer["live_synapses"] for layer in layers]
    return None


def structural_events(task: dict) -> dict[str, int]:
    """Units added, removed and reinitialised during one task, by kind: the controller's and
    mechanisms' logged decisions plus the development cycle's and DSD's growth and pruning."""
    events = _decision_counts([task])
    for key in ("develop", "dsd"):
        record = task.get(key, {})
        for name, label in (("grown", "grow"), ("removed_units", "prune"),
                            ("pruned_units", "prune")):
            if record.get(name):
                events[label] = events.get(label, 0) + int(sum(record[name]))
    return events


def structure_over_stream(runs: Sequence[dict], title: str) -> Figure | None:
    """Units and live synapses per layer after each task (mean over seeds), each task's
    partition of the synapses (stacked, first seed) and the structural events per task."""
    tasks = [r.get("tasks") or [] for r in runs]
    if not any(t.get("units") for ts in tasks for t in ts):
        return None
    first = tasks[0]
    partitions = [(_last_phase(t) or {}).get("partitions") for t in first]
    has_partitions = any(partitions)
    events = [structural_events(t) for t in first]
    has_events = any(events)
    panels = 2 + has_partitions + has_events
    fig = _figure(5.0 * min(panels, 2), 3.6 * math.ceil(panels / 2))
    axes = fig.subplots(math.ceil(panels / 2), 2, squeeze=False).ravel()
    n = max(len(ts) for ts in tasks)
    x = list(range(n))
    ax = axes[0]
    n_layers = max(len(t.get("units", [])) for ts in tasks for t in ts)
    for layer in range(n_layers):
        series = [[t["units"][layer] if layer < len(t.get("units", [])) else None
                   for t in ts] for ts in tasks]
        _mean_band(ax, x, series, f"layer {layer}")
    ax.set_ylabel("hidden units")
    ax.set_title("units per hidden layer", fontsize="medium")
    ax.legend(fontsize="small")
    _task_axis(ax, n)
    ax = axes[1]
    synapses = [[layer_synapses(t) for t in ts] for ts in tasks]
    n_plastic = max((len(s) for ss in synapses for s in ss if s), default=0)
    for layer in range(n_plastic):
        series = [[s[layer] if s and layer < len(s) else None for s in ss] for ss in synapses]
        _mean_band(ax, x, series, f"layer {layer}")
    ax.set_ylabel("live synapses")
    ax.set_title("live synapses per plastic layer", fontsize="medium")
    if n_plastic:
        ax.legend(fontsize="small")
    else:
        ax.text(0.5, 0.5, "not recorded (no structure record, no energy measurement)",
                ha="center", va="center", transform=ax.transAxes, fontsize="small")
    _task_axis(ax, n)
    k = 2
    if has_partitions:
        ax = axes[k]
        k += 1
        _partition_bars(ax, partitions)
        ax.set_title(f"synapses owned by each task (seed {runs[0]['config'].get('seed')})",
                     fontsize="medium")
    if has_events:
        ax = axes[k]
        k += 1
        actions = sorted({a for e in events for a in e})
        bottom = [0] * len(events)
        for action in actions:
            heights = [e.get(action, 0) for e in events]
            ax.bar(range(len(events)), heights, bottom=bottom, label=action)
            bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
        ax.set_ylabel("units")
        ax.set_title(f"structural events (seed {runs[0]['config'].get('seed')})",
                     fontsize="medium")
        ax.legend(fontsize="small")
        _task_axis(ax, len(events), "task")
    for ax in axes[k:]:
        ax.set_visible(False)
    fig.suptitle(title, fontsize="medium")
    return fig


def _partition_bars(ax, partitions: Sequence[list[dict] | None]) -> None:
    """Stacked bars: for each task (x) and layer (side by side), synapses per owner."""
    n_layers = max(len(p) for p in partitions if p)
    owners = sorted({int(o) for p in partitions if p for layer in p for o in layer},
                    key=lambda o: (o < 0, o))
    width = 0.8 / n_layers
    cmap = _colormap("tab20")
    for layer in range(n_layers):
        xs = [i + (layer - (n_layers - 1) / 2) * width for i in range(len(partitions))]
        bottom = [0.0] * len(partitions)
        for owner in owners:
            heights = [float((p[layer] if p and layer < len(p) else {}).get(str(owner), 0))
                       for p in partitions]
            color = "lightgrey" if owner < 0 else cmap(owner % 20)
            ax.bar(xs, heights, width, bottom=bottom, color=color, edgecolor="white",
                   linewidth=0.3, label=("free" if owner < 0 else f"task {owner}")
                   if layer == 0 else None)
            bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    ax.set_ylabel("synapses (bars: layers 0, 1, ... side by side)")
    ax.legend(fontsize="x-small", ncol=2)
    _task_axis(ax, len(partitions))


def _colormap(name: str):
    import matplotlib

    return matplotlib.colormaps[name]


# --- plasticity signals -------------------------------------------------------------------------


def signals_and_decisions(results: dict, title: str) -> Figure | None:
    """The plasticity signals each layer logged over the steps, the training loss, task
    boundaries (dotted) and every decision of the controller or a mechanism (markers)."""
    entries = [e for t in results.get("tasks", [])
               for e in t.get("plasticity", {}).get("signals", [])]
    decisions = [d for t in results.get("tasks", [])
                 for d in t.get("plasticity", {}).get("decisions", [])]
    if not entries:
        return None
    names = [s for s in SIGNALS if any(s in layer for e in entries for layer in e["layers"])]
    panels = ["loss", *names]
    cols = 2
    rows = math.ceil(len(panels) / cols)
    fig = _figure(11.0, 2.8 * rows + 0.6)
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True).ravel()
    steps = [e["step"] for e in entries]
    boundaries = [e["step"] for e in entries if e.get("end_of_task")][:-1]
    actions = sorted({d["action"] for d in decisions})
    cmap = _colormap("tab10")
    for ax, name in zip(axes, panels, strict=False):
        if name == "loss":
            ax.plot(steps, [e.get("loss") for e in entries], color="black", linewidth=1)
        else:
            n_layers = max(len(e["layers"]) for e in entries)
            for layer in range(n_layers):
                ys = [e["layers"][layer].get(name) if layer < len(e["layers"]) else None
                      for e in entries]
                if any(y is not None for y in ys):
                    ax.plot(steps, [math.nan if y is None else y for y in ys], linewidth=1,
                            label=f"layer {layer}")
            ax.legend(fontsize="x-small")
        for b in boundaries:
            ax.axvline(b, color="grey", linestyle=":", linewidth=0.8)
        for k, action in enumerate(actions):
            marks = sorted({d["step"] for d in decisions if d["action"] == action})
            ymin, ymax = ax.get_ylim()
            ax.plot(marks, [ymax - (k + 1) * (ymax - ymin) / 25] * len(marks), linestyle="none",
                    marker="v", markersize=5, color=cmap(k % 10),
                    label=action if name == "loss" else None)
        ax.set_title(name, fontsize="small")
    if actions:
        axes[0].legend(title="decisions", fontsize="x-small", title_fontsize="x-small")
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    for ax in axes[-cols:]:
        ax.set_xlabel("step")
    fig.suptitle(title, fontsize="medium")
    return fig


# --- energy -------------------------------------------------------------------------------------


def energy_per_task(runs: Sequence[dict], title: str) -> Figure | None:
    """Synaptic operations and energy per sample after each task, next to the non-spiking
    network of the same topology, and activation / connection sparsity (mean over seeds)."""
    energy = [[t.get("energy") for t in r.get("tasks", [])] for r in runs]
    if not any(e for es in energy for e in es):
        return None
    fig = _figure(12.0, 3.6)
    axes = fig.subplots(1, 3)
    n = max(len(es) for es in energy)
    x = list(range(n))

    def series(get):
        return [[get(e) if e else None for e in es] for es in energy]

    spiking = any(e.get("spiking") for es in energy for e in es if e)
    name = "spiking" if spiking else "this network"
    _mean_band(axes[0], x, series(lambda e: e["per_sample"]["synaptic_ops"]),
               f"{name}: effective synaptic ops")
    _mean_band(axes[0], x, series(lambda e: (e.get("non_spiking") or {}).get("macs")),
               "non-spiking twin: MACs")
    axes[0].set_ylabel("operations per sample")
    _mean_band(axes[1], x, series(lambda e: e["per_sample"]["energy_pj"] / 1e3), name)
    _mean_band(axes[1], x, series(lambda e: (e.get("non_spiking") or {}).get("energy_pj", math.nan)
                                  / 1e3), "non-spiking twin")
    axes[1].set_ylabel("energy per sample (nJ)")
    _mean_band(axes[2], x, series(lambda e: e.get("activation_sparsity")), "activation")
    _mean_band(axes[2], x, series(lambda e: e.get("connection_sparsity")), "connection")
    axes[2].set_ylabel("sparsity")
    axes[2].set_ylim(0, 1.02)
    for ax in axes:
        ax.legend(fontsize="x-small")
        _task_axis(ax, n)
    fig.suptitle(title, fontsize="medium")
    return fig
