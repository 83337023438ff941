"""The neuroplasticity controller and the unit-level rules it shares with the baselines.

- :func:`apply_reinit`, :func:`apply_grow`, :func:`apply_remove`: the unit operations of
  :mod:`neurosculpt.plasticity.structure` as plasticity rules use them, with the running
  statistics they need (the statistics follow through the resize journal);
- :class:`Renewal`: continual backprop's selection of mature, lowest-utility units at rate rho.

Every rule touches only units no task owns
(:func:`~neurosculpt.plasticity.structure.free_units`), so consolidated subnetworks (PackNet, the
development cycle) are never changed.

:class:`Controller` decides from the signals of :mod:`neurosculpt.plasticity.signals` when to
renew, reinitialise, grow or prune, within a per-layer unit budget, and logs every decision
with the signal values that triggered it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..network import PlasticNetwork
from .signals import Monitor, dormant_scores, effective_rank, log_decision
from .structure import budgets, grow_units, hidden_layers, reinit_units, remove_units

ACTIONS = ("renew", "reinit", "grow", "prune")


# --- structural operations ---------------------------------------------------------------------


class Renewal:
    """Continual backprop's replacement schedule (Dohare et al. 2024, Alg. 1), per hidden layer.

    Every step ``rate`` times the number of eligible units (mature: older than ``maturity``
    steps; free) accumulates; whenever the sum passes an integer, that many of the
    lowest-utility eligible units are returned for reinitialisation. The eligible count is
    recounted every ``refresh`` calls and after every replacement (units maturing in between are
    counted up to ``refresh`` updates late), which saves a handful of tensor operations per step.
    With ``period > 1`` replacements are made only every ``period``-th call, in small batches
    (Dohare et al. replace as soon as the sum passes one; a reinitialisation costs about forty
    small tensor operations, so batching them keeps the cost of renewal low).
    """

    def __init__(self, rate: float, maturity: int, refresh: int = 10, period: int = 1) -> None:
        if rate < 0 or maturity < 0 or period < 1:
            raise ValueError("replacement rate and maturity must be >= 0, period >= 1")
        self.rate, self.maturity, self.refresh = rate, maturity, max(int(refresh), 1)
        self.period = int(period)
        self.carry: list[float] = []
        self._eligible: list[int | None] = []
        self._calls = 0

    def start(self, n_layers: int) -> None:
        """At every task start: match the number of layers, recount everything."""
        self.carry = (self.carry + [0.0] * n_layers)[:n_layers]
        self._eligible = [None] * n_layers
        self._calls = 0

    def _mask(self, monitor: Monitor, model: PlasticNetwork, i: int) -> Tensor:
        stats = monitor.stats
        stats.follow(model)
        return (stats.age(i) > self.maturity) & monitor.free_units(model, i)

    def select(self, monitor: Monitor, model: PlasticNetwork,
               steps: int = 1) -> list[tuple[int, Tensor]]:
        """Advance ``steps`` steps; return ``(layer, units)`` to reinitialise now."""
        if self.rate <= 0:
            return []
        recount = self._calls % self.refresh == 0
        act = (self._calls + 1) % self.period == 0
        self._calls += 1
        out = []
        for i in range(len(self.carry)):
            if model.units(i).fixed:
                continue
            if recount or self._eligible[i] is None:
                self._eligible[i] = int(self._mask(monitor, model, i).sum())
            self.carry[i] += self.rate * steps * self._eligible[i]
            k = int(self.carry[i])
            if k == 0 or not act:
                continue
            self.carry[i] -= k
            eligible = self._mask(monitor, model, i)
            idx = torch.nonzero(eligible).flatten()
            k = min(k, len(idx))
            if k == 0:
                continue
            lowest = torch.topk(-monitor.stats.utility(i, idx), k).indices
            out.append((i, idx[lowest].sort().values))
            self._eligible[i] = None
        return out

    def state(self) -> dict:
        return {"carry": self.carry}

    def load(self, state: dict) -> None:
        self.carry = [float(c) for c in state["carry"]]


def apply_reinit(monitor: Monitor, model: PlasticNetwork, layer: int, units: Tensor,
                 optimizer: torch.optim.Optimizer | None, bias_correction: bool = True,
                 optimizer_reset: str = "first") -> None:
    """:func:`~neurosculpt.plasticity.structure.reinit_units` (with Dohare et al.'s bias
    correction from the running mean activity); the statistics of the units start over."""
    monitor.stats.follow(model)
    mean_act = None
    if bias_correction:
        mean_act = model.plastic_layers[layer].weight.new_zeros(model.plastic_layers[layer].n_out)
        mean_act[units] = monitor.stats.mean_activity(layer, units)
    reinit_units(model, layer, units, optimizer, mean_act, optimizer_reset)
    monitor.stats.follow(model)


def apply_grow(monitor: Monitor, model: PlasticNetwork, layer: int, n: int,
               optimizer: torch.optim.Optimizer | None) -> Tensor:
    """:func:`~neurosculpt.plasticity.structure.grow_units`; the new units' statistics start
    fresh."""
    monitor.stats.follow(model)
    new = grow_units(model, layer, n, optimizer)
    monitor.stats.follow(model)
    return new


def apply_remove(monitor: Monitor, model: PlasticNetwork, layer: int, units: Tensor,
                 optimizer: torch.optim.Optimizer | None, bias_correction: bool = True) -> None:
    """:func:`~neurosculpt.plasticity.structure.remove_units` (with the bias correction); the
    kept units keep their statistics."""
    monitor.stats.follow(model)
    mean_act = monitor.stats.mean_activity(layer) if bias_correction else None
    remove_units(model, layer, units, optimizer, mean_act)
    monitor.stats.follow(model)


def parse_actions(actions: str | list | tuple | None) -> list[str]:
    if actions is None:
        return []
    if isinstance(actions, str):
        actions = [a for a in actions.replace("+", ",").split(",") if a]
    unknown = sorted(set(actions) - set(ACTIONS) - {"none"})
    if unknown:
        raise ValueError(f"unknown action(s) {unknown}; valid: {', '.join(ACTIONS)}, none")
    return [a for a in ACTIONS if a in actions]


# --- the controller ----------------------------------------------------------------------------


class Controller(nn.Module):
    """Signal-driven neuroplasticity within a unit budget (the ``neuroplastic`` strategy).

    Rules, per hidden layer, each an action that can be switched off (``actions``):

    - ``renew``: continual backprop's renewal of mature, lowest-utility units at rate
      ``replacement_rate`` per step (Dohare et al. 2024), which keeps a supply of fresh units;
      replacements are made in small batches every ``renew_every`` steps (see :class:`Renewal`);
    - ``reinit``, every ``check_every`` steps: ReDo (Sokar et al. 2023) on the running averages:
      mature units whose dormancy score is ``<= tau`` are reinitialised at once;
    - ``grow``, every ``check_every`` steps: when the loss is on a plateau, the task is not yet
      learned (running batch accuracy below ``solved``), and a layer has fewer than ``dormant_max``
      of its units dormant (it is using its capacity, recycling will not help), add ``grow`` units
      to it, up to the budget (dropin; Li, Milling & Schuller 2025); across tasks, the same when
      the previous task ended unlearned (its running batch accuracy below ``solved``);
    - ``prune`` (off by default), at the end of a task: apoptosis of mature free units that were
      active on fewer than 1% of inputs or whose utility is below ``prune_utility`` times the
      layer mean, never below ``min_units``. Whatever ``actions`` say, a layer above its
      budget (grown by another strategy) loses its lowest-utility free units.

    Why ``prune`` is off by default: on random-label streams, removing idle units at every task
    end and growing new ones later did worse than renewing them in place (FSDD, 50 tasks: last-10
    new-task accuracy 0.755 with it, 0.987 without; digits: 0.980 and 0.984; docs/plasticity.md).
    It bounds the size from below the budget when compute matters more than accuracy.

    The budget is ``max_units`` (see :func:`budgets`); the controller never grows a layer above
    it. The layer sizes may also be changed by another strategy (the development cycle); the
    running statistics follow (see :class:`~neurosculpt.plasticity.signals.UnitStats`).
    """

    transient = ("renewed",)  # units renewed since the last log entry; reset by before_task

    def __init__(self, max_units: int | float | list | None = None, min_units: int = 8,
                 replacement_rate: float = 1e-3, maturity: int = 100, tau: float = 0.025,
                 check_every: int = 100, grow: int = 8, dormant_max: float = 0.1,
                 solved: float = 0.99, prune_utility: float = 0.01, renew_every: int = 50,
                 utility: str = "centered", optimizer_reset: str = "first",
                 actions: str | list | None = ("renew", "reinit", "grow"),
                 decay: float = 0.99, every: int = 4, log_every: int = 1000, probe: int = 256,
                 plateau_window: int = 100, plateau_tol: float = 0.01,
                 plateau_patience: int = 3) -> None:
        super().__init__()
        self.max_units = max_units
        self.min_units = min_units
        self.replacement_rate = replacement_rate
        self.maturity = maturity
        self.tau = tau
        self.check_every = check_every
        self.grow_n = grow
        self.dormant_max = dormant_max
        self.solved = solved
        self.prune_utility = prune_utility
        self.optimizer_reset = optimizer_reset
        self.actions = parse_actions(actions)
        self.monitor = Monitor("neuroplastic", tau=tau, decay=decay, log_every=log_every,
                               probe=probe, every=every, utility=utility,
                               plateau_window=plateau_window,
                               plateau_tol=plateau_tol, plateau_patience=plateau_patience)
        self.budget: list[int] = []
        self.renewal = Renewal(replacement_rate, maturity,
                               period=max(1, round(renew_every / every)))
        self.renewed: list[int] = []
        self.accuracy = 0.0
        self.last_accuracy = 1.0

    # --- hooks ----------------------------------------------------------------------------------
    def before_task(self, ctx) -> None:
        model = ctx.model
        widths = model.hidden_sizes()
        if not self.budget:
            self.budget = budgets(self.max_units, model.initial_widths())
        self.renewal.start(len(widths))
        self.renewed = [0] * len(widths)
        self.accuracy = 0.0
        self.monitor.budget = list(self.budget)
        self.monitor.before_task(ctx)
        self._enforce_budget(ctx)
        if "grow" in self.actions and ctx.task_id > 0 and self.last_accuracy < self.solved:
            self._grow_unlearned(ctx)

    def after_backward(self, ctx) -> None:
        self.monitor.after_backward(ctx)

    def after_step(self, ctx) -> None:
        monitor, model = self.monitor, ctx.model
        updated = monitor.after_step(ctx)
        if updated:  # running batch accuracy over about the last 100 steps
            correct = ctx.batch_correct / len(ctx.y)
            self.accuracy += (1.0 - 0.99 ** monitor.every) * (correct - self.accuracy)
        if "renew" in self.actions and updated:
            for i, units in self.renewal.select(monitor, model, monitor.every):
                apply_reinit(monitor, model, i, units, ctx.optimizer,
                             optimizer_reset=self.optimizer_reset)
                self.renewed[i] += len(units)
        if self.check_every and (ctx.step + 1) % self.check_every == 0:
            self._check(ctx)

    def after_task(self, ctx) -> None:
        self.last_accuracy = self.accuracy
        self._log_renewals(ctx)
        self.monitor.invalidate()
        if "prune" in self.actions:
            self._apoptosis(ctx)
        self._enforce_budget(ctx)
        self.monitor.after_task(ctx)

    # --- decisions ------------------------------------------------------------------------------
    def _check(self, ctx) -> None:
        monitor, model = self.monitor, ctx.model
        stats = monitor.stats
        stats.follow(model)
        plateau = monitor.plateau.plateau
        grew = False
        self._log_renewals(ctx)
        for i in hidden_layers(model):
            n = model.plastic_layers[i].n_out
            scores = dormant_scores(stats.mean_activity(i))
            mature = (stats.age(i) > self.maturity) & monitor.free_units(model, i)
            dormant = (scores <= self.tau) & mature
            dormant_frac = float((scores <= self.tau).float().mean())
            if "reinit" in self.actions and bool(dormant.any()):
                units = torch.nonzero(dormant).flatten()
                apply_reinit(monitor, model, i, units, ctx.optimizer,
                             optimizer_reset=self.optimizer_reset)
                log_decision(ctx, "reinit", i, len(units), {
                    "dormant_fraction": dormant_frac, "tau": self.tau,
                    "max_score": float(scores[units].max())})
            room = self.budget[i] - n
            if ("grow" in self.actions and plateau and room > 0
                    and self.accuracy < self.solved and dormant_frac <= self.dormant_max):
                k = min(self.grow_n, room)
                why = {"plateau": True, "loss_window": monitor.plateau.last,
                       "best_window": monitor.plateau.best, "batch_accuracy": self.accuracy,
                       "dormant_fraction": dormant_frac, "units": n, "budget": self.budget[i]}
                why["erank_fraction"] = self._erank_fraction(ctx, i)
                apply_grow(monitor, model, i, k, ctx.optimizer)
                log_decision(ctx, "grow", i, k, why)
                grew = True
        if grew:
            monitor.plateau.reset()

    def _log_renewals(self, ctx) -> None:
        """One ``renew`` entry per layer for the units renewed since the last one."""
        for i, n in enumerate(self.renewed):
            if n:
                log_decision(ctx, "renew", i, n, {
                    "replacement_rate": self.replacement_rate,
                    "utility_mean": float(self.monitor.stats.utility(i).mean())})
                self.renewed[i] = 0

    def _grow_unlearned(self, ctx) -> None:
        """Across tasks: the last task ended unlearned (running batch accuracy below ``solved``),
        so every layer with room and few dormant units gets ``grow`` more units."""
        monitor, model = self.monitor, ctx.model
        for i in hidden_layers(model):
            n = model.plastic_layers[i].n_out
            room = self.budget[i] - n
            dormant_frac = float((dormant_scores(monitor.stats.mean_activity(i)) <= self.tau)
                                 .float().mean())
            if room <= 0 or dormant_frac > self.dormant_max:
                continue
            k = min(self.grow_n, room)
            why = {"previous_task_accuracy": self.last_accuracy, "solved": self.solved,
                   "dormant_fraction": dormant_frac, "units": n, "budget": self.budget[i],
                   "erank_fraction": self._erank_fraction(ctx, i)}
            apply_grow(monitor, model, i, k, ctx.optimizer)
            log_decision(ctx, "grow", i, k, why)

    def _erank_fraction(self, ctx, i: int) -> float:
        x = self.monitor.probe(ctx)
        if x is None or i >= len(x):
            return math.nan
        return effective_rank(x[i]) / x[i].shape[1]

    def _apoptosis(self, ctx) -> None:
        monitor, model = self.monitor, ctx.model
        stats = monitor.stats
        stats.follow(model)
        for i in hidden_layers(model):
            n = model.plastic_layers[i].n_out
            util = stats.utility(i)
            active = stats.active_fraction(i)
            mature = (stats.age(i) > self.maturity) & monitor.free_units(model, i)
            mean_util = float(util.mean())
            useless = mature & ((active < 0.01) | (util < self.prune_utility * mean_util))
            k = min(int(useless.sum()), max(n - self.min_units, 0))
            if k == 0:
                continue
            idx = torch.nonzero(useless).flatten()
            units = idx[torch.topk(-util[idx], k).indices].sort().values
            why = {"dead_fraction": float((active < 0.01).float().mean()),
                   "low_utility_fraction": float((util < self.prune_utility * mean_util)
                                                 .float().mean()),
                   "utility_mean": mean_util, "units": n}
            apply_remove(monitor, model, i, units, ctx.optimizer)
            log_decision(ctx, "prune", i, k, why)

    def _enforce_budget(self, ctx) -> None:
        monitor, model = self.monitor, ctx.model
        monitor.stats.follow(model)
        for i in hidden_layers(model):
            n = model.plastic_layers[i].n_out
            excess = n - self.budget[i]
            if excess <= 0:
                continue
            free = torch.nonzero(monitor.free_units(model, i)).flatten()
            k = min(excess, len(free))
            if k:
                util = monitor.stats.utility(i)[free]
                units = free[torch.topk(-util, k).indices].sort().values
                apply_remove(monitor, model, i, units, ctx.optimizer)
            log_decision(ctx, "prune", i, k, {"over_budget": excess, "units": n,
                                              "budget": self.budget[i],
                                              "free_units": len(free)})

    # --- checkpoints ----------------------------------------------------------------------------
    def get_extra_state(self) -> dict:
        return {"budget": self.budget, "renewal": self.renewal.state(), "accuracy": self.accuracy,
                "last_accuracy": self.last_accuracy}

    def set_extra_state(self, state: dict) -> None:
        self.budget = [int(b) for b in state["budget"]]
        self.renewal.load(state["renewal"])
        self.accuracy = float(state["accuracy"])
        self.last_accuracy = float(state["last_accuracy"])

