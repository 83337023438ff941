"""Tiny generated streams shared by several test modules."""

from __future__ import annotations

import torch

import neurosculpt


def clusters(n_tasks: int, scenario: str, per_class: int = 30, dim: int = 12, seed: int = 0,
             shape: tuple[int, ...] | None = None):
    """Two Gaussian clusters per task (well separated, overlapping a little across tasks);
    ``shape`` presents each sample's ``dim`` values as an image ``[C, H, W]`` or a sequence
    ``[tokens, features]``."""
    gen = torch.Generator().manual_seed(seed)
    n_classes = 2 * n_tasks
    centers = torch.randn(n_classes, dim, generator=gen) * 3.0

    def sample(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n_classes).repeat_interleave(n)
        x = centers[y] + torch.randn(len(y), dim, generator=gen)
        return x.view(len(y), *(shape or (dim,))), y

    (x, y), (xt, yt) = sample(per_class), sample(per_class // 2)
    tasks = [[2 * k, 2 * k + 1] for k in range(n_tasks)]
    return neurosculpt.from_tensors(x, y, xt, yt, tasks, scenario=scenario)
