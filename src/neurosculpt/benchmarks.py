"""Named benchmarks: streams of tasks for the three continual-learning scenarios.

Scenarios (van de Ven & Tolias 2019, "Three scenarios for continual learning"):

- ``task``: task identity is given at test time. Each task gets its own output slice (a head
  per task); the loss and the prediction only look at that slice.
- ``class``: one head, no task identity; prediction over every class seen so far.
- ``domain``: the label set stays the same and the inputs shift; one shared head.

Each task holds its data once; per-task input permutations and relabelings are applied to a
batch when it is drawn, so ``permuted-*`` streams of hundreds of tasks do not hold copies, and
the tasks of a class split that uses every sample are row views of the shared inputs
(:class:`DatasetRows`): splitting by class copies no image.
"""

from __future__ import annotations

import inspect
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import Tensor

from .validation import UserError, unknown_name

SCENARIOS = ("task", "class", "domain")


class DatasetRows:
    """The inputs of a data set, read only when a batch needs them.

    Behaves like the input tensor of a :class:`Split` for what a stream does with it: indexing
    with positions or a boolean mask gives another lazy view (selecting a task's classes copies
    no inputs), :meth:`load` reads the selected samples. ``source`` is a map-style dataset of
    ``(x, y)`` pairs (read one sample at a time) or a tensor (a memory-mapped file, or the
    in-memory inputs every task of a class split shares: read with one gather). Read a whole
    split's inputs with ``split.get(torch.arange(len(split)))``.
    """

    def __init__(self, source: object, index: Tensor, sample_shape: tuple[int, ...]) -> None:
        self.source = source
        self.index = index
        self.sample_shape = sample_shape

    def __len__(self) -> int:
        return len(self.index)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.index), *self.sample_shape)

    def __getitem__(self, index: Tensor) -> DatasetRows:
        return DatasetRows(self.source, self.index[index], self.sample_shape)

    def load(self) -> Tensor:
        if isinstance(self.source, Tensor):
            return self.source[self.index].float()
        if len(self.index) == 0:
            return torch.empty(0, *self.sample_shape)
        return torch.stack([torch.as_tensor(self.source[int(i)][0])  # type: ignore[index]
                            for i in self.index.tolist()]).float()


@dataclass
class Split:
    """Inputs and labels of one task's train or test part, with lazy per-task transforms.

    ``perm`` permutes the flattened input features; ``labels`` replaces the labels (random- or
    permuted-label streams); ``label_map`` maps original labels to this task's output indices.
    """

    x: Tensor
    y: Tensor
    perm: Tensor | None = None
    labels: Tensor | None = None
    label_map: Tensor | None = None

    def __len__(self) -> int:
        return len(self.y)

    def get(self, index: Tensor) -> tuple[Tensor, Tensor]:
        x = self.x[index]
        if isinstance(x, DatasetRows):  # a data set read lazily: only this batch is loaded
            x = x.load()
        if self.perm is not None:
            x = x.flatten(1)[:, self.perm].view_as(x)
        y = self.labels[index] if self.labels is not None else self.y[index]
        if self.label_map is not None:
            y = self.label_map[y]
        return x, y

    def batches(self, batch_size: int, generator: torch.Generator | None = None
                ) -> Iterator[tuple[Tensor, Tensor]]:
        """Mini-batches, shuffled with ``generator`` when one is given."""
        n = len(self)
        order = (torch.randperm(n, generator=generator, device="cpu") if generator is not None
                 else torch.arange(n, device="cpu"))
        for start in range(0, n, batch_size):
            yield self.get(order[start:start + batch_size])

    def subset(self, index: Tensor) -> Split:
        labels = self.labels[index] if self.labels is not None else None
        return Split(self.x[index], self.y[index], self.perm, labels, self.label_map)


@dataclass
class Task:
    """One task of a stream: its data and the output indices it trains and is tested on."""

    id: int
    name: str
    train: Split
    test: Split
    classes: list[int]


