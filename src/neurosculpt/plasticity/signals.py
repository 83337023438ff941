"""Learning signals of each hidden layer: how much plasticity the network has left.

Two kinds of measurement, both taken from the hidden populations' outputs that the model keeps
when ``model.record_activity`` is on (``model.activity``: one ``[T, B, ...]`` tensor per hidden
layer, spikes or ReLU activations):

- running per-unit statistics updated after every (or every ``every``-th) optimizer step from
  the current batch (:class:`UnitStats`, a few vector operations per layer): mean activity, the
  fraction of inputs a unit responds to, the contribution utility of Dohare et al. (2024,
  Nature, Eq. 1) or its mean-corrected variant, the unit's age, and every layer's gradient norm;
- periodic snapshots (:func:`layer_signals`) on a fixed probe batch of the current task: the
  tau-dormant fraction of Sokar et al. (2023), units active on fewer than 1% of inputs, the
  effective rank of the representation (Roy & Vetterli 2007) and the srank of Kumar et al.,
  mean weight magnitude, spare capacity and, for spiking layers, firing rates and silent units.

A loss-plateau detector (:class:`PlateauDetector`) watches the training loss. :class:`Monitor`
ties the three together for a strategy and writes snapshots into
``ctx.record["plasticity"]["signals"]``.

A unit is an output neuron of a hidden plastic layer (a channel for convolutions, whose activity
is averaged over space).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..layers import FREE
from ..network import PlasticNetwork, follow, recording
from ..validation import check_choice
from .structure import free_units, outgoing_weight


def unit_activity(h: Tensor) -> Tensor:
    """Per-sample mean |activity| of every unit: ``[T, B, N]`` or ``[T, B, C, H, W]`` -> ``[B, N]``.

    For spikes this is each unit's firing rate on each sample; for ReLU units (``T = 1``) the
    activation itself. Convolutional channels are averaged over space.
    """
    a = h.detach().abs()
    if a.dim() > 3:
        a = a.flatten(3).mean(3)
    return a.mean(0)


def effective_rank(features: Tensor, singular_values: Tensor | None = None) -> float:
    """Roy & Vetterli (2007): ``exp(H(p))`` with ``p_k = sigma_k / sum(sigma)`` the normalised
    singular values of the ``[samples, units]`` representation (as used by Dohare et al. 2024)."""
    s = torch.linalg.svdvals(features.double()) if singular_values is None else singular_values
    total = s.sum()
    if not total > 0:
        return 0.0
    p = s / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def srank(features: Tensor, delta: float = 0.01, singular_values: Tensor | None = None) -> int:
    """Kumar et al. (2021, 2023): the smallest ``k`` whose top-``k`` singular values hold
    ``1 - delta`` of their sum."""
    s = torch.linalg.svdvals(features.double()) if singular_values is None else singular_values
    total = s.sum()
    if not total > 0:
        return 0
    cum = torch.cumsum(s, 0) / total
    return int(torch.searchsorted(cum, cum.new_tensor(1.0 - delta)).item()) + 1


def dormant_scores(mean_activity: Tensor) -> Tensor:
    """Sokar et al. (2023), Eq. 1: ``s_i = E|h_i| / mean_k E|h_k|``; a unit is tau-dormant when
    ``s_i <= tau``. A layer with no activity at all scores zero everywhere."""
    mean = mean_activity.mean()
    if not mean > 0:
        return torch.zeros_like(mean_activity)
    return mean_activity / mean


UTILITIES = ("contribution", "centered")


class UnitStats(nn.Module):
    """Running per-unit statistics of every hidden layer (exponential moving averages).

    Per layer ``i`` the buffer ``stats{i}`` ``[3, N]`` holds the running mean |activity|, the
    fraction of samples on which the unit was active and its contribution utility (Dohare et
    al. 2024, Eq. 1: ``u <- eta u + (1 - eta) |h| sum_k |w_ki|``); ``birth{i}`` holds the update
    (in training steps) at which each unit was created or reinitialised, so its age is
    ``steps - birth``; ``grad`` holds every plastic layer's running gradient norm. One update
    costs about ten small tensor operations per layer; an update may stand for several steps
    (the decay is then ``eta^steps``, so the time scale of the averages does not change).

    ``utility="centered"`` uses ``|h - E[h]|`` instead of ``|h|`` (the mean-corrected
    contribution of Dohare et al.'s code, ``zero_contribution``; ``E[h]`` here is the batch mean
    rather than their running mean): a unit whose output hardly varies is worth no more than a
    bias, which is where its mean goes on reinitialisation. For spiking layers this matters:
    saturated units that fire at every step have the highest plain contribution and carry no
    information.

    Deviation from Dohare et al.: the sums of |outgoing weights| are recomputed every
    ``out_every`` updates (and zeroed at once for reinitialised units), not after every step;
    weights move little in a few steps and this halves the cost of an update.

    Averages are read bias-corrected like Adam's moments, ``x / (1 - eta^age)``, as in Dohare et
    al.'s implementation. Whoever grows, removes or reinitialises units, the statistics follow
    through the model's resize journal (:meth:`follow`): grown and reinitialised units start
    fresh, kept units keep their history.
    """

    ROWS = {"act": 0, "active": 1, "util": 2}

    def __init__(self, decay: float = 0.99, out_every: int = 10,
                 utility: str = "contribution") -> None:
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}")
        check_choice("utility", utility, UTILITIES)
        self.decay = decay
        self._decay = torch.tensor(decay, dtype=torch.float64)
        self.centered = utility == "centered"
        self.out_every = max(int(out_every), 1)
        self.steps = 0
        self.updates = 0
        self._out: dict[int, Tensor] = {}
        self._serial: int | None = None

    def _put(self, key: str, value: Tensor) -> None:
        if key in self._buffers:
            self._buffers[key] = value
        else:
            self.register_buffer(key, value)

    def size(self, i: int) -> int | None:
        have = self._buffers.get(f"birth{i}")
        return None if have is None else len(have)

    def follow(self, model: PlasticNetwork) -> None:
        """Carry the buffers through the model's structural changes since the last call (the
        resize journal); layers seen for the first time, or after a checkpoint whose journal is
        gone, start from the model's current sizes."""
        resizes = [] if self._serial is None else model.resizes_since(self._serial)
        for r in resizes:
            i = r.layer
            if f"birth{i}" not in self._buffers:
                continue
            self._put(f"stats{i}", follow(self._buffers[f"stats{i}"], [r], units=i, axis=1,
                                          fill=0.0, reinit=True))
            self._put(f"birth{i}", follow(self._buffers[f"birth{i}"], [r], units=i,
                                          fill=self.steps, reinit=True))
            if r.kind == "reinit" and i in self._out:
                self._out[i][r.reset] = 0.0
            else:
                self._out.pop(i, None)
        self._serial = model.resize_serial
        device = model.plastic_layers[0].weight.device
        for i, n in enumerate(model.hidden_sizes()):
            if self.size(i) != n:
                self._put(f"stats{i}", torch.zeros(3, n, device=device))
                self._put(f"birth{i}", torch.full((n,), self.steps, dtype=torch.long,
                                                  device=device))
        n_layers = len(model.plastic_layers)
        if "grad" not in self._buffers or len(self._buffers["grad"]) != n_layers:
            self._put("grad", torch.zeros(n_layers, device=device))

    @torch.no_grad()
    def update(self, model: PlasticNetwork, activity: list[Tensor], steps: int = 1) -> None:
        """Fold one batch of hidden activity into the running averages, standing for ``steps``
        training steps. Hidden activity is non-negative (ReLU outputs or spikes), so |h| = h."""
        weight = 1.0 - self.decay ** steps
        self.follow(model)
        layers = model.plastic_layers
        for i, h in enumerate(activity[: len(layers) - 1]):
            if h.shape[2] != layers[i].n_out:
                continue  # recorded before another strategy resized the layer
            a = h[0] if h.shape[0] == 1 else h.mean(0)
            if a.dim() > 2:
                a = a.flatten(2).mean(2)
            stats = self._buffers[f"stats{i}"]
            out = self._out.get(i)
            if out is None or len(out) != a.shape[1] or self.updates % self.out_every == 0:
                out = self._out[i] = outgoing_weight(model, i)
            act = a.mean(0)
            contribution = (a - act).abs_().mean(0) if self.centered else act
            new = torch.stack([act, torch.sign(a).mean(0), contribution * out])
            stats.lerp_(new, weight)
        self.steps += steps
        self.updates += 1

    @torch.no_grad()
    def update_gradients(self, model: PlasticNetwork) -> None:
        """Fold the current gradient norm of every plastic layer into its running average."""
        norms = model.plastic_layers[0].weight.new_zeros(len(model.plastic_layers))
        for j, layer in enumerate(model.plastic_layers):
            grads = [p.grad for p in (layer.weight, layer.bias) if p.grad is not None]
            if grads:
                norms[j] = torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads]))
        if "grad" not in self._buffers or len(self._buffers["grad"]) != len(norms):
            self._put("grad", norms)
            return
        self._buffers["grad"].lerp_(norms, 1.0 - self.decay)

    def age(self, i: int) -> Tensor:
        """Training steps since each unit of layer ``i`` was created or reinitialised."""
        return self.steps - self._buffers[f"birth{i}"]

    def corrected(self, name: str, i: int, units: Tensor | None = None) -> Tensor:
        """Bias-corrected running average ``x / (1 - decay^age)`` (zero for age 0), of every
        unit of layer ``i`` or of ``units``."""
        birth = self._buffers[f"birth{i}"]
        value = self._buffers[f"stats{i}"][self.ROWS[name]]
        if units is not None:
            birth, value = birth[units], value[units]
        age = (self.steps - birth).double()
        correction = 1.0 - torch.pow(self._decay, age)
        value = value.double() / correction.clamp_min(1e-12)
        return value.masked_fill_(age <= 0, 0.0).float()

    def utility(self, i: int, units: Tensor | None = None) -> Tensor:
        return self.corrected("util", i, units)

    def mean_activity(self, i: int, units: Tensor | None = None) -> Tensor:
        return self.corrected("act", i, units)

    def active_fraction(self, i: int, units: Tensor | None = None) -> Tensor:
        return self.corrected("active", i, units)

    def gradient_norm(self, i: int) -> float:
        grad = self._buffers.get("grad")
        return float(grad[i]) if grad is not None and i < len(grad) else 0.0

    def clear_cache(self) -> None:
        """Drop the cached outgoing-weight sums (done at every task start, so a run resumed from
        a checkpoint recomputes them exactly when an uninterrupted run does)."""
        self._out = {}

    def get_extra_state(self) -> dict:
        return {"steps": self.steps, "updates": self.updates}

    def set_extra_state(self, state: dict) -> None:
        self.steps, self.updates = int(state["steps"]), int(state["updates"])
        self._out = {}
        self._serial = None


