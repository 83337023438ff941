"""Joint training: the upper bound every continual-learning method is compared with."""

from __future__ import annotations

from ..benchmarks import Split
from ..loop import Context
from .base import Strategy


class Joint(Strategy):
    """Cumulative training on the union of all tasks seen so far (not a continual learner).

    When task ``t`` is trained, the ``train_data`` hook adds the training splits of tasks
    ``0 .. t-1`` to the current one, and batches are shuffled across all of them. Training is
    *cumulative* (task ``t`` continues from the model of task ``t - 1``) rather than a single
    run on everything, so every row of the accuracy matrix is meaningful: row ``t`` is the
    joint model of the first ``t + 1`` tasks, and the last row is the joint upper bound.
    The cost grows with ``t``: an epoch of task ``t`` passes over ``t + 1`` tasks' data.
    Splits another composed strategy already added (e.g. replay) are kept.
    """

    name = "joint"

    def __init__(self) -> None:
        super().__init__()
        self.hparams: dict = {}

    def train_data(self, ctx: Context, sets: list[tuple[Split, int]]) -> list[tuple[Split, int]]:
        present = {id(split) for split, _ in sets}
        earlier = [(task.train, task.id) for task in ctx.benchmark.tasks[:ctx.task_id]
                   if id(task.train) not in present]
        return earlier + sets