@dataclass
class Benchmark:
    """A stream of tasks plus what a model needs to know to be built for it."""

    name: str
    scenario: str
    tasks: list[Task]
    n_outputs: int
    input_shape: tuple[int, ...]
    sequence: bool = False
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {self.scenario!r}; valid: {', '.join(SCENARIOS)}")

    def __len__(self) -> int:
        return len(self.tasks)

    def output_mask(self, task_ids: Tensor, training_task: int) -> Tensor:
        """Boolean ``[B, n_outputs]``: outputs each sample may be classified into.

        ``task``: the sample's own task's classes; ``class``: every class of tasks
        ``<= training_task``; ``domain``: all outputs.
        """
        if self.scenario == "domain":
            return torch.ones(len(task_ids), self.n_outputs, dtype=torch.bool,
                              device=task_ids.device)
        if self.scenario == "class":
            row = self._class_table(task_ids.device)[: training_task + 1].any(0)
            return row.expand(len(task_ids), -1)
        return self._class_table(task_ids.device)[task_ids]

    def _class_table(self, device: torch.device) -> Tensor:
        """Boolean ``[tasks, n_outputs]``: each task's outputs (one copy per device)."""
        key = f"_class_table_{device}"
        if key not in self.info:
            table = torch.zeros(len(self.tasks), self.n_outputs, dtype=torch.bool, device="cpu")
            for task in self.tasks:
                table[task.id, task.classes] = True
            self.info[key] = table.to(device)
        return self.info[key]

    def describe(self) -> dict:
        return {
            "name": self.name,
            "scenario": self.scenario,
            "tasks": len(self.tasks),
            "n_outputs": self.n_outputs,
            "input_shape": list(self.input_shape),
            "train_sizes": [len(t.train) for t in self.tasks],
            "test_sizes": [len(t.test) for t in self.tasks],
            **({"class_order": self.info["class_order"]} if "class_order" in self.info else {}),
        }


# --- building blocks ---------------------------------------------------------------------------


def _limit(split: Split, n: int | None, generator: torch.Generator) -> Split:
    if n is None or n >= len(split):
        return split
    return split.subset(torch.randperm(len(split), generator=generator)[:n])


def _stratified_holdout(y: Tensor, fraction: float, generator: torch.Generator
                        ) -> tuple[Tensor, Tensor]:
    """Indices (keep, held_out) with ``fraction`` of every class held out."""
    keep, held = [], []
    for c in torch.unique(y):
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=generator)]
        k = max(1, int(round(fraction * len(idx))))
        held.append(idx[:k])
        keep.append(idx[k:])
    return torch.cat(keep).sort().values, torch.cat(held).sort().values


def class_split(
    name: str, train: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor],
    task_classes: Sequence[Sequence[int]], scenario: str = "task",
    sequence: bool = False, samples_per_task: int | None = None,
    test_samples_per_task: int | None = None, seed: int = 0,
) -> Benchmark:
    """Class-split stream: task ``k`` holds the classes ``task_classes[k]`` (any labels).

    Outputs are indexed by position in the concatenated class order, so class-incremental
    heads grow task by task in the order of the stream.
    """
    if scenario == "domain":
        raise ValueError("class-split streams have disjoint labels: use scenario task or class")
    gen = torch.Generator().manual_seed(seed)
    order = [int(c) for classes in task_classes for c in classes]
    if len(set(order)) != len(order):
        raise ValueError(f"task_classes must be disjoint, got {task_classes}")
    n_labels = int(max(int(train[1].max()), max(order))) + 1
    label_map = torch.full((n_labels,), -1, dtype=torch.long)
    label_map[torch.tensor(order)] = torch.arange(len(order))
    rows = _shared_rows(train[0]), _shared_rows(test[0])
    trains, tests = [], []
    for classes in task_classes:
        cls = torch.tensor([int(c) for c in classes])
        tr = torch.isin(train[1], cls)
        te = torch.isin(test[1], cls)
        trains.append(_limit(Split(rows[0][tr], train[1][tr], label_map=label_map),
                             samples_per_task, gen))
        tests.append(_limit(Split(rows[1][te], test[1][te], label_map=label_map),
                            test_samples_per_task, gen))
    trains = _copies_unless_all_used(trains, train[0])
    tests = _copies_unless_all_used(tests, test[0])
    tasks, pos = [], 0
    for k, classes in enumerate(task_classes):
        tasks.append(Task(id=k, name=f"{name}/{k}:" + "-".join(str(int(c)) for c in classes),
                          train=trains[k], test=tests[k],
                          classes=list(range(pos, pos + len(classes)))))
        pos += len(classes)
    return Benchmark(name, scenario, tasks, pos, tuple(train[0].shape[1:]), sequence,
                     {"class_order": order})


