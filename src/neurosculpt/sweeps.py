"""Sweeps: a grid of benchmarks x scenarios x strategies x models x seeds x parameters, one run
folder per cell, on local worker processes or on a Ray cluster (``neurosculpt sweep FILE``).

A sweep file (TOML)::

    out = "runs/sweep"                       # every cell's run folder goes under it
    benchmarks = ["split-digits"]
    scenarios = ["task"]                     # optional: each benchmark's own scenario
    strategies = ["naive", "ewc", "develop"]
    models = ["snn-mlp"]
    seeds = [0, 1]

    [run]                                    # RunConfig keys shared by every cell
    epochs = 1
    [run.model_params]
    hidden = [64, 64]

    [grid]                                   # more axes: a RunConfig key, or a dotted
    lr = [1e-3, 3e-3]                        # model_params.KEY / strategy_params.KEY
    "strategy_params.ewc.lam" = [10, 100]

Cells are independent runs, so the sweep is resumable the way a run is: finished cells (a
``results.json`` with status ``complete``) are skipped, unfinished ones continue from their
latest checkpoint (:func:`neurosculpt.runs.resume`). A failed cell is retried once (from its
checkpoint) and then reported, never dropped: the sweep's exit status says so and
``failures.json`` in the sweep folder lists every failure with its error.

Local workers: one process per cell at a time, as many as there are cores (fewer for a small
grid), with the cores divided among them as torch threads. Ray: one task per cell, each asking
for as many CPUs as it has threads; a task receives the cell's folder as files and returns it
as files, so no shared file system is needed and the folders end up under ``out`` on the
machine that runs the sweep.
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import json
import multiprocessing
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .loading import is_spec
from .runs import RunConfig, load_toml, read_results, write_json, write_text
from .strategies import load_plugin, make_strategies
from .validation import require, unknown_name

AXES = {"benchmarks": "benchmark", "scenarios": "scenario", "strategies": "strategy",
        "models": "model", "seeds": "seed"}
"""Sweep-file lists and the RunConfig key each one sets."""
_TOP_KEYS = {"out", "run", "grid", "workers", *AXES}
EXECUTORS = ("local", "ray")
_IGNORED = ("threads", "progress", "curves")  # settings that do not change what a cell computes


@dataclass
class Cell:
    """One run of the grid: its configuration and its run folder."""

    config: dict
    folder: Path
    label: str
    command: str = ""


@dataclass
class Outcome:
    """What became of one cell."""

    label: str
    folder: str
    status: str  # complete, skipped (already complete), failed
    error: str | None = None
    attempts: int = 0
    wall_s: float = 0.0


@dataclass
class Sweep:
    """A parsed sweep file: the cells of its grid and where they go."""

    out: Path
    cells: list[Cell]
    workers: int | None = None
    source: str = "sweep"


@dataclass
class SweepResult:
    """Every cell's outcome, the compare table over the finished cells and the report path."""

    outcomes: list[Outcome]
    table: str
    report: Path | None
    wall_s: float
    failures: list[Outcome] = field(default_factory=list)


def _as_list(value: object) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _set_dotted(values: dict, key: str, value: object) -> None:
    *path, last = key.split(".")
    target = values
    for part in path:
        target = target.setdefault(part, {})
        if not isinstance(target, dict):
            raise ValueError(f"grid key {key!r}: {part} is not a table")
    target[last] = value


def _folder_name(values: dict, params: dict) -> str:
    parts = [values["benchmark"], values.get("scenario") or "default", values["strategy"],
             values["model"]]
    parts += [f"{k}={v}" for k, v in params.items()]
    name = "-".join(str(p) for p in parts)
    return re.sub(r"[^A-Za-z0-9=.,+_-]+", "_", name)