class PlateauDetector:
    """Flags a loss plateau: the mean loss of the last ``patience`` windows of ``window`` steps
    has not improved on the best earlier window by a relative ``tol``.

    A simple windowed form of the "reduce on plateau" rule; reset at every task start and after
    every growth decision (the loss needs time to react).
    """

    def __init__(self, window: int = 100, tol: float = 0.01, patience: int = 3) -> None:
        if window < 1 or patience < 1:
            raise ValueError("window and patience must be >= 1")
        self.window, self.tol, self.patience = window, tol, patience
        self.reset()

    def reset(self) -> None:
        self.total, self.count = 0.0, 0
        self.best = math.inf
        self.stale = 0
        self.last = math.nan

    def update(self, loss: float) -> bool:
        """Add one step's loss; return whether the loss is on a plateau now."""
        self.total += loss
        self.count += 1
        if self.count < self.window:
            return self.plateau
        self.last = self.total / self.count
        self.total, self.count = 0.0, 0
        if self.last < self.best * (1.0 - self.tol):
            self.best, self.stale = self.last, 0
        else:
            self.stale += 1
        return self.plateau

    @property
    def plateau(self) -> bool:
        return self.stale >= self.patience

    def state(self) -> dict:
        return {"total": self.total, "count": self.count, "best": _finite(self.best),
                "stale": self.stale, "last": _finite(self.last)}

    def load(self, state: dict) -> None:
        self.total, self.count = float(state["total"]), int(state["count"])
        self.best = math.inf if state["best"] is None else float(state["best"])
        self.stale = int(state["stale"])
        self.last = math.nan if state["last"] is None else float(state["last"])


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _round(x: float, digits: int = 4) -> float:
    return float(f"{x:.{digits}g}") if math.isfinite(x) else x