def _shared_rows(x: Tensor | DatasetRows) -> DatasetRows:
    """``x`` as rows a task's split selects without copying (a class split's tasks index the
    one array: on Fashion-MNIST a copy per task would double the 188 MB of training images)."""
    if isinstance(x, DatasetRows):
        return x
    return DatasetRows(x, torch.arange(len(x)), tuple(x.shape[1:]))


def _copies_unless_all_used(splits: list[Split], source: Tensor | DatasetRows) -> list[Split]:
    """The class split's views of an in-memory ``source`` when its tasks use every row (no
    copy at all), else copies of the rows they use (a few classes or ``samples_per_task``), so
    the rest of the array is freed instead of staying alive through the views. Data sets read
    lazily stay views."""
    if not isinstance(source, Tensor) or sum(len(s) for s in splits) >= len(source):
        return splits
    return [replace(s, x=s.x.load()) for s in splits]  # type: ignore[attr-defined]


def shared_label_stream(
    name: str, splits: Sequence[tuple[Split, Split]], n_classes: int, scenario: str,
    input_shape: tuple[int, ...], sequence: bool = False, info: dict | None = None,
) -> Benchmark:
    """Stream whose tasks share one label set (permuted inputs, new labels, new speakers).

    ``domain`` uses one head of ``n_classes``; ``task`` and ``class`` give every task its own
    ``n_classes`` outputs (task ``k`` owns outputs ``k * n_classes ...``).
    """
    tasks = []
    for k, (tr, te) in enumerate(splits):
        offset = 0 if scenario == "domain" else k * n_classes
        remap = torch.arange(n_classes) + offset
        tasks.append(Task(
            id=k, name=f"{name}/{k}",
            train=replace(tr, label_map=remap), test=replace(te, label_map=remap),
            classes=remap.tolist(),
        ))
    n_out = n_classes if scenario == "domain" else n_classes * len(splits)
    return Benchmark(name, scenario, tasks, n_out, input_shape, sequence, info or {})


def from_tensors(
    x_train: Tensor | Sequence[Tensor], y_train: Tensor | Sequence[Tensor],
    x_test: Tensor | Sequence[Tensor], y_test: Tensor | Sequence[Tensor],
    task_classes: Sequence[Sequence[int]] | None = None, scenario: str = "task",
    name: str = "custom", sequence: bool = False,
) -> Benchmark:
    """A custom benchmark from any tensors.

    Class-split (``task`` or ``class`` scenario): one tensor per argument and the classes of
    each task, ``from_tensors(x, y, xt, yt, [[0, 1], [2, 3]], scenario="class")``.

    Tasks that share one label set (``domain``, e.g. rotated or re-recorded inputs; also valid
    with ``task``/``class``, where every task gets its own copy of the outputs): one tensor
    per task in each argument, ``from_tensors([x0, x1], [y0, y1], [xt0, xt1], [yt0, yt1],
    scenario="domain")``.
    """
    per_task = [isinstance(v, (list, tuple)) for v in (x_train, y_train, x_test, y_test)]
    if any(per_task):
        if not all(per_task):
            raise ValueError("from_tensors: give per-task lists for all four of x_train, "
                             "y_train, x_test, y_test, or single tensors for all four")
        if task_classes is not None:
            raise ValueError("from_tensors: task_classes is for one tensor split by class; "
                             "per-task lists already say which samples form each task")
        lists = [list(v) for v in (x_train, y_train, x_test, y_test)]  # type: ignore[arg-type]
        if len({len(v) for v in lists}) != 1 or not lists[0]:
            raise ValueError(f"from_tensors: per-task lists must be non-empty and equally long, "
                             f"got lengths {[len(v) for v in lists]}")
        splits = [(Split(xtr.float(), ytr.long()), Split(xte.float(), yte.long()))
                  for xtr, ytr, xte, yte in zip(*lists, strict=True)]
        return _shared_label_custom(name, splits, scenario, sequence)
    if task_classes is None:
        raise ValueError("from_tensors: give task_classes (the classes of each task) or, for "
                         "tasks sharing one label set (scenario='domain'), per-task lists")
    if scenario == "domain":
        raise ValueError("from_tensors: a domain stream's tasks share their labels, so classes "
                         "cannot tell them apart: give per-task lists, "
                         "from_tensors([x0, x1], [y0, y1], [xt0, xt1], [yt0, yt1], "
                         "scenario='domain')")
    return class_split(name, (x_train.float(), y_train.long()),  # type: ignore[union-attr]
                       (x_test.float(), y_test.long()), task_classes,  # type: ignore[union-attr]
                       scenario, sequence)


