"""ReDo, recycling dormant neurons (Sokar et al. 2023, "The Dormant Neuron Phenomenon in Deep
Reinforcement Learning", ICML).

Every ``every`` steps each hidden unit's score ``s_i = E|h_i| / mean_k E|h_k|`` (their Eq. 1) is
measured on a batch of the current task (here a fixed probe of ``probe`` training inputs rather
than the last sampled batch, which is small and noisy); units with ``s_i <= tau`` are
tau-dormant and are reinitialised: incoming weights from the initial distribution, outgoing
weights zero, optimizer state of those entries reset (by default the first moment only, see
:func:`neurosculpt.plasticity.controller.reset_optimizer_state`).
"""

from __future__ import annotations

import torch

from ..loop import Context
from ..plasticity.controller import apply_reinit
from ..plasticity.signals import Monitor, dormant_scores, log_decision
from ..plasticity.structure import hidden_layers
from .base import MonitoredStrategy


class ReDo(MonitoredStrategy):
    """Periodic reinitialisation of tau-dormant units; also logs the plasticity signals.

    Args:
        tau: a unit whose normalised mean activity is at most ``tau`` is dormant (Sokar et al.
            2023).
        every: steps between dormancy checks and reinitialisations.
        probe: inputs of the forward pass that measures dormancy (and the signals).
        optimizer_reset: optimizer state of reinitialised units: ``first`` (zero the first moment /
            momentum, keep Adam's second), ``all`` or ``none``.
        log_every: steps between snapshots of the plasticity signals in results.json (0: only at the
            end of each task).
        decay: decay of the running statistics of the logged signals.
    """

    name = "redo"

    def __init__(self, tau: float = 0.1, every: int = 1000, probe: int = 256,
                 optimizer_reset: str = "first", log_every: int = 1000,
                 decay: float = 0.99) -> None:
        super().__init__()
        if every < 1 or probe < 1:
            raise ValueError("every and probe must be >= 1")
        self.hparams = {"tau": tau, "every": every, "probe": probe,
                        "optimizer_reset": optimizer_reset, "log_every": log_every,
                        "decay": decay}
        self.optimizer_reset = optimizer_reset
        self.tau = tau
        self.every = every
        self.monitor = Monitor(self.name, tau=tau, decay=decay, log_every=log_every, probe=probe)

    def after_step(self, ctx: Context) -> None:
        super().after_step(ctx)
        if (ctx.step + 1) % self.every:
            return
        model = ctx.model
        activity = self.monitor.probe(ctx)
        resizable = hidden_layers(model)
        for i, a in enumerate(activity or []):
            if i not in resizable:
                continue
            scores = dormant_scores(a.mean(0))
            dormant = (scores <= self.tau) & self.monitor.free_units(model, i)
            if not bool(dormant.any()):
                continue
            units = torch.nonzero(dormant).flatten()
            apply_reinit(self.monitor, model, i, units, ctx.optimizer, bias_correction=False,
                         optimizer_reset=self.optimizer_reset)
            log_decision(ctx, "reinit", i, len(units), {
                "dormant_fraction": float((scores <= self.tau).float().mean()), "tau": self.tau})
