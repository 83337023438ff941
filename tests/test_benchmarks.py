"""Benchmarks: seeded class orders, shared data without copies, scenarios and output masks,
validation held out from training data, custom benchmarks, FSDD streams."""

from __future__ import annotations

import pytest
import torch

from neurosculpt import BENCHMARKS, from_dataset, from_tensors, make_benchmark
from neurosculpt.benchmarks import SCENARIOS, DatasetRows, class_split
from neurosculpt.data import DataError, fsdd_speakers


def _labels(split) -> set[int]:
    return set(split.y.tolist())


def _inputs(split) -> torch.Tensor:
    return split.get(torch.arange(len(split)))[0]


def _rows(split) -> set[tuple[float, ...]]:
    return {tuple(row) for row in _inputs(split).flatten(1).tolist()}


def test_split_class_order_is_seeded_and_tasks_are_disjoint(digits):
    again = make_benchmark("split-digits", seed=0)
    other = make_benchmark("split-digits", seed=1)
    assert digits.info["class_order"] == again.info["class_order"]
    assert digits.info["class_order"] != other.info["class_order"]
    assert sorted(digits.info["class_order"]) == list(range(10))
    seen: set[int] = set()
    for k, task in enumerate(digits.tasks):
        original = _labels(task.train)
        assert original == _labels(task.test) and len(original) == 2
        assert not original & seen
        seen |= original
        assert task.classes == [2 * k, 2 * k + 1]
        _, y = task.train.get(torch.arange(len(task.train)))
        assert set(y.tolist()) == set(task.classes)
    assert seen == set(range(10))


def test_class_split_tasks_are_views_of_the_shared_inputs_unless_few_rows_are_used():
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(60, 1, 2, 3, generator=gen), torch.arange(6).repeat(10)
    xt, yt = torch.rand(30, 1, 2, 3, generator=gen), torch.arange(6).repeat(5)
    whole = class_split("s", (x, y), (xt, yt), [[4, 0], [1, 5], [2, 3]])
    for task in whole.tasks:
        assert isinstance(task.train.x, DatasetRows) and task.train.x.source is x  # no copy
        assert task.test.x.source is xt
        index = torch.tensor([3, 0, 7])
        inputs, labels = task.train.get(index)
        rows = torch.nonzero(torch.isin(y, torch.tensor(whole.info["class_order"])[
            task.classes])).flatten()[index]
        assert torch.equal(inputs, x[rows]) and torch.equal(labels, task.train.label_map[y[rows]])
    # a few samples per task: copies of those, so the whole array can be freed
    few = class_split("s", (x, y), (xt, yt), [[4, 0], [1, 5], [2, 3]], samples_per_task=5)
    assert all(isinstance(t.train.x, torch.Tensor) and len(t.train) == 5 for t in few.tasks)
    assert all(isinstance(t.test.x, DatasetRows) for t in few.tasks)  # every test row is used
    part = class_split("s", (x, y), (xt, yt), [[4, 0]])  # a third of the classes
    assert isinstance(part.tasks[0].train.x, torch.Tensor)
    assert _rows(part.tasks[0].train) == _rows(whole.tasks[0].train)


def test_split_rejects_uneven_task_counts():
    with pytest.raises(ValueError, match="cannot be split into 3 tasks"):
        make_benchmark("split-digits", n_tasks=3)


def test_permuted_tasks_share_one_tensor_and_differ_in_permutation():
    bench = make_benchmark("permuted-digits", n_tasks=3, samples_per_task=50)
    first = bench.tasks[0]
    perms = [task.train.perm for task in bench.tasks]
    for task in bench.tasks:
        assert task.train.x.data_ptr() == first.train.x.data_ptr()
        assert task.test.x.data_ptr() == first.test.x.data_ptr()
        assert torch.equal(task.test.perm, task.train.perm)
    assert all(sorted(p.tolist()) == list(range(64)) for p in perms)
    assert not torch.equal(perms[0], perms[1]) and not torch.equal(perms[1], perms[2])
    index = torch.arange(5)
    x, _ = bench.tasks[1].train.get(index)
    assert torch.equal(x.flatten(1), first.train.x[index].flatten(1)[:, perms[1]])
    assert x.shape == first.train.x[index].shape


