"""Devices a run may use: ``cpu`` (default), ``cuda`` / ``cuda:N`` and ``mps`` when present.

The model lives on the run's device; everything the loop, the strategies, the controller and the
metrics create follows the model (``tensor.device`` of what they work on), so no code below the
run names a device. Data sets stay in host memory and each batch is moved when it is drawn.
"""

from __future__ import annotations

import torch


def resolve_device(name: str | torch.device) -> torch.device:
    """``name`` as a ``torch.device``, or a one-line error saying what this machine has."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"device {name!r} is not a device name; valid: "
                         f"{', '.join(available_devices())}") from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r}: this torch build or machine has no CUDA GPU; "
                             f"available: {', '.join(available_devices())}")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}: only {torch.cuda.device_count()} CUDA "
                             f"device(s) present")
        return device
    if device.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ValueError(f"device {name!r}: MPS (Apple GPU) is not available here; "
                             f"available: {', '.join(available_devices())}")
        return device
    raise ValueError(f"device {name!r} is not supported; valid: cpu, cuda, cuda:N, mps")


def available_devices() -> list[str]:
    """The devices present here: ``cpu`` always, then ``cuda`` and ``mps`` when they work."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found.append("cuda")
    if hasattr(torch.backends, "mps") and torch.backends.mps.is_available():
        found.append("mps")
    return found