def load_sweep(spec: str | Path | dict, out: str | Path | None = None) -> Sweep:
    """Parse a sweep file (or the same as a dict) into its cells; every cell's configuration is
    checked before anything runs."""
    source = str(spec) if not isinstance(spec, dict) else "sweep"
    values = dict(spec) if isinstance(spec, dict) else load_toml(spec)
    unknown = sorted(set(values) - _TOP_KEYS)
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in {source}; valid: "
                         f"{', '.join(sorted(_TOP_KEYS))}")
    base = dict(values.get("run", {}))
    clash = sorted(set(base) & set(AXES.values()))
    if clash:
        raise ValueError(f"{source}: [run] sets {clash}; give them as lists "
                         f"({', '.join(k for k, v in AXES.items() if v in clash)}) instead")
    defaults = RunConfig()
    axes = {key: _as_list(values.get(plural, [getattr(defaults, key)]))
            for plural, key in AXES.items()}
    for plural, key in AXES.items():
        if not axes[key]:
            raise ValueError(f"{source}: {plural} is empty")
    grid = {k: _as_list(v) for k, v in values.get("grid", {}).items()}
    if any(not v for v in grid.values()):
        raise ValueError(f"{source}: every [grid] entry needs at least one value")
    _check_names(axes, source)
    out_dir = Path(out if out is not None else values.get("out", "runs/sweep"))
    cells, seen = [], set()
    names = list(axes)
    for combo in itertools.product(*axes.values(), *grid.values()):
        config = json.loads(json.dumps(base))  # a deep copy
        config.update(dict(zip(names, combo[:len(names)], strict=True)))
        params = dict(zip(grid, combo[len(names):], strict=True))
        parts = str(config["strategy"]).split("+")
        params = {k: v for k, v in params.items()  # ewc.lam is no axis of a naive cell
                  if not (k.startswith("strategy_params.") and k.count(".") >= 2
                          and k.split(".")[1] not in parts)}
        for key, value in params.items():
            _set_dotted(config, key, value)
        config["progress"] = False
        try:
            for plugin in config.get("plugins", []):  # user strategies the cell names
                load_plugin(plugin)
            checked = RunConfig.from_dict(config, source=source)
            if not is_spec(checked.model):  # a user's model factory takes its own parameters
                checked.model_config()
            make_strategies(config["strategy"], config.get("strategy_params"))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{source}: {exc}") from None
        folder = out_dir / _folder_name(config, params) / f"seed{config['seed']}"
        if folder in seen:  # the same run again (an axis that does not apply to it)
            continue
        seen.add(folder)
        label = str(folder.relative_to(out_dir))
        cells.append(Cell(config, folder, label, f"neurosculpt sweep {source} (cell {label})"))
    workers = values.get("workers")
    return Sweep(out_dir, cells, workers, source)


def _check_names(axes: dict, source: str) -> None:
    """Unknown built-in names fail here, once, instead of in every cell (user objects named
    ``file.py:name`` are loaded by the cells themselves)."""
    from .benchmarks import BENCHMARKS, SCENARIOS
    from .models import MODELS

    for name in axes["benchmark"]:
        if not is_spec(str(name)) and name not in BENCHMARKS:
            raise ValueError(f"{source}: {unknown_name('benchmark', name, BENCHMARKS)}")
    for name in axes["scenario"]:
        if name is not None and name not in SCENARIOS:
            raise ValueError(f"{source}: unknown scenario {name!r}; valid: {', '.join(SCENARIOS)}")
    for name in axes["model"]:
        if not is_spec(str(name)) and name not in MODELS:
            raise ValueError(f"{source}: {unknown_name('model', name, MODELS)}")
    for seed in axes["seed"]:
        if not isinstance(seed, int):
            raise ValueError(f"{source}: seeds must be integers, got {seed!r}")


# --- one cell -----------------------------------------------------------------------------------


def cell_state(cell: Cell) -> str:
    """``complete`` (skip), ``partial`` (resume from the folder) or ``new``."""
    if not (cell.folder / "config.json").is_file():
        return "new"
    try:
        status = read_results(cell.folder).get("status")
    except (FileNotFoundError, json.JSONDecodeError):
        return "partial"
    return "complete" if status == "complete" else "partial"


def _same_config(folder: Path, config: dict) -> str | None:
    """Why the run in ``folder`` is not this cell's (None if it is)."""
    from .runs import config_from_folder

    mine = asdict(RunConfig.from_dict(config))
    theirs = asdict(config_from_folder(folder))
    mine["model_params"] = {**theirs["model_params"], **mine["model_params"]}
    mine["strategy_params"] = theirs["strategy_params"]  # resolved there, not comparable here
    differ = sorted(k for k in mine if k not in _IGNORED and mine[k] != theirs[k])
    return f"{folder} holds a run with different {', '.join(differ)}" if differ else None


