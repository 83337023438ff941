"""The neuroplasticity controller as a strategy (CLI name ``neuroplastic``).

The rules and their sources are in :class:`neurosculpt.plasticity.controller.Controller`; the
signals in :mod:`neurosculpt.plasticity.signals`. Every decision is logged with the signal
values that triggered it in ``results.json`` under each task's ``plasticity`` entry. It composes
with the development cycle (``develop+neuroplastic``): only units no task owns are touched.
``actions=none`` logs the signals and changes nothing (plain training with the signals).
"""

from __future__ import annotations

from ..loop import Context
from ..plasticity.controller import Controller
from ..validation import warn
from .base import Strategy, task_steps


class Neuroplastic(Strategy):
    """Grow, prune and reinitialise units from the learning signals, within a unit budget.

    Args:
        max_units: unit budget per hidden layer: int, float factor of the built width or per
            layer (None: 1.5x).
        min_units: pruning never shrinks a layer below this.
        replacement_rate: ``renew``: fraction of eligible units renewed per step (continual
            backprop).
        maturity: steps a unit must have lived before it may be renewed, reinitialised or pruned.
        tau: ``reinit``: dormancy threshold (ReDo).
        check_every: steps between ``reinit``/``grow`` checks.
        grow: units added per growth decision.
        dormant_max: ``grow`` only when fewer than this fraction of a layer's units are dormant.
        solved: running batch accuracy at which a task counts as learned (no growth).
        prune_utility: ``prune``: utility below this times the layer mean marks a unit for removal.
        renew_every: ``renew`` replacements are made in batches every this many steps.
        utility: ``centered`` (mean-corrected contribution) or ``contribution``.
        optimizer_reset: optimizer state of reinitialised units: ``first`` (zero the first moment /
            momentum, keep Adam's second), ``all`` or ``none``.
        actions: which rules act: any of ``renew``, ``reinit``, ``grow``, ``prune`` (``none``: only
            log).
        decay: decay of the running unit statistics.
        every: update the running statistics every this many steps.
        log_every: steps between snapshots of the plasticity signals in results.json (0: only at the
            end of each task).
        probe: inputs of the forward pass that measures a snapshot's signals (dormancy, rank).
        plateau_window: steps per window of the loss-plateau detector.
        plateau_tol: relative improvement of the windowed mean loss below which it is a plateau.
        plateau_patience: windows without that improvement before a plateau is flagged.
    """

    name = "neuroplastic"
    transient = ("_warned",)  # the short-task warning is given once per process

    def __init__(self, max_units: int | float | list | None = None, min_units: int = 8,
                 replacement_rate: float = 1e-3, maturity: int = 100, tau: float = 0.025,
                 check_every: int = 100, grow: int = 8, dormant_max: float = 0.1,
                 solved: float = 0.99, prune_utility: float = 0.01, renew_every: int = 50,
                 utility: str = "centered", optimizer_reset: str = "first",
                 actions: str | list | None = "renew,reinit,grow", decay: float = 0.99,
                 every: int = 4, log_every: int = 1000, probe: int = 256,
                 plateau_window: int = 100, plateau_tol: float = 0.01,
                 plateau_patience: int = 3) -> None:
        super().__init__()
        self.hparams = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        self.controller = Controller(
            max_units=max_units, min_units=min_units, replacement_rate=replacement_rate,
            maturity=maturity, tau=tau, check_every=check_every, grow=grow,
            dormant_max=dormant_max, solved=solved, prune_utility=prune_utility,
            renew_every=renew_every, utility=utility, optimizer_reset=optimizer_reset,
            actions=actions, decay=decay, every=every, log_every=log_every, probe=probe,
            plateau_window=plateau_window, plateau_tol=plateau_tol,
            plateau_patience=plateau_patience)
        self._warned = False

    def before_task(self, ctx: Context) -> None:
        if not self._warned:
            self._warn_if_idle(ctx)
        self.controller.before_task(ctx)

    def _warn_if_idle(self, ctx: Context) -> None:
        """Say once, with the numbers, when the task is too short for a rule to act: the
        plateau detector restarts with every task, checks come every ``check_every`` steps."""
        h, actions = self.hparams, self.controller.actions
        _, steps = task_steps(ctx)
        plateau = h["plateau_window"] * (h["plateau_patience"] + 1)
        short = []
        if "grow" in actions and steps < plateau:
            short.append(f"growth on a loss plateau needs {plateau} steps within one task "
                         f"(plateau_window {h['plateau_window']} x (plateau_patience "
                         f"{h['plateau_patience']} + 1))")
        if {"reinit", "grow"} & set(actions) and steps < h["check_every"]:
            short.append(f"reinit/grow checks come every check_every={h['check_every']} steps")
        if steps < h["maturity"]:
            short.append(f"a unit must live maturity={h['maturity']} steps before it may be "
                         "renewed or reinitialised")
        if short:
            self._warned = True
            message = (f"neuroplastic: task {ctx.task_id} trains {steps} steps, but "
                       + "; ".join(short) + ". Lower these parameters or train longer "
                       "(--steps/--epochs)")
            warn(message)
            ctx.log(message)

    def after_backward(self, ctx: Context) -> None:
        self.controller.after_backward(ctx)

    def after_step(self, ctx: Context) -> None:
        self.controller.after_step(ctx)

    def after_task(self, ctx: Context) -> None:
        self.controller.after_task(ctx)
