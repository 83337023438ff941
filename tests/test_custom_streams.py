"""A researcher's own streams and strategies as first-class as the named ones (issue 16): a
Benchmark object or a ``file.py:factory`` gets a run folder that resumes identically and
compares; per-task tensors make a domain stream; datasets are read lazily (map-style and
iterable); the docs' rotated-digits stream and strategy file run end to end through the CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from run_folders import simulate_crash

import neurosculpt
from neurosculpt import from_dataset, from_tensors, runs
from neurosculpt.cli import main
from neurosculpt.strategies import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
ROTATED = f"{ROOT / 'examples' / 'rotated_digits.py'}:rotated_digits"
ANCHOR = str(ROOT / "examples" / "anchor_strategy.py")
TINY = ["-m", "ann-mlp", "--model-param", "hidden=16,16", "--batch-size", "32",
        "--epochs", "1", "--threads", "1", "--no-progress", "--quiet"]


@pytest.fixture
def clean_registry():
    before = dict(REGISTRY)
    yield
    REGISTRY.clear()
    REGISTRY.update(before)


def _toy_domain(tasks: int = 3, n: int = 48, seed: int = 0):
    """Per-task tensors over one label set (4 classes), each task's inputs shifted."""
    gen = torch.Generator().manual_seed(seed)
    xs, ys, xts, yts = [], [], [], []
    for k in range(tasks):
        y = torch.arange(n) % 4
        x = torch.nn.functional.one_hot(y, 6).float() + 0.3 * torch.randn(n, 6, generator=gen)
        xs.append(x + k)
        ys.append(y)
        xts.append(x[: n // 2] + k)
        yts.append(y[: n // 2])
    return xs, ys, xts, yts


# --- per-task tensors, Benchmark objects -------------------------------------------------------


def test_from_tensors_takes_per_task_tensors_for_a_domain_stream():
    bench = from_tensors(*_toy_domain(), scenario="domain", name="shifted")
    assert bench.scenario == "domain" and bench.n_outputs == 4 and len(bench) == 3
    assert all(t.classes == [0, 1, 2, 3] for t in bench.tasks)
    x, y = bench.tasks[2].train.get(torch.arange(4))
    assert torch.equal(y, torch.tensor([0, 1, 2, 3])) and float(x.mean()) > 1.5
    task = from_tensors(*_toy_domain(), scenario="task")  # the same tasks, a head each
    assert task.n_outputs == 12 and task.tasks[1].classes == [4, 5, 6, 7]
    xs, ys, xts, yts = _toy_domain()
    with pytest.raises(ValueError, match="per-task lists"):
        from_tensors(xs[0], ys[0], xts[0], yts[0], [[0, 1]], scenario="domain")
    with pytest.raises(ValueError, match="equally long"):
        from_tensors(xs, ys[:2], xts, yts, scenario="domain")


def test_run_on_a_benchmark_object_writes_a_run_folder_that_resumes_and_compares(
        tmp_path, capsys):
    bench = from_tensors(*_toy_domain(), scenario="domain", name="shifted")
    options = {"strategy": "ewc", "model": "ann-mlp", "epochs": 1, "batch_size": 16,
               "progress": False, "keep_checkpoints": True,
               "model_params": {"hidden": (16, 16)}}
    full = neurosculpt.run(benchmark=bench, out=tmp_path / "full", **options)
    config = json.loads((tmp_path / "full" / "config.json").read_text())
    assert config["benchmark"] == "shifted" and config["scenario"] == "domain"
    recorded = neurosculpt.read_results(tmp_path / "full")["benchmark"]
    assert recorded["name"] == "shifted" and recorded["source"] == "python"

    simulate_crash(tmp_path / "full", tmp_path / "cut", 1)
    with pytest.raises(ValueError, match=r"in-memory benchmark 'shifted'.*benchmark="):
        neurosculpt.resume(tmp_path / "cut")
    assert main(["run", "--resume", str(tmp_path / "cut")]) == 2  # one line, no traceback
    assert "in-memory benchmark 'shifted'" in capsys.readouterr().err
    other = from_tensors(*_toy_domain(tasks=2), scenario="domain", name="shifted")
    with pytest.raises(ValueError, match="differs .* in tasks"):
        neurosculpt.resume(tmp_path / "cut", benchmark=other)
    resumed = neurosculpt.resume(tmp_path / "cut", benchmark=bench)
    assert resumed.accuracy_matrix == full.accuracy_matrix
    assert resumed.metrics == full.metrics

    assert main(["compare", str(tmp_path / "full"), str(tmp_path / "cut")]) == 0
    table = capsys.readouterr().out
    assert "shifted/domain ewc ann-mlp" in table and "None" not in table
    with pytest.raises(ValueError, match="tasks cannot apply to a Benchmark object"):
        neurosculpt.run(benchmark=bench, tasks=2, **options)


def test_benchmark_factory_errors_are_one_line(tmp_path, capsys):
    factory = tmp_path / "streams.py"
    factory.write_text("import neurosculpt\n"
                       "def fixed():\n    return 3\n"
                       "def broken(seed):\n    raise KeyError('x')\n")
    for name, message in (("fixed", "returned a int, not a neurosculpt.Benchmark"),
                          ("broken", "failed: KeyError"),
                          ("nothing", "has no attribute 'nothing'")):
        assert main(["run", "-b", f"{factory}:{name}", *TINY, "-o", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1
    assert main(["run", "-b", ROTATED, "--samples-per-task", "10", *TINY,
                 "-o", str(tmp_path / "x")]) == 2
    assert "does not take samples_per_task" in capsys.readouterr().err


# --- the docs' example: rotated digits, a strategy file, --device cpu, through the CLI --------


def test_rotated_digits_strategy_file_and_device_cpu_end_to_end(tmp_path, capsys,
                                                                 clean_registry):
    """docs/streams.md and docs/strategies.md: a user's domain stream (file:factory) and a
    user's strategy file (--plugin) on --device cpu; the run resumes identically from the CLI
    (which rebuilds both from config.json) and compares under the stream's name."""
    REGISTRY.pop("anchor", None)
    args = ["run", "-b", ROTATED, "--plugin", ANCHOR, "-s", "anchor", "-p", "lam=0.1",
            "--device", "cpu", "--keep-checkpoints", *TINY]
    assert main([*args, "-o", str(tmp_path / "full")]) == 0
    first = capsys.readouterr().out
    assert first.startswith("rotated-digits (domain), strategy anchor")
    config = json.loads((tmp_path / "full" / "config.json").read_text())
    assert config["benchmark"] == ROTATED and config["plugins"] == [ANCHOR]
    assert config["device"] == "cpu" and config["strategy_params"] == {"anchor": {"lam": 0.1}}
    full = neurosculpt.read_results(tmp_path / "full")
    assert full["benchmark"]["tasks"] == 4 and full["benchmark"]["source"] == "factory"
    assert [t["anchor"]["tasks_done"] for t in full["tasks"]] == [1, 2, 3, 4]

    simulate_crash(tmp_path / "full", tmp_path / "cut", 2)
    REGISTRY.pop("anchor")  # as in a fresh process: only config.json says where it is
    for name in [m for m in sys.modules if m.startswith("neurosculpt_user_anchor_strategy")]:
        del sys.modules[name]
    assert main(["run", "--resume", str(tmp_path / "cut"), "--quiet"]) == 0
    again = capsys.readouterr().out
    resumed = neurosculpt.read_results(tmp_path / "cut")
    assert resumed["accuracy_matrix"] == full["accuracy_matrix"]
    assert resumed["metrics"] == full["metrics"]
    assert [t["loss"] for t in resumed["tasks"]] == [t["loss"] for t in full["tasks"]]
    assert first.splitlines()[:7] == again.splitlines()[:7]

    assert main(["compare", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    assert "rotated-digits/domain anchor ann-mlp" in table and "None" not in table

    assert main(["list", "--plugin", ANCHOR, "anchor"]) == 0
    listing = capsys.readouterr().out
    assert "lam = 1.0" in listing and "strength of the pull" in listing


def test_unknown_strategy_without_its_plugin_is_named(tmp_path, capsys, clean_registry):
    REGISTRY.pop("anchor", None)
    assert main(["run", "-b", "split-digits", "-s", "anchor", *TINY, "-o", str(tmp_path)]) == 2
    assert "unknown strategy 'anchor'" in capsys.readouterr().err
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    assert main(["list", "--plugin", str(empty)]) == 2
    assert "registered no strategy" in capsys.readouterr().err


def test_entry_point_strategies_are_registered_at_startup(tmp_path, monkeypatch,
                                                          clean_registry):
    """An installed package's ``neurosculpt.strategies`` entry point (a real distribution's
    metadata on sys.path) makes its strategy available by name."""
    from neurosculpt import strategies

    (tmp_path / "epstrat.py").write_text(
        "from neurosculpt.strategies import Strategy\n"
        "class Halve(Strategy):\n"
        "    '''Halves the loss.\n\n    Args:\n        factor: what the loss is multiplied by.\n"
        "    '''\n"
        "    name = 'halve'\n"
        "    def __init__(self, factor: float = 0.5):\n"
        "        super().__init__()\n        self.factor = factor\n"
        "        self.hparams = {'factor': factor}\n"
        "    def loss(self, ctx, loss):\n        return loss * self.factor\n")
    info = tmp_path / "epstrat-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: epstrat\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[neurosculpt.strategies]\nhalf = epstrat:Halve\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(strategies, "_entry_points_loaded", False)
    monkeypatch.delitem(sys.modules, "epstrat", raising=False)
    assert "half" in strategies.available()
    assert strategies.make_strategy("half", {"factor": 0.25}).factor == 0.25
    assert "factor = 0.5" in strategies.describe("half")


# --- lazy datasets -----------------------------------------------------------------------------


class _Counting(torch.utils.data.Dataset):
    """A map-style dataset that counts reads and refuses to be read whole (no iteration, no
    slices): a stand-in for one larger than memory."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, targets: bool = True) -> None:
        self.x, self.y, self.reads = x, y, 0
        if targets:
            self.targets = y.tolist()

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        if not isinstance(i, int):
            raise TypeError(f"one sample at a time, got {type(i).__name__}")
        self.reads += 1
        return self.x[i], int(self.y[i])

    def __iter__(self):
        raise AssertionError("the whole dataset must not be iterated")


class _Stream(torch.utils.data.IterableDataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __iter__(self):
        for i in range(len(self.y)):
            yield self.x[i].numpy(), int(self.y[i])


def _toy(n: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 4
    return torch.randn(n, 5, generator=gen) + y[:, None], y


def test_from_dataset_reads_a_batch_at_a_time():
    (x, y), (xt, yt) = _toy(80, 0), _toy(40, 1)
    train, test = _Counting(x, y), _Counting(xt, yt)
    bench = from_dataset(train, test, [[0, 1], [2, 3]], scenario="class")
    assert train.reads == 1 and test.reads == 1  # the labels come from targets; one shape probe
    xb, yb = bench.tasks[1].train.get(torch.arange(7))
    assert train.reads == 8 and xb.shape == (7, 5)
    reference = from_tensors(x, y, xt, yt, [[0, 1], [2, 3]], scenario="class")
    assert torch.equal(xb, reference.tasks[1].train.get(torch.arange(7))[0])
    assert torch.equal(yb, reference.tasks[1].train.get(torch.arange(7))[1])
    without_targets = _Counting(x, y, targets=False)
    from_dataset(without_targets, test, [[0, 1], [2, 3]])
    assert without_targets.reads == len(y) + 1  # one pass for the labels, inputs not kept

    learner = neurosculpt.Learner(
        neurosculpt.build_model(neurosculpt.ModelConfig("ann-mlp", hidden=(8,)), (5,), 4),
        bench, [], neurosculpt.TrainConfig(epochs=1, batch_size=16, progress=False,
                                           energy_samples=0))
    reads = train.reads
    learner.run()
    trained = sum(len(t.train) for t in bench.tasks)
    assert train.reads - reads == trained  # every sample once per epoch, in batches


def test_iterable_dataset_is_spooled_to_a_memory_mapped_file(tmp_path):
    (x, y), (xt, yt) = _toy(60, 2), _toy(20, 3)
    bench = from_dataset(_Stream(x, y), _Stream(xt, yt), [[0, 1], [2, 3]],
                         spool_dir=str(tmp_path))
    assert list(tmp_path.iterdir()) == []  # the spool file is unlinked at once
    reference = from_tensors(x, y, xt, yt, [[0, 1], [2, 3]])
    for a, b in zip(bench.tasks, reference.tasks, strict=True):
        index = torch.arange(len(b.train))
        assert torch.equal(a.train.get(index)[0], b.train.get(index)[0])
        assert torch.equal(a.test.get(torch.arange(3))[1], b.test.get(torch.arange(3))[1])
    domain = from_dataset([_Stream(x, y), _Stream(x + 1, y)], [_Stream(xt, yt)] * 2,
                          scenario="domain")
    assert domain.n_outputs == 4 and len(domain) == 2
    result = neurosculpt.run(benchmark=domain, model="ann-mlp", epochs=1, progress=False,
                             model_params={"hidden": (8,)})
    assert len(result.accuracy_matrix) == 2


def test_run_on_benchmark_object_with_runs_api(tmp_path):
    """``RunConfig(benchmark=<Benchmark>)`` works like the keyword."""
    bench = from_tensors(*_toy_domain(tasks=2), scenario="domain", name="two")
    config = runs.RunConfig(benchmark=bench, model="ann-mlp", progress=False,  # type: ignore[arg-type]
                            model_params={"hidden": (8,)})
    result = neurosculpt.run(config, out=tmp_path)
    assert result.results["config"]["benchmark"] == "two"


def test_plugin_naming_one_class(tmp_path, capsys, clean_registry):
    file = tmp_path / "mine.py"
    file.write_text("from neurosculpt.strategies import Strategy\n"
                    "from neurosculpt.strategies.ewc import EWC\n"
                    "class Twice(Strategy):\n    name = 'twice'\n"
                    "    def loss(self, ctx, loss):\n        return 2 * loss\n"
                    "class Copy(EWC):\n    pass\n")
    assert main(["list", "--plugin", f"{file}:Twice"]) == 0
    assert "twice" in capsys.readouterr().out
    assert main(["list", "--plugin", f"{file}:Copy"]) == 2  # would have replaced 'ewc'
    assert "needs its own `name`" in capsys.readouterr().err
    assert REGISTRY["ewc"] == "ewc:EWC"