def _shared_label_custom(name: str, splits: Sequence[tuple[Split, Split]], scenario: str,
                         sequence: bool) -> Benchmark:
    """Per-task splits over one label set: outputs ``0 .. max label`` (per task in the task and
    class scenarios), every input of the same shape."""
    shapes = {tuple(part.x.shape[1:]) for pair in splits for part in pair}
    if len(shapes) != 1:
        raise ValueError(f"{name}: every task's inputs must have one shape, got {sorted(shapes)}")
    labels = torch.cat([part.y for pair in splits for part in pair])
    if len(labels) == 0:
        raise ValueError(f"{name}: the tasks hold no samples")
    if int(labels.min()) < 0:
        raise ValueError(f"{name}: labels must be >= 0, got {int(labels.min())}")
    return shared_label_stream(name, splits, int(labels.max()) + 1, scenario, shapes.pop(),
                               sequence, {"custom": True})


def from_dataset(
    train: torch.utils.data.Dataset | Sequence[torch.utils.data.Dataset],
    test: torch.utils.data.Dataset | Sequence[torch.utils.data.Dataset],
    task_classes: Sequence[Sequence[int]] | None = None, scenario: str = "task",
    name: str = "custom", spool_dir: str | None = None,
) -> Benchmark:
    """A custom benchmark from datasets yielding ``(x, y)`` pairs, read lazily.

    Map-style datasets are read a batch at a time (``dataset[i]`` for the batch's samples
    only); their labels come from a ``targets`` attribute when it has one entry per sample
    (torchvision's convention), otherwise from one pass that keeps only the labels. An
    ``IterableDataset`` cannot be indexed, so it is read once into a memory-mapped file
    (in ``spool_dir``, default the system's temporary folder; unlinked at once, so nothing is
    left behind) from which batches are gathered: streams larger than memory work either way.
    Like :func:`from_tensors`: one dataset per argument plus ``task_classes``, or one dataset
    per task (a list) for tasks sharing one label set.
    """
    per_task = [isinstance(v, (list, tuple)) for v in (train, test)]
    if any(per_task):
        if not all(per_task) or task_classes is not None:
            raise ValueError("from_dataset: give per-task lists for both train and test (and "
                             "no task_classes), or one dataset each with task_classes")
        if len(train) != len(test) or not train:  # type: ignore[arg-type]
            raise ValueError("from_dataset: per-task lists must be non-empty and equally long")
        splits = [(_lazy_split(tr, spool_dir), _lazy_split(te, spool_dir))
                  for tr, te in zip(train, test, strict=True)]  # type: ignore[arg-type]
        return _shared_label_custom(name, splits, scenario, False)
    if task_classes is None:
        raise ValueError("from_dataset: give task_classes, or per-task lists of datasets")
    if scenario == "domain":
        raise ValueError("from_dataset: a domain stream needs one dataset per task (lists)")
    tr, te = _lazy_split(train, spool_dir), _lazy_split(test, spool_dir)  # type: ignore[arg-type]
    return class_split(name, (tr.x, tr.y), (te.x, te.y), task_classes,  # type: ignore[arg-type]
                       scenario)


