"""Sweeps: the grid, local workers, a real local Ray head, resume and reported failures."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import pytest

from neurosculpt import read_results, run_sweep
from neurosculpt.cli import main
from neurosculpt.report import compare_table
from neurosculpt.sweeps import cell_state, load_sweep

GRID = {
    "benchmarks": ["split-digits"], "strategies": ["naive", "ewc", "develop"],
    "models": ["ann-mlp"], "seeds": [0, 1],
    "run": {"epochs": 1, "batch_size": 32, "lr": 5e-3, "samples_per_task": 64,
            "test_samples_per_task": 40, "tasks": 2, "threads": 1, "keep_checkpoints": True,
            "model_params": {"hidden": [16, 16]}},
}


def _numbers(folder: Path) -> list[dict]:
    """The compare table as CSV rows without the wall time (the only column allowed to
    differ between executors)."""
    results = [read_results(p.parent) for p in sorted(folder.rglob("results.json"))]
    rows = list(csv.DictReader(io.StringIO(compare_table(results, "csv"))))
    return [{k: v for k, v in r.items() if not k.startswith("wall_s")} for r in rows]


def _matrices(folder: Path) -> dict[str, list]:
    return {str(p.parent.relative_to(folder)): json.loads(p.read_text())["accuracy_matrix"]
            for p in folder.rglob("results.json")}


@pytest.fixture(scope="module")
def ray_head():
    """A real Ray head on the loopback address, started once for this module's Ray tests."""
    ray = pytest.importorskip("ray")
    ray.init(address="local", include_dashboard=False, num_cpus=2,
             _node_ip_address="127.0.0.1", log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local")
    result = run_sweep({**GRID, "out": str(out)}, workers=2, report=False, progress=False,
                       log=None)
    assert [o.status for o in result.outcomes] == ["complete"] * 6
    assert not result.failures and "naive ann-mlp" in result.table
    return out


def test_grid_expands_every_axis(tmp_path):
    sweep = load_sweep({**GRID, "out": str(tmp_path), "scenarios": ["task", "class"],
                        "grid": {"lr": [1e-3, 1e-2], "strategy_params.ewc.lam": [1.0, 9.0]}})
    # naive and develop: 2 scenarios x 2 seeds x 2 rates; ewc: the same x 2 strengths
    assert len(sweep.cells) == 2 * 2 * 2 * 2 + 2 * 2 * 2 * 2
    labels = [c.label for c in sweep.cells]
    assert len(set(labels)) == len(labels)
    ewc = [c for c in sweep.cells if c.config["strategy"] == "ewc"]
    assert sorted(c.config["strategy_params"]["ewc"]["lam"] for c in ewc) == [1.0] * 8 + [9.0] * 8
    assert all("lam" not in c.label for c in sweep.cells if c not in ewc)
    assert {c.config["lr"] for c in sweep.cells} == {1e-3, 1e-2}
    assert all(c.folder.parent.parent == tmp_path for c in sweep.cells)


def test_a_user_model_factory_is_a_model_axis(tmp_path):
    factory = tmp_path / "net.py"
    factory.write_text("from torch import nn\n\n\ndef make(input_shape, n_outputs, width=8):\n"
                       "    return nn.Sequential(nn.Flatten(), nn.Linear(64, n_outputs))\n")
    run = {**GRID["run"], "model_params": {"width": 4}}  # the factory's, not a built-in's
    sweep = load_sweep({**GRID, "out": str(tmp_path / "out"), "run": run,
                        "models": [f"{factory}:make"]})
    assert len(sweep.cells) == 3 * 2


@pytest.mark.parametrize("change, message", [
    ({"strategies": ["nope"]}, "nope"),
    ({"models": ["snn-lstm"]}, "snn-lstm"),
    ({"benchmarks": ["split-cifar"]}, "split-cifar"),
    ({"colour": "red"}, "colour"),
    ({"grid": {"learning_rate": [1]}}, "learning_rate"),
    ({"grid": {"strategy_params.ewc.lamda": [1]}}, "lamda"),
    ({"seeds": []}, "seeds is empty"),
])
def test_bad_sweep_files_fail_before_running(tmp_path, change, message, capsys):
    path = tmp_path / "sweep.toml"
    values = {**GRID, **change}
    path.write_text(_toml(values))
    assert main(["sweep", str(path), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def _toml(values: dict, prefix: str = "") -> str:
    """A tiny TOML writer for the test's flat tables (lists, numbers, strings, booleans)."""
    lines, tables = [], []
    for key, value in values.items():
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f'"{key}" = {json.dumps(value)}')
    for key, value in tables:
        lines.append(f"[{prefix}{key}]")
        lines.append(_toml(value, f"{prefix}{key}."))
    return "\n".join(lines) + "\n"


def test_local_and_ray_give_identical_tables(local_sweep, ray_head, tmp_path):
    result = run_sweep({**GRID, "out": str(tmp_path)}, executor="ray", report=False,
                       progress=False, log=None)
    assert ray_head.is_initialized()  # the sweep used the session it found, and left it up
    assert [o.status for o in result.outcomes] == ["complete"] * 6
    assert _numbers(tmp_path) == _numbers(local_sweep)
    assert _matrices(tmp_path) == _matrices(local_sweep)
    assert read_results(next(tmp_path.rglob("results.json")).parent)["command"].startswith(
        "neurosculpt sweep sweep (cell split-digits-default-")
    # the folders came back from the Ray workers complete, checkpoints included
    for cell in load_sweep({**GRID, "out": str(tmp_path)}).cells:
        assert cell_state(cell) == "complete"
        assert sorted(p.name for p in (cell.folder / "checkpoints").iterdir()) == [
            "task_000.pt", "task_001.pt"]


def test_resume_skips_finished_cells_and_continues_killed_ones(local_sweep, tmp_path):
    out = tmp_path / "sweep"
    shutil.copytree(local_sweep, out)
    cells = load_sweep({**GRID, "out": str(out)}).cells
    killed = cells[4]  # develop seed 0: make it look killed after its first task
    before = read_results(killed.folder)
    (killed.folder / "checkpoints" / "task_001.pt").unlink()
    partial = {**before, "status": "running", "accuracy_matrix": before["accuracy_matrix"][:1],
               "tasks": before["tasks"][:1]}
    (killed.folder / "results.json").write_text(json.dumps(partial))
    result = run_sweep({**GRID, "out": str(out)}, workers=1, progress=False, log=None)
    assert [o.status for o in result.outcomes] == ["skipped"] * 4 + ["complete", "skipped"]
    after = read_results(killed.folder)
    assert after["accuracy_matrix"] == before["accuracy_matrix"]
    assert after["metrics"] == before["metrics"]
    assert (out / "report.html").is_file() and (out / "compare.md").is_file()
    assert "develop ann-mlp" in (out / "compare.md").read_text()


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_a_failing_cell_is_retried_once_and_reported(tmp_path, executor, capsys, request):
    if executor == "ray":
        request.getfixturevalue("ray_head")
    grid = {**GRID, "strategies": ["naive"], "out": str(tmp_path)}
    cells = load_sweep(grid).cells
    # a folder that holds another run (seed 1's) where seed 0's should be: cannot be resumed
    main(["run", "-b", "split-digits", "-m", "ann-mlp", "--model-param", "hidden=16,16",
          "--tasks", "2", "--epochs", "1", "--samples-per-task", "64", "--seed", "1",
          "--threads", "1", "-q", "-o", str(cells[0].folder)])
    stopped = {**read_results(cells[0].folder), "status": "interrupted"}
    (cells[0].folder / "results.json").write_text(json.dumps(stopped))
    path = tmp_path / "sweep.toml"
    path.write_text(_toml(grid))
    args = ["sweep", str(path), "--executor", executor, "--no-progress", "--no-report"]
    if executor == "local":
        args += ["--workers", "1"]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert "retrying once" in captured.out
    assert f"cell {cells[0].label} failed after 2 attempts" in captured.err
    assert "different" in captured.err and "seed" in captured.err
    failures = json.loads((tmp_path / "failures.json").read_text())
    assert [f["label"] for f in failures] == [cells[0].label]
    assert cell_state(cells[1]) == "complete"  # the other cell ran
    assert "naive ann-mlp" in captured.out  # and the table shows it
