"""Elastic weight consolidation (EWC) and its online variant, plus the parameter-keyed quadratic
penalty they share with SI and MAS.

All three methods add ``sum_i Omega_i (theta_i - theta*_i)^2`` to the loss, with an importance
``Omega`` and an anchor ``theta*`` recorded at the end of a task. Both are kept per parameter
*name* (``model.named_parameters()``) in buffers, so they survive checkpoints, and they follow
every structural change of the network through its resize journal
(:func:`neurosculpt.network.follow`): the record of a unit stays on that unit's row when other
units are removed or grown, entries of new units have zero importance (they are free), and
the records of removed units go with them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..loop import Context
from ..network import PlasticNetwork, Resize, follow
from .base import Strategy


def buffer_name(prefix: str, param_name: str) -> str:
    """Buffer name of a per-parameter record (buffer names may not contain dots)."""
    return f"{prefix}__{param_name.replace('.', '__')}"


def trainable_parameters(model: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
    """Named parameters the optimizer trains: the ones these penalties protect."""
    return ((n, p) for n, p in model.named_parameters() if p.requires_grad)


def fisher_sample_count(value: int | str, owner: str) -> int | None:
    """``fisher_samples`` as a count, or None for ``"all"`` (every training sample of the task,
    as public EWC implementations compute the Fisher)."""
    if value == "all":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{owner}: fisher_samples must be an integer >= 1 or 'all', got "
                         f"{value!r}")
    return value


def per_sample_mean(ctx: Context, objective: Callable[[Tensor, Tensor], Tensor],
                    transform: Callable[[Tensor], Tensor], max_samples: int | None,
                    salt: int) -> dict[str, Tensor]:
    """Mean over up to ``max_samples`` (None: all) training samples of the current task of
    ``transform(d objective(logits, y) / d theta)``, one backward pass per sample.

    Per-sample gradients (not per-minibatch ones) because both the Fisher diagonal (EWC) and the
    MAS importance are expectations of a non-linear function of a single sample's gradient. The
    samples are a seeded random subset, so a resumed run computes the same values. Gradients go
    through ``torch.autograd.grad``: the parameters' ``.grad`` and the optimizer are untouched.
    """
    split, task_id = ctx.task.train, ctx.task.id
    params = list(trainable_parameters(ctx.model))
    total = {name: torch.zeros_like(p) for name, p in params}
    n = len(split) if max_samples is None else min(len(split), max_samples)
    if n == 0:
        return total
    gen = torch.Generator().manual_seed(ctx.learner.seed_for(task_id, salt))
    x, y = split.get(torch.randperm(len(split), generator=gen, device="cpu")[:n])
    x, y = x.to(ctx.device), y.to(ctx.device)
    tids = torch.full((n,), task_id, dtype=torch.long, device=ctx.device)
    with torch.enable_grad():
        for i in range(n):
            value = objective(ctx.forward(x[i:i + 1], tids[i:i + 1]), y[i:i + 1])
            grads = torch.autograd.grad(value, [p for _, p in params], allow_unused=True)
            for (name, _), g in zip(params, grads, strict=True):
                if g is not None:
                    total[name] += transform(g)
    return {name: t / n for name, t in total.items()}


class ParameterPenalty(Strategy):
    """Base of the quadratic penalties: stores (importance, anchor) records per parameter name.

    Subclasses list their records in :meth:`records` as ``(importance prefix, anchor prefix,
    weight)``; the loss gets ``sum_records weight * sum_i Omega_i (theta_i - theta*_i)^2``.
    Every record follows the model's resize journal (:meth:`follow`).
    """

    # where the records stand in the model's journal; a resumed run starts from the model as
    # loaded (its journal starts empty), so this need not survive a checkpoint
    transient: tuple[str, ...] = ("_serial",)

    def __init__(self) -> None:
        super().__init__()
        self._serial: int | None = None

    def stored(self, prefix: str, param_name: str) -> Tensor | None:
        return self._buffers.get(buffer_name(prefix, param_name))

    def store(self, prefix: str, param_name: str, value: Tensor) -> None:
        self.set_buffer(buffer_name(prefix, param_name), value.detach().clone())

    def records(self) -> list[tuple[str, str, float]]:
        """The ``(importance prefix, anchor prefix, weight)`` triples currently in force."""
        return []

    def fill(self, prefix: str, param: Tensor) -> float | Tensor:
        """Value of a record's entries for new units (0: not penalised, no history)."""
        return 0.0

    def _pending(self, model: nn.Module) -> list[Resize]:
        if self._serial is None or not isinstance(model, PlasticNetwork):
            return []
        return model.resizes_since(self._serial)

    def _followed(self, model: nn.Module, resizes: list[Resize]) -> dict[str, Tensor]:
        """Every record carried through ``resizes``, by buffer name."""
        params = dict(trainable_parameters(model))
        names = {name.replace(".", "__"): name for name in params}
        out = {}
        for key, value in self._buffers.items():
            prefix, _, mangled = key.partition("__")
            name = names.get(mangled)
            if name is not None and value is not None:
                out[key] = follow(value, resizes, name=name,
                                  fill=self.fill(prefix, params[name].detach()))
        return out

    def follow(self, model: nn.Module) -> None:
        """Carry every record through the model's structural changes since the last call (the
        first call takes the model as it is: a fresh strategy or one loaded from a checkpoint,
        whose records match the model saved with it)."""
        resizes = self._pending(model)
        if resizes:
            for key, value in self._followed(model, resizes).items():
                self._buffers[key] = value
        if isinstance(model, PlasticNetwork):
            self._serial = model.resize_serial

    def penalty(self, model: nn.Module) -> Tensor:
        """The regularisation term for the model's current parameters (0 before any record).
        Records are read through the model's journal, so ``model`` may have changed shape
        since they were last followed."""
        resizes = self._pending(model)
        records = self._followed(model, resizes) if resizes else self._buffers
        total = torch.zeros((), device=next(model.parameters()).device)
        for importance_prefix, anchor_prefix, weight in self.records():
            for name, p in trainable_parameters(model):
                importance = records.get(buffer_name(importance_prefix, name))
                anchor = records.get(buffer_name(anchor_prefix, name))
                if importance is None or anchor is None:
                    continue
                if importance.shape != p.shape:
                    raise RuntimeError(
                        f"{self.name}: the record of {name} has shape {tuple(importance.shape)} "
                        f"but the parameter {tuple(p.shape)}; networks must change shape "
                        "through grow_units / remove_units (the resize journal)")
                total = total + weight * (importance * (p - anchor) ** 2).sum()
        return total

    def loss(self, ctx: Context, loss: Tensor) -> Tensor:
        self.follow(ctx.model)
        if not self.records():
            return loss
        return loss + self.penalty(ctx.model)

    def before_task(self, ctx: Context) -> None:
        self.follow(ctx.model)

    def after_eval(self, ctx: Context) -> None:
        """Catch up before the checkpoint: a strategy composed after this one may have changed
        the network after this one's ``after_task``."""
        self.follow(ctx.model)