def _lazy_split(ds: torch.utils.data.Dataset, spool_dir: str | None) -> Split:
    """A :class:`Split` whose inputs are :class:`DatasetRows` over ``ds``."""
    if isinstance(ds, torch.utils.data.IterableDataset):
        return _spool(ds, spool_dir)
    if not hasattr(ds, "__len__") or not hasattr(ds, "__getitem__"):
        raise ValueError(f"from_dataset: {type(ds).__name__} is neither a map-style dataset "
                         "(__len__ and __getitem__) nor an IterableDataset")
    n = len(ds)  # type: ignore[arg-type]
    if n == 0:
        raise ValueError(f"from_dataset: {type(ds).__name__} is empty")
    targets = getattr(ds, "targets", None)
    if targets is not None and len(targets) == n:
        y = torch.as_tensor(targets).long()
    else:  # one pass that keeps the labels only
        y = torch.as_tensor([int(ds[i][1]) for i in range(n)]).long()
    shape = tuple(torch.as_tensor(ds[0][0]).shape)
    return Split(DatasetRows(ds, torch.arange(n), shape), y)  # type: ignore[arg-type]


def _spool(ds: torch.utils.data.IterableDataset, spool_dir: str | None) -> Split:
    """Read an iterable dataset once into an unlinked memory-mapped file of float32 inputs."""
    file = tempfile.TemporaryFile(dir=spool_dir)
    labels: list[int] = []
    shape: tuple[int, ...] | None = None
    for x, y in ds:
        x = torch.as_tensor(x, dtype=torch.float32)
        if shape is None:
            shape = tuple(x.shape)
        elif tuple(x.shape) != shape:
            raise ValueError(f"from_dataset: sample {len(labels)} has shape {tuple(x.shape)}, "
                             f"the first one {shape}")
        file.write(x.contiguous().numpy().tobytes())
        labels.append(int(y))
    if shape is None:
        raise ValueError(f"from_dataset: {type(ds).__name__} yielded no samples")
    file.flush()
    array = np.memmap(file, dtype=np.float32, mode="c", shape=(len(labels), *shape))
    file.close()  # the mapping keeps the (already unlinked) file alive
    rows = DatasetRows(torch.from_numpy(array), torch.arange(len(labels)), shape)
    return Split(rows, torch.tensor(labels, dtype=torch.long))  # type: ignore[arg-type]


# --- named benchmarks --------------------------------------------------------------------------


def _raw(base: str, data_root: str | None, validation: bool, seed: int, rows: bool = False
         ) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor], bool, dict]:
    """Train/test tensors of a base data set; ``validation`` swaps test for a held-out 10%;
    ``rows`` presents images as sequences of their rows (:func:`image_rows`)."""
    from . import data

    sequence, meta = False, {}
    if base == "digits":
        train, test = data.load_digits()
    elif base == "fmnist":
        train, test = data.load_fashion_mnist(data_root)
    elif base == "mnist":
        train, test = data.load_mnist(data_root)
    elif base == "fsdd":
        train, test = data.load_fsdd(data_root)
        sequence = True
        meta = {"speaker": (train.meta["speaker"], test.meta["speaker"])}
        x_tr, y_tr, norm = _fsdd_features(train)
        x_te, y_te, _ = _fsdd_features(test, norm)
        tr, te = (x_tr, y_tr), (x_te, y_te)
    else:
        raise ValueError(f"unknown base data set {base!r}")
    if base != "fsdd":
        tr, te = (train.x, train.y), (test.x, test.y)
        if rows:
            tr, te, sequence = (image_rows(tr[0]), tr[1]), (image_rows(te[0]), te[1]), True
    if validation:
        gen = torch.Generator().manual_seed(10_000 + seed)
        keep, held = _stratified_holdout(tr[1], 0.1, gen)
        te = (tr[0][held], tr[1][held])
        tr = (tr[0][keep], tr[1][keep])
        meta = {k: (v[0][keep], v[0][held]) for k, v in meta.items()}
    return tr, te, sequence, meta


