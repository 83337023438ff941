"""A rotated-digits domain stream: the same ten digits in every task, each task's images turned
30 degrees further (the rotated-MNIST protocol of Lopez-Paz & Ranzato 2017, on scikit-learn's
8x8 digits). Run it with ``neurosculpt run -b examples/rotated_digits.py:rotated_digits``."""

import math

import torch
import torch.nn.functional as F

import neurosculpt
from neurosculpt.data import load_digits


def rotate(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """Images ``[N, 1, H, W]`` turned by ``degrees`` about their centre."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    matrix = torch.tensor([[c, -s, 0.0], [s, c, 0.0]]).expand(len(x), 2, 3)
    grid = F.affine_grid(matrix, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, align_corners=False)


def rotated_digits(tasks: int = 4, seed: int = 0) -> neurosculpt.Benchmark:
    """``tasks`` tasks; each trains on its own (seeded) share of the training images."""
    train, test = load_digits()
    order = torch.randperm(len(train.y), generator=torch.Generator().manual_seed(seed))
    shares = order.chunk(tasks)
    angles = [30.0 * k for k in range(tasks)]
    return neurosculpt.from_tensors(
        [rotate(train.x[i], a) for i, a in zip(shares, angles, strict=True)],
        [train.y[i] for i in shares],
        [rotate(test.x, a) for a in angles], [test.y] * tasks,
        scenario="domain", name="rotated-digits")
