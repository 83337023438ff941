"""Memory aware synapses (Aljundi et al. 2018, ECCV, Eq. 2-4)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..loop import Context
from .ewc import ParameterPenalty, per_sample_mean, trainable_parameters


def _squared_output_norm(logits: Tensor, _labels: Tensor) -> Tensor:
    """Squared L2 norm of the outputs the sample may be classified into (the -inf masked ones
    are not outputs of this task's function)."""
    return torch.where(torch.isfinite(logits), logits, torch.zeros_like(logits)).pow(2).sum()


class MAS(ParameterPenalty):
    """Importance = sensitivity of the learned function's output to each parameter; no labels.

    After task ``t`` (Eq. 2-3, the L2 variant the paper uses by default):
    ``Omega_t,i = 1/N sum_k |d ||F(x_k)||_2^2 / d theta_i|`` over ``N`` (at most ``samples``)
    training samples of the task, one backward pass per sample, with ``F`` the task's outputs
    (its head in the task scenario, the classes seen so far in the class scenario, all outputs
    in the domain scenario). Importances are *summed* over tasks, as in the authors' code
    (``Omega <- Omega + Omega_t``), and the anchor is the parameters after the last task.
    Eq. 4: ``L = L_t + lam sum_i Omega_i (theta_i - theta*_i)^2``. Deviation: importance is
    measured on the task's training data at its end, not on unlabeled deployment data.

    Args:
        lam: strength of the penalty (Eq. 4).
        samples: training samples of the task used to measure the importance.
    """

    name = "mas"

    def __init__(self, lam: float = 1.0, samples: int = 256) -> None:
        super().__init__()
        if lam < 0:
            raise ValueError(f"mas: lam must be >= 0, got {lam}")
        if samples < 1:
            raise ValueError(f"mas: samples must be >= 1, got {samples}")
        self.lam = float(lam)
        self.samples = int(samples)
        self.hparams = {"lam": self.lam, "samples": self.samples}
        self.register_buffer("tasks_seen", torch.zeros((), dtype=torch.long))

    def records(self) -> list[tuple[str, str, float]]:
        return [("importance", "anchor", self.lam)] if int(self.tasks_seen) > 0 else []

    def after_task(self, ctx: Context) -> None:
        self.follow(ctx.model)
        new = per_sample_mean(ctx, _squared_output_norm, torch.abs, self.samples, salt=2)
        for name, p in trainable_parameters(ctx.model):
            old = self.stored("importance", name)
            old = torch.zeros_like(p) if old is None else old
            self.store("importance", name, old + new[name])
            self.store("anchor", name, p)
        self.tasks_seen += 1