def execute_cell(config: dict, folder: str, threads: int, command: str = "") -> dict:
    """Run (or resume) one cell in ``folder`` with ``threads`` torch threads; never raises:
    returns the outcome (status and error) so one bad cell cannot take its worker down.
    ``command`` is what the cell's ``results.json`` records as its command line (this worker
    process has its executor's own)."""
    import torch

    from . import runs

    if command:
        sys.argv = [command]
    start = time.time()
    path = Path(folder)
    config = {**config, "threads": threads}
    torch.set_num_threads(threads)
    try:
        if (path / "config.json").is_file():
            why = _same_config(path, config)
            if why:
                raise ValueError(f"{why}; delete the folder or change `out`")
            result = runs.resume(path)
        else:
            result = runs.run(config, out=path)
        status = "complete" if result.results["status"] == "complete" else "failed"
        error = result.results.get("error")
    except Exception as exc:  # reported by the driver, which retries once
        status, error = "failed", f"{type(exc).__name__}: {exc}"
    return {"status": status, "error": error, "wall_s": time.time() - start}


def pack_folder(folder: Path) -> dict[str, bytes]:
    """A run folder as {relative path: bytes} (what a Ray task receives and returns)."""
    if not folder.is_dir():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*")
            if p.is_file() and not p.name.startswith(".")}


def unpack_folder(files: dict[str, bytes], folder: Path) -> None:
    """Write ``files`` into ``folder``, dropping checkpoints the files no longer hold."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in (folder / "checkpoints").glob("*.pt"):
        if str(old.relative_to(folder)) not in files:
            old.unlink()
    for name, data in files.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.part")
        tmp.write_bytes(data)
        os.replace(tmp, target)


def execute_cell_files(config: dict, files: dict[str, bytes], threads: int, command: str = ""
                       ) -> tuple[dict, dict[str, bytes]]:
    """:func:`execute_cell` in a temporary folder filled with ``files``; returns the outcome and
    the folder's files afterwards (also after a failure: a retry resumes from them)."""
    with tempfile.TemporaryDirectory(prefix="neurosculpt-cell-") as tmp:
        folder = Path(tmp) / "run"
        unpack_folder(files, folder)
        outcome = execute_cell(config, str(folder), threads, command)
        return outcome, pack_folder(folder)


# --- executors ----------------------------------------------------------------------------------


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class LocalExecutor:
    """Worker processes (spawned: no state shared with the driver), ``threads`` each."""

    def __init__(self, workers: int, threads: int) -> None:
        self.workers, self.threads = workers, threads
        self._pool = self._new_pool()
        self._current: set = set()  # futures of the live pool

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(self.workers,
                                      mp_context=multiprocessing.get_context("spawn"))

    def submit(self, cell: Cell):
        future = self._pool.submit(execute_cell, cell.config, str(cell.folder), self.threads,
                                   cell.command)
        self._current.add(future)
        return future

    def wait(self, handles: list) -> list:
        done, _ = cf.wait(handles, return_when=cf.FIRST_COMPLETED)
        return list(done)

    def result(self, handle, cell: Cell) -> dict:
        try:
            return handle.result()
        except cf.process.BrokenProcessPool:  # a worker died (killed, out of memory)
            if handle in self._current:  # the first of the pool's futures to report it
                self._pool.shutdown(wait=False)
                self._pool, self._current = self._new_pool(), set()
            return {"status": "failed", "error": "worker process died", "wall_s": 0.0}
        finally:
            self._current.discard(handle)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class RayExecutor:
    """One Ray task per cell on the cluster at ``address`` (a local one if None; an already
    initialised Ray session is used as it is)."""

    def __init__(self, address: str | None, threads: int) -> None:
        ray = require("ray", "--executor ray needs Ray: pip install 'neurosculpt[ray]'")
        self.ray, self.threads = ray, threads
        self._started = False
        if not ray.is_initialized():
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(include_dashboard=False, _node_ip_address="127.0.0.1",
                         log_to_driver=False)
            self._started = True
        self._remote = ray.remote(execute_cell_files).options(
            num_cpus=threads, max_retries=0)

    def submit(self, cell: Cell):
        return self._remote.remote(cell.config, pack_folder(cell.folder), self.threads,
                                   cell.command)

    def wait(self, handles: list) -> list:
        done, _ = self.ray.wait(handles, num_returns=1)
        return done

    def result(self, handle, cell: Cell) -> dict:
        try:
            outcome, files = self.ray.get(handle)
        except Exception as exc:  # the task or its worker failed outside execute_cell
            return {"status": "failed", "error": f"{type(exc).__name__}: {exc}".splitlines()[0],
                    "wall_s": 0.0}
        unpack_folder(files, cell.folder)
        return outcome

    def close(self) -> None:
        if self._started:
            self.ray.shutdown()


