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
from .base import Strategy


class Neuroplastic(Strategy):
    """Grow, prune and reinitialise units from the learning signals, within a neuron budget."""

    name = "neuroplastic"

    def __init__(self, max_neurons: int | float | list | None = None, min_neurons: int = 8,
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
            max_neurons=max_neurons, min_neurons=min_neurons, replacement_rate=replacement_rate,
            maturity=maturity, tau=tau, check_every=check_every, grow=grow,
            dormant_max=dormant_max, solved=solved, prune_utility=prune_utility,
            renew_every=renew_every, utility=utility, optimizer_reset=optimizer_reset,
            actions=actions, decay=decay, every=every, log_every=log_every, probe=probe,
            plateau_window=plateau_window, plateau_tol=plateau_tol,
            plateau_patience=plateau_patience)

    def before_task(self, ctx: Context) -> None:
        self.controller.before_task(ctx)

    def after_backward(self, ctx: Context) -> None:
        self.controller.after_backward(ctx)

    def after_step(self, ctx: Context) -> None:
        self.controller.after_step(ctx)

    def after_task(self, ctx: Context) -> None:
        self.controller.after_task(ctx)