def probe_inputs(split, n: int) -> Tensor:
    """``n`` evenly spaced inputs of a split (no random numbers used): the probe batch."""
    size = len(split)
    idx = torch.linspace(0, size - 1, min(n, size), device="cpu").round().long()
    return split.get(idx)[0]


@torch.no_grad()
def probe_activity(model: PlasticNetwork, x: Tensor) -> list[Tensor]:
    """Hidden activity on ``x`` (``[B, N]`` per layer, see :func:`unit_activity`), measured in
    eval mode (no unit dropout).

    A pure measurement: the training batch's recorded activity, the mode and the global random
    state (a rate encoder draws spikes) are as before, so logging more or less often never
    changes training.
    """
    with recording(model, train=False), torch.random.fork_rng(devices=[]):
        model(x)
        return [unit_activity(h) for h in model.activity]


def layer_signals(model: PlasticNetwork, stats: UnitStats, probe: list[Tensor] | None, tau: float,
                  budget: list[int | None] | None = None) -> list[dict]:
    """One snapshot of every layer's signals (JSON-friendly, 4 significant digits).

    ``probe``: hidden activity on the probe batch (from :func:`probe_activity`); without it the
    dormant fractions come from the running averages and the ranks are left out.
    """
    spiking = model.spiking
    out = []
    n_hidden = len(model.plastic_layers) - 1
    for i, layer in enumerate(model.plastic_layers):
        live = layer.mask
        weight = torch.where(layer.frozen, layer.frozen_weight, layer.weight.detach()).abs()[live]
        row: dict = {
            "layer": i,
            "units": layer.n_out,
            "weight_mag": _round(float(weight.mean()) if weight.numel() else 0.0),
            "grad_norm": _round(stats.gradient_norm(i)),
            "free_synapses": int((live & (layer.owner == FREE)).sum()),
            "closed_synapses": int((~live & (layer.owner == FREE)).sum()),
        }
        if i < n_hidden:
            row.update(_hidden_signals(model, stats, i, probe, tau, spiking))
            limit = budget[i] if budget is not None else None
            row["budget"] = limit
            row["headroom"] = None if limit is None else max(limit - layer.n_out, 0)
        out.append(row)
    return out


