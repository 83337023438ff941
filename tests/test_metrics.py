"""Tests for neurosculpt.metrics on small hand-computed accuracy matrices."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from neurosculpt.metrics import (
    accuracy_matrix_summary,
    average_accuracy,
    average_incremental_accuracy,
    backward_transfer,
    forgetting,
    forgetting_per_task,
    forward_transfer,
    learning_accuracy,
    new_task_accuracy,
    window_mean,
)

# Rows: after training task i; columns: evaluated on task j.
R = [
    [0.9, 0.1, 0.2],
    [0.8, 0.95, 0.3],
    [0.7, 0.85, 0.9],
]
# Random-init accuracy per task; b[0] is unused by FWT.
BASELINE = [0.5, 0.05, 0.2]


def test_average_accuracy_is_mean_of_last_row() -> None:
    # (0.7 + 0.85 + 0.9) / 3 = 2.45 / 3
    assert average_accuracy(R) == pytest.approx(2.45 / 3)


def test_backward_transfer() -> None:
    # ((0.7 - 0.9) + (0.85 - 0.95)) / 2 = (-0.2 - 0.1) / 2 = -0.15
    assert backward_transfer(R) == pytest.approx(-0.15)


def test_forward_transfer_uses_pre_training_entries_and_baseline() -> None:
    # j=1: R[0,1] - b1 = 0.1 - 0.05 = 0.05; j=2: R[1,2] - b2 = 0.3 - 0.2 = 0.1; mean 0.075
    assert forward_transfer(R, BASELINE) == pytest.approx(0.075)
    # b[0] does not enter the formula.
    assert forward_transfer(R, [0.0, 0.05, 0.2]) == pytest.approx(0.075)


def test_forgetting_on_reference_matrix() -> None:
    # j=0: max(R[0,0], R[1,0]) - R[2,0] = max(0.9, 0.8) - 0.7 = 0.2
    # j=1: max(R[1,1]) - R[2,1] = 0.95 - 0.85 = 0.1
    np.testing.assert_allclose(forgetting_per_task(R), [0.2, 0.1])
    assert forgetting(R) == pytest.approx(0.15)


def test_learning_accuracy_is_mean_of_diagonal() -> None:
    # (0.9 + 0.95 + 0.9) / 3 = 2.75 / 3
    assert learning_accuracy(R) == pytest.approx(2.75 / 3)


def test_average_incremental_accuracy() -> None:
    # step 0: 0.9; step 1: (0.8 + 0.95) / 2 = 0.875; step 2: 2.45 / 3
    # mean = (0.9 + 0.875 + 2.45 / 3) / 3
    assert average_incremental_accuracy(R) == pytest.approx((0.9 + 0.875 + 2.45 / 3) / 3)


def test_forgetting_uses_max_not_first_row() -> None:
    # Task 0 keeps improving while task 1 is trained: R[1,0] = 0.9 > R[0,0] = 0.6.
    r = [
        [0.6, 0.1, 0.1],
        [0.9, 0.8, 0.2],
        [0.5, 0.7, 0.95],
    ]
    # j=0: max(0.6, 0.9) - 0.5 = 0.4 (first-row reference would give 0.6 - 0.5 = 0.1)
    # j=1: 0.8 - 0.7 = 0.1
    np.testing.assert_allclose(forgetting_per_task(r), [0.4, 0.1])
    assert forgetting(r) == pytest.approx(0.25)
    # BWT uses the first row after training: ((0.5 - 0.6) + (0.7 - 0.8)) / 2 = -0.1,
    # so forgetting != -BWT in this case.
    assert backward_transfer(r) == pytest.approx(-0.1)
    assert forgetting(r) != pytest.approx(-backward_transfer(r))


def test_forgetting_ignores_pre_training_accuracy() -> None:
    # R[0,1] = 0.9 is measured before task 1 is trained and must not be the reference.
    r = [
        [0.8, 0.9, 0.1],
        [0.7, 0.6, 0.1],
        [0.7, 0.5, 0.9],
    ]
    # j=0: max(0.8, 0.7) - 0.7 = 0.1; j=1: max(0.6) - 0.5 = 0.1 (not 0.9 - 0.5 = 0.4)
    np.testing.assert_allclose(forgetting_per_task(r), [0.1, 0.1])


def test_forgetting_can_be_negative() -> None:
    # Final accuracy on task 0 (0.9) exceeds its earlier best (0.6): f_0 = 0.6 - 0.9 = -0.3
    r = [[0.6, 0.2], [0.9, 0.8]]
    np.testing.assert_allclose(forgetting_per_task(r), [-0.3])


def test_single_task_edge_case() -> None:
    r = [[0.7]]
    assert average_accuracy(r) == pytest.approx(0.7)
    assert learning_accuracy(r) == pytest.approx(0.7)
    assert average_incremental_accuracy(r) == pytest.approx(0.7)
    assert math.isnan(backward_transfer(r))
    assert math.isnan(forward_transfer(r, [0.1]))
    assert math.isnan(forgetting(r))
    assert forgetting_per_task(r).shape == (0,)
    summary = accuracy_matrix_summary(r, baseline=[0.1])
    assert summary == {
        "acc": pytest.approx(0.7),
        "bwt": None,
        "fwt": None,
        "forgetting": None,
        "learning_acc": pytest.approx(0.7),
        "avg_incremental_acc": pytest.approx(0.7),
    }


def test_summary_values_types_and_json() -> None:
    summary = accuracy_matrix_summary(np.array(R), baseline=np.array(BASELINE))
    assert list(summary) == [
        "acc",
        "bwt",
        "fwt",
        "forgetting",
        "learning_acc",
        "avg_incremental_acc",
    ]
    assert all(type(v) is float for v in summary.values())
    assert summary["acc"] == pytest.approx(2.45 / 3)
    assert summary["bwt"] == pytest.approx(-0.15)
    assert summary["fwt"] == pytest.approx(0.075)
    assert summary["forgetting"] == pytest.approx(0.15)
    assert summary["learning_acc"] == pytest.approx(2.75 / 3)
    assert summary["avg_incremental_acc"] == pytest.approx((0.9 + 0.875 + 2.45 / 3) / 3)
    json.dumps(summary, allow_nan=False)


def test_summary_without_baseline_has_no_fwt() -> None:
    summary = accuracy_matrix_summary(R)
    assert summary["fwt"] is None
    assert summary["bwt"] == pytest.approx(-0.15)


def test_nan_entries_are_dropped_from_averages() -> None:
    nan = math.nan
    # Joint-training style: only the final row was evaluated.
    joint = [[nan, nan, nan], [nan, nan, nan], [0.9, 0.8, 0.7]]
    assert average_accuracy(joint) == pytest.approx(0.8)
    assert learning_accuracy(joint) == pytest.approx(0.7)  # only R[2,2] is present
    assert average_incremental_accuracy(joint) == pytest.approx(0.8)  # only step 2 present
    assert math.isnan(backward_transfer(joint))
    assert math.isnan(forgetting(joint))
    summary = accuracy_matrix_summary(joint)
    assert summary["bwt"] is None and summary["forgetting"] is None
    json.dumps(summary, allow_nan=False)

    # A single missing entry R[1,0]: the forgetting reference for task 0 is then R[0,0] alone.
    partial = [[0.9, 0.1, 0.2], [nan, 0.95, 0.3], [0.7, 0.85, 0.9]]
    np.testing.assert_allclose(forgetting_per_task(partial), [0.2, 0.1])
    # AIA step 1 is R[1,1] alone: (0.9 + 0.95 + 2.45 / 3) / 3
    assert average_incremental_accuracy(partial) == pytest.approx((0.9 + 0.95 + 2.45 / 3) / 3)

    # Missing final entry for task 1: its BWT/forgetting term is dropped.
    missing_last = [[0.9, 0.1, 0.2], [0.8, 0.95, 0.3], [0.7, nan, 0.9]]
    assert backward_transfer(missing_last) == pytest.approx(-0.2)
    f = forgetting_per_task(missing_last)
    assert f[0] == pytest.approx(0.2) and math.isnan(f[1])
    assert forgetting(missing_last) == pytest.approx(0.2)


def test_new_task_accuracy_and_window_mean() -> None:
    arr = np.array(R)
    diag = new_task_accuracy(arr)
    np.testing.assert_allclose(diag, [0.9, 0.95, 0.9])
    diag[0] = 0.0
    assert arr[0, 0] == 0.9  # a copy, not a view

    series = [0.9, 0.8, 0.7, 0.6, 0.5]
    assert window_mean(series, "first", 2) == pytest.approx(0.85)
    assert window_mean(series, "last", 2) == pytest.approx(0.55)
    assert window_mean(series, "last", 5) == pytest.approx(0.7)
    assert window_mean(np.array([math.nan, 0.8, 0.1]), "first", 2) == pytest.approx(0.8)
    assert math.isnan(window_mean([math.nan, 0.5], "first", 1))


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ([[0.1, 0.2]], "square"),
        ([0.1, 0.2], "square"),
        (np.zeros((2, 2, 2)), "square"),
        (np.zeros((0, 0)), "at least one task"),
        ([[0.5, 1.5], [0.2, 0.3]], r"\[0, 1\]"),
        ([[0.5, -0.1], [0.2, 0.3]], r"\[0, 1\]"),
        ([[90.0, 10.0], [80.0, 95.0]], "percentages"),
        ([[0.5, math.inf], [0.2, 0.3]], r"\[0, 1\]"),
        ([[0.5, 0.1], [0.2]], "numeric and rectangular"),
    ],
)
def test_invalid_matrix_raises(bad: object, match: str) -> None:
    for fn in (average_accuracy, backward_transfer, forgetting, learning_accuracy):
        with pytest.raises(ValueError, match=match):
            fn(bad)
    with pytest.raises(ValueError, match=match):
        accuracy_matrix_summary(bad)


def test_invalid_baseline_raises() -> None:
    with pytest.raises(ValueError, match="one accuracy per task"):
        forward_transfer(R, [0.1, 0.1])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        forward_transfer(R, [0.1, 10.0, 0.1])
    with pytest.raises(ValueError, match="1-D"):
        forward_transfer(R, [[0.1, 0.1, 0.1]])


def test_invalid_window_arguments_raise() -> None:
    series = [0.9, 0.8, 0.7]
    with pytest.raises(ValueError, match="first_or_last"):
        window_mean(series, "middle", 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="between 1 and"):
        window_mean(series, "first", 0)
    with pytest.raises(ValueError, match="between 1 and"):
        window_mean(series, "last", 4)
    with pytest.raises(ValueError, match="integer"):
        window_mean(series, "last", 1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="1-D"):
        window_mean([[0.9, 0.8]], "first", 1)
