"""Time from starting ``neurosculpt run`` to its first optimizer step (target: < 1 s for a
cached data set).

Each measurement is a fresh process running the command line's own code path
(``neurosculpt.cli.main``) with one extra strategy composed in, which records the process's age
at its first ``after_step`` hook and ends the process. The same process also stamps when the
command's imports were done. Runs with the decoded-data cache (the default) and without it
(``NEUROSCULPT_DATA_CACHE=0``: every run decompresses the data) alternate, and a bare
``python -c "import torch"`` is timed alongside as the floor no torch program can go below.
Medians over ``--repeats``. Example::

    python bench/first_step.py                       # split-fmnist, snn-mlp, 5 repeats
    python bench/first_step.py -- -b permuted-fmnist --tasks 10

The last line is ``first_step_s: X.XX`` (median wall time, cached data; its CPU time beside it,
which a busy machine disturbs far less).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_RUN = ["-b", "split-fmnist", "-m", "snn-mlp", "--threads", "1", "--no-progress", "-q"]


def _process_age() -> float:
    """Seconds since this process was started (Linux ``/proc``; 10 ms resolution)."""
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    started = int(fields[19]) / os.sysconf("SC_CLK_TCK")
    return float(Path("/proc/uptime").read_text().split()[0]) - started


def worker(run_args: list[str]) -> None:
    """Run the CLI with a ``first-step`` strategy that reports and exits at the first step."""
    from neurosculpt import cli
    from neurosculpt.strategies import Strategy, register

    imported = _process_age()

    class FirstStep(Strategy):
        name = "first-step"

        def after_step(self, ctx) -> None:
            print(json.dumps({"imported_s": imported, "first_step_s": _process_age()}),
                  flush=True)
            os._exit(0)

    register(FirstStep)
    strategy = "naive"
    if "-s" in run_args:
        strategy = run_args.pop(run_args.index("-s") + 1)
        run_args.remove("-s")
    cli.main(["run", *run_args, "-s", f"{strategy}+first-step"])
    raise SystemExit("the run ended without a training step")


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _measure(command: list[str], env: dict, fresh_folder: bool = True) -> dict:
    """Wall and CPU seconds of a process that ends at its first step (or after importing); a
    run gets a new, empty run folder (``neurosculpt run`` refuses to overwrite one)."""
    folder = tempfile.mkdtemp(prefix="first-step-")
    if fresh_folder:
        command = [*command, "-o", os.path.join(folder, "run")]
    try:
        cpu = _children_cpu()
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        wall = time.perf_counter() - start
        cpu = _children_cpu() - cpu
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr.strip()[-2000:]}")
    lines = done.stdout.strip().splitlines()
    info = json.loads(lines[-1]) if lines and lines[-1].startswith("{") else {}
    return {**info, "wall_s": wall, "cpu_s": cpu}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("run", nargs="*", help="arguments of `neurosculpt run` (after --)")
    args = p.parse_args(argv)
    run_args = args.run or list(DEFAULT_RUN)
    if args.worker:
        worker(run_args)
        return
    if "-o" in run_args or "--out" in run_args:
        raise SystemExit("first_step.py gives every run a fresh folder itself: drop -o/--out")
    here = Path(__file__).resolve()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        filter(None, [str(here.parents[1] / "src"), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, str(here), "--worker", "--", *run_args]
    floor = [sys.executable, "-c", "import torch"]
    with os.popen("uptime") as f:
        print(f"neurosculpt run {' '.join(run_args)}\nload before: {f.read().strip()}")
    _measure(command, env)  # fills the cache, builds the C kernel if needed: not counted
    rows: dict[str, list[dict]] = {"cached": [], "uncached": [], "import torch": []}
    for i in range(args.repeats):
        kinds = ["cached", "uncached", "import torch"]
        for kind in kinds if i % 2 == 0 else kinds[::-1]:
            if kind == "import torch":
                rows[kind].append(_measure(floor, env, fresh_folder=False))
            else:
                cache = "1" if kind == "cached" else "0"
                rows[kind].append(_measure(command, {**env, "NEUROSCULPT_DATA_CACHE": cache}))
    with os.popen("uptime") as f:
        print(f"load after: {f.read().strip()}")
    print(f"{'':14s}{'imports done s':>16s}{'first step s':>14s}{'process wall s':>16s}"
          f"{'process CPU s':>15s}")
    for kind, values in rows.items():
        def med(key: str, values=values) -> str:
            have = [v[key] for v in values if key in v]
            return f"{statistics.median(have):.2f}" if have else "-"
        print(f"{kind:14s}{med('imported_s'):>16s}{med('first_step_s'):>14s}"
              f"{med('wall_s'):>16s}{med('cpu_s'):>15s}")
    cached = statistics.median(v["first_step_s"] for v in rows["cached"])
    cpu = statistics.median(v["cpu_s"] for v in rows["cached"])
    print(f"first_step_s: {cached:.2f} (wall, cached data; {cpu:.2f} s CPU)")


if __name__ == "__main__":
    main()
