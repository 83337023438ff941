"""Helpers for tests of run folders (imported by the test modules beside it)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path


def simulate_crash(src: Path, dst: Path, finished: int) -> None:
    """A copy of run ``src`` as a kill -9 during task ``finished`` would have left it: later
    checkpoints gone, results.json cut back to the finished tasks and marked running."""
    shutil.copytree(src, dst)
    for checkpoint in (dst / "checkpoints").glob("task_*.pt"):
        if int(checkpoint.stem[5:]) >= finished:
            checkpoint.unlink()
    results = json.loads((dst / "results.json").read_text())
    results.update(status="running", accuracy_matrix=results["accuracy_matrix"][:finished],
                   tasks=results["tasks"][:finished])
    (dst / "results.json").write_text(json.dumps(results))
