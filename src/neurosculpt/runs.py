"""Run folders: resolved config, results.json, metrics.csv, a checkpoint after every task, resume.

A run folder holds::

    config.json            the resolved run configuration (every default filled in)
    results.json           accuracy matrix, metrics, per-task history
                           (schema: docs/results-schema.md)
    metrics.csv            one row per finished task
    checkpoints/task_K.pt  model, optimizer, strategies and loop state after task K (only the
                           latest unless ``keep_checkpoints``: a 100-task stream would
                           otherwise hold 100 copies of the model and its optimizer state)
    curves.csv, tensorboard/  per-step curves, when asked for (``curves``, :mod:`.curves`)

Every file is written to a temporary name and renamed, so a crash (even ``kill -9``) never
leaves a half-written file; ``neurosculpt run --resume RUN`` continues from the last checkpoint
and ends with the same results as an uninterrupted run. Checkpoints load with
``torch.load(weights_only=True)``: no pickled code is ever executed.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import torch
from torch import nn

from . import __version__
from .adapter import build_user_model, model_name
from .benchmarks import BENCHMARKS, Benchmark, make_benchmark, parse_class_order
from .curves import curve_loggers
from .devices import resolve_device
from .loading import is_spec
from .loop import Learner, TrainConfig, TrainingDiverged
from .models import ModelConfig, Network, build_model
from .renames import upgrade_checkpoint, upgrade_results
from .strategies import hyper_parameters, load_plugin, make_strategies
from .strategies.base import Strategy, state_lost_in_checkpoint
from .validation import (
    UserError,
    chance_warning,
    check_values,
    config_differences,
    first_line,
    lock_run_folder,
    prepare_out,
    read_json,
    read_toml,
    remove_temporary_files,
    torch_load_reason,
    warn,
)

CHECKPOINT_FORMAT = 1


@dataclass
class RunConfig(TrainConfig):
    """Everything that defines a run: the optimisation settings of :class:`TrainConfig` plus
    what to build. Keys of a ``run.toml`` are these field names.

    ``benchmark``: a name of :data:`BENCHMARKS`, ``path/file.py:factory`` /
    ``package.module:factory`` (a function returning a :class:`Benchmark`), or, for a
    ``Benchmark`` object given to :func:`run`, that object's name. ``plugins``: strategy
    plugins to import first (:func:`neurosculpt.strategies.load_plugin`). ``device``: ``cpu``,
    ``cuda``, ``cuda:N`` or ``mps``.
    """

    benchmark: str = "split-digits"
    strategy: str = "naive"
    model: str = "snn-mlp"
    scenario: str | None = None
    tasks: int | None = None
    data_root: str | None = None
    samples_per_task: int | None = None
    test_samples_per_task: int | None = None
    validation: bool = False
    sequence: bool = False
    class_order: str | list[int] = "seed"
    threads: int | None = None
    keep_checkpoints: bool = False
    curves: list = field(default_factory=list)  # per-step logs: "tensorboard", "csv" (curves.py)
    device: str = "cpu"
    plugins: list = field(default_factory=list)
    model_params: dict = field(default_factory=dict)
    strategy_params: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.class_order = parse_class_order(self.class_order)

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_dict(cls, values: dict, source: str = "config") -> RunConfig:
        unknown = sorted(set(values) - set(cls.keys()))
        if unknown:
            raise UserError(
                f"unknown key(s) {unknown} in {source}; valid keys: {', '.join(cls.keys())}"
            )
        check_values(cls, values, source)
        return cls(**values)

    def train_config(self) -> TrainConfig:
        return TrainConfig(**{k: getattr(self, k) for k in TrainConfig.keys()})

    def model_config(self) -> ModelConfig:
        params = dict(self.model_params)
        unknown = sorted(set(params) - set(ModelConfig.keys()) | ({"kind"} & set(params)))
        if unknown:
            raise UserError(
                f"unknown model parameter(s) {unknown}; valid: "
                f"{', '.join(k for k in ModelConfig.keys() if k != 'kind')}"
            )
        check_values(ModelConfig, params, "model parameters (--model-param / [model_params])")
        return ModelConfig(kind=self.model, **params)


def load_toml(path: str | Path) -> dict:
    """Read a ``run.toml``: top-level keys of :class:`RunConfig`, ``[model_params]`` and
    ``[strategy_params]`` tables."""
    return read_toml(path)


# --- atomic files ------------------------------------------------------------------------------


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp makes the file private (0600); a run folder's files get the umask's mode,
        # like every other file the user writes
        if hasattr(os, "fchmod"):  # POSIX
            os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: Path, obj: object) -> None:
    data = json.dumps(_jsonable(obj), indent=2, allow_nan=False).encode()
    _atomic_write(path, lambda f: f.write(data))


def _jsonable(obj: object) -> object:
    if isinstance(obj, float):
        return None if math.isnan(obj) or math.isinf(obj) else obj
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, torch.Tensor):
        return _jsonable(obj.tolist())
    return obj


def write_text(path: Path, text: str) -> None:
    """Write a text file atomically (tables, reports)."""
    data = text.encode()
    _atomic_write(path, lambda f: f.write(data))


def save_checkpoint(path: Path, state: dict) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    _atomic_write(path, lambda f: f.write(buffer.getvalue()))


def load_checkpoint(path: Path, device: str | torch.device = "cpu") -> dict:
    """A checkpoint's state with every tensor on ``device`` (the run's, whatever the device the
    checkpoint was written on)."""
    try:
        state = torch.load(path, map_location=torch.device(device), weights_only=True)
    except Exception as exc:
        reason = torch_load_reason(exc)
        raise UserError(f"checkpoint {path} cannot be read; delete it to resume from the "
                        f"previous one ({reason})") from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise UserError(f"checkpoint {path} has format {found}, "
                        f"this neurosculpt reads format {CHECKPOINT_FORMAT}")
    return upgrade_checkpoint(state)


def load_state_resizing(module: nn.Module, state: dict) -> None:
    """``load_state_dict`` that first gives parameters and buffers the saved shapes.

    Growth and compaction change tensor shapes during a run; the checkpoint's tensors record
    them, so a freshly built module is reshaped here and then loaded strictly.
    """
    for key, value in state.items():
        if not torch.is_tensor(value):
            continue
        *path, name = key.split(".")
        owner = module.get_submodule(".".join(path)) if path else module
        if name in owner._parameters:
            old = owner._parameters[name]
            if old is None or old.shape != value.shape:
                requires_grad = True if old is None else old.requires_grad
                owner._parameters[name] = nn.Parameter(
                    torch.empty_like(value), requires_grad=requires_grad)
        elif name in owner._buffers:
            old = owner._buffers[name]
            if old is None or old.shape != value.shape or old.dtype != value.dtype:
                owner._buffers[name] = torch.empty_like(value)
        elif name != "_extra_state":
            owner.register_buffer(name, torch.empty_like(value))
    module.load_state_dict(state, strict=True)


# --- the run -----------------------------------------------------------------------------------


@dataclass
class RunResult:
    """What :func:`run` returns: the results dict plus the live objects."""

    results: dict
    path: Path | None
    model: Network
    benchmark: Benchmark
    strategies: list[Strategy]

    @property
    def accuracy_matrix(self) -> list[list[float | None]]:
        return self.results["accuracy_matrix"]

    @property
    def metrics(self) -> dict:
        return self.results["metrics"]

    def table(self) -> str:
        from .report import format_run

        return format_run(self.results)


class RunClock:
    """Wall and CPU time of a run, carried across resumes (a checkpoint stores both)."""

    def __init__(self) -> None:
        self.wall_start, self.cpu_start = time.time(), time.process_time()
        self.wall_before, self.cpu_before = 0.0, 0.0

    def resume(self, wall: float, cpu: float) -> None:
        """Time already spent before this process took over."""
        self.wall_before, self.cpu_before = wall, cpu

    def wall(self) -> float:
        return self.wall_before + time.time() - self.wall_start

    def cpu(self) -> float:
        return self.cpu_before + time.process_time() - self.cpu_start


class Run:
    """Builds everything a config names and drives the learner, writing the run folder."""

    def __init__(self, config: RunConfig, out: Path | None,
                 log=None, benchmark: Benchmark | None = None, model: object = None) -> None:
        self.config = config
        self.out = out
        self.log = log or (lambda message: None)
        if config.threads:
            torch.set_num_threads(config.threads)
        self.device = resolve_device(config.device)
        for plugin in config.plugins:
            load_plugin(plugin)
        user_model = model if model is not None else (
            config.model if is_spec(config.model) else None)
        # checked before loading any data
        self.model_config = config.model_config() if user_model is None else None
        self.strategies = make_strategies(config.strategy, config.strategy_params, log=self.log)
        if benchmark is not None:
            self.benchmark, self.benchmark_source = benchmark, "python"
        else:
            self.benchmark = make_benchmark(
                config.benchmark, n_tasks=config.tasks, scenario=config.scenario,
                seed=config.seed, data_root=config.data_root, validation=config.validation,
                samples_per_task=config.samples_per_task,
                test_samples_per_task=config.test_samples_per_task, sequence=config.sequence,
                class_order=config.class_order,
            )
            self.benchmark_source = "factory" if is_spec(config.benchmark) else "named"
        torch.manual_seed(config.seed)
        if user_model is not None:
            self.model = build_user_model(user_model, self.benchmark.input_shape,
                                          self.benchmark.n_outputs, config.model_params)
        else:
            self.model = build_model(self.model_config, self.benchmark.input_shape,
                                     self.benchmark.n_outputs, sequence=self.benchmark.sequence)
        self.model.to(self.device)
        for strategy in self.strategies:
            strategy.to(self.device)
        self.learner = Learner(self.model, self.benchmark, self.strategies,
                               config.train_config(), log=self.log,
                               observers=curve_loggers(config.curves, out))
        self.clock = RunClock()
        self.status = "running"
        self.error: str | None = None

    # --- files ----------------------------------------------------------------------------------
    def resolved_config(self) -> dict:
        model_params = (self.model_config.to_dict() if self.model_config is not None
                        else dict(self.config.model_params))
        return {**asdict(self.config), "model_params": model_params,
                "strategy_params": hyper_parameters(self.strategies)}

    def recorded_config(self) -> dict:
        """:meth:`resolved_config` as JSON holds it (lists, no NaN): what a checkpoint records
        and what :meth:`check_checkpoint` compares with it."""
        return json.loads(json.dumps(_jsonable(self.resolved_config())))

    def results(self) -> dict:
        summary = self.learner.summary()
        return {
            "neurosculpt_version": __version__,
            "status": self.status,
            "error": self.error,
            "config": self.resolved_config(),
            "benchmark": {**self.benchmark.describe(), "source": self.benchmark_source},
            **summary,
            "wall_time_s": self.clock.wall(),
            "cpu_time_s": self.clock.cpu(),
            "command": " ".join(sys.argv),
        }

    def write(self, results: dict | None = None) -> None:
        if self.out is None:
            return
        write_json(self.out / "results.json", results if results is not None else self.results())
        rows = self.learner.tasks
        columns = ["task", "name", "accuracy", "average_seen_accuracy", "loss", "train_time_s",
                   "eval_time_s", "parameters", "live_synapses", "peak_memory_mb"]
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        _atomic_write(self.out / "metrics.csv", lambda f: f.write(text.getvalue().encode()))

    def task_end(self, learner: Learner) -> None:
        """After each task: warn if it learned nothing, then checkpoint."""
        record = learner.tasks[-1]
        task = self.benchmark.tasks[record["task"]]
        allowed = int(self.benchmark.output_mask(torch.tensor([task.id]), task.id).sum())
        message = chance_warning(record, allowed, len(task.test))
        if message is not None:
            record.setdefault("warnings", []).append(message)
            warn(message)
        self.checkpoint(learner)

    def checkpoint(self, learner: Learner) -> None:
        if self.out is None:
            return
        k = len(learner.accuracy) - 1
        strategy_states = [s.state_dict() for s in self.strategies]
        for strategy, state in zip(self.strategies, strategy_states, strict=True):
            lost = state_lost_in_checkpoint(strategy, state, self.model)
            if lost:
                raise UserError(
                    f"strategy {strategy.name!r} keeps state in {', '.join(lost)}, which a "
                    "checkpoint does not hold, so a resumed run would differ: keep it in a "
                    "buffer (set_buffer), in get_extra_state/set_extra_state, or name it in "
                    "the class's `transient` if before_task rebuilds it (docs/strategies.md)")
        save_checkpoint(self.out / "checkpoints" / f"task_{k:03d}.pt", {
            "format": CHECKPOINT_FORMAT,
            "task": k,
            "run_config": self.recorded_config(),
            "model": self.model.state_dict(),
            "optimizer": learner.ctx.optimizer.state_dict(),
            "strategies": strategy_states,
            "learner": learner.state(),
            "elapsed": self.clock.wall(),
            "cpu_elapsed": self.clock.cpu(),
        })
        if not self.config.keep_checkpoints:  # the new one is complete: older ones can go
            for old in (self.out / "checkpoints").glob("task_*.pt"):
                if old.name != f"task_{k:03d}.pt":
                    old.unlink()
        self.write()

    def check_checkpoint(self, state: dict, where: Path) -> None:
        """Refuse a checkpoint written under another configuration than ``config.json``'s
        (edited after the run started): resuming would mix two runs."""
        current = self.recorded_config()
        if "run_config" in state:
            saved = state["run_config"]
        else:  # checkpoints before run_config was recorded: the optimisation settings only
            saved = state["learner"].get("config", {})
            current = {k: current[k] for k in saved if k in current}
        differ = config_differences(saved, current, ignore=RESUME_MAY_CHANGE)
        if differ:
            raise UserError(
                f"config.json of {where} differs from the configuration its checkpoint was "
                f"written with ({'; '.join(differ)}); restore config.json, or start a new run "
                "with -o")

    def restore(self, state: dict) -> None:
        try:
            load_state_resizing(self.model, state["model"])
        except (AttributeError, KeyError, RuntimeError) as exc:
            reason = first_line(exc)
            raise UserError(f"the checkpoint does not fit the model config.json describes "
                            f"({reason})") from exc
        if len(state["strategies"]) != len(self.strategies):
            raise UserError(f"checkpoint holds {len(state['strategies'])} strategies, the run "
                            f"config names {len(self.strategies)}")
        for strategy, s_state in zip(self.strategies, state["strategies"], strict=True):
            strategy.load_checkpoint_state(s_state, self.model)
        self.learner.load_state(state["learner"])
        self.learner.ctx.optimizer = self.learner.make_optimizer()
        self.learner.ctx.optimizer.load_state_dict(state["optimizer"])
        self.clock.resume(state["elapsed"], state.get("cpu_elapsed", 0.0))

    # --- driving --------------------------------------------------------------------------------
    def execute(self) -> RunResult:
        if self.out is not None:
            write_json(self.out / "config.json", self.resolved_config())
            self.write()  # a run folder always has results.json, even if killed in task 0
        try:
            self.learner.run(on_task_end=self.task_end)
            self.status = "complete"
        except TrainingDiverged as exc:
            self.status, self.error = "diverged", str(exc)
            raise
        except KeyboardInterrupt:
            self.status, self.error = "interrupted", "interrupted by the user"
            raise
        except OSError as exc:  # a full disk, a folder gone read-only: finished tasks stay
            reason = exc.strerror or str(exc)
            self.status, self.error = "failed", f"{reason}: {exc.filename or self.out}"
            raise RunFolderError(
                f"writing run folder {self.out} failed ({reason}); the tasks finished before "
                f"stay in it: once fixed, continue with neurosculpt run --resume {self.out}"
            ) from exc
        except Exception as exc:  # e.g. a strategy whose state a checkpoint would lose
            self.status, self.error = "failed", str(exc)
            raise
        finally:
            results = self.results()  # once: the file and the returned result agree exactly
            try:
                self.write(results)
            except OSError:
                if self.status == "complete":
                    raise
                # already failing: the earlier results.json stays, the first error is reported
            finally:
                for observer in self.learner.observers:
                    observer.close()
        return RunResult(results, self.out, self.model, self.benchmark, self.strategies)


class RunFolderError(UserError):
    """Writing the run folder failed (full disk, read-only): finished tasks are kept."""


RESUME_MAY_CHANGE = ("progress", "threads", "keep_checkpoints", "data_root", "device")
"""Settings that do not change results: a resumed run may differ from its checkpoint in them."""


def default_out(config: RunConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    bench = config.benchmark.rpartition(":")[2] if is_spec(config.benchmark) else config.benchmark
    model = config.model.rpartition(":")[2].strip("<>").replace(" ", "-") if is_spec(
        config.model) else config.model
    name = f"{bench}-{config.strategy}-{model}-s{config.seed}-{stamp}"
    return Path("runs") / name.replace("/", "_")


def _absolute_spec(spec: str) -> str:
    """A ``file.py:name`` spec (or a plugin's bare ``file.py``) with the file made absolute, so
    resume works from anywhere."""
    source, sep, attr = spec.rpartition(":") if ":" in spec else (spec, "", "")
    if source.endswith(".py") or "/" in source:
        return f"{Path(source).expanduser().resolve()}{sep}{attr}"
    return spec


def _with_benchmark(config: RunConfig, benchmark: Benchmark) -> RunConfig:
    """``config`` for a run on a ``Benchmark`` object: named after it; options that build a
    stream (tasks, sizes, validation, data) cannot apply to a stream already built."""
    options = ("tasks", "samples_per_task", "test_samples_per_task", "data_root")
    given = [k for k in options if getattr(config, k) is not None] + (
        ["validation"] if config.validation else [])
    if given:
        raise ValueError(f"{', '.join(given)} cannot apply to a Benchmark object (it is already "
                         "built); build the stream with them instead")
    if config.scenario not in (None, benchmark.scenario):
        raise ValueError(f"scenario {config.scenario!r} given, but the benchmark is a "
                         f"{benchmark.scenario!r} stream")
    return RunConfig.from_dict({**asdict(config), "benchmark": benchmark.name,
                                "scenario": benchmark.scenario})


def _prepared(config: RunConfig) -> RunConfig:
    """Specs of user files made absolute (config.json must rebuild the run from anywhere)."""
    changes: dict = {}
    if is_spec(config.benchmark):
        changes["benchmark"] = _absolute_spec(config.benchmark)
    if is_spec(config.model) and not config.model.startswith("<"):
        changes["model"] = _absolute_spec(config.model)
    if config.plugins:
        changes["plugins"] = [_absolute_spec(p) for p in config.plugins]
    return RunConfig.from_dict({**asdict(config), **changes}) if changes else config


def run(config: RunConfig | dict | None = None, out: str | Path | None = None,
        log=None, overwrite: bool = False, **overrides) -> RunResult:
    """Run a continual-learning experiment; the Python twin of ``neurosculpt run``.

    ``out`` must not hold a run already (continue one with :func:`resume`), unless
    ``overwrite``; it is locked while the run writes it. ``benchmark`` may be a
    :class:`Benchmark` object (e.g. from :func:`from_tensors`): the run folder records its
    name, and :func:`resume` continues it given the same object.

    >>> result = run(benchmark="split-digits", strategy="ewc", model="ann-mlp", epochs=2)
    >>> result.metrics["acc"]  # doctest: +SKIP

    ``model`` may also be a model factory spec, a factory or an ``nn.Module``
    (:func:`neurosculpt.adapter.build_user_model`); a module instance cannot be resumed by spec.
    """
    if isinstance(config, dict) and not isinstance(config.get("model", ""), str):
        config = dict(config)
        overrides = {"model": config.pop("model"), **overrides}
    user_model = overrides.get("model")
    if user_model is None or isinstance(user_model, str):
        user_model = None
    else:  # a factory or an nn.Module (neurosculpt.adapter); config.json records its name
        overrides["model"] = model_name(user_model)
    if config is None:
        config = RunConfig()
    if isinstance(config, dict):
        config = dict(config)
        if isinstance(config.get("benchmark"), Benchmark):
            overrides.setdefault("benchmark", config.pop("benchmark"))
        config = RunConfig.from_dict(config)
    if isinstance(config.benchmark, Benchmark):  # RunConfig(benchmark=<Benchmark>)
        overrides.setdefault("benchmark", config.benchmark)
        config = replace(config, benchmark=config.benchmark.name)
    benchmark = overrides.pop("benchmark", None)
    if benchmark is not None and not isinstance(benchmark, Benchmark):
        if not isinstance(benchmark, str):
            raise ValueError(f"benchmark must be a name, a 'file.py:factory' spec or a "
                             f"neurosculpt.Benchmark, got {type(benchmark).__name__}")
        overrides["benchmark"], benchmark = benchmark, None
    if overrides:
        config = RunConfig.from_dict({**asdict(config), **overrides}, source="arguments")
    if benchmark is not None:
        config = _with_benchmark(config, benchmark)
    config = _prepared(config)
    if out is None:
        return Run(config, None, log, benchmark=benchmark, model=user_model).execute()
    out = Path(out)
    created = not out.exists()
    try:
        with lock_run_folder(out):
            prepare_out(out, overwrite)
            return Run(config, out, log, benchmark=benchmark, model=user_model).execute()
    except BaseException:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # refused before writing anything: leave no empty folder behind
        raise


def latest_checkpoint(path: Path) -> Path | None:
    """The checkpoint of the highest task (by number: ``task_1000`` comes after ``task_999``)."""
    checkpoints = [p for p in (path / "checkpoints").glob("task_*.pt")
                   if p.stem[len("task_"):].isdigit()]
    return max(checkpoints, key=lambda p: int(p.stem[len("task_"):]), default=None)


def config_from_folder(path: str | Path) -> RunConfig:
    """The :class:`RunConfig` a run folder was written with (its ``config.json``)."""
    path = Path(path)
    config_file = path / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{path} is not a run folder (no config.json)")
    resolved = read_json(config_file, "run config")
    if not isinstance(resolved, dict) or not isinstance(resolved.get("model_params", {}), dict):
        raise UserError(f"run config {config_file} is not a table of RunConfig keys")
    model_params = {k: v for k, v in resolved.get("model_params", {}).items() if k != "kind"}
    return RunConfig.from_dict({**resolved, "model_params": model_params},
                               source=str(config_file))


def resume(path: str | Path, log=None, benchmark: Benchmark | None = None,
           device: str | None = None) -> RunResult:
    """Continue a run that stopped; finished runs are returned as they are.

    A run on a ``Benchmark`` object (not a name or a ``file.py:factory``) needs that object
    again: ``benchmark``. ``device`` moves the run to another device (checkpoints load there).
    """
    path = Path(path)
    config = config_from_folder(path)
    if config.model.startswith("<"):
        raise UserError(f"{path} was trained on {config.model}, passed to run() as an object; "
                         "resume needs a model factory spec (file.py:name or module:name)")
    if device is not None:
        config = RunConfig.from_dict({**asdict(config), "device": device})
    recorded = read_results(path).get("benchmark", {}) if (path / "results.json").is_file() \
        else {}
    if benchmark is not None:
        if benchmark.name != config.benchmark:
            raise UserError(f"{path} was run on benchmark {config.benchmark!r}, not "
                            f"{benchmark.name!r}")
        described = benchmark.describe()
        changed = sorted(k for k in described if k in recorded and recorded[k] != described[k])
        if changed:
            raise UserError(f"the benchmark given differs from the one {path} was run on in "
                            f"{', '.join(changed)}")
    elif recorded.get("source") == "python" or (
            not is_spec(config.benchmark) and config.benchmark not in BENCHMARKS):
        raise UserError(
            f"{path} was run on the in-memory benchmark {config.benchmark!r}: resume it from "
            "Python with neurosculpt.resume(path, benchmark=<the same Benchmark>), or run it "
            "from a 'file.py:factory' spec, which the CLI can resume")
    with lock_run_folder(path):
        for leftover in remove_temporary_files(path):  # a kill during a write leaves these
            (log or (lambda m: None))(f"removed unfinished write {leftover}")
        runner = Run(config, path, log, benchmark=benchmark)
        checkpoint = latest_checkpoint(path)
        if checkpoint is not None:
            state = load_checkpoint(checkpoint, runner.device)
            runner.check_checkpoint(state, path)
            try:
                runner.restore(state)
            except UserError as exc:
                raise UserError(f"cannot resume {path} from {checkpoint.name}: {exc}") from exc
        return runner.execute()


def read_results(path: str | Path) -> dict:
    """``results.json`` of a run folder (or the file itself), with a clear error if absent;
    files written before a key was renamed come back with the current names (:mod:`.renames`)."""
    path = Path(path)
    file = path / "results.json" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"no results.json in {path}: is it a run folder?")
    results = read_json(file, "results file")
    if not isinstance(results, dict):
        raise UserError(f"results file {file} holds {type(results).__name__}, not a run's "
                        "results (see docs/results-schema.md)")
    return upgrade_results(results)