def image_rows(x: Tensor) -> Tensor:
    """Images ``[N, C, H, W]`` as sequences ``[N, H, C * W]``: one token (or time step) per row,
    the form in which sequence models read images (row-by-row "sequential" MNIST, Le et al.
    2015; Fashion-MNIST: 28 tokens of 28 features)."""
    if x.dim() != 4:
        raise ValueError(f"sequence presentation needs images [N, C, H, W], got shape "
                         f"{tuple(x.shape)}")
    n, c, h, w = x.shape
    return x.permute(0, 2, 1, 3).reshape(n, h, c * w)


def _fsdd_features(split, norm: tuple[Tensor, Tensor] | None = None):
    """Log-mel spectrogram ``[N, frames, mels]`` of FSDD waveforms, standardised per mel band
    with the training set's statistics (``norm``; computed from ``split`` when not given)."""
    from .encoding import log_mel_spectrogram

    feats = log_mel_spectrogram(split.x, sample_rate=8000, n_fft=256, hop_length=256, n_mels=32)
    if norm is None:
        norm = feats.mean((0, 1)), feats.std((0, 1)) + 1e-6
    mean, std = norm
    return (feats - mean) / std, split.y, norm


BASES = ("digits", "fmnist", "mnist", "fsdd")
DEFAULT_SCENARIO = {"split": "task", "permuted": "task", "fsdd-speakers": "domain",
                    "random-label": "domain", "permuted-label": "domain"}


CLASS_ORDERS = ("natural", "seed")
"""Class orders of class-split streams besides an explicit list: ``natural`` (0-1, 2-3, ...,
the order of public continual-learning libraries) and ``seed`` (drawn from the run's seed)."""


def parse_class_order(value: str | Sequence[int] | None) -> str | list[int]:
    """``natural``, ``seed`` (also for None) or a list of class labels (``"0,1,2"`` or ints)."""
    if value is None:
        return "seed"
    if isinstance(value, str):
        text = value.strip()
        if text in CLASS_ORDERS:
            return text
        try:
            return [int(t) for t in text.split(",") if t.strip()]
        except ValueError:
            raise UserError(f"class_order must be natural, seed or a comma-separated list of "
                             f"class labels, got {value!r}") from None
    if isinstance(value, int):
        return [value]
    try:
        return [int(v) for v in value]
    except (TypeError, ValueError):
        raise UserError(f"class_order must be natural, seed or a list of class labels, "
                         f"got {value!r}") from None


def resolve_class_order(value: str | Sequence[int] | None, labels: Tensor, seed: int) -> Tensor:
    """The class order of a class-split stream over ``labels`` (sorted unique labels): the
    natural order, the seed's permutation, or a given list, which must be a permutation of the
    labels."""
    order = parse_class_order(value)
    if order == "natural":
        return labels.clone()
    if order == "seed":
        return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))]
    given = torch.tensor(order, dtype=torch.long)
    if len(given) != len(labels) or not torch.equal(given.sort().values, labels.long()):
        raise UserError(f"class_order {','.join(map(str, order))} is not a permutation of the "
                         f"classes {','.join(str(int(c)) for c in labels)}")
    return given


def _split_benchmark(name: str, base: str, n_tasks: int | None, scenario: str, seed: int,
                     data_root: str | None, validation: bool, samples_per_task: int | None,
                     test_samples_per_task: int | None, rows: bool,
                     class_order: str | Sequence[int] | None = None) -> Benchmark:
    tr, te, sequence, _ = _raw(base, data_root, validation, seed, rows)
    order = resolve_class_order(class_order, torch.unique(tr[1]), seed)
    n_tasks = n_tasks or 5
    if len(order) % n_tasks:
        raise ValueError(f"{name}: {len(order)} classes cannot be split into {n_tasks} tasks")
    per = len(order) // n_tasks
    task_classes = [order[k * per:(k + 1) * per].tolist() for k in range(n_tasks)]
    return class_split(name, tr, te, task_classes, scenario, sequence, samples_per_task,
                       test_samples_per_task, seed)


