"""scikit-learn's bundled 8x8 digits: a tiny offline image set for quick runs and tests."""

from __future__ import annotations

import numpy as np
import torch

from .base import ArraySplit


def stratified_split(
    labels: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted train and test indices holding ``test_fraction`` of every class (rounded).

    Done per class so each continual-learning task later cut by class keeps the same ratio.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_test = int(round(test_fraction * members.size))
        test.append(members[:n_test])
        train.append(members[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def load_digits(test_fraction: float = 0.25, seed: int = 0) -> tuple[ArraySplit, ArraySplit]:
    """The 1,797 sklearn digits as (train, test): x float32 in [0, 1] shaped [N, 1, 8, 8].

    The split is stratified by class and fixed by ``seed``. Needs scikit-learn, imported only
    here so the rest of the package works without it.
    """
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError as exc:
        raise ImportError(
            "load_digits needs scikit-learn: pip install 'neurosculpt[sklearn]'"
        ) from exc
    bunch = sklearn_digits()
    images = np.asarray(bunch.images, dtype=np.float32) / 16.0
    labels = np.asarray(bunch.target, dtype=np.int64)
    train_idx, test_idx = stratified_split(labels, test_fraction, seed)

    def part(idx: np.ndarray) -> ArraySplit:
        return ArraySplit(
            torch.from_numpy(images[idx]).unsqueeze(1), torch.from_numpy(labels[idx])
        )

    return part(train_idx), part(test_idx)
