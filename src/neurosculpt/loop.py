"""The one training loop. Every method plugs into it through hooks; none has its own copy.

Read top to bottom: :class:`TrainConfig` (the knobs), :class:`Context` (what hooks see),
:class:`Learner` (train task after task, evaluate every task after each one).

Hooks, called on every strategy in order (see :class:`neurosculpt.strategies.base.Strategy`)::

    before_task -> train_data -> [ before_batch -> loss -> before_backward -> (backward)
    -> after_backward -> (optimizer step) -> after_step ]* -> after_epoch ... -> after_task
    before_eval -> (evaluation of every task, each batch through predict) -> after_eval

A strategy that needs extra training (PackNet's retraining after pruning, the development
cycle's recovery phase) calls :meth:`Context.fit`, which runs this same loop.
"""

from __future__ import annotations

import contextlib
import math
import resource
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor

from . import metrics
from .benchmarks import Benchmark, Split, Task
from .energy import measure_energy
from .network import PlasticNetwork
from .validation import check_choice

OPTIMIZERS = ("adam", "sgd", "adamw")
PRECISIONS = ("fp32", "bf16")
"""``bf16``: the forward pass under ``torch.autocast`` (matrix products in bfloat16, membranes,
loss, gradients' accumulation into the fp32 parameters and the optimizer in float32)."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; results up to the last finished task are kept."""


EVAL_SCOPES = ("auto", "all", "seen", "current")
"""Which tasks are tested after each task: ``all``; ``seen`` (tasks trained so far and the next
one, for long streams); ``current`` (only the task just trained: the new-task accuracy of
loss-of-plasticity studies, Dohare et al. 2024); ``auto``: ``all`` up to 20 tasks, else
``seen``."""


@dataclass
class TrainConfig:
    """Optimisation settings shared by every strategy."""

    epochs: int = 1
    steps: int | None = None
    batch_size: int = 128
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    momentum: float = 0.0
    reset_optimizer: bool = True
    eval_batch_size: int = 1000
    eval_scope: str = "auto"
    energy_samples: int = 128
    seed: int = 0
    progress: bool = True
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}; valid: "
                             f"{', '.join(PRECISIONS)}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"unknown optimizer {self.optimizer!r}; valid: {', '.join(OPTIMIZERS)}"
            )
        check_choice("eval_scope", self.eval_scope, EVAL_SCOPES)
        if self.epochs < 0 or (self.steps is not None and self.steps < 1):
            raise ValueError("epochs must be >= 0 and steps >= 1")

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def bf16_supported(device: torch.device) -> bool:
    """Whether ``device`` multiplies bfloat16 matrices natively (on CPU: AVX-512 BF16 or AMX,
    as oneDNN reports it); elsewhere bfloat16 is emulated and many times slower than fp32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
        return bool(check()) if check is not None else False
    return True


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse ``bf16`` on hardware that would emulate it, with the reason."""
    if precision == "bf16" and not bf16_supported(device):
        what = ("this CPU has no native bfloat16 matrix instructions (AVX-512 BF16 or AMX)"
                if device.type == "cpu" else f"device {device} does not support bfloat16")
        raise ValueError(f"precision bf16: {what}, so bfloat16 products would be emulated and "
                         "slower than fp32; use --precision fp32")


class Context:
    """What a hook sees: the model, the optimizer, the task, the current batch and loss.

    ``device`` is the model's device: batches arrive on it, and a tensor a hook creates belongs
    there too (``torch.zeros(n, device=ctx.device)``, or ``like.new_zeros``).

    Hooks may replace ``x``, ``y``, ``task_ids`` in ``before_batch`` and write JSON-friendly
    facts into ``record`` (saved under this task's entry of ``results.json``). ``after_step``
    hooks find the batch's loss as a float in ``batch_loss`` and its number of correct
    predictions in ``batch_correct`` (computed once for the loop and every hook);
    ``after_eval`` hooks find the accuracy on every task in ``accuracy`` (None = not tested).
    """

    def __init__(self, learner: Learner) -> None:
        self.learner = learner
        self.device: torch.device = learner.device
        self.model: PlasticNetwork = learner.model
        self.benchmark: Benchmark = learner.benchmark
        self.config: TrainConfig = learner.config
        self.optimizer: torch.optim.Optimizer = learner.make_optimizer()
        self.task: Task = learner.benchmark.tasks[0]
        self.task_id = 0
        self.epoch = 0
        self.step = 0
        self.x: Tensor = torch.empty(0, device=self.device)
        self.y: Tensor = torch.empty(0, dtype=torch.long, device=self.device)
        self.task_ids: Tensor = torch.empty(0, dtype=torch.long, device=self.device)
        self.logits: Tensor = torch.empty(0, device=self.device)
        self.loss: Tensor = torch.zeros((), device=self.device)
        self.batch_loss = 0.0
        self.batch_correct = 0
        self.record: dict = {}
        self.accuracy: list[float | None] = []

    def forward(self, x: Tensor, task_ids: Tensor) -> Tensor:
        """Logits with every output a sample may not be classified into set to -inf."""
        allowed = self.benchmark.output_mask(task_ids, self.task_id)
        return self.model(x).masked_fill(~allowed, float("-inf"))

    def fit(self, epochs: int | None = None, steps: int | None = None, label: str = "train"
            ) -> float:
        """Train on the current task's data with every hook; return the mean loss."""
        return self.learner.fit(self, epochs, steps, label)

    def log(self, message: str) -> None:
        self.learner.log(message)
        self.record.setdefault("log", []).append(message)


