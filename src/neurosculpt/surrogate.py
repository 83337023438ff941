"""Surrogate derivatives for the spike non-linearity.

The Heaviside step ``S = H(x)`` with ``x = v - threshold`` has a zero/undefined derivative, so
backpropagation through time replaces ``dS/dx`` by a smooth pseudo-derivative (Neftci, Mostafa &
Zenke 2019, "Surrogate gradient learning in spiking neural networks"). Each surrogate here is a
module-level function of ``x`` and one ``slope`` (steepness) parameter; a :class:`Surrogate` only
stores the name and the slope, so it can be written to and rebuilt from a plain config.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor


def fast_sigmoid(x: Tensor, slope: float) -> Tensor:
    """SuperSpike derivative ``1 / (1 + k|x|)^2`` (Zenke & Ganguli 2018, eq. 4; snnTorch k=25)."""
    return 1.0 / (1.0 + slope * x.abs()) ** 2


def arctan(x: Tensor, slope: float) -> Tensor:
    """Arctan derivative ``(a/2) / (1 + (pi/2 * a * x)^2)`` (Fang et al. 2021, PLIF; a=2)."""
    return (slope / 2.0) / (1.0 + (math.pi / 2.0 * slope * x) ** 2)


def triangle(x: Tensor, slope: float) -> Tensor:
    """Unit-area triangle ``k * max(0, 1 - k|x|)`` of half-width ``1/k``.

    This is the piecewise-linear pseudo-derivative of Esser et al. 2016 and Bellec et al. 2018
    (eq. 2 there is ``gamma * max(0, 1 - |x|)`` on threshold-normalised ``x``); we use the
    area-normalised form, so ``k = 1`` equals Bellec's with ``gamma = 1`` and threshold 1.
    """
    return slope * torch.clamp(1.0 - slope * x.abs(), min=0.0)


def sigmoid(x: Tensor, slope: float) -> Tensor:
    """Derivative of ``sigmoid(k x)``: ``k s (1 - s)`` (Zenke & Vogels 2021; snnTorch k=25)."""
    s = torch.sigmoid(slope * x)
    return slope * s * (1.0 - s)


_FUNCTIONS: dict[str, Callable[[Tensor, float], Tensor]] = {
    "fast-sigmoid": fast_sigmoid,
    "arctan": arctan,
    "triangle": triangle,
    "sigmoid": sigmoid,
}
_DEFAULT_SLOPES: dict[str, float] = {
    "fast-sigmoid": 25.0,
    "arctan": 2.0,
    "triangle": 1.0,
    "sigmoid": 25.0,
}
SURROGATES: tuple[str, ...] = tuple(_FUNCTIONS)


@dataclass(frozen=True)
class Surrogate:
    """A named surrogate derivative with its slope; calling it maps ``x = v - thr`` to ``dS/dx``."""

    name: str
    slope: float

    def __call__(self, x: Tensor) -> Tensor:
        return _FUNCTIONS[self.name](x, self.slope)


def get_surrogate(name: str, slope: float | None = None) -> Surrogate:
    """Build the surrogate ``name`` (one of :data:`SURROGATES`); ``slope=None`` uses its default."""
    if name not in _FUNCTIONS:
        raise ValueError(f"unknown surrogate {name!r}; valid names: {', '.join(SURROGATES)}")
    value = _DEFAULT_SLOPES[name] if slope is None else float(slope)
    if not value > 0.0:
        raise ValueError(f"surrogate slope must be > 0, got {value}")
    return Surrogate(name, value)
