"""Shared pieces of the data loaders: the error type, the split container and the cache folder."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch


class DataError(ValueError):
    """A data set is missing, corrupt or could not be fetched.

    Subclasses ``ValueError`` so callers that already guard against bad input catch it too;
    the message always names the file or places involved so the user can act on it.
    """


@dataclass(frozen=True)
class ArraySplit:
    """One split of a data set held fully in memory.

    ``x`` is float32 with the sample axis first, ``y`` holds int64 class labels and ``meta``
    carries extra per-sample int64 tensors (e.g. speaker ids) aligned with ``y``.
    """

    x: torch.Tensor
    y: torch.Tensor
    meta: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.x.dtype != torch.float32:
            raise ValueError(f"x must be float32, got {self.x.dtype}")
        if self.y.dtype != torch.int64 or self.y.dim() != 1:
            shape = tuple(self.y.shape)
            raise ValueError(f"y must be a 1-D int64 tensor, got {self.y.dtype} {shape}")
        if self.x.shape[0] != self.y.shape[0]:
            raise ValueError(f"x has {self.x.shape[0]} samples but y has {self.y.shape[0]}")
        for key, value in self.meta.items():
            if value.shape[:1] != self.y.shape:
                raise ValueError(f"meta[{key!r}] has {value.shape[0]} rows, expected {len(self)}")

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def select(self, index: torch.Tensor | Sequence[int]) -> ArraySplit:
        """Return the samples picked by an index or boolean mask, e.g. the classes of one task."""
        idx = torch.as_tensor(index)
        if idx.dtype == torch.bool:
            idx = idx.nonzero().flatten()
        return ArraySplit(self.x[idx], self.y[idx], {k: v[idx] for k, v in self.meta.items()})


def cache_dir(name: str | None = None) -> Path:
    """Folder where downloads land: ``$NEUROSCULPT_CACHE``, else the XDG cache, else ``~/.cache``.

    The folder is not created here so that merely searching for data never touches the disk.
    """
    override = os.environ.get("NEUROSCULPT_CACHE")
    if override:
        base = Path(override).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "neurosculpt"
    return base / name if name else base


def env_dir(var: str) -> Path | None:
    """Path named by an environment variable, or None when it is unset or empty."""
    value = os.environ.get(var)
    return Path(value).expanduser() if value else None