def test_random_labels_differ_per_task_and_test_is_train():
    bench = make_benchmark("random-label-digits", n_tasks=3, samples_per_task=100)
    assert bench.scenario == "domain" and bench.n_outputs == 10
    index = torch.arange(100)
    labels = []
    for task in bench.tasks:
        assert task.test.x.data_ptr() == task.train.x.data_ptr()
        x, y = task.train.get(index)
        xt, yt = task.test.get(index)
        assert torch.equal(x, xt) and torch.equal(y, yt)
        labels.append(y)
    assert not torch.equal(labels[0], labels[1]) and not torch.equal(labels[1], labels[2])


def test_random_label_digits_is_the_reference_protocol():
    """All 1,797 digits (train and test alike) with scikit-learn's raw pixel values 0..16."""
    bench = make_benchmark("random-label-digits", n_tasks=2)
    assert len(bench.tasks[0].train) == 1797 and len(bench) == 2
    assert float(bench.tasks[0].train.x.max()) == 16.0


def test_permuted_labels_are_a_consistent_relabeling():
    bench = make_benchmark("permuted-label-digits", n_tasks=2, samples_per_task=200)
    base = make_benchmark("permuted-digits", n_tasks=1, samples_per_task=200)
    original = base.tasks[0].train.y
    mappings = []
    for task in bench.tasks:
        assert torch.equal(task.train.x, base.tasks[0].train.x)
        mapping = {}
        for o, new in zip(original.tolist(), task.train.y.tolist(), strict=True):
            assert mapping.setdefault(o, new) == new  # one new label per original class
        assert sorted(mapping.values()) == sorted(mapping)
        mappings.append(mapping)
    assert mappings[0] != mappings[1]


def test_scenarios_set_outputs_and_masks():
    task = make_benchmark("split-digits", scenario="task")
    cls = make_benchmark("split-digits", scenario="class")
    assert task.n_outputs == cls.n_outputs == 10
    ids = torch.tensor([0, 3])
    mask = task.output_mask(ids, training_task=1)
    assert mask[0].nonzero().flatten().tolist() == task.tasks[0].classes
    assert mask[1].nonzero().flatten().tolist() == task.tasks[3].classes
    mask = cls.output_mask(ids, training_task=2)
    assert (mask.sum(1) == 6).all() and mask[:, :6].all()

    perm_task = make_benchmark("permuted-digits", n_tasks=3, scenario="task",
                               samples_per_task=10)
    assert perm_task.n_outputs == 30
    assert perm_task.tasks[2].classes == list(range(20, 30))
    _, y = perm_task.tasks[2].train.get(torch.arange(10))
    assert y.min() >= 20 and y.max() < 30
    domain = make_benchmark("permuted-digits", n_tasks=3, scenario="domain", samples_per_task=10)
    assert domain.n_outputs == 10 and domain.tasks[2].classes == list(range(10))
    assert domain.output_mask(torch.tensor([0, 2]), training_task=0).all()

    with pytest.raises(ValueError, match="task or class"):
        make_benchmark("split-digits", scenario="domain")


def test_validation_holds_out_training_data(digits):
    val = make_benchmark("split-digits", validation=True)
    assert val.info["class_order"] == digits.info["class_order"]
    for full, task in zip(digits.tasks, val.tasks, strict=True):
        train, held = _rows(task.train), _rows(task.test)
        assert held <= _rows(full.train)
        assert not held & train
        assert len(task.train) + len(task.test) == len(full.train)
        assert abs(len(task.test) - 0.1 * len(full.train)) <= 2
        assert _labels(task.test) == _labels(full.test)


def _toy(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, generator=gen), torch.arange(n) % 4


def test_from_tensors_custom_class_order():
    (x, y), (xt, yt) = _toy(40, 0), _toy(20, 1)
    bench = from_tensors(x, y, xt, yt, [[3, 1], [0, 2]], scenario="class", name="toy")
    assert bench.n_outputs == 4 and bench.input_shape == (3,)
    assert [t.classes for t in bench.tasks] == [[0, 1], [2, 3]]
    assert _labels(bench.tasks[0].train) == {1, 3}
    xs, ys = bench.tasks[0].train.get(torch.arange(len(bench.tasks[0].train)))
    originals = bench.tasks[0].train.y
    assert torch.equal(ys, torch.where(originals == 3, 0, 1))
    assert len(bench.tasks[1].test) == 10
    with pytest.raises(ValueError, match="disjoint"):
        from_tensors(x, y, xt, yt, [[0, 1], [1, 2]])


