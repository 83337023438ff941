"""The HTML report, checked in a real browser and against results.json; compare's formats."""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from expected_warnings import short_tasks

from neurosculpt import read_results, run, write_report
from neurosculpt.cli import main
from neurosculpt.report import compare_rows, compare_table, spread, t95

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, request) -> Path:
    """Two seeds each of a structural strategy (develop, spiking), a plasticity controller
    that logs signals and decisions, and plain fine-tuning without energy measurement."""
    root = tmp_path_factory.mktemp("runs")
    base = {"benchmark": "split-digits", "epochs": 1, "batch_size": 32, "lr": 5e-3,
            "samples_per_task": 64, "test_samples_per_task": 40, "progress": False,
            "threads": 1, "tasks": 2}
    for seed in (0, 1):
        run(base, out=root / "develop" / f"seed{seed}", strategy="develop", model="snn-mlp",
            model_params={"hidden": [24, 24], "steps": 4}, seed=seed)
        with short_tasks():
            run(base, out=root / "plastic" / f"seed{seed}", strategy="neuroplastic",
                model="ann-mlp", model_params={"hidden": [16, 16]}, seed=seed, epochs=4,
                batch_size=8, strategy_params={"log_every": 4, "every": 1})
    run(base, out=root / "naive", strategy="naive", model="ann-mlp",
        model_params={"hidden": [16]}, energy_samples=0)
    return root


@pytest.fixture(scope="module")
def report(runs, tmp_path_factory) -> Path:
    return write_report([runs], tmp_path_factory.mktemp("report") / "report.html")


class _Tables(HTMLParser):
    """Text of every cell of every table with an id, and every img tag."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.images: list[dict] = []
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = attrs.get("id")
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = []
        elif tag == "img":
            self.images.append(attrs)

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[self._table][-1].append("".join(self._cell))
            self._cell = None
        elif tag == "table":
            self._table = None


def _parse(path: Path) -> _Tables:
    parser = _Tables()
    parser.feed(path.read_text())
    return parser


def test_report_numbers_match_results_json(runs, report):
    page = _parse(report)
    folders = sorted(p.parent for p in runs.rglob("results.json"))
    rows = {row[-1]: row for row in page.tables["runs"][1:]}
    assert sorted(rows) == sorted(map(str, folders))
    header = page.tables["runs"][0]
    for folder in folders:
        results = read_results(folder)
        row = dict(zip(header, rows[str(folder)], strict=True))
        for metric in ("acc", "bwt", "forgetting", "learning_acc"):
            assert row[metric] == f"{100 * results['metrics'][metric]:.1f}"
        assert row["live_synapses"] == str(results["tasks"][-1]["live_synapses"])
        assert row["status"] == "complete"
    matrices = [t for name, t in page.tables.items() if name.startswith("matrix-")]
    assert len(matrices) == len(folders)
    from_json = sorted([[f"{100 * v:.1f}" for v in row] for row in
                        read_results(f)["accuracy_matrix"]] for f in folders)
    assert sorted([row[1:] for row in t[1:]] for t in matrices) == from_json
    summary = {row[0]: row for row in page.tables["summary"][1:]}
    develop = next(v for k, v in summary.items() if " develop " in k)
    accs = [100 * read_results(runs / "develop" / s)["metrics"]["acc"] for s in ("seed0", "seed1")]
    mean = sum(accs) / 2
    assert develop[1] == "2" and develop[2].startswith(f"{mean:.2f} ± ")
    live = [read_results(runs / "develop" / s)["tasks"][-1]["live_synapses"]
            for s in ("seed0", "seed1")]
    assert re.fullmatch(rf"{round(sum(live) / 2)} ± \d+", develop[-2])  # counts as integers


def test_report_has_every_section_and_notes_missing_data(runs, report):
    text = report.read_text()
    for section in ("Summary", "Accuracy over the stream", "Accuracy matrices",
                    "Structure over the stream", "Plasticity signals and decisions",
                    "Energy per task", "Configurations and commands"):
        assert f"<h2>{section}</h2>" in text
    files = report.parent / "report_files"
    page = _parse(report)
    slugs = [img_id for img_id in re.findall(r'<figure id="fig-([^"]+)"', text)]
    assert len(slugs) == len(page.images)
    assert {"metrics", "matrix-0"} <= set(slugs)
    assert any(s.startswith("structure-") for s in slugs)
    assert any(s.startswith("signals-") for s in slugs)
    assert any(s.startswith("energy-") for s in slugs)
    for slug in slugs:
        assert (files / f"{slug}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "<svg" in (files / f"{slug}.svg").read_text()[:2000]
    assert all(img["src"].startswith("data:image/png;base64,") for img in page.images)
    assert "http://" not in text.replace("http://www.w3.org", "") and "https://" not in text
    assert "neurosculpt run" in text or "command" in text

    # a folder whose only run has no structure record, no signals and no energy: notes, no
    # broken figures
    lone = write_report([runs / "naive"], report.parent / "lone.html")
    lone_text = lone.read_text()
    assert "No run logged plasticity signals" in lone_text
    assert "No run measured energy" in lone_text
    assert 'id="fig-structure-' in lone_text  # hidden units are always recorded


_CHECK_IMAGES = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const mark = document.createElement("div");
  mark.id = "image-check";
  mark.dataset.total = images.length;
  mark.dataset.decoded = images.filter(i => i.complete && i.naturalWidth > 0).length;
  mark.dataset.height = document.body.scrollHeight;
  document.body.appendChild(mark);
});
</script></body>"""


def _chromium() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and os.environ.get("CI"):
        pytest.fail("chromium is not installed (scripts/test.sh installs the Debian package)")
    return found


