"""Learning without forgetting (Li & Hoiem 2017, TPAMI)."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..loop import Context
from ..network import PlasticNetwork
from .base import Strategy


def frozen_copy(model: PlasticNetwork) -> PlasticNetwork:
    """A copy of ``model`` whose parameters need no gradient, for use as a teacher.

    Hooks registered on the model (by any strategy) and recorded activity are not copied: the
    copy must neither call back into strategies nor deep-copy tensors that carry a graph.
    """
    memo: dict[int, object] = {}
    for module in model.modules():
        for attr, value in vars(module).items():
            if "hooks" in attr and isinstance(value, dict):
                memo[id(value)] = type(value)()
        activity = getattr(module, "activity", None)
        if isinstance(activity, list):
            memo[id(activity)] = []
    teacher = copy.deepcopy(model, memo)
    teacher.requires_grad_(False)
    return teacher.eval()


def distillation(student: Tensor, teacher: Tensor, temperature: float) -> Tensor:
    """Li & Hoiem's Eq. 2: cross-entropy of temperature-softened student outputs against the
    teacher's softened probabilities, averaged over the batch (no ``T^2`` rescaling)."""
    target = F.softmax(teacher / temperature, dim=1)
    return -(target * F.log_softmax(student / temperature, dim=1)).sum(1).mean()


class LwF(Strategy):
    """Distil the previous model's outputs on the old tasks' output units into the new model.

    ``L = L_t + alpha * L_old`` with ``L_old`` the distillation loss (Li & Hoiem 2017, Eq. 2,
    temperature ``T``, ``lambda_o`` = ``alpha``) between the current model and a frozen copy
    taken after the previous task, on the current batch. Old output units: in the task
    scenario each old task's head separately (softmax over that head; the losses are averaged
    over old heads so ``alpha`` does not scale with the number of tasks, where the paper sums);
    in the class scenario all classes of earlier tasks together; in the domain scenario all
    outputs. Deviation: no warm-up phase that trains the new head alone first.

    The frozen copy is a submodule, so its tensors travel in this strategy's ``state_dict``;
    :meth:`load_checkpoint_state` rebuilds it before loading.

    Args:
        alpha: weight ``lambda_o`` of the distillation loss on old outputs.
        temperature: softmax temperature ``T`` of the distillation.
    """

    name = "lwf"
    teacher: PlasticNetwork | None

    def __init__(self, alpha: float = 1.0, temperature: float = 2.0) -> None:
        super().__init__()
        if alpha < 0:
            raise ValueError(f"lwf: alpha must be >= 0, got {alpha}")
        if temperature <= 0:
            raise ValueError(f"lwf: temperature must be > 0, got {temperature}")
        self.alpha = float(alpha)
        self.temperature = float(temperature)
        self.hparams = {"alpha": self.alpha, "temperature": self.temperature}
        self.register_module("teacher", None)
        self._hook: torch.utils.hooks.RemovableHandle | None = None
        self._last: tuple[Tensor, Tensor] | None = None

    def load_checkpoint_state(self, state: dict, model: nn.Module) -> None:
        """Rebuild the teacher from ``model`` (any shape) before loading its saved tensors."""
        from ..runs import load_state_resizing

        if any(key.startswith("teacher.") for key in state):
            if not isinstance(model, PlasticNetwork):
                raise TypeError(f"lwf needs a neurosculpt PlasticNetwork, got "
                                f"{type(model).__name__}")
            self.teacher = frozen_copy(model)
        load_state_resizing(self, state)
        if self.teacher is not None:
            self.teacher.requires_grad_(False)
            self._sync_teacher()

    def _sync_teacher(self) -> None:
        """The teacher answers with every live synapse (the task selection is Python state, not
        in ``state_dict``; the task it was trained up to follows its ``current_task`` buffer on
        load)."""
        self.teacher.set_task(None)

    def old_outputs(self, ctx: Context) -> list[list[int]]:
        """Groups of output units to distil, one softmax per group."""
        old_tasks = ctx.benchmark.tasks[:ctx.task_id]
        if not old_tasks:
            return []
        if ctx.benchmark.scenario == "domain":
            return [list(range(ctx.benchmark.n_outputs))]
        if ctx.benchmark.scenario == "class":
            return [[c for task in old_tasks for c in task.classes]]
        return [list(task.classes) for task in old_tasks]

    def _capture(self, module: nn.Module, args: tuple, output: Tensor) -> None:
        self._last = (args[0], output)

    def _remove_hook(self) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def before_batch(self, ctx: Context) -> None:
        """Catch the model's raw (unmasked) outputs of this batch's forward pass: the old heads
        are masked to -inf in ``ctx.logits``, and a second forward pass would double the cost."""
        self._remove_hook()
        self._last = None
        if self.teacher is not None and ctx.task_id > 0:
            self._hook = ctx.model.register_forward_hook(self._capture)

    def old_task_loss(self, ctx: Context) -> Tensor:
        """``alpha * L_old`` on the current batch ``ctx.x``; zero before the first teacher."""
        self._remove_hook()
        captured, self._last = self._last, None
        groups = self.old_outputs(ctx)
        if self.teacher is None or not groups or self.alpha == 0:
            return torch.zeros((), device=ctx.device)
        student = captured[1] if captured is not None and captured[0] is ctx.x else None
        if student is None:
            student = ctx.model(ctx.x)
        with torch.no_grad():
            teacher = self.teacher(ctx.x)
        old = sum(distillation(student[:, g], teacher[:, g], self.temperature) for g in groups)
        return self.alpha * old / len(groups)

    def loss(self, ctx: Context, loss: Tensor) -> Tensor:
        return loss + self.old_task_loss(ctx)

    def after_task(self, ctx: Context) -> None:
        self._remove_hook()
        self.teacher = frozen_copy(ctx.model)
        self._sync_teacher()
