"""Continual backprop (Dohare et al. 2024, "Loss of plasticity in deep continual learning",
Nature 632): backprop plus a slow, continual renewal of the least useful units.

After every optimizer step each hidden unit's contribution utility (Eq. 1, a running average of
``|h| * sum |outgoing weights|``) is updated; ``replacement_rate`` times the number of mature units
(older than ``maturity`` steps) accumulates, and whenever it reaches one the lowest-utility mature
unit is reinitialised: fresh incoming weights, zero outgoing weights, its mean contribution moved
into the next layer's bias, its optimizer state reset. Deviation: PyTorch's Adam has no
per-element step count, so by default only the first moment is reset (``optimizer_reset``, see
:func:`neurosculpt.plasticity.controller.reset_optimizer_state`).
"""

from __future__ import annotations

from ..loop import Context
from ..plasticity.controller import Renewal, apply_reinit
from ..plasticity.signals import Monitor, log_decision
from .base import MonitoredStrategy


class ContinualBackprop(MonitoredStrategy):
    """Generate-and-test on top of any optimizer; also logs the plasticity signals.

    ``replacement_rate`` defaults to 1e-3 (the paper's networks used 1e-4 to 1e-6; on the
    random-label digits protocol 1e-3 keeps plasticity and 1e-4 does not, see
    ``docs/plasticity.md``). ``out_every=1`` recomputes the utility's sums of outgoing weights
    after every step, exactly as in the paper (the default, 10, is cheaper; see
    :class:`~neurosculpt.plasticity.signals.UnitStats`).

    Args:
        replacement_rate: fraction of eligible units reinitialised per step (continual backprop's
            rho).
        maturity: steps a unit must have lived before it may be replaced.
        decay: decay ``eta`` of the running utility averages.
        utility: ``contribution`` (Dohare et al., Eq. 1) or ``centered`` (mean-corrected).
        bias_correction: move a replaced unit's mean contribution into the next layer's bias.
        optimizer_reset: optimizer state of reinitialised units: ``first`` (zero the first moment /
            momentum, keep Adam's second), ``all`` or ``none``.
        every: update the running statistics every this many steps.
        out_every: recompute the utility's sums of outgoing weights every this many updates.
        tau: dormancy threshold of the logged signals.
        log_every: steps between snapshots of the plasticity signals in results.json (0: only at the
            end of each task).
        probe: inputs of the forward pass that measures a snapshot's signals (dormancy, rank).
    """

    name = "cbp"
    transient = ("replaced",)  # per-task counts, reset by before_task

    def __init__(self, replacement_rate: float = 1e-3, maturity: int = 100, decay: float = 0.99,
                 utility: str = "contribution", bias_correction: bool = True,
                 optimizer_reset: str = "first", every: int = 1, out_every: int = 10,
                 tau: float = 0.1, log_every: int = 1000, probe: int = 256) -> None:
        super().__init__()
        self.hparams = {"replacement_rate": replacement_rate, "maturity": maturity,
                        "decay": decay, "utility": utility, "bias_correction": bias_correction,
                        "optimizer_reset": optimizer_reset, "every": every,
                        "out_every": out_every, "tau": tau,
                        "log_every": log_every, "probe": probe}
        self.replacement_rate = replacement_rate
        self.bias_correction = bias_correction
        self.optimizer_reset = optimizer_reset
        self.monitor = Monitor(self.name, tau=tau, decay=decay, log_every=log_every, probe=probe,
                               every=every, utility=utility, out_every=out_every)
        self.renewal = Renewal(replacement_rate, maturity)
        self.replaced: list[int] = []

    def before_task(self, ctx: Context) -> None:
        super().before_task(ctx)
        n = len(ctx.model.hidden_sizes())
        self.renewal.start(n)
        self.replaced = [0] * n

    def after_step(self, ctx: Context) -> None:
        if not self.monitor.after_step(ctx):  # False: no statistics update on this step
            return
        for i, units in self.renewal.select(self.monitor, ctx.model, self.monitor.every):
            apply_reinit(self.monitor, ctx.model, i, units, ctx.optimizer, self.bias_correction,
                         self.optimizer_reset)
            self.replaced[i] += len(units)

    def after_task(self, ctx: Context) -> None:
        stats = self.monitor.stats
        for i, n in enumerate(self.replaced):
            log_decision(ctx, "renew", i, n, {"replacement_rate": self.replacement_rate,
                                              "utility_mean": float(stats.utility(i).mean())})
        super().after_task(ctx)

    def get_extra_state(self) -> dict:
        return {"renewal": self.renewal.state()}

    def set_extra_state(self, state: dict) -> None:
        self.renewal.load(state["renewal"])