# --- the driver ---------------------------------------------------------------------------------


def run_sweep(spec: str | Path | dict, executor: str = "local", address: str | None = None,
              workers: int | None = None, out: str | Path | None = None, report: bool = True,
              progress: bool = True, log: Callable[[str], None] | None = print) -> SweepResult:
    """Run every cell of a sweep (skipping finished ones), then write ``compare.md``,
    ``compare.csv`` and ``report.html`` into the sweep folder; the Python twin of
    ``neurosculpt sweep``."""
    from .report import compare_table

    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; valid: {', '.join(EXECUTORS)}")
    sweep = load_sweep(spec, out)
    say = log or (lambda message: None)
    start = time.time()
    outcomes: dict[int, Outcome] = {}
    todo = []
    for k, cell in enumerate(sweep.cells):
        if cell_state(cell) == "complete":
            outcomes[k] = Outcome(cell.label, str(cell.folder), "skipped")
        else:
            todo.append(k)
    say(f"sweep {sweep.source}: {len(sweep.cells)} cells, {len(sweep.cells) - len(todo)} "
        f"already complete, {len(todo)} to run ({executor})")
    if todo:
        _drive(sweep, todo, outcomes, executor, address, workers, progress, say)
    ordered = [outcomes[k] for k in range(len(sweep.cells))]
    failures = [o for o in ordered if o.status == "failed"]
    finished = [c.folder for c, o in zip(sweep.cells, ordered, strict=True)
                if o.status != "failed"]
    results = [read_results(f) for f in finished]
    table = compare_table(results) if results else "no finished cell"
    sweep.out.mkdir(parents=True, exist_ok=True)
    if results:
        write_text(sweep.out / "compare.md", compare_table(results, "markdown") + "\n")
        write_text(sweep.out / "compare.csv", compare_table(results, "csv"))
    write_json(sweep.out / "failures.json", [asdict(f) for f in failures])
    report_path = None
    if report and results:
        from .html_report import write_report

        report_path = write_report(finished, sweep.out / "report.html",
                                   title=f"sweep {sweep.source}")
    return SweepResult(ordered, table, report_path, time.time() - start, failures)


def _drive(sweep: Sweep, todo: list[int], outcomes: dict[int, Outcome], executor: str,
           address: str | None, workers: int | None, progress: bool, say) -> None:
    """Submit every cell, retry each failure once, record every outcome."""
    fixed_threads = sweep.cells[todo[0]].config.get("threads")
    if executor == "local":
        cores = available_cores()
        n_workers = max(1, min(workers or sweep.workers or cores, len(todo)))
        threads = fixed_threads or max(1, cores // n_workers)
        runner: LocalExecutor | RayExecutor = LocalExecutor(n_workers, threads)
        say(f"{n_workers} worker process(es), {threads} torch thread(s) each")
    else:
        threads = fixed_threads or 1
        runner = RayExecutor(address, threads)
        say(f"Ray: one task per cell, {threads} CPU(s) each")
    bar = _bar(len(sweep.cells), len(sweep.cells) - len(todo), progress)
    attempts = dict.fromkeys(todo, 0)
    handles = {}
    try:
        for k in todo:
            attempts[k] += 1
            handles[runner.submit(sweep.cells[k])] = k
        while handles:
            for handle in runner.wait(list(handles)):
                k = handles.pop(handle)
                cell = sweep.cells[k]
                result = runner.result(handle, cell)
                if result["status"] != "complete" and attempts[k] < 2:
                    say(f"cell {cell.label} failed ({result['error']}); retrying once")
                    attempts[k] += 1
                    handles[runner.submit(cell)] = k
                    continue
                outcomes[k] = Outcome(cell.label, str(cell.folder), result["status"],
                                      result["error"], attempts[k], result["wall_s"])
                if result["status"] != "complete":
                    say(f"cell {cell.label} failed twice: {result['error']}")
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(failed=sum(o.status == "failed" for o in outcomes.values()))
    finally:
        if bar is not None:
            bar.close()
        runner.close()


def _bar(total: int, done: int, progress: bool):
    if not progress:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=done, desc="sweep", unit="cell", dynamic_ncols=True)

