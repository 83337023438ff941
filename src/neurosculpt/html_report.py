"""The HTML report of runs: one self-contained page (figures embedded as PNG, no script, no
network) and every figure as PNG and SVG in a folder beside it.

``neurosculpt report RUN_OR_FOLDER... -o report.html`` and :func:`write_report` draw, from
the ``results.json`` files alone: the metrics of every group of runs side by side, the accuracy
matrix of every run, the accuracy of each task over the stream, the structure over the stream,
the plasticity signals with the decisions taken on them, energy per task and the configuration
and command of each run. A section whose data no run holds is replaced by a note.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from . import figures
from .report import COMPARE_COLUMNS, _mean_std, compare_rows, find_runs, group_runs
from .runs import read_results, write_text

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222;
       padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.5em; text-align: right;
         white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
figure { margin: 1em 0; } figure img { max-width: 100%; height: auto; }
figcaption { font-size: 0.85em; color: #555; }
.note { color: #8a5a00; background: #fff8e6; padding: 0.5em; border-left: 3px solid #e0a000; }
pre { background: #f6f6f6; padding: 0.5em; overflow-x: auto; font-size: 0.8em; }
"""


class _Page:
    """Collects sections; writes each figure as PNG and SVG and embeds the PNG."""

    def __init__(self, folder: Path, link: str) -> None:
        self.folder, self.link = folder, link
        self.parts: list[str] = []
        self.figures: list[str] = []

    def add(self, text: str) -> None:
        self.parts.append(text)

    def note(self, text: str) -> None:
        self.add(f'<p class="note">{html.escape(text)}</p>')

    def figure(self, slug: str, fig, caption: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        png = io.BytesIO()
        fig.savefig(png, format="png", dpi=100)
        (self.folder / f"{slug}.png").write_bytes(png.getvalue())
        fig.savefig(self.folder / f"{slug}.svg", format="svg")
        data = base64.b64encode(png.getvalue()).decode()
        self.figures.append(slug)
        self.add(f'<figure id="fig-{slug}"><img alt="{html.escape(caption)}" '
                 f'src="data:image/png;base64,{data}"><figcaption>{html.escape(caption)} '
                 f'(<a href="{self.link}/{slug}.png">PNG</a>, '
                 f'<a href="{self.link}/{slug}.svg">SVG</a>)</figcaption></figure>')

    def section(self, title: str, drawn: Iterable[tuple[str, object, str]], empty: str) -> None:
        """A section of figures: ``(slug, figure or None, caption)`` each; ``empty`` is said
        when none was drawn (no run recorded what the section shows)."""
        self.add(f"<h2>{html.escape(title)}</h2>")
        shown = 0
        for slug, fig, caption in drawn:
            if fig is not None:
                self.figure(slug, fig, caption)
                shown += 1
        if not shown:
            self.note(empty)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:60] or "run"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], table_id: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def write_report(paths: Sequence[str | Path], out: str | Path = "report.html",
                 title: str | None = None) -> Path:
    """Write the report of the runs under ``paths`` to ``out`` (figures into
    ``<out stem>_files/`` beside it) and return the path of the HTML file."""
    figures.require_matplotlib()
    out = Path(out)
    folders = find_runs(paths)
    results = [read_results(p) for p in folders]
    where = {id(r): p for r, p in zip(results, folders, strict=True)}
    groups = group_runs(results)
    labels = {id(r): f"{label} seed {r.get('config', {}).get('seed')}"
              for label, runs in groups.items() for r in runs}
    page = _Page(out.parent / f"{out.stem}_files", f"{out.stem}_files")
    title = title or f"neurosculpt report: {len(results)} run(s)"

    # --- summary --------------------------------------------------------------------------------
    page.add("<h2>Summary</h2>")
    header = ["run", "seeds", *(name for name, _ in COMPARE_COLUMNS)]
    rows = [[row["run"], row["seeds"], *(_mean_std(row[name], digits)
                                         for name, digits in COMPARE_COLUMNS)]
            for row in compare_rows(results)]
    page.add(_table(header, rows, "summary"))
    page.add("<p>metrics in %, mean ± standard deviation over seeds; live synapses at the end "
             "of the stream; wall time in seconds.</p>")
    fig = figures.metrics_bars(groups)
    if fig is None:
        page.note("No run has metrics yet (no task finished).")
    else:
        page.figure("metrics", fig, "ACC, BWT, forgetting and learning accuracy of every "
                    "group, mean ± std over seeds")
    runs_rows = []
    for r in results:
        m = r.get("metrics", {})
        tasks = r.get("tasks") or [{}]
        runs_rows.append([labels[id(r)], r.get("status", "-"),
                          *(_pct(m.get(k)) for k in figures.SUMMARY_METRICS),
                          str(tasks[-1].get("live_synapses", "-")),
                          f"{r.get('wall_time_s', 0):.1f}", str(where[id(r)])])
    page.add("<h3>Runs</h3>")
    page.add(_table(["run", "status", *figures.SUMMARY_METRICS, "live_synapses", "wall_s",
                     "folder"], runs_rows, "runs"))

    # --- accuracy -------------------------------------------------------------------------------
    page.add("<h2>Accuracy over the stream</h2>")
    for label, runs in groups.items():
        fig = figures.accuracy_over_stream(runs, f"{label} ({len(runs)} seed(s))")
        if fig is None:
            page.note(f"{label}: no finished task.")
        else:
            page.figure(f"stream-{_slug(label)}", fig, f"{label}: accuracy of every task after "
                        "each task, mean ± std over seeds")
    page.add("<h2>Accuracy matrices</h2>")
    for k, r in enumerate(results):
        fig = figures.accuracy_heatmap(r, labels[id(r)])
        if fig is None:
            page.note(f"{labels[id(r)]}: no finished task.")
            continue
        page.figure(f"matrix-{k}", fig, f"{labels[id(r)]}: accuracy (%), row i = after "
                    "training task i, column j = task j")
        matrix = r["accuracy_matrix"]
        if len(matrix[0]) <= 20:
            page.add(_table(["after task", *(f"T{j}" for j in range(len(matrix[0])))],
                            [[str(i), *(_pct(v) for v in row)] for i, row in enumerate(matrix)],
                            f"matrix-{k}"))

    # --- structure -----------------------------------------------------------------------------
    page.section("Structure over the stream", (
        (f"structure-{_slug(label)}", figures.structure_over_stream(runs, label),
         f"{label}: units and live synapses per layer after each task (mean ± std over seeds), "
         "synapse partitions and structural events")
        for label, runs in groups.items()), "No run recorded its structure.")
    page.section("Plasticity signals and decisions", (
        (f"signals-{k}", figures.signals_and_decisions(r, labels[id(r)]),
         f"{labels[id(r)]}: signals per layer over the steps; markers: decisions; dotted: task "
         "boundaries")
        for k, r in enumerate(results)),
        "No run logged plasticity signals (only plasticity strategies such as neuroplastic, cbp "
        "or redo do).")

    # --- energy ---------------------------------------------------------------------------------
    page.section("Energy per task", (
        (f"energy-{_slug(label)}", figures.energy_per_task(runs, label),
         f"{label}: synaptic operations, energy and sparsity per sample after each task, next "
         "to the non-spiking network of the same topology")
        for label, runs in groups.items()),
        "No run measured energy (no finished task, or energy_samples = 0).")

    # --- configurations -------------------------------------------------------------------------
    page.add("<h2>Configurations and commands</h2>")
    for r in results:
        page.add(f"<details><summary>{html.escape(labels[id(r)])} "
                 f"({html.escape(str(where[id(r)]))})</summary>"
                 f"<pre>{html.escape(r.get('command') or '-')}</pre>"
                 f"<pre>{html.escape(json.dumps(r.get('config', {}), indent=2))}</pre>"
                 "</details>")

    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    document = (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
                f"<h1>{html.escape(title)}</h1><p>written {stamp} from "
                f"{len(results)} results.json file(s).</p>" + "\n".join(page.parts)
                + "</body></html>\n")
    write_text(out, document)
    return out