def _shared_benchmark(name: str, kind: str, base: str, n_tasks: int, scenario: str, seed: int,
                      data_root: str | None, validation: bool, samples_per_task: int | None,
                      test_samples_per_task: int | None, rows: bool) -> Benchmark:
    tr, te, sequence, meta = _raw(base, data_root, validation, seed, rows)
    gen = torch.Generator().manual_seed(seed)
    n_classes = int(tr[1].max()) + 1
    n_features = tr[0][0].numel()
    splits = []
    if kind == "fsdd-speakers":
        speakers_tr, speakers_te = meta["speaker"]
        speakers = torch.unique(speakers_tr)
        if n_tasks > len(speakers):
            raise UserError(f"{name}: {n_tasks} tasks asked, the data has {len(speakers)} "
                            "speakers (one task each)")
        for s in speakers[:n_tasks]:
            a, b = speakers_tr == s, speakers_te == s
            splits.append((_limit(Split(tr[0][a], tr[1][a]), samples_per_task, gen),
                           _limit(Split(te[0][b], te[1][b]), test_samples_per_task, gen)))
    elif kind == "random-label":
        train_all = _limit(_memorisation_set(base, tr, te), samples_per_task, gen)
        for _ in range(n_tasks):
            labels = torch.randint(0, n_classes, (len(train_all),), generator=gen)
            split = Split(train_all.x, train_all.y, labels=labels)
            splits.append((split, split))
    else:
        train_all = _limit(Split(*tr), samples_per_task, gen)
        test_all = _limit(Split(*te), test_samples_per_task, gen)
        for _ in range(n_tasks):
            if kind == "permuted":
                perm = torch.randperm(n_features, generator=gen)
                splits.append((Split(train_all.x, train_all.y, perm=perm),
                               Split(test_all.x, test_all.y, perm=perm)))
            else:
                relabel = torch.randperm(n_classes, generator=gen)
                splits.append((Split(train_all.x, relabel[train_all.y]),
                               Split(test_all.x, relabel[test_all.y])))
    info = {"kind": kind, "base": base}
    return shared_label_stream(name, splits, n_classes, scenario, tuple(tr[0].shape[1:]),
                               sequence, info)


def _memorisation_set(base: str, tr: tuple[Tensor, Tensor], te: tuple[Tensor, Tensor]) -> Split:
    """Inputs of a random-label stream: every sample of the data set (train and test, since
    the task is to memorise fresh labels and is tested on the same inputs).

    Follows the random-label protocol of Dohare et al. (2024, Nature; Lyle et al. 2023 use the
    same idea): for ``digits`` all 1,797 images with their raw pixel values 0..16, the form
    in which scikit-learn ships them and in which this project's reference figures for loss of
    plasticity were measured (docs/plasticity.md).
    """
    x = torch.cat([tr[0], te[0]])
    if base == "digits":
        x = x * 16.0
    return Split(x, torch.cat([tr[1], te[1]]))


def _parse(name: str) -> tuple[str, str]:
    if name == "fsdd-digits":
        return "split", "fsdd"
    if name == "fsdd-speakers":
        return "fsdd-speakers", "fsdd"
    for kind in ("split", "permuted-label", "permuted", "random-label"):
        prefix = kind + "-"
        if name.startswith(prefix) and name[len(prefix):] in BASES:
            return kind, name[len(prefix):]
    raise unknown_name("benchmark", name, BENCHMARKS)


BENCHMARKS = (
    "split-digits", "split-fmnist", "split-mnist", "fsdd-digits", "fsdd-speakers",
    "permuted-digits", "permuted-fmnist", "permuted-mnist",
    "random-label-digits", "random-label-fmnist", "random-label-fsdd",
    "permuted-label-digits", "permuted-label-fmnist", "permuted-label-fsdd",
)
DEFAULT_TASKS = {"split": 5, "permuted": 10, "fsdd-speakers": 6, "random-label": 50,
                 "permuted-label": 50}