def _hidden_signals(model: PlasticNetwork, stats: UnitStats, i: int, probe: list[Tensor] | None,
                    tau: float, spiking: bool) -> dict:
    util = stats.utility(i) if stats.size(i) is not None else None
    row: dict = {"free_units": int(free_units(model, i).sum())}
    n = model.plastic_layers[i].n_out
    if util is not None and len(util) == n:
        row["utility_mean"] = _round(float(util.mean()))
        row["utility_min"] = _round(float(util.min()))
    if probe is not None and i < len(probe) and probe[i].shape[1] == n:
        a = probe[i]
        mean = a.mean(0)
        active = (a > 0).float().mean(0)
        row["dormant"] = _round(float((dormant_scores(mean) <= tau).float().mean()))
        row["dead"] = _round(float((active < 0.01).float().mean()))
        sv = torch.linalg.svdvals(a.double())
        row["erank"] = _round(effective_rank(a, sv))
        row["srank"] = srank(a, singular_values=sv)
        if spiking:
            row["firing_rate"] = _round(float(mean.mean()))
            row["silent"] = _round(float((a.sum(0) == 0).float().mean()))
    elif util is not None and len(util) == n:
        mean = stats.mean_activity(i)
        row["dormant"] = _round(float((dormant_scores(mean) <= tau).float().mean()))
        row["dead"] = _round(float((stats.active_fraction(i) < 0.01).float().mean()))
    return row


