"""Synaptic intelligence (Zenke, Poole & Ganguli 2017, ICML, Eq. 4-5)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..loop import Context
from .ewc import ParameterPenalty, trainable_parameters


class SI(ParameterPenalty):
    """Importance from each parameter's contribution to the drop of the loss along its path.

    During a task every optimizer step adds ``-g_i * delta_i`` to the path integral ``w_i``
    (``g``: gradient before the step, captured in ``after_backward``; ``delta``: the step's
    change of the parameter). After the task, Eq. 5:
    ``Omega_i += w_i / (Delta_i^2 + xi)`` with ``Delta_i`` the change of ``theta_i`` over the
    task, then ``w`` restarts at zero and the anchor becomes the current parameters. Eq. 4:
    ``L = L_t + c sum_i Omega_i (theta_i - theta*_i)^2``.

    As in the authors' reference code, the path integral uses the gradient of the loss
    *without* SI's own penalty (its analytic gradient ``2 c Omega (theta - theta*)`` is
    subtracted; penalties of other composed strategies stay in), and ``Omega`` is clipped at
    zero after each update so the penalty stays convex when parameters moved uphill (momentum,
    Adam). Units that grow mid-task start their path integral from zero and their change
    ``Delta`` from their value when they appeared (records follow the resize journal).

    Args:
        c: strength of the penalty (Eq. 4).
        xi: damping ``xi`` of Eq. 5, keeps the importance finite for parameters that hardly moved.
    """

    name = "si"

    def __init__(self, c: float = 1.0, xi: float = 1e-3) -> None:
        super().__init__()
        if c < 0:
            raise ValueError(f"si: c must be >= 0, got {c}")
        if xi <= 0:
            raise ValueError(f"si: xi must be > 0, got {xi}")
        self.c = float(c)
        self.xi = float(xi)
        self.hparams = {"c": self.c, "xi": self.xi}
        self.register_buffer("tasks_seen", torch.zeros((), dtype=torch.long))
        self._grads: dict[str, Tensor] = {}
        self._before: dict[str, Tensor] = {}

    def records(self) -> list[tuple[str, str, float]]:
        return [("importance", "anchor", self.c)] if int(self.tasks_seen) > 0 else []

    def fill(self, prefix: str, param: Tensor) -> float | Tensor:
        """A new unit's path starts where it appeared."""
        return param if prefix == "start" else 0.0

    def before_task(self, ctx: Context) -> None:
        super().before_task(ctx)
        for name, p in trainable_parameters(ctx.model):
            if self.stored("start", name) is None:
                self.store("start", name, p)

    def after_backward(self, ctx: Context) -> None:
        self._grads, self._before = {}, {}
        self.follow(ctx.model)
        penalised = bool(self.records())
        for name, p in trainable_parameters(ctx.model):
            if p.grad is None:
                continue
            grad = p.grad.detach().clone()
            importance, anchor = self.stored("importance", name), self.stored("anchor", name)
            if penalised and importance is not None and anchor is not None:
                grad -= 2 * self.c * importance * (p.detach() - anchor)
            self._grads[name] = grad
            self._before[name] = p.detach().clone()

    def after_step(self, ctx: Context) -> None:
        self.follow(ctx.model)
        for name, p in trainable_parameters(ctx.model):
            grad, before = self._grads.get(name), self._before.get(name)
            if grad is None or before is None or before.shape != p.shape:
                continue
            step = grad * (p.detach() - before)
            path = self.stored("path", name)
            if path is not None and path.shape == p.shape:
                path.sub_(step)
            else:
                self.store("path", name, -step)
        self._grads, self._before = {}, {}

    def after_task(self, ctx: Context) -> None:
        self.follow(ctx.model)
        for name, p in trainable_parameters(ctx.model):
            theta = p.detach()
            w = self.stored("path", name)
            w = torch.zeros_like(theta) if w is None else w
            start = self.stored("start", name)
            start = theta if start is None else start
            new = w / ((theta - start) ** 2 + self.xi)
            old = self.stored("importance", name)
            old = torch.zeros_like(theta) if old is None else old
            self.store("importance", name, (old + new).clamp(min=0.0))
            self.store("anchor", name, theta)
            self.store("start", name, theta)
            self.store("path", name, torch.zeros_like(theta))
        self.tasks_seen += 1
