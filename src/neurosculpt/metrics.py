"""Continual-learning metrics computed from a task-accuracy matrix.

Convention. ``R`` is a ``T x T`` matrix with ``R[i, j]`` the accuracy (a fraction in ``[0, 1]``)
on the test set of task ``j`` measured after training on task ``i``; rows are "after training task
``i``", columns are "evaluated on task ``j``", indices are 0-based. The run loop also evaluates
every task before it is trained, so the strict upper triangle (``j > i``) holds zero-shot
accuracies and ``R[j - 1, j]`` is the accuracy on task ``j`` just before training on it.

Missing entries. An entry may be ``NaN`` when it was not evaluated (for example a joint-training
reference that is only evaluated at the end). Every metric below is an average of per-task terms;
a term that touches a ``NaN`` entry is dropped from that average, and a metric with no term left
is ``NaN``. No warning is emitted for this.

Undefined metrics. Metrics that need at least two tasks (backward transfer, forward transfer,
forgetting) return ``float("nan")`` for ``T = 1``. :func:`accuracy_matrix_summary` converts every
``NaN`` to ``None`` so that its result is valid JSON.

Inputs may be numpy arrays or nested lists; nothing here depends on torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "accuracy_matrix_summary",
    "average_accuracy",
    "average_incremental_accuracy",
    "backward_transfer",
    "forgetting",
    "forgetting_per_task",
    "forward_transfer",
    "learning_accuracy",
    "new_task_accuracy",
    "window_mean",
]


def _check_fractions(values: NDArray[np.float64], name: str) -> None:
    """Raise ``ValueError`` unless every non-NaN entry of ``values`` lies in ``[0, 1]``."""
    present = values[~np.isnan(values)]
    bad = present[(present < 0.0) | (present > 1.0)]
    if bad.size:
        raise ValueError(
            f"{name} must hold accuracies as fractions in [0, 1] (NaN allowed for entries that "
            f"were not evaluated); found {bad[0]!r}. Divide percentages by 100."
        )


def _as_matrix(R: ArrayLike) -> NDArray[np.float64]:
    """Validate an accuracy matrix and return it as a float64 array."""
    try:
        mat = np.asarray(R, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"accuracy matrix R must be numeric and rectangular: {exc}") from exc
    if mat.ndim != 2 or mat.shape[0] != mat.shape[1]:
        raise ValueError(
            f"accuracy matrix R must be square (T x T, rows = after training task i, "
            f"columns = evaluated on task j); got shape {mat.shape}"
        )
    if mat.shape[0] == 0:
        raise ValueError("accuracy matrix R must cover at least one task; got shape (0, 0)")
    _check_fractions(mat, "accuracy matrix R")
    return mat


def _as_vector(values: ArrayLike, name: str) -> NDArray[np.float64]:
    """Validate a 1-D array of accuracies and return it as float64."""
    try:
        vec = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a 1-D sequence of numbers: {exc}") from exc
    if vec.ndim != 1:
        raise ValueError(f"{name} must be 1-D; got shape {vec.shape}")
    _check_fractions(vec, name)
    return vec


def _mean_present(values: NDArray[np.float64]) -> float:
    """Mean over the non-NaN entries as a Python float; ``NaN`` if there are none."""
    present = values[~np.isnan(values)]
    return float(present.mean()) if present.size else math.nan


def average_accuracy(R: ArrayLike) -> float:
    """Average accuracy after the last task, ``ACC = 1/T * sum_j R[T-1, j]``.

    Follows the ACC definition of Lopez-Paz & Ranzato 2017 ("Gradient Episodic Memory for
    Continual Learning", Sec. 2), which is also the final-step average accuracy ``A_T`` of
    Chaudhry et al. 2018 ("Riemannian Walk for Incremental Learning"). ``NaN`` entries of the last
    row are left out of the mean.
    """
    mat = _as_matrix(R)
    return _mean_present(mat[-1])


def backward_transfer(R: ArrayLike) -> float:
    """Backward transfer, ``BWT = 1/(T-1) * sum_{j<T-1} (R[T-1, j] - R[j, j])``.

    Follows the BWT definition of Lopez-Paz & Ranzato 2017 (Sec. 2): the mean change in accuracy
    on each earlier task between just after learning it and the end of the sequence; negative
    values mean forgetting. Returns ``NaN`` for ``T = 1`` (no earlier task).
    """
    mat = _as_matrix(R)
    n = mat.shape[0]
    if n < 2:
        return math.nan
    diag = np.diagonal(mat)
    return _mean_present(mat[-1, : n - 1] - diag[: n - 1])


def forward_transfer(R: ArrayLike, baseline: ArrayLike) -> float:
    """Forward transfer, ``FWT = 1/(T-1) * sum_{j>=1} (R[j-1, j] - b[j])``.

    Follows the FWT definition of Lopez-Paz & Ranzato 2017 (Sec. 2), where ``b[j]`` is the
    accuracy on task ``j`` of a model at random initialisation. ``R[j-1, j]`` is the accuracy on
    task ``j`` measured just before training on it, which the run loop records. ``baseline`` must
    have one entry per task; ``b[0]`` is not used. Returns ``NaN`` for ``T = 1``.
    """
    mat = _as_matrix(R)
    base = _as_vector(baseline, "baseline")
    n = mat.shape[0]
    if base.shape[0] != n:
        raise ValueError(f"baseline must have one accuracy per task ({n}); got {base.shape[0]}")
    if n < 2:
        return math.nan
    before = mat[np.arange(n - 1), np.arange(1, n)]
    return _mean_present(before - base[1:])


def forgetting_per_task(R: ArrayLike) -> NDArray[np.float64]:
    """Forgetting of each task ``j < T-1``: ``f_j = max_{j <= l <= T-2} R[l, j] - R[T-1, j]``.

    Follows the forgetting measure ``f_j^k`` of Chaudhry et al. 2018 ("Riemannian Walk for
    Incremental Learning", Sec. "Forgetting and Intransigence"; reused in Chaudhry et al. 2019,
    A-GEM) evaluated at the last step ``k = T``: the drop from the best accuracy the task ever
    had to its final accuracy. Deviation: the paper maximises over every earlier step
    ``l < k``; we only take steps ``l >= j`` (after task ``j`` was trained), because our matrix
    also holds pre-training accuracies ``R[l, j], l < j`` that do not count as learned knowledge.
    Values are not clipped, so a task that ends above its earlier best gets a negative value.

    Note that Avalanche's ``forgetting`` metric uses the first accuracy recorded after training
    (``R[j, j]``) instead of the maximum; that choice equals ``-BWT`` per task, whereas the maximum
    also counts knowledge gained after task ``j`` and lost later.

    Returns an array of length ``T - 1`` (empty for ``T = 1``). ``NaN`` entries of ``R`` are
    ignored inside the maximum; ``f_j`` is ``NaN`` when ``R[T-1, j]`` or every candidate reference
    is ``NaN``.
    """
    mat = _as_matrix(R)
    n = mat.shape[0]
    out = np.full(n - 1, math.nan)
    for j in range(n - 1):
        history = mat[j : n - 1, j]
        history = history[~np.isnan(history)]
        if history.size:
            out[j] = history.max() - mat[-1, j]
    return out


def forgetting(R: ArrayLike) -> float:
    """Average forgetting ``F = 1/(T-1) * sum_{j<T-1} f_j`` (Chaudhry et al. 2018, ``F_k``, k=T).

    ``f_j`` is defined in :func:`forgetting_per_task`, which also lists the deviation from the
    paper. ``NaN`` terms are left out of the mean; returns ``NaN`` for ``T = 1``.
    """
    return _mean_present(forgetting_per_task(R))


def learning_accuracy(R: ArrayLike) -> float:
    """Learning accuracy ``LA = 1/T * sum_j R[j, j]``.

    Follows "learning accuracy" (LA) of Riemer et al. 2019 ("Learning to Learn without Forgetting
    by Maximizing Transfer and Minimizing Interference", MER): the average accuracy on each task
    measured right after it has been learned. It isolates plasticity from forgetting.
    """
    mat = _as_matrix(R)
    return _mean_present(np.diagonal(mat).copy())


def average_incremental_accuracy(R: ArrayLike) -> float:
    """Average incremental accuracy ``1/T * sum_i (1/(i+1) * sum_{j<=i} R[i, j])``.

    Follows the average incremental accuracy of Rebuffi et al. 2017 ("iCaRL: Incremental
    Classifier and Representation Learning", Sec. 4): the mean, over training steps, of the
    accuracy on everything seen so far. Deviation: iCaRL's per-step accuracy is over the pooled
    test samples of all seen classes; we average the per-task accuracies with equal weight, which
    is the same when every task has the same number of test samples. Steps whose seen-task
    accuracies are all ``NaN`` are left out.
    """
    mat = _as_matrix(R)
    steps = np.array([_mean_present(mat[i, : i + 1]) for i in range(mat.shape[0])])
    return _mean_present(steps)


def accuracy_matrix_summary(
    R: ArrayLike, baseline: ArrayLike | None = None
) -> dict[str, float | None]:
    """All scalar metrics of ``R`` as JSON-friendly Python floats.

    Keys: ``"acc"`` (:func:`average_accuracy`), ``"bwt"`` (:func:`backward_transfer`), ``"fwt"``
    (:func:`forward_transfer`; needs ``baseline``), ``"forgetting"`` (:func:`forgetting`),
    ``"learning_acc"`` (:func:`learning_accuracy`) and ``"avg_incremental_acc"``
    (:func:`average_incremental_accuracy`). Undefined values (``NaN``, or ``"fwt"`` without a
    baseline) are ``None`` so that ``json.dumps`` produces valid JSON.
    """
    mat = _as_matrix(R)
    values = {
        "acc": average_accuracy(mat),
        "bwt": backward_transfer(mat),
        "fwt": math.nan if baseline is None else forward_transfer(mat, baseline),
        "forgetting": forgetting(mat),
        "learning_acc": learning_accuracy(mat),
        "avg_incremental_acc": average_incremental_accuracy(mat),
    }
    return {key: None if math.isnan(val) else float(val) for key, val in values.items()}


def new_task_accuracy(R: ArrayLike) -> NDArray[np.float64]:
    """Accuracy on each task right after training on it, the diagonal ``R[j, j]`` (length ``T``).

    This is the per-task series behind :func:`learning_accuracy`; long task streams use it to
    show loss of plasticity, i.e. new tasks being learned worse and worse as training goes on
    (Dohare et al. 2024, "Loss of plasticity in deep continual learning", Nature).
    """
    mat = _as_matrix(R)
    return np.diagonal(mat).copy()


def window_mean(
    values: Sequence[float] | NDArray[np.float64],
    first_or_last: Literal["first", "last"],
    k: int,
) -> float:
    """Mean of the first or last ``k`` entries of a 1-D series of accuracies.

    Used to compare early and late new-task accuracy (see :func:`new_task_accuracy`), e.g.
    ``window_mean(d, "last", 5) - window_mean(d, "first", 5)`` is negative when plasticity is
    lost. ``NaN`` entries inside the window are skipped; an all-``NaN`` window gives ``NaN``.
    Raises ``ValueError`` if ``first_or_last`` is not ``"first"``/``"last"`` or ``k`` is not in
    ``1..len(values)``.
    """
    vec = _as_vector(values, "values")
    if first_or_last not in ("first", "last"):
        raise ValueError(f"first_or_last must be 'first' or 'last'; got {first_or_last!r}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"k must be an integer; got {k!r}")
    if not 1 <= k <= vec.shape[0]:
        raise ValueError(f"k must be between 1 and len(values) = {vec.shape[0]}; got {k}")
    window = vec[:k] if first_or_last == "first" else vec[-k:]
    return _mean_present(window)