class Learner:
    """Trains a model on a benchmark, task after task, with a list of strategies."""

    def __init__(self, model: PlasticNetwork, benchmark: Benchmark, strategies: Sequence,
                 config: TrainConfig | None = None,
                 log: Callable[[str], None] | None = None, observers: Sequence = ()) -> None:
        self.model = model
        self.benchmark = benchmark
        self.strategies = list(strategies)
        self.observers = list(observers)  # see _hook
        self.config = config or TrainConfig()
        self.log = log or (lambda message: None)
        self.device = next(model.parameters()).device
        check_precision(self.config.precision, self.device)
        n = len(benchmark)
        self.accuracy: list[list[float | None]] = []
        self.random_init_accuracy: list[float | None] = []
        self.tasks: list[dict] = []
        self.ctx = Context(self)
        self.eval_scope = self.config.eval_scope
        if self.eval_scope == "auto":
            self.eval_scope = "all" if n <= 20 else "seen"

    # --- plumbing -------------------------------------------------------------------------------
    def make_optimizer(self) -> torch.optim.Optimizer:
        cfg, params = self.config, [p for p in self.model.parameters() if p.requires_grad]
        if cfg.optimizer == "sgd":
            return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                                   weight_decay=cfg.weight_decay)
        opt = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
        try:  # one fused kernel for all parameters: masked (zero) moments cost no extra time
            return opt(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
        except (RuntimeError, TypeError):  # no fused Adam for this device: one op per step
            return opt(params, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)

    def autocast(self) -> contextlib.AbstractContextManager:
        """The forward pass's precision context (``TrainConfig.precision``)."""
        if self.config.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _hook(self, name: str, *args) -> None:
        for strategy in self.strategies:
            getattr(strategy, name)(self.ctx, *args)
        for observer in self.observers:  # watch only (curve logging): any subset of the hooks
            hook = getattr(observer, name, None)
            if hook is not None:
                hook(self.ctx, *args)

    def seed_for(self, *keys: int) -> int:
        """A seed derived from the run's seed and ``keys`` (task, phase, ...): the same draws
        in a resumed run as in an uninterrupted one."""
        seed = self.config.seed
        for k in keys:
            seed = seed * 1_000_003 + k
        return seed % (2**63)

    # --- training -------------------------------------------------------------------------------
    def _batches(self, sets: Sequence[tuple[Split, int]], generator: torch.Generator
                 ) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        """Shuffled mini-batches over one or several (split, task id) pairs, on the model's
        device (data stays in host memory; each batch is moved when drawn)."""
        for x, y, tids in self._host_batches(sets, generator):
            yield (x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True),
                   tids.to(self.device, non_blocking=True))

    def _host_batches(self, sets: Sequence[tuple[Split, int]], generator: torch.Generator
                      ) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        sizes = torch.tensor([len(s) for s, _ in sets], device="cpu")
        offsets = torch.cumsum(sizes, 0) - sizes
        order = torch.randperm(int(sizes.sum()), generator=generator, device="cpu")
        bs = self.config.batch_size
        for start in range(0, len(order), bs):
            idx = order[start:start + bs]
            if len(sets) == 1:  # the common case, without the bookkeeping of a mixture
                x, y = sets[0][0].get(idx)
                yield x, y, torch.full((len(y),), sets[0][1], dtype=torch.long, device=y.device)
                continue
            which = torch.searchsorted(offsets, idx, right=True) - 1
            xs, ys, ts = [], [], []
            for k in torch.unique(which).tolist():
                split, tid = sets[k]
                x, y = split.get(idx[which == k] - offsets[k])
                xs.append(x)
                ys.append(y)
                ts.append(torch.full((len(y),), tid, dtype=torch.long, device=y.device))
            yield torch.cat(xs), torch.cat(ys), torch.cat(ts)

    def fit(self, ctx: Context, epochs: int | None, steps: int | None, label: str) -> float:
        cfg, model, task = self.config, self.model, ctx.task
        if epochs is None and steps is None:
            epochs, steps = cfg.epochs, cfg.steps
        sets: list[tuple[Split, int]] = [(task.train, task.id)]
        for strategy in self.strategies:
            sets = strategy.train_data(ctx, sets)
        n_batches = math.ceil(sum(len(s) for s, _ in sets) / cfg.batch_size)
        total_steps = steps if steps is not None else (epochs or 0) * n_batches
        if n_batches == 0:  # no data: ``steps`` would otherwise wait forever for a batch
            total_steps = 0
        bar = self._progress(total_steps, f"task {task.id + 1}/{len(self.benchmark)} {label}")
        model.train()
        done, loss_sum, correct, seen, epoch = 0, 0.0, 0, 0, 0
        phase = len(ctx.record.get("train", []))
        while done < total_steps:
            ctx.epoch = epoch
            gen = torch.Generator().manual_seed(self.seed_for(task.id, phase, epoch))
            for x, y, tids in self._batches(sets, gen):
                ctx.x, ctx.y, ctx.task_ids = x, y, tids
                self._hook("before_batch")
                with self.autocast():
                    ctx.logits = ctx.forward(ctx.x, ctx.task_ids)
                    loss = F.cross_entropy(ctx.logits, ctx.y)
                    for strategy in self.strategies:
                        loss = strategy.loss(ctx, loss)
                if not torch.isfinite(loss):
                    raise TrainingDiverged(
                        f"loss became {loss.item()} on task {task.id} ({task.name}), epoch "
                        f"{epoch}, step {ctx.step}: lower the learning rate (--lr) or the "
                        "strategy's regularisation strength; results of finished tasks are kept"
                    )
                ctx.loss = loss
                self._hook("before_backward")
                ctx.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self._hook("after_backward")
                ctx.optimizer.step()
                ctx.batch_loss = float(loss.detach())
                ctx.batch_correct = int((ctx.logits.argmax(1) == ctx.y).sum())
                self._hook("after_step")
                ctx.step += 1
                done += 1
                loss_sum += ctx.batch_loss
                correct += ctx.batch_correct
                seen += len(ctx.y)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(epoch=epoch, loss=f"{loss_sum / done:.3f}",
                                    acc=f"{correct / seen:.3f}")
                if done >= total_steps:
                    break
            self._hook("after_epoch")
            epoch += 1
        if bar is not None:
            bar.close()
        mean_loss = loss_sum / max(done, 1)
        ctx.record.setdefault("train", []).append(
            {"phase": label, "steps": done, "loss": mean_loss,
             "train_acc": correct / max(seen, 1)})
        return mean_loss

    def _progress(self, total: int, desc: str):
        if not self.config.progress or total == 0:
            return None
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return None
        return tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)

    # --- evaluation -----------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate_task(self, task: Task) -> float:
        """Accuracy on ``task``'s test data, using its subnetwork in the task scenario."""
        model = self.model
        was_training = model.training
        model.eval()
        model.set_task(task.id if self.benchmark.scenario == "task" else None)
        correct = 0
        for x, y in task.test.batches(self.config.eval_batch_size):
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            tids = torch.full((len(y),), task.id, dtype=torch.long, device=self.device)
            with self.autocast():
                correct += int((self.predict(x, tids).argmax(1) == y).sum())
        model.set_task(None)
        model.train(was_training)
        return correct / max(len(task.test), 1)

    def predict(self, x: Tensor, task_ids: Tensor) -> Tensor:
        """Evaluation logits: the first strategy whose ``predict`` hook answers (task inference
        for partitioned networks) decides, else :meth:`Context.forward`. ``task_ids`` are the
        samples' true tasks, which a hook may use only to score its own guesses."""
        for strategy in self.strategies:
            logits = strategy.predict(self.ctx, x, task_ids)
            if logits is not None:
                return logits
        return self.ctx.forward(x, task_ids)

    def evaluate(self, upto: int | None = None) -> list[float | None]:
        """Accuracy on the tasks ``eval_scope`` selects after training task ``upto``: every
        task, tasks ``<= upto`` plus the next one (``seen``), or task ``upto`` alone
        (``current``); None = skipped."""
        self._hook("before_eval")
        row: list[float | None] = []
        for task in self.benchmark.tasks:
            skip = upto is not None and (
                (self.eval_scope == "seen" and task.id > upto + 1)
                or (self.eval_scope == "current" and task.id != upto))
            row.append(None if skip else self.evaluate_task(task))
        self.ctx.accuracy = row
        self._hook("after_eval")
        return row

    # --- the stream -----------------------------------------------------------------------------
    def train_task(self, task_id: int) -> dict:
        """Train one task and evaluate every task; return this task's record."""
        ctx, model = self.ctx, self.model
        task = self.benchmark.tasks[task_id]
        torch.manual_seed(self.seed_for(task_id, 7))
        ctx.task, ctx.task_id, ctx.record = task, task_id, {}
        model.set_training_task(task_id)
        if self.config.reset_optimizer and task_id > 0:
            ctx.optimizer = self.make_optimizer()
        start = time.perf_counter()
        self._hook("before_task")
        loss = ctx.fit()
        self._hook("after_task")
        train_time = time.perf_counter() - start
        start = time.perf_counter()
        row = self.evaluate(upto=task_id)
        eval_time = time.perf_counter() - start
        if self.config.energy_samples > 0:
            subnetwork = task_id if self.benchmark.scenario == "task" else None
            ctx.record["energy"] = measure_energy(
                model, task.test, self.config.energy_samples, task=subnetwork)
        self.accuracy.append(row)
        record = {
            "task": task_id,
            "name": task.name,
            "classes": task.classes,
            "train_time_s": train_time,
            "eval_time_s": eval_time,
            "loss": loss,
            "accuracy": row[task_id],
            "average_seen_accuracy": _mean(row[: task_id + 1]),
            "parameters": sum(p.numel() for p in model.parameters()),
            "live_synapses": model.live_synapses(),
            "units": model.hidden_sizes(),
            "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            **ctx.record,
        }
        self.tasks.append(record)
        self.log(
            f"task {task_id + 1}/{len(self.benchmark)} {task.name}: loss {loss:.3f}, "
            f"acc {row[task_id]:.3f}, mean seen acc {record['average_seen_accuracy']:.3f}, "
            f"{train_time:.1f}s"
        )
        return record

    def measure_random_init(self) -> None:
        """Accuracy of the untrained model on every task: the FWT baseline (not measured when
        only the current task is evaluated, since FWT is then undefined)."""
        if self.eval_scope == "current":
            self.random_init_accuracy = [None] * len(self.benchmark)
            return
        self.model.set_training_task(0)
        self.random_init_accuracy = [self.evaluate_task(t) for t in self.benchmark.tasks]

    def run(self, on_task_end: Callable[[Learner], None] | None = None) -> dict:
        """Train the remaining tasks; call ``on_task_end`` after each (checkpointing)."""
        if not self.random_init_accuracy:
            self.measure_random_init()
        for task_id in range(len(self.accuracy), len(self.benchmark)):
            self.train_task(task_id)
            if on_task_end is not None:
                on_task_end(self)
        return self.summary()

    def summary(self) -> dict:
        """Accuracy matrix and the metrics of :mod:`neurosculpt.metrics` so far."""
        k = len(self.accuracy)
        square = [[math.nan if v is None else v for v in row[:k]] for row in self.accuracy]
        base = self.random_init_accuracy[:k] if self.random_init_accuracy else None
        summary = metrics.accuracy_matrix_summary(square, baseline=base) if k else {}
        if self.eval_scope == "current":  # only the diagonal exists: ACC and friends undefined
            summary = {key: value if key == "learning_acc" else None
                       for key, value in summary.items()}
        return {"accuracy_matrix": self.accuracy, "random_init_accuracy":
                self.random_init_accuracy, "metrics": summary, "tasks": self.tasks}

    def state(self) -> dict:
        """Everything (besides model/optimizer/strategy tensors) needed to resume."""
        return {"accuracy": self.accuracy, "random_init_accuracy": self.random_init_accuracy,
                "tasks": self.tasks, "step": self.ctx.step, "config": asdict(self.config)}

    def load_state(self, state: dict) -> None:
        self.accuracy = state["accuracy"]
        self.random_init_accuracy = state["random_init_accuracy"]
        self.tasks = state["tasks"]
        self.ctx.step = state["step"]


def _mean(values: Sequence[float | None]) -> float:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else math.nan