def empirical_fisher(ctx: Context, samples: int | None) -> dict[str, Tensor]:
    """Diagonal empirical Fisher of the current task: mean of squared per-sample gradients of
    the cross-entropy of the masked logits (``ctx.forward``) at the *true* labels."""
    return per_sample_mean(ctx, lambda logits, y: F.cross_entropy(logits, y),
                           lambda g: g * g, samples, salt=1)


class EWC(ParameterPenalty):
    """Elastic weight consolidation (Kirkpatrick et al. 2017, PNAS, Eq. 3), one penalty per task.

    ``L = L_t + sum_{k<t} lam/2 sum_i F_k,i (theta_i - theta*_k,i)^2``, with ``F_k`` the diagonal
    Fisher of task ``k`` and ``theta*_k`` the parameters after task ``k`` (Eq. 3 summed over
    past tasks, as the paper does for more than two tasks). Deviations: the Fisher is the
    *empirical* one (true labels, per-sample gradients on at most ``fisher_samples`` training
    samples of the task, ``"all"`` for the whole task, masked logits of the task's scenario)
    rather than the model's
    predictive distribution. Memory grows with the number of tasks (two copies of the
    parameters per task); ``online-ewc`` keeps one.

    Args:
        lam: strength of the penalty (``lam / 2`` per Fisher-weighted squared deviation).
        fisher_samples: training samples of the task whose per-sample gradients estimate the
            Fisher, or ``"all"`` (the whole task).
    """

    name = "ewc"

    def __init__(self, lam: float = 1000.0, fisher_samples: int | str = 256) -> None:
        super().__init__()
        if lam < 0:
            raise ValueError(f"ewc: lam must be >= 0, got {lam}")
        fisher_sample_count(fisher_samples, "ewc")
        self.lam = float(lam)
        self.fisher_samples = fisher_samples
        self.hparams = {"lam": self.lam, "fisher_samples": self.fisher_samples}
        self.register_buffer("consolidated", torch.zeros(0, dtype=torch.long))

    def records(self) -> list[tuple[str, str, float]]:
        return [(f"fisher{k}", f"anchor{k}", self.lam / 2) for k in self.consolidated.tolist()]

    def after_task(self, ctx: Context) -> None:
        self.follow(ctx.model)
        fisher = empirical_fisher(ctx, fisher_sample_count(self.fisher_samples, "ewc"))
        k = ctx.task_id
        for name, p in trainable_parameters(ctx.model):
            self.store(f"fisher{k}", name, fisher[name])
            self.store(f"anchor{k}", name, p)
        if k not in self.consolidated.tolist():
            done = self.consolidated
            self.set_buffer("consolidated", torch.cat([done, done.new_tensor([k])]))


