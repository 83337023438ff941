"""Named benchmarks: streams of tasks for the three continual-learning scenarios.

Scenarios (van de Ven & Tolias 2019, "Three scenarios for continual learning"):

- ``task``: task identity is given at test time. Each task gets its own output slice (a head
  per task); the loss and the prediction only look at that slice.
- ``class``: one head, no task identity; prediction over every class seen so far.
- ``domain``: the label set stays the same and the inputs shift; one shared head.

Each task holds its data once; per-task input permutations and relabelings are applied to a
batch when it is drawn, so ``permuted-*`` streams of hundreds of tasks do not hold copies.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .validation import UserError, unknown_name

SCENARIOS = ("task", "class", "domain")


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
        order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
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
            return torch.ones(len(task_ids), self.n_outputs, dtype=torch.bool)
        if self.scenario == "class":
            row = self._class_table()[: training_task + 1].any(0)
            return row.expand(len(task_ids), -1)
        return self._class_table()[task_ids]

    def _class_table(self) -> Tensor:
        if "_class_table" not in self.info:
            table = torch.zeros(len(self.tasks), self.n_outputs, dtype=torch.bool)
            for task in self.tasks:
                table[task.id, task.classes] = True
            self.info["_class_table"] = table
        return self.info["_class_table"]

    def describe(self) -> dict:
        return {
            "name": self.name,
            "scenario": self.scenario,
            "tasks": len(self.tasks),
            "n_outputs": self.n_outputs,
            "input_shape": list(self.input_shape),
            "train_sizes": [len(t.train) for t in self.tasks],
            "test_sizes": [len(t.test) for t in self.tasks],
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
    tasks, pos = [], 0
    for k, classes in enumerate(task_classes):
        cls = torch.tensor([int(c) for c in classes])
        tr = torch.isin(train[1], cls)
        te = torch.isin(test[1], cls)
        tasks.append(Task(
            id=k,
            name=f"{name}/{k}:" + "-".join(str(int(c)) for c in classes),
            train=_limit(Split(train[0][tr], train[1][tr], label_map=label_map),
                         samples_per_task, gen),
            test=_limit(Split(test[0][te], test[1][te], label_map=label_map),
                        test_samples_per_task, gen),
            classes=list(range(pos, pos + len(classes))),
        ))
        pos += len(classes)
    return Benchmark(name, scenario, tasks, pos, tuple(train[0].shape[1:]), sequence,
                     {"class_order": order})


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
            train=Split(tr.x, tr.y, tr.perm, tr.labels, remap),
            test=Split(te.x, te.y, te.perm, te.labels, remap),
            classes=remap.tolist(),
        ))
    n_out = n_classes if scenario == "domain" else n_classes * len(splits)
    return Benchmark(name, scenario, tasks, n_out, input_shape, sequence, info or {})


def from_tensors(
    x_train: Tensor, y_train: Tensor, x_test: Tensor, y_test: Tensor,
    task_classes: Sequence[Sequence[int]], scenario: str = "task", name: str = "custom",
    sequence: bool = False,
) -> Benchmark:
    """A custom class-split benchmark from any tensors, e.g.::

        bench = from_tensors(x, y, xt, yt, [[0, 1], [2, 3]], scenario="class")
    """
    return class_split(name, (x_train.float(), y_train.long()), (x_test.float(), y_test.long()),
                       task_classes, scenario, sequence)


def from_dataset(train: torch.utils.data.Dataset, test: torch.utils.data.Dataset,
                 task_classes: Sequence[Sequence[int]], scenario: str = "task",
                 name: str = "custom") -> Benchmark:
    """A custom benchmark from any map-style datasets yielding ``(x, y)`` pairs."""

    def stack(ds: torch.utils.data.Dataset) -> tuple[Tensor, Tensor]:
        xs, ys = zip(*(ds[i] for i in range(len(ds))), strict=True)  # type: ignore[arg-type]
        return torch.stack([torch.as_tensor(x) for x in xs]).float(), torch.as_tensor(ys).long()

    (xtr, ytr), (xte, yte) = stack(train), stack(test)
    return from_tensors(xtr, ytr, xte, yte, task_classes, scenario, name)


# --- named benchmarks --------------------------------------------------------------------------


def _raw(base: str, data_root: str | None, validation: bool, seed: int
         ) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor], bool, dict]:
    """Train/test tensors of a base data set; ``validation`` swaps test for a held-out 10%."""
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
    if validation:
        gen = torch.Generator().manual_seed(10_000 + seed)
        keep, held = _stratified_holdout(tr[1], 0.1, gen)
        te = (tr[0][held], tr[1][held])
        tr = (tr[0][keep], tr[1][keep])
        meta = {k: (v[0][keep], v[0][held]) for k, v in meta.items()}
    return tr, te, sequence, meta


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


def _split_benchmark(name: str, base: str, n_tasks: int | None, scenario: str, seed: int,
                     data_root: str | None, validation: bool, samples_per_task: int | None,
                     test_samples_per_task: int | None) -> Benchmark:
    tr, te, sequence, _ = _raw(base, data_root, validation, seed)
    labels = torch.unique(tr[1])
    order = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))]
    n_tasks = n_tasks or 5
    if len(order) % n_tasks:
        raise ValueError(f"{name}: {len(order)} classes cannot be split into {n_tasks} tasks")
    per = len(order) // n_tasks
    task_classes = [order[k * per:(k + 1) * per].tolist() for k in range(n_tasks)]
    return class_split(name, tr, te, task_classes, scenario, sequence, samples_per_task,
                       test_samples_per_task, seed)


def _shared_benchmark(name: str, kind: str, base: str, n_tasks: int, scenario: str, seed: int,
                      data_root: str | None, validation: bool, samples_per_task: int | None,
                      test_samples_per_task: int | None) -> Benchmark:
    tr, te, sequence, meta = _raw(base, data_root, validation, seed)
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
) -> Benchmark:
    """Build a named benchmark (see :data:`BENCHMARKS`), seeded for class order/permutations.

    ``validation=True`` replaces each test set with 10% held out from the training data, for
    tuning hyper-parameters without touching the test set.
    """
    kind, base = _parse(name)
    if n_tasks is not None and n_tasks < 1:
        raise UserError(f"{name}: the number of tasks must be >= 1, got {n_tasks}")
    scenario = scenario or DEFAULT_SCENARIO.get(kind, "task")
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; valid: {', '.join(SCENARIOS)}")
    args = (seed, data_root, validation, samples_per_task, test_samples_per_task)
    if kind == "split":
        return _split_benchmark(name, base, n_tasks, scenario, *args)
    return _shared_benchmark(name, kind, base, n_tasks or DEFAULT_TASKS[kind], scenario, *args)