def make_benchmark(
    name: str, *, n_tasks: int | None = None, scenario: str | None = None, seed: int = 0,
    data_root: str | None = None, validation: bool = False,
    samples_per_task: int | None = None, test_samples_per_task: int | None = None,
    sequence: bool = False, class_order: str | Sequence[int] | None = None,
) -> Benchmark:
    """Build a named benchmark (see :data:`BENCHMARKS`), seeded for class order/permutations,
    or a user's one named ``path/file.py:factory`` / ``package.module:factory``
    (:func:`load_benchmark`).

    ``validation=True`` replaces each test set with 10% held out from the training data, for
    tuning hyper-parameters without touching the test set. ``sequence=True`` presents images
    as sequences of rows (``[H, C * W]``: 28 tokens of 28 features for Fashion-MNIST), for
    transformers and recurrent or spiking networks that read one row per step; streams of
    spoken digits are sequences already. ``class_order`` (class-split streams only):
    ``"seed"`` (default, drawn from ``seed``), ``"natural"`` or a permutation of the class
    labels (``"0,1,2,..."`` or a list); task ``k`` gets the ``k``-th group of classes.
    """
    from .loading import is_spec

    if is_spec(name):
        if sequence:
            raise UserError(f"sequence=True (--sequence) applies to named benchmarks; the factory "
                            f"{name!r} presents its own data (benchmarks.image_rows turns "
                            "images into rows)")
        return load_benchmark(name, tasks=n_tasks, scenario=scenario, seed=seed,
                              data_root=data_root, validation=validation,
                              samples_per_task=samples_per_task,
                              test_samples_per_task=test_samples_per_task)
    kind, base = _parse(name)
    order = parse_class_order(class_order)
    if kind != "split" and order != "seed":
        raise UserError(f"class_order applies to class-split benchmarks (split-*, fsdd-digits), "
                         f"not to {name}")
    if n_tasks is not None and n_tasks < 1:
        raise UserError(f"{name}: the number of tasks must be >= 1, got {n_tasks}")
    scenario = scenario or DEFAULT_SCENARIO.get(kind, "task")
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; valid: {', '.join(SCENARIOS)}")
    args = (seed, data_root, validation, samples_per_task, test_samples_per_task, sequence)
    if kind == "split":
        return _split_benchmark(name, base, n_tasks, scenario, *args, class_order=order)
    return _shared_benchmark(name, kind, base, n_tasks or DEFAULT_TASKS[kind], scenario, *args)


def load_benchmark(spec: str, **options: object) -> Benchmark:
    """The benchmark a user's factory returns; ``spec`` is ``path/file.py:factory`` or
    ``package.module:factory`` (:func:`neurosculpt.loading.load_object`).

    The factory receives those of the run's options (``seed``, ``tasks``, ``scenario``,
    ``data_root``, ``validation``, ``samples_per_task``, ``test_samples_per_task``) that are set
    and that its signature names (its own defaults hold otherwise); an option that is set but
    not taken is an error rather than ignored.
    """
    from .loading import load_object

    factory = load_object(spec, "benchmark factory")
    if isinstance(factory, Benchmark):
        made, taken = factory, set()
    elif callable(factory):
        params = inspect.signature(factory).parameters
        takes_all = any(p.kind is p.VAR_KEYWORD for p in params.values())
        taken = {k for k, v in options.items()
                 if (takes_all or k in params) and v is not None}
        try:
            made = factory(**{k: options[k] for k in taken})
        except Exception as err:
            raise ValueError(f"benchmark factory {spec!r} failed: {type(err).__name__}: "
                             f"{err}") from err
    else:
        raise ValueError(f"benchmark factory {spec!r} is a {type(factory).__name__}, not a "
                         "function returning a neurosculpt.Benchmark")
    refused = sorted(k for k, v in options.items()
                     if k not in taken and v not in (None, False) and k != "seed")
    if refused:
        raise ValueError(f"benchmark factory {spec!r} does not take {', '.join(refused)}; its "
                         "parameters decide the stream")
    if not isinstance(made, Benchmark):
        raise ValueError(f"benchmark factory {spec!r} returned a {type(made).__name__}, not a "
                         "neurosculpt.Benchmark (build one with from_tensors or from_dataset)")
    scenario = options.get("scenario")
    if scenario is not None and made.scenario != scenario:
        raise ValueError(f"benchmark factory {spec!r} made a {made.scenario!r} stream, not the "
                         f"requested {scenario!r}")
    return made