class Monitor(nn.Module):
    """The signals a strategy keeps: running statistics, the plateau detector and snapshots.

    A strategy calls :meth:`before_task`, :meth:`after_backward`, :meth:`after_step` and
    :meth:`after_task` from its hooks. Snapshots go into ``ctx.record["plasticity"]["signals"]``
    every ``log_every`` steps (0: only at the end of each task) and cost one forward pass over
    ``probe`` inputs and one SVD per layer. The running statistics are updated from every
    ``every``-th batch (1: every step, as in Dohare et al.), gradient norms every ``grad_every``,
    the sums of outgoing weights in the utility every ``out_every`` updates.

    A periodic snapshot due after step ``s`` describes the network between steps ``s`` and
    ``s + 1``: its step, loss and plateau flag are read at once, its layers are measured when the
    next step's gradients exist (every hook of step ``s`` has run and no weight has moved yet).
    A task that ends on a due step has only its end-of-task snapshot, which would repeat it.
    """

    transient = ("budget",)  # set by the owning strategy in every before_task

    def __init__(self, source: str, tau: float = 0.1, decay: float = 0.99, log_every: int = 1000,
                 probe: int = 256, every: int = 1, grad_every: int = 50,
                 utility: str = "contribution", out_every: int = 10, plateau_window: int = 100,
                 plateau_tol: float = 0.01, plateau_patience: int = 3) -> None:
        super().__init__()
        if every < 1 or grad_every < 0 or log_every < 0 or probe < 0:
            raise ValueError("every must be >= 1; grad_every, log_every and probe >= 0")
        self.source = source
        self.every = every
        self.tau = tau
        self.log_every = log_every
        self.probe_size = probe
        self.grad_every = grad_every
        self.stats = UnitStats(decay, out_every=out_every, utility=utility)
        self.plateau = PlateauDetector(plateau_window, plateau_tol, plateau_patience)
        self.budget: list[int | None] | None = None
        self._probe_x: Tensor | None = None
        self._free: dict[int, Tensor] = {}
        self._free_serial = 0
        self._due: dict | None = None

    def free_units(self, model: PlasticNetwork, i: int) -> Tensor:
        """:func:`free_units`, cached: ownership only changes between tasks (consolidation), so
        the cache is refreshed at every task start and whenever the layer is grown or removed
        from (the resize journal)."""
        if model.resize_serial != self._free_serial:
            try:
                for r in model.resizes_since(self._free_serial):
                    if r.kind != "reinit":
                        self._free.pop(r.layer, None)
            except RuntimeError:  # the journal moved on: forget everything
                self._free = {}
            self._free_serial = model.resize_serial
        cached = self._free.get(i)
        if cached is None or len(cached) != model.plastic_layers[i].n_out:
            cached = self._free[i] = free_units(model, i)
        return cached

    def invalidate(self) -> None:
        """Forget the cached free units of every layer (before decisions at the end of a task,
        when another strategy may just have consolidated; resizes reach the cache through the
        journal)."""
        self._free = {}

    def before_task(self, ctx) -> None:
        ctx.model.record_activity = True
        self._free = {}
        self._free_serial = ctx.model.resize_serial
        self.stats.clear_cache()
        self.stats.follow(ctx.model)
        self.plateau.reset()
        self._probe_x = probe_inputs(ctx.task.train, self.probe_size)
        self._due = None

    def after_backward(self, ctx) -> None:
        if self._due is not None:
            self.snapshot(ctx, self._due)
            self._due = None
        if self.grad_every and ctx.step % self.grad_every == 0:
            self.stats.update_gradients(ctx.model)

    def after_step(self, ctx) -> bool:
        """Update the running averages from this batch when due (return whether they were) and
        start a snapshot when one is due."""
        updated = ctx.step % self.every == 0 and bool(ctx.model.activity)
        if updated:
            self.stats.update(ctx.model, ctx.model.activity, self.every)
        self.plateau.update(ctx.batch_loss)
        if self.log_every and (ctx.step + 1) % self.log_every == 0:
            self._due = self._entry(ctx)
        return updated

    def after_task(self, ctx) -> None:
        self._due = None
        self.snapshot(ctx, end=True)

    def probe(self, ctx) -> list[Tensor] | None:
        if self._probe_x is None:
            self._probe_x = probe_inputs(ctx.task.train, self.probe_size)
        if self.probe_size and self._probe_x.device != ctx.device:
            self._probe_x = self._probe_x.to(ctx.device)
        return probe_activity(ctx.model, self._probe_x) if self.probe_size else None

    def _entry(self, ctx) -> dict:
        return {"step": ctx.step, "task": ctx.task_id, "by": self.source,
                "loss": _round(ctx.batch_loss), "plateau": self.plateau.plateau}

    def snapshot(self, ctx, entry: dict | None = None, end: bool = False) -> dict:
        """Measure every layer's signals now and append them, with ``entry`` (step, loss and
        plateau flag; the current ones by default), to the task's record."""
        self.stats.follow(ctx.model)
        entry = self._entry(ctx) if entry is None else entry
        entry["layers"] = layer_signals(ctx.model, self.stats, self.probe(ctx), self.tau,
                                        self.budget)
        if end:
            entry["end_of_task"] = True
        plasticity_record(ctx)["signals"].append(entry)
        return entry

    def get_extra_state(self) -> dict:
        return {"plateau": self.plateau.state()}

    def set_extra_state(self, state: dict) -> None:
        self.plateau.load(state["plateau"])


def plasticity_record(ctx) -> dict:
    """``ctx.record["plasticity"]`` with its two lists, created on first use."""
    record = ctx.record.setdefault("plasticity", {})
    record.setdefault("signals", [])
    record.setdefault("decisions", [])
    return record


def log_decision(ctx, action: str, layer: int | None, n: int, why: dict) -> dict:
    """Append one decision with the signal values that triggered it."""
    entry = {"step": ctx.step, "task": ctx.task_id, "action": action, "layer": layer, "n": n,
             "why": {k: (_round(v) if isinstance(v, float) else v) for k, v in why.items()}}
    plasticity_record(ctx)["decisions"].append(entry)
    return entry
