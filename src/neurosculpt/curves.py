"""Per-step curves while a run trains: TensorBoard event files and/or a CSV in the run folder.

``neurosculpt run --log tensorboard --log csv`` (``RunConfig.curves``) adds a
:class:`CurveLogger` to the loop as an observer: it sees the same named hooks as the
strategies (:mod:`neurosculpt.loop`), changes nothing, and is not part of the checkpoint. It
records, at the optimizer step they belong to:

- ``train/loss``, ``train/batch_accuracy`` every ``every`` steps;
- every plasticity signal a strategy logs (``signals/<name>/layer<i>`` and ``signals/loss``) and
  every decision (``decisions/<action>/layer<i>``: units affected), as they are logged;
- after each task: ``structure/units/layer<i>``, ``structure/live_synapses``, the development
  cycle's and DSD's growth and pruning (``events/<kind>/layer<i>``), and the accuracy on every
  evaluated task (``accuracy/task<j>``, ``accuracy/mean_seen``), at the task's last step.

``curves.csv`` has the columns ``step, task, tag, value`` (one row per value: easy to filter
with pandas or a spreadsheet). TensorBoard files go to ``tensorboard/`` (``tensorboard --logdir
RUN``). A resumed run first drops what the killed process logged after its last checkpoint, so
the curves of a resumed run are those of an uninterrupted one.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

from .validation import require

CURVE_SINKS = ("tensorboard", "csv")


class CurveLogger:
    """Observer of the training loop writing scalars to TensorBoard and/or ``curves.csv``."""

    def __init__(self, folder: Path, sinks: Sequence[str], every: int = 1) -> None:
        unknown = sorted(set(sinks) - set(CURVE_SINKS))
        if unknown:
            raise ValueError(f"unknown curve log(s) {unknown}; valid: {', '.join(CURVE_SINKS)}")
        if "tensorboard" in sinks:
            # torch's SummaryWriter needs the package
            require("tensorboard", "--log tensorboard needs TensorBoard: pip install "
                    "'neurosculpt[tensorboard]'")
        self.folder, self.sinks, self.every = Path(folder), tuple(sinks), every
        self._writer = None
        self._csv_file = None
        self._csv = None
        self._seen_signals = 0
        self._seen_decisions = 0

    # --- sinks ----------------------------------------------------------------------------------
    def _open(self, ctx) -> None:
        """Open the sinks at the first task this process trains; on a resume, drop what was
        logged after the checkpoint (tasks from ``ctx.task_id`` on)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if "tensorboard" in self.sinks:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.folder / "tensorboard"),
                                         purge_step=ctx.step if ctx.step > 0 else None)
        if "csv" in self.sinks:
            path = self.folder / "curves.csv"
            kept: list[list[str]] = []
            if path.is_file() and ctx.task_id > 0:
                with path.open(newline="") as f:
                    kept = [row for row in csv.reader(f)][1:]
                kept = [row for row in kept if int(row[1]) < ctx.task_id]
            self._csv_file = path.open("w", newline="")
            self._csv = csv.writer(self._csv_file)
            self._csv.writerow(["step", "task", "tag", "value"])
            self._csv.writerows(kept)

    def scalar(self, tag: str, value: float | int | None, step: int, task: int) -> None:
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            return
        if isinstance(value, float) and math.isnan(value):
            return
        if self._writer is not None:
            self._writer.add_scalar(tag, value, step)
        if self._csv is not None:
            self._csv.writerow([step, task, tag, value])

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()
        if self._csv_file is not None:
            self._csv_file.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._csv_file is not None:
            self._csv_file.close()
            self._csv_file = self._csv = None

    # --- hooks ----------------------------------------------------------------------------------
    def before_task(self, ctx) -> None:
        if self._writer is None and self._csv is None:
            self._open(ctx)
        self._seen_signals = self._seen_decisions = 0

    def after_step(self, ctx) -> None:
        task = ctx.task_id
        if ctx.step % self.every == 0:
            self.scalar("train/loss", ctx.batch_loss, ctx.step, task)
            self.scalar("train/batch_accuracy", ctx.batch_correct / max(len(ctx.y), 1),
                        ctx.step, task)
        self._plasticity(ctx)

    def _plasticity(self, ctx) -> None:
        """Signals and decisions strategies appended to this task's record since last time."""
        record = ctx.record.get("plasticity", {})
        signals = record.get("signals", [])
        for entry in signals[self._seen_signals:]:
            self.scalar("signals/loss", entry.get("loss"), entry["step"], entry["task"])
            for i, layer in enumerate(entry.get("layers", [])):
                for name, value in layer.items():
                    if name not in ("layer",):
                        self.scalar(f"signals/{name}/layer{i}", value, entry["step"],
                                    entry["task"])
        self._seen_signals = len(signals)
        decisions = record.get("decisions", [])
        for d in decisions[self._seen_decisions:]:
            layer = "all" if d.get("layer") is None else d["layer"]
            self.scalar(f"decisions/{d['action']}/layer{layer}", d["n"], d["step"], d["task"])
        self._seen_decisions = len(decisions)

    def after_task(self, ctx) -> None:
        self._plasticity(ctx)  # the end-of-task snapshot and decisions

    def after_eval(self, ctx) -> None:
        """After the evaluation that follows each task: structure, events and accuracies, at
        the task's last step."""
        step, task = max(ctx.step - 1, 0), ctx.task_id
        self._plasticity(ctx)
        for i, units in enumerate(ctx.model.hidden_sizes()):
            self.scalar(f"structure/units/layer{i}", units, step, task)
        self.scalar("structure/live_synapses", ctx.model.live_synapses(), step, task)
        for key in ("develop", "dsd"):
            for kind in ("grown", "pruned", "removed_units", "pruned_units", "reopened"):
                for i, n in enumerate(ctx.record.get(key, {}).get(kind) or []):
                    self.scalar(f"events/{kind}/layer{i}", n, step, task)
        row = getattr(ctx, "accuracy", None) or []
        for j, acc in enumerate(row):
            self.scalar(f"accuracy/task{j}", acc, step, task)
        seen = [a for a in row[: task + 1] if a is not None]
        if seen:
            self.scalar("accuracy/mean_seen", sum(seen) / len(seen), step, task)
        self.flush()


def curve_loggers(sinks: Sequence[str], folder: Path | None) -> list[CurveLogger]:
    """The observers ``RunConfig.curves`` asks for (none if empty)."""
    if not sinks:
        return []
    if folder is None:
        raise ValueError("curve logging (--log) writes into the run folder: give one (--out)")
    return [CurveLogger(folder, sinks)]
