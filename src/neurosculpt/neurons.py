"""Spiking neuron layers operating on time-major ``[T, B, ...]`` tensors.

All neurons start from zero membrane potential at every forward call, so a layer holds no state
between calls. Spiking recurrences run through :func:`neurosculpt.kernels.lif_sequence`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from neurosculpt import kernels
from neurosculpt.surrogate import get_surrogate

RESETS: tuple[str, ...] = ("zero", "subtract")


def _decay(beta: float | None, tau: float | None, dt: float) -> float:
    """Decay factor from ``beta`` or from ``tau`` via forward Euler, ``beta = 1 - dt / tau``."""
    if beta is not None and tau is not None:
        raise ValueError("give either beta or tau, not both")
    if not dt > 0.0:
        raise ValueError(f"dt must be > 0, got {dt}")
    if tau is not None:
        if not tau >= dt:
            raise ValueError(f"tau must be >= dt so that beta = 1 - dt/tau >= 0, got tau={tau}")
        beta = 1.0 - dt / tau
    elif beta is None:
        beta = 0.9
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must lie in [0, 1], got {beta}")
    return float(beta)


def _state(current: Tensor) -> Tensor:
    """Membranes integrate in float32 when the matrix products ran in a 16-bit type
    (``--precision bf16``): summing over time in bfloat16 would lose small currents."""
    return current.float() if current.dtype in (torch.bfloat16, torch.float16) else current


def _scalar(module: nn.Module, name: str, value: float, learn: bool) -> None:
    """Store ``value`` as a learnable scalar parameter or as a buffer (kept in ``state_dict``)."""
    tensor = torch.tensor(float(value))
    if learn:
        module.register_parameter(name, nn.Parameter(tensor))
    else:
        module.register_buffer(name, tensor)


def _tau(beta: float, dt: float) -> float:
    """Inverse of the Euler mapping: ``tau = dt / (1 - beta)`` (infinite for a pure integrator)."""
    return math.inf if beta >= 1.0 else dt / (1.0 - beta)


class LIF(nn.Module):
    """Leaky integrate-and-fire neurons with surrogate gradients (Neftci et al. 2019).

    Per step: ``v = beta * v + I``; ``s = H(v - threshold)``; then, in the same step, either
    ``v = reset_value`` where ``s = 1`` (``reset="zero"``) or ``v = v - threshold``
    (``reset="subtract"``). The reset is detached from the autograd graph.

    Give ``beta`` or ``tau`` (not both; default ``beta = 0.9``). With ``tau``,
    ``beta = 1 - dt / tau``: the forward Euler step of NIR's LIF node
    ``tau dv/dt = (v_leak - v) + r I`` with ``v_leak = 0``, which reads
    ``v = beta v + (dt / tau) r I``. Hence this layer with ``reset="zero"`` is exactly a NIR
    ``LIF(tau, r=1, v_leak=0, v_threshold=threshold, v_reset=reset_value)`` whose incoming
    ``Affine`` weights and bias are ours multiplied by ``tau / dt`` (equivalently ``r = tau / dt``
    with unscaled weights). Reset by subtraction has no NIR equivalent.

    Learnable ``beta``/``threshold`` are scalar parameters (``beta`` is clamped to ``[0, 1]`` in
    the forward pass, which stops its gradient outside that range); fixed ones are buffers.
    """

    def __init__(
        self,
        beta: float | None = None,
        *,
        tau: float | None = None,
        dt: float = 1.0,
        threshold: float = 1.0,
        reset: str = "zero",
        reset_value: float = 0.0,
        surrogate: str = "fast-sigmoid",
        slope: float | None = None,
        learn_beta: bool = False,
        learn_threshold: bool = False,
    ) -> None:
        super().__init__()
        if reset not in RESETS:
            raise ValueError(f"unknown reset {reset!r}; valid: {', '.join(RESETS)}")
        self.dt = float(dt)
        self.reset = reset
        self.reset_value = float(reset_value)
        self.surrogate = get_surrogate(surrogate, slope)
        _scalar(self, "beta", _decay(beta, tau, self.dt), learn_beta)
        _scalar(self, "threshold", threshold, learn_threshold)

    @property
    def tau(self) -> float:
        """Membrane time constant equivalent to ``beta`` under forward Euler with step ``dt``."""
        return _tau(float(self.beta.detach().clamp(0.0, 1.0)), self.dt)

    def _params(self) -> tuple[float | Tensor, float | Tensor, float | None]:
        """Decay, threshold and kernel reset value; plain floats unless they are learned."""
        beta = self.beta.clamp(0.0, 1.0) if self.beta.requires_grad else float(self.beta)
        thr = self.threshold if self.threshold.requires_grad else float(self.threshold)
        return beta, thr, None if self.reset == "subtract" else self.reset_value

    def forward(self, current: Tensor) -> Tensor:
        """Spikes ``[T, B, ...]`` (0/1 floats) for input current ``[T, B, ...]``."""
        beta, thr, reset_value = self._params()
        return kernels.lif_sequence(_state(current), beta, thr, reset_value, self.surrogate)

    def membrane(self, current: Tensor) -> tuple[Tensor, Tensor]:
        """Spikes and the pre-reset membrane potential ``[T, B, ...]`` (for readouts and tests).

        Spikes come from :meth:`forward`; the membrane is replayed with a plain loop using those
        (detached) spikes for the reset, so both stay consistent and differentiable.
        """
        current = _state(current)
        spikes = self.forward(current)
        beta, thr, reset_value = self._params()
        v = torch.zeros_like(current[0])
        trace = []
        for t in range(current.shape[0]):
            v = beta * v + current[t]
            trace.append(v)
            s = spikes[t].detach()
            v = v - s * thr if reset_value is None else v * (1.0 - s) + s * reset_value
        return spikes, torch.stack(trace)

    def extra_repr(self) -> str:
        text = (
            f"beta={float(self.beta.detach()):.4g}, "
            f"threshold={float(self.threshold.detach()):.4g}, "
            f"reset={self.reset!r}"
        )
        if self.reset == "zero" and self.reset_value != 0.0:
            text += f", reset_value={self.reset_value:.4g}"
        if self.dt != 1.0:
            text += f", dt={self.dt:.4g}"
        text += f", surrogate={self.surrogate.name}({self.surrogate.slope:.4g})"
        if self.beta.requires_grad:
            text += ", learn_beta=True"
        if self.threshold.requires_grad:
            text += ", learn_threshold=True"
        return text


class IF(LIF):
    """Integrate-and-fire neurons: :class:`LIF` with ``beta = 1`` (no leak).

    Maps to a NIR ``IF(r, v_threshold)`` node (``dv/dt = r I``) with ``r = 1 / dt``.
    """

    def __init__(
        self,
        threshold: float = 1.0,
        *,
        dt: float = 1.0,
        reset: str = "zero",
        reset_value: float = 0.0,
        surrogate: str = "fast-sigmoid",
        slope: float | None = None,
        learn_threshold: bool = False,
    ) -> None:
        super().__init__(
            1.0,
            dt=dt,
            threshold=threshold,
            reset=reset,
            reset_value=reset_value,
            surrogate=surrogate,
            slope=slope,
            learn_threshold=learn_threshold,
        )


class LI(nn.Module):
    """Leaky integrator readout ``v = beta * v + I`` returning the membrane ``[T, B, ...]``.

    ``beta``/``tau``/``dt`` follow :class:`LIF` (forward Euler of NIR's ``LI`` node with
    ``r = 1`` and incoming weights scaled by ``tau / dt``).
    """

    def __init__(
        self,
        beta: float | None = None,
        *,
        tau: float | None = None,
        dt: float = 1.0,
        learn_beta: bool = False,
    ) -> None:
        super().__init__()
        self.dt = float(dt)
        _scalar(self, "beta", _decay(beta, tau, self.dt), learn_beta)

    @property
    def tau(self) -> float:
        """Time constant equivalent to ``beta`` under forward Euler with step ``dt``."""
        return _tau(float(self.beta.detach().clamp(0.0, 1.0)), self.dt)

    def forward(self, current: Tensor) -> Tensor:
        """Membrane potential ``[T, B, ...]`` for input current ``[T, B, ...]``."""
        beta = self.beta.clamp(0.0, 1.0) if self.beta.requires_grad else float(self.beta)
        current = _state(current)
        v = torch.zeros_like(current[0])
        trace = []
        for t in range(current.shape[0]):
            v = beta * v + current[t]
            trace.append(v)
        return torch.stack(trace)

    def extra_repr(self) -> str:
        text = f"beta={float(self.beta.detach()):.4g}"
        if self.dt != 1.0:
            text += f", dt={self.dt:.4g}"
        return text + (", learn_beta=True" if self.beta.requires_grad else "")


NEURONS: dict[str, type[LIF]] = {"lif": LIF, "if": IF}


def make_neuron(kind: str, **kwargs: object) -> nn.Module:
    """Build a spiking neuron layer by name (``"lif"`` or ``"if"``), e.g. from a config.

    For ``"if"`` the leak options ``beta``/``tau`` are dropped (its ``beta`` is always 1), so one
    config can switch kinds; ``learn_beta=True`` with ``"if"`` is contradictory and raises.
    """
    if kind not in NEURONS:
        raise ValueError(f"unknown neuron kind {kind!r}; valid: {', '.join(NEURONS)}")
    if kind == "if":
        if kwargs.pop("learn_beta", False):
            raise ValueError("learn_beta=True needs a leaky neuron; IF has beta fixed to 1")
        kwargs.pop("beta", None)
        kwargs.pop("tau", None)
    return NEURONS[kind](**kwargs)