def _browser(binary: str, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp / 'profile'}"]
    return subprocess.run([binary, *flags, *args], capture_output=True, text=True, timeout=180,
                          stdin=subprocess.DEVNULL)


def test_report_renders_in_headless_chromium(report, tmp_path):
    binary = _chromium()
    if binary is None:
        pytest.skip("chromium is not installed")
    shot = tmp_path / "shot.png"
    done = _browser(binary, tmp_path, "--window-size=1280,2400", "--hide-scrollbars",
                    f"--screenshot={shot}", report.as_uri())
    assert shot.is_file(), done.stderr[-2000:]
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)[..., :3]
    not_white = (pixels.min(axis=2) < 0.95).mean()
    colours = len({tuple(p) for p in (pixels[::7, ::7] * 255).astype(int).reshape(-1, 3)
                   .tolist()})
    assert not_white > 0.05, f"screenshot nearly blank ({not_white:.3f} non-white)"
    assert colours > 50  # figures, not only text

    probe = tmp_path / "probe.html"  # the same page plus a script that records each image
    probe.write_text(report.read_text().replace("</body>", _CHECK_IMAGES))
    done = _browser(binary, tmp_path, "--dump-dom", "--virtual-time-budget=10000",
                    probe.as_uri())
    check = re.search(r'id="image-check" data-total="(\d+)" data-decoded="(\d+)" '
                      r'data-height="(\d+)"', done.stdout)
    assert check, done.stderr[-2000:]
    total, decoded, height = map(int, check.groups())
    assert total == len(_parse(report).images) and total >= 10
    assert decoded == total, f"{total - decoded} of {total} figures did not render"
    assert height > 3000


def test_compare_formats_and_files(runs, tmp_path, capsys):
    results = [read_results(p.parent) for p in sorted(runs.rglob("results.json"))]
    markdown = compare_table(results, "markdown")
    assert markdown.splitlines()[1].startswith("|---|") and "±" in markdown
    latex = compare_table(results, "latex")
    assert latex.startswith("\\begin{tabular}") and "\\pm" in latex and "\\_" in latex
    rows = list(csv.DictReader(io.StringIO(compare_table(results, "csv"))))
    assert len(rows) == 3
    develop = next(r for r in rows if " develop " in r["run"])
    accs = [100 * read_results(runs / "develop" / s)["metrics"]["acc"] for s in ("seed0", "seed1")]
    assert float(develop["acc_mean"]) == pytest.approx(sum(accs) / 2)
    half = t95(1) * abs(accs[0] - accs[1]) / 2 ** 0.5 / 2 ** 0.5
    assert float(develop["acc_ci95_high"]) == pytest.approx(min(sum(accs) / 2 + half, 100.0))
    assert t95(1) == 12.706 and t95(1000) == pytest.approx(1.962, abs=1e-3)
    for suffix, start in ((".md", "| run"), (".tex", "\\begin"), (".csv", "run,seeds")):
        out = tmp_path / f"table{suffix}"
        assert main(["compare", str(runs), "-o", str(out)]) == 0
        assert out.read_text().startswith(start)
    assert main(["compare", str(runs), "-o", str(tmp_path / "t.pdf")]) == 2
    assert "-o" in capsys.readouterr().err
    assert len(compare_rows(results)) == 3


def test_show_accepts_a_folder_of_seeds(runs, capsys):
    assert main(["show", str(runs / "develop")]) == 0
    out = capsys.readouterr().out
    assert out.count("strategy develop") == 2 and "seed 0" in out and "seed 1" in out
    assert re.search(r"develop snn-mlp\s+2\s", out)  # the summary over both seeds


def test_report_command(runs, tmp_path, capsys):
    out = tmp_path / "r.html"
    assert main(["report", str(runs / "naive"), "-o", str(out), "--title", "naive only"]) == 0
    assert "naive only" in out.read_text() and (tmp_path / "r_files" / "metrics.svg").is_file()
    assert main(["report", str(tmp_path / "missing"), "-o", str(out)]) == 2
    assert "missing" in capsys.readouterr().err


def _seed(seed: int, acc: float, forgetting: float, wall: float) -> dict:
    return {"config": {"benchmark": "b", "strategy": "s", "model": "m", "seed": seed},
            "benchmark": {"scenario": "task"}, "wall_time_s": wall,
            "metrics": {"acc": acc, "forgetting": forgetting}, "tasks": [{"live_synapses": 5}]}


def test_intervals_are_clipped_to_the_range_of_the_metric():
    """Two seeds (t(1) = 12.7): ACC 89% and 99% give mean 94 and a half-width of 63.5, an
    interval that would reach 157.5%; it stops at 100. Wall time stops at 0."""
    results = [_seed(0, 0.89, 0.01, 1.0), _seed(1, 0.99, 0.05, 9.0)]
    row = compare_rows(results)[0]
    assert row["acc"].mean == pytest.approx(94.0)
    assert row["acc"].interval == pytest.approx((94.0 - 63.53, 100.0), abs=0.01)
    assert row["forgetting"].interval == pytest.approx((3.0 - 25.41, 3.0 + 25.41), abs=0.01)
    assert row["wall_s"].interval == (0.0, pytest.approx(5.0 + 50.82, abs=0.01))
    assert "[30.5, 100.0]" in compare_table(results)
    assert "clipped to [0, 100]" in compare_table(results, "markdown")
    (line,) = csv.DictReader(io.StringIO(compare_table(results, "csv")))
    assert float(line["acc_ci95_high"]) == 100.0 and float(line["wall_s_ci95_low"]) == 0.0
    assert float(line["acc_mean"]) + 63.5 > 100.0  # the mean and std are not touched
    low, high = spread([89.0, 99.0]).interval  # no range given: Student's t as it is
    assert high == pytest.approx(157.53, abs=0.01) and low == pytest.approx(30.47, abs=0.01)