class OnlineEWC(ParameterPenalty):
    """Online EWC (Schwarz et al. 2018, "Progress & Compress", the online-EWC penalty of its
    compress phase; Chaudhry et al. 2018, EWC++): one running Fisher and one anchor whatever the
    number of tasks.

    After task ``t``: ``F* <- gamma F* + F_t`` and ``theta* <- theta_t``; the loss is
    ``L_t + lam/2 sum_i F*_i (theta_i - theta*_i)^2``. Deviation: Schwarz et al. scale the
    penalty by ``gamma`` once more (``||.||^2_{gamma F*}``); here ``gamma`` only decays the old
    Fisher, as in EWC++, so ``gamma = 1`` sums the Fishers of all tasks. The Fisher is the same
    empirical per-sample estimate as :class:`EWC`.

    Args:
        lam: strength of the penalty on the running Fisher.
        gamma: decay of the old Fisher at every task, in [0, 1] (1: sum over all tasks).
        fisher_samples: training samples of the task whose per-sample gradients estimate the Fisher.
    """

    name = "online-ewc"

    def __init__(self, lam: float = 1000.0, gamma: float = 1.0,
                 fisher_samples: int | str = 256) -> None:
        super().__init__()
        if lam < 0:
            raise ValueError(f"online-ewc: lam must be >= 0, got {lam}")
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"online-ewc: gamma must be in [0, 1], got {gamma}")
        fisher_sample_count(fisher_samples, "online-ewc")
        self.lam = float(lam)
        self.gamma = float(gamma)
        self.fisher_samples = fisher_samples
        self.hparams = {"lam": self.lam, "gamma": self.gamma,
                        "fisher_samples": self.fisher_samples}
        self.register_buffer("tasks_seen", torch.zeros((), dtype=torch.long))

    def records(self) -> list[tuple[str, str, float]]:
        return [("fisher", "anchor", self.lam / 2)] if int(self.tasks_seen) > 0 else []

    def after_task(self, ctx: Context) -> None:
        self.follow(ctx.model)
        fisher = empirical_fisher(ctx, fisher_sample_count(self.fisher_samples, "online-ewc"))
        for name, p in trainable_parameters(ctx.model):
            old = self.stored("fisher", name)
            decayed = torch.zeros_like(p) if old is None else self.gamma * old
            self.store("fisher", name, decayed + fisher[name])
            self.store("anchor", name, p)
        self.tasks_seen += 1