def test_from_dataset_reads_any_map_style_dataset_like_tensors():
    (x, y), (xt, yt) = _toy(40, 0), _toy(20, 1)
    ds = torch.utils.data.TensorDataset(x, y)
    bench = from_dataset(ds, torch.utils.data.TensorDataset(xt, yt), [[0, 1], [2, 3]])
    reference = from_tensors(x, y, xt, yt, [[0, 1], [2, 3]])
    for a, b in zip(bench.tasks, reference.tasks, strict=True):
        for part in ("train", "test"):
            index = torch.arange(len(getattr(b, part)))
            got, want = getattr(a, part).get(index), getattr(b, part).get(index)
            assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError) as err:
        make_benchmark("split-cifar")
    assert all(name in str(err.value) for name in BENCHMARKS)
    with pytest.raises(ValueError) as err:
        make_benchmark("split-digits", scenario="online")
    assert all(name in str(err.value) for name in SCENARIOS)


def _fsdd_available() -> bool:
    try:
        fsdd_speakers()
    except DataError:
        return False
    return True


fsdd = pytest.mark.skipif(not _fsdd_available(), reason="FSDD recordings not found")


@fsdd
def test_fsdd_speakers_one_speaker_per_task():
    bench = make_benchmark("fsdd-speakers")
    assert len(bench) == 6 and bench.scenario == "domain" and bench.n_outputs == 10
    assert bench.sequence and len(bench.input_shape) == 2  # [frames, mels]
    # one number per recording (a random projection) to compare recordings between tasks
    probe = torch.randn(bench.tasks[0].train.x[0].numel(),
                        generator=torch.Generator().manual_seed(0))
    rows = [set((task.train.x.flatten(1) @ probe).tolist()) for task in bench.tasks]
    for k, task in enumerate(bench.tasks):
        assert _labels(task.train) == _labels(task.test) == set(range(10))
        assert all(not rows[k] & rows[j] for j in range(k))
    assert len({len(t.train) for t in bench.tasks}) == 1  # FSDD: 50 takes per digit each


@fsdd
def test_fsdd_digits_is_a_sequence_class_split():
    bench = make_benchmark("fsdd-digits", samples_per_task=20, test_samples_per_task=10)
    assert len(bench) == 5 and bench.sequence
    assert bench.tasks[0].train.x.shape[1:] == bench.input_shape
    assert torch.isfinite(_inputs(bench.tasks[0].train)).all()


@pytest.mark.parametrize("name", ["split-digits", "permuted-digits", "random-label-digits",
                                  "permuted-label-digits"])
def test_sequence_presents_images_as_rows(name):
    """``sequence=True``: an 8 x 8 digit is 8 row tokens of 8 features, the same pixels."""
    flat = make_benchmark(name, n_tasks=5, samples_per_task=30, test_samples_per_task=20)
    rows = make_benchmark(name, n_tasks=5, samples_per_task=30, test_samples_per_task=20,
                          sequence=True)
    assert rows.sequence and not flat.sequence
    assert rows.input_shape == (8, 8) and flat.input_shape == (1, 8, 8)
    index = torch.arange(10)
    for a, b in zip(flat.tasks, rows.tasks, strict=True):
        (x, y), (xs, ys) = a.train.get(index), b.train.get(index)
        assert xs.shape == (10, 8, 8)
        assert torch.equal(xs, x.view(10, 8, 8)) and torch.equal(ys, y)
        assert torch.equal(b.test.get(index)[0], a.test.get(index)[0].view(10, 8, 8))


def test_image_rows_puts_channels_side_by_side():
    from neurosculpt.benchmarks import image_rows

    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float).view(2, 3, 4, 5)
    rows = image_rows(x)
    assert rows.shape == (2, 4, 15)
    assert torch.equal(rows[1, 2], torch.cat([x[1, c, 2] for c in range(3)]))
    with pytest.raises(ValueError, match=r"needs images \[N, C, H, W\], got shape \(2, 60\)"):
        image_rows(x.view(2, 60))


def test_sequence_is_refused_for_a_benchmark_factory():
    with pytest.raises(ValueError, match=r"applies to named benchmarks; the factory 'x.py:f'"):
        make_benchmark("x.py:f", sequence=True)
