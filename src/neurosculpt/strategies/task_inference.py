"""Task inference for partitioned networks: ask every task's subnetwork, pick the task, classify
within it.

``develop`` and ``packnet`` keep one subnetwork per task intact, but without a task label (the
class and domain scenarios) the union of all subnetworks answers and old tasks are lost. This
strategy composes with them (``develop+task-inference``, ``packnet+task-inference``) and, at
evaluation only (the loop's ``predict`` hook), predicts each test sample's task ``s`` (the
default ``analytic`` score from a fixed random expansion of the input beside the network, the
measured best; ``source="subnetwork"`` and the other scores from the subnetworks themselves),
then takes the class from subnetwork ``s``'s own head (its task's
classes): P(class) = P(task) x P(class | task), the decomposition of Kim et al. 2022 ("A
theoretical study on solving continual learning", NeurIPS). The task scenario is left alone.

Scores of "this sample belongs to task s" (``score``):

- ``energy``: ``logsumexp`` of subnetwork ``s``'s head logits (the negative free energy, Liu et
  al. 2020, "Energy-based out-of-distribution detection", NeurIPS);
- ``max-softmax``: the largest softmax probability of the head (Hendrycks & Gimpel 2017, "A
  baseline for detecting misclassified and out-of-distribution examples", ICLR);
- ``entropy``: minus the entropy of the head's softmax;
- ``ratio``: a likelihood-ratio test between a task and the tasks after it, in the
  spirit of Lin et al. 2023 ("Class incremental learning via likelihood ratio based task
  prediction", TPL), without the replay data TPL uses. When task ``j`` ends, its training data
  passes through every subnetwork ``k <= j`` (frozen from then on) and each keeps, in its own
  features, task ``j``'s class means and within-class scatter (statistics, not samples). At test
  time subnetwork 0 decides first: if the nearest class mean (Mahalanobis distance with the
  pooled covariance, Lee et al. 2018, "A simple unified framework for detecting
  out-of-distribution samples", NeurIPS) is one of its own classes, it claims the sample, else
  subnetwork 1 decides among its classes and the later ones, and so on; the last takes the rest;
- ``gaussian``: per task, a Gaussian of its own classes in its own subnetwork's features (one
  mean per class, a shared covariance; the Mahalanobis score of Lee et al. 2018), the distance
  standardised by its mean and spread on the task's own training data so tasks whose feature
  spaces differ in size compare; ``covariance="diagonal"`` keeps only variances;
- ``gradient``: one-shot gradient-based task inference of SupSup (Wortsman et al. 2020,
  "Supermasks in superposition", NeurIPS, Sec. 3.3): weight each task's partition of the
  synapses by ``alpha_s`` in the union network and pick the task whose ``alpha`` most decreases
  the entropy of the output (``-d H / d alpha_s`` at ``alpha = 1``, per sample: one forward and
  one backward pass for all tasks). Deviation: SupSup superposes whole supermasks at
  ``alpha = 1/k``; here the partitions are disjoint (``owner == s``) and ``alpha = 1`` is the
  union network the loop trains. Linear layers only (convolutional partitions add nothing);
- ``cascade``: from the last task down, subnetwork ``s`` classifies over every class seen up to
  ``s``; the first whose answer is one of its own task's classes claims the sample. This needs
  subnetworks that saw old classes while they trained, i.e. a replay memory
  (``develop+replay+task-inference``); without one every subnetwork claims everything.
- ``analytic`` (default): a ridge classifier of the task fitted in closed form from statistics
  added up over the stream, the analytic class-incremental learning of Zhuang et al. 2022
  ("ACIL: analytic class-incremental learning with absolute memorization and privacy
  protection", NeurIPS) with the random ReLU expansion of McDonnell et al. 2023 ("RanPAC: random
  projections and pre-trained models for continual learning", NeurIPS); streaming LDA (Hayes &
  Kanan 2020, "Lifelong machine learning with deep streaming linear discriminant analysis",
  CVPR-W) keeps statistics of the same kind. The feature space must not change during the
  stream: the raw input (``source="input"``) or subnetwork 0's features
  (``source="subnetwork"``, frozen from the end of task 0 on; ``features`` picks the
  populations), through a fixed random projection and a ReLU of width ``expand`` (normal weights
  of variance ``1 / width``, no bias, drawn from the run's seed whenever needed and never
  stored). When a task ends, its training data adds ``G += H^T H`` and ``C += H^T Y`` (one
  target column per (task, class) pair); the sums are the statistics of all the data seen, so
  the head ``W = (G + lambda I)^-1 C`` is exactly the jointly fitted ridge head: nothing
  forgotten, no sample stored. ``lambda`` is ``ridge`` times the mean diagonal of ``G``.
  ``targets="class"`` takes the task of the best (task, class) column, ``"task"`` the best task
  after summing its columns (by linearity, the ridge head of one-hot task targets). Deviations:
  ACIL and RanPAC classify with this head over a pre-trained backbone; here it only names the
  task, and the class comes from that task's subnetwork. RanPAC chooses ``lambda`` on held-out
  data at every task; here it is a fixed fraction of ``G``'s scale (chosen on a held-out fifth
  of the training data of split-fmnist, seed 0, and flat from 1e-6 to 1e-3 there). ACIL updates
  the inverse recursively; here ``G`` is kept and solved once per set of statistics (the same
  head). The default: it predicted the task best on every benchmark measured
  (docs/results.md). With ``source="input"`` the predictor is not spiking in a spiking network
  (a ReLU layer on the input); ``source="subnetwork"`` reads spike rates.

Scores that need a replay memory (``develop+replay+task-inference``; the memory is the replay
strategy's, read through its public ``memory()``):

- ``probe``: one multinomial task classifier (logistic regression, L2 penalty ``probe_l2`` on
  standardised features) over the concatenated features of every subnetwork, re-fitted from
  scratch when each task ends on the memory's samples of the earlier tasks and the current
  task's whole training split, each task weighing the same in the loss (the current task's
  12,000 samples as much as an earlier task's few dozen). It is not part of any partition, so
  even subnetwork 0's features are finally read against negatives of every later task: task
  prediction learnt from the partitions' features with replay, the role of the replay data in
  TPL's task-prediction heads (Lin et al. 2023) and of the "back-updating" of earlier tasks'
  heads with the buffer in MORE (Kim, Ke & Liu 2022, "A multi-head model for continual learning
  via out-of-distribution replay", CoLLAs);
- ``ratio-probe``: the ``ratio`` cascade made soft and combined with ``probe``: subnetwork
  ``k``'s claim is the posterior ``c_k`` of its own classes against the later tasks' under the
  kept Gaussians (equal class priors), ``P(task s) = c_s prod_{k<s} (1 - c_k)``, and the task is
  ``argmax log P(task) + probe_weight x log P_probe(task)`` (a product of experts, Hinton 2002).
  Deviation from TPL: no energy term and no learnt mixing; ``probe_weight`` is a fixed weight.

``negatives="memory"``: the "none of mine" signal of Kim et al. 2022 (CIL = task prediction x
within-task prediction) and MORE with the replay memory as the out-of-distribution data: the
replayed samples of the batch (earlier tasks) are also pushed towards the uniform distribution
over the current task's head (outlier exposure, Hendrycks et al. 2019), weighted by
``negative_weight``; no extra forward pass (the batch's logits are reused). Deviation: MORE adds
no output unit either, but trains a separate adapter per task; here the head is shared with the
partition.

``negatives="shuffle"``: a per-task "none of mine" signal made from the task's own data, never
from stored samples: each training batch of the current task is also presented with its input
features permuted at random (every spatial or temporal structure destroyed, statistics of the
values kept), and the head is trained towards the uniform distribution on those (outlier
exposure, Hendrycks et al. 2019, "Deep anomaly detection with outlier exposure", ICLR), weighted
by ``negative_weight``. The network has no spare output unit to say "none of mine", so the flat
head is that answer; ``energy``, ``max-softmax`` and ``entropy`` read it.

Spiking networks: the head logits are the readout's mean membrane potential (``--model-param
readout=spikes``: spike counts), so the scores above are membrane- or spike-count based, and the
Gaussian statistics are over the spike rates of the last hidden layer.

Features (``features``): the activity of the last hidden population (``last``) or of all of them
(``all``), averaged over time steps (spike rates in spiking networks), on the units with an input
synapse of the subnetwork. The logit scores are standardised by their mean and spread on the
task's own training data (``calibrate``), so heads trained at different times compare.

What is kept: ``ratio``, per subnetwork ``k``, the class means of task ``k`` and every later task
``[classes, D_k]`` and the within-class scatter ``[D_k, D_k]``; ``gaussian``, per task, its class
means, an inverse covariance ``[D, D]`` (``[D]`` diagonal) and two numbers; logit scores, two
numbers per score and task; ``analytic``, ``G`` ``[D, D]`` and ``C`` ``[D, task-class pairs]``
(float64) and the pairs, ``D`` the expanded width; ``probe``, a mean and a spread per feature
and a ``[features, tasks]`` weight over the features of all subnetworks (besides the replay
memory itself). ``D`` is otherwise the number of features of the subnetwork;
``results.json`` records the floats kept (``tasks[k]["task_inference"]["statistics_floats"]``).
Evaluation records the task-prediction accuracy per task, forward passes per sample and time.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import layers as L
from ..loop import Context
from ..network import recording
from ..validation import check_choice
from .base import Strategy

SCORES = ("energy", "max-softmax", "entropy", "gaussian", "ratio", "gradient", "cascade",
          "analytic")
FEATURES = ("last", "all")
LOGIT_SCORES = ("energy", "max-softmax", "entropy")
NEGATIVES = ("none", "shuffle", "memory")
MEMORY_SCORES = ("probe", "ratio-probe")  # fitted on a replay memory: need develop+replay
COVARIANCES = ("full", "diagonal")
SOURCES = ("subnetwork", "input")
TARGETS = ("class", "task")
_PROJECTION_SEED = 19  # key of the analytic head's random projection in Learner.seed_for


def _class_means(f: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The classes in ``y`` (sorted), the mean row of ``f`` per class, and ``f`` centred on its
    class's mean."""
    present = torch.unique(y)
    means = torch.stack([f[y == c].mean(0) for c in present])
    return present, means, f - means[torch.searchsorted(present, y)]


class TaskInference(Strategy):
    """Predict the task of each test sample, then classify within that task's subnetwork (see the
    module docstring: the default ``analytic`` score reads the input, the others the subnetworks).

    Args:
        score: how the task of a sample is predicted: ``analytic``, ``ratio``, ``gaussian``,
            ``energy``, ``max-softmax``, ``entropy``, ``gradient`` or ``cascade``; with a
            replay memory also ``probe`` and ``ratio-probe`` (module docstring).
        features: the activity the statistics are kept of: the last hidden population
            (``last``) or all of them (``all``).
        covariance: ``full`` or ``diagonal`` covariance of the Gaussian statistics.
        shrinkage: fraction of the mean variance added to the covariance's diagonal.
        statistics: keep the Gaussian statistics even when ``score`` does not use them (to
            compare scores on one run); None: only when the score needs them.
        calibrate: standardise the logit scores by their mean and spread on the task's own
            training data, so heads trained at different times compare.
        negatives: ``none``, ``shuffle`` (the "none of mine" signal from the task's own data
            with its features permuted, outlier exposure) or ``memory`` (the replayed samples
            as the current head's negatives; needs replay).
        negative_weight: weight of that signal in the loss.
        source: what the ``analytic`` head reads: subnetwork 0's features (``subnetwork``,
            ``features`` picks the populations) or the raw input (``input``).
        expand: width ``D`` of the fixed random ReLU expansion before the ``analytic`` head
            (RanPAC); 0: the features themselves.
        targets: ``class`` (argmax over every (task, class) output, its task) or ``task``
            (argmax over tasks) for the ``analytic`` head.
        ridge: the ``analytic`` head's ridge, relative to the mean diagonal of its Gram matrix.
        probe_l2: L2 penalty of the memory-fitted task probe (``probe``, ``ratio-probe``) on
            standardised features.
        probe_weight: weight of the probe's log-probabilities against the soft ratio cascade's
            in ``ratio-probe``.
    """

    name = "task-inference"
    # per-evaluation counts; caches of the buffers (solved statistics, the analytic head's
    # projection), rebuilt when needed
    transient = ("_tally", "_precisions", "_analytic")

    def __init__(self, score: str = "analytic", features: str = "last", covariance: str = "full",
                 shrinkage: float = 0.01, statistics: bool | None = None,
                 calibrate: bool = True, negatives: str = "none",
                 negative_weight: float = 0.5, source: str = "input", expand: int = 2000,
                 targets: str = "class", ridge: float = 1e-3, probe_l2: float = 0.1,
                 probe_weight: float = 0.5) -> None:
        super().__init__()
        for value, valid, what in ((score, SCORES + MEMORY_SCORES, "score"),
                                   (negatives, NEGATIVES, "negatives"),
                                   (covariance, COVARIANCES, "covariance"),
                                   (features, FEATURES, "features"),
                                   (source, SOURCES, "source"), (targets, TARGETS, "targets")):
            check_choice(f"task-inference: {what}", value, valid)
        if not 0.0 <= shrinkage:
            raise ValueError(f"task-inference: shrinkage must be >= 0, got {shrinkage}")
        if negative_weight < 0:
            raise ValueError(f"task-inference: negative_weight must be >= 0, got "
                             f"{negative_weight}")
        if isinstance(expand, bool) or not isinstance(expand, int) or expand < 0:
            raise ValueError(f"task-inference: expand must be an integer >= 0, got {expand!r}")
        if isinstance(ridge, bool) or not isinstance(ridge, (int, float)) or not ridge > 0:
            raise ValueError(f"task-inference: ridge must be a number > 0, got {ridge!r}")
        for value, what in ((probe_l2, "probe_l2"), (probe_weight, "probe_weight")):
            if not value >= 0:
                raise ValueError(f"task-inference: {what} must be >= 0, got {value}")
        self.score = score
        self.probe_l2 = float(probe_l2)
        self.probe_weight = float(probe_weight)
        self.features = features
        self.covariance = covariance
        self.shrinkage = float(shrinkage)
        needed = score in ("gaussian", "ratio", "ratio-probe")
        self.statistics = needed if statistics is None else bool(statistics)
        self.calibrate = bool(calibrate)
        self.negatives = negatives
        self.negative_weight = float(negative_weight)
        self.source, self.expand, self.targets = source, expand, targets
        self.ridge = float(ridge)
        self.hparams = {"score": score, "features": features, "covariance": covariance,
                        "shrinkage": self.shrinkage, "statistics": self.statistics,
                        "calibrate": self.calibrate, "negatives": negatives,
                        "negative_weight": self.negative_weight, "source": source,
                        "expand": expand, "targets": targets, "ridge": self.ridge,
                        "probe_l2": self.probe_l2, "probe_weight": self.probe_weight}
        self.register_buffer("trained", torch.zeros((), dtype=torch.long))
        self._tally: dict = {}
        self._precisions: dict[int, Tensor] = {}
        self._analytic: dict[str, Tensor] = {}  # solved heads (per ridge), projections: caches

    # --- training -------------------------------------------------------------------------------
    def loss(self, ctx: Context, loss: Tensor) -> Tensor:
        """Outlier exposure on the current task's own samples with permuted features."""
        if self.negatives == "none" or ctx.benchmark.scenario == "task":
            return loss
        if self.negatives == "memory":
            return loss + self.negative_weight * self._memory_negatives(ctx)
        own = ctx.task_ids == ctx.task_id
        if not bool(own.any()):
            return loss
        x = ctx.x[own]
        flat = x.flatten(1)
        perm = torch.argsort(torch.rand(flat.shape, device=flat.device), dim=1)
        negative = torch.gather(flat, 1, perm).view_as(x)
        head = torch.tensor(ctx.task.classes, device=x.device)
        logits = ctx.model(negative)[:, head]
        flat_head = -F.log_softmax(logits, 1).mean(1).mean()
        return loss + self.negative_weight * flat_head

    def _finish_task(self, ctx: Context) -> None:
        """Keep the task's feature statistics once every composed strategy has finished it
        (pruned, consolidated): at the first evaluation after the task, whatever the order of
        the strategies."""
        task = ctx.task_id
        if int(self.trained) > task:
            return
        if ctx.benchmark.scenario != "task":
            calibrated = self.calibrate and self.score in LOGIT_SCORES
            keeps = [(self.statistics or calibrated, self._keep_statistics),
                     (self.score == "analytic", self._keep_analytic),
                     (self.score in MEMORY_SCORES, self._fit_probe)]
            for wanted, keep in keeps:
                if wanted:
                    keep(ctx, task)
            if any(wanted for wanted, _ in keeps):
                ctx.record["task_inference"] = {"statistics_floats": sum(
                    int(b.numel()) for name, b in self.named_buffers() if name != "trained")}
        self.trained.fill_(task + 1)

    @torch.no_grad()
    def _keep_statistics(self, ctx: Context, task: int) -> None:
        """Statistics of the task's training data: the calibration of the logit scores and the
        Gaussian of its own classes in its own subnetwork, and (``statistics``) the class means
        and within-class scatter in every earlier subnetwork, for ``ratio``."""
        model = ctx.model
        was_training = model.training
        model.eval()
        try:
            for k in range(task + 1) if self.statistics else [task]:
                model.set_task(k)
                feats, labels, outs = [], [], []
                for x, y in ctx.task.train.batches(ctx.config.eval_batch_size):
                    x, y = x.to(ctx.device), y.to(ctx.device)
                    out, f = self._features(ctx, x, k)
                    feats.append(f)
                    outs.append(out)
                    labels.append(y)
                f, y = torch.cat(feats), torch.cat(labels)
                if k == task:
                    self._keep_own(ctx, task, f, y, torch.cat(outs))
                if self.statistics:
                    self._accumulate(k, task, f, y)
        finally:
            model.set_task(None)
            model.train(was_training)

    def _keep_own(self, ctx: Context, task: int, f: Tensor, y: Tensor, logits: Tensor) -> None:
        self.set_buffer(f"score_calibration{task}", torch.stack([
            torch.stack([v.mean(), v.std() + 1e-6])
            for v in (self._logit_score(logits, ctx.task.classes, kind)
                      for kind in LOGIT_SCORES)]))
        if not self.statistics:
            return
        _, means, centred = _class_means(f, y)
        var = centred.var(0, unbiased=False)
        ridge = self.shrinkage * float(var.mean()) + 1e-6
        if self.covariance == "diagonal":
            precision = 1.0 / (var + ridge)
        else:
            cov = centred.T @ centred / max(len(f), 1)
            cov += ridge * torch.eye(cov.shape[0], dtype=cov.dtype, device=cov.device)
            precision = torch.linalg.inv(cov)
        self.set_buffer(f"means{task}", means)
        self.set_buffer(f"precision{task}", precision)
        own = self._distance(f, means, precision)
        self.set_buffer(f"calibration{task}", torch.stack([own.mean(), own.std() + 1e-6]))

    def _accumulate(self, k: int, task: int, f: Tensor, y: Tensor) -> None:
        """Add task ``task``'s class means and within-class scatter, in subnetwork ``k``'s
        features, to the statistics of subnetwork ``k`` (groups are (task, class) pairs, so
        streams whose tasks share labels keep them apart)."""
        present, means, centred = _class_means(f, y)
        groups = torch.stack([torch.full_like(present, task), present], 1)
        scatter = centred.T @ centred
        if f"ratio_means{k}" in self._buffers:
            groups = torch.cat([self._buffers[f"ratio_groups{k}"], groups])
            means = torch.cat([self._buffers[f"ratio_means{k}"], means])
            scatter = scatter + self._buffers[f"ratio_scatter{k}"]
            count = self._buffers[f"ratio_count{k}"] + len(f)
        else:
            count = torch.tensor(len(f), device=f.device)
        self.set_buffer(f"ratio_groups{k}", groups)
        self.set_buffer(f"ratio_means{k}", means)
        self.set_buffer(f"ratio_scatter{k}", scatter)
        self.set_buffer(f"ratio_count{k}", count)
        self._precisions.pop(k, None)

    @torch.no_grad()
    def _keep_analytic(self, ctx: Context, task: int) -> None:
        """Add the task's training data to the ``analytic`` head's statistics: the Gram matrix
        ``G = sum h h^T`` and ``C = sum h y^T`` of its (expanded) features ``h``, with one
        target column per (task, class) pair. Added up over tasks they are exactly those of
        all the data seen, so the head solved from them is the jointly fitted ridge head."""
        model = ctx.model
        was_training = model.training
        model.eval()
        classes = torch.tensor(ctx.task.classes, device=ctx.device)
        gram = corr = None
        try:
            for x, y in ctx.task.train.batches(ctx.config.eval_batch_size):
                x, y = x.to(ctx.device), y.to(ctx.device)
                h = self._analytic_features(ctx, x)[1].double()
                onehot = (y[:, None] == classes[None]).double()
                gram = h.T @ h if gram is None else gram + h.T @ h
                corr = h.T @ onehot if corr is None else corr + h.T @ onehot
        finally:
            model.set_task(None)
            model.train(was_training)
        if gram is None:
            return
        groups = torch.stack([torch.full_like(classes, task), classes], 1)
        if "analytic_gram" in self._buffers:
            gram = gram + self._buffers["analytic_gram"]
            corr = torch.cat([self._buffers["analytic_targets"], corr], 1)
            groups = torch.cat([self._buffers["analytic_groups"], groups])
        self.set_buffer("analytic_gram", gram)
        self.set_buffer("analytic_targets", corr)
        self.set_buffer("analytic_groups", groups)
        for key in [k for k in self._analytic if k.startswith("head")]:
            del self._analytic[key]

    def _analytic_features(self, ctx: Context, x: Tensor) -> tuple[Tensor | None, Tensor]:
        """(subnetwork 0's logits or None, the features the ``analytic`` head reads): the raw
        input or subnetwork 0's features (frozen from the end of task 0 on), through the fixed
        random projection and a ReLU when ``expand > 0``."""
        logits = None
        if self.source == "input":
            f = x.flatten(1).float()
        else:
            ctx.model.set_task(0)
            logits, f = self._features(ctx, x, 0)
        if self.expand == 0:
            return logits, f
        return logits, torch.relu(f @ self._projection(ctx, f.shape[1]))

    def _projection(self, ctx: Context, width: int) -> Tensor:
        """The fixed random projection ``[width, expand]`` (normal, variance ``1 / width``, no
        bias, as RanPAC), drawn from the run's seed on the CPU whenever it is needed, so a
        resumed run or another device gets the same matrix without storing it."""
        key = f"projection{width}x{self.expand}"
        if key not in self._analytic:
            generator = torch.Generator().manual_seed(ctx.learner.seed_for(_PROJECTION_SEED))
            weight = torch.randn(width, self.expand, generator=generator,
                                 device="cpu") / width ** 0.5
            self._analytic[key] = weight.to(ctx.device)
        return self._analytic[key]

    def _analytic_choice(self, h: Tensor, n: int) -> Tensor:
        """The task of each row of features ``h``: the ridge head ``(G + lambda I)^-1 C``
        (solved once per set of statistics) scores every (task, class) pair of the first ``n``
        tasks; ``targets="class"`` takes the best pair's task, ``"task"`` sums each task's
        columns (exactly the ridge head fitted to one-hot task targets) and takes the best."""
        key = f"head{self.ridge!r}"
        if key not in self._analytic:
            gram = self._buffers["analytic_gram"]
            ridge = self.ridge * float(gram.diagonal().mean()) + 1e-12
            eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
            self._analytic[key] = torch.linalg.solve(gram + ridge * eye,
                                                     self._buffers["analytic_targets"])
        tasks = self._buffers["analytic_groups"][:, 0]
        known = tasks < n
        scores = h.double() @ self._analytic[key][:, known]
        if self.targets == "class":
            return tasks[known][scores.argmax(1)]
        per_task = scores.new_zeros(len(h), n).index_add_(1, tasks[known], scores)
        return per_task.argmax(1)

    def _ratio_precision(self, k: int) -> Tensor:
        """Inverse of subnetwork ``k``'s pooled within-class covariance (cached)."""
        if k not in self._precisions:
            cov = self._buffers[f"ratio_scatter{k}"] / self._buffers[f"ratio_count{k}"]
            ridge = self.shrinkage * float(cov.diagonal().mean()) + 1e-6
            cov = cov + ridge * torch.eye(cov.shape[0], dtype=cov.dtype, device=cov.device)
            self._precisions[k] = torch.linalg.inv(cov)
        return self._precisions[k]

    # --- evaluation -----------------------------------------------------------------------------
    def before_eval(self, ctx: Context) -> None:
        self._finish_task(ctx)
        self._tally = {"correct": {}, "total": {}, "passes": 0, "backward": 0, "samples": 0,
                       "time_s": 0.0}

    def after_eval(self, ctx: Context) -> None:
        tally = self._tally
        if not tally.get("samples"):
            return
        per_task = {str(t): tally["correct"][t] / tally["total"][t] for t in tally["total"]}
        correct = sum(tally["correct"].values())
        ctx.record.setdefault("task_inference", {}).update({
            "score": self.score,
            "task_accuracy": correct / tally["samples"],
            "task_accuracy_per_task": per_task,
            "forward_passes_per_sample": tally["passes"] / tally["samples"],
            "backward_passes_per_sample": tally["backward"] / tally["samples"],
            "time_per_sample_ms": 1000 * tally["time_s"] / tally["samples"],
        })

    def predict(self, ctx: Context, x: Tensor, task_ids: Tensor) -> Tensor | None:
        if ctx.benchmark.scenario == "task" or int(self.trained) == 0:
            return None
        start = time.perf_counter()
        model = ctx.model
        n = min(int(self.trained), ctx.task_id + 1)
        answers: dict[int, tuple[Tensor, Tensor]] = {}  # task -> (rows, its subnetwork's logits)
        passes = backward = 0
        if self.score == "gradient":
            scores = self._gradient_scores(ctx, x, n)
            passes, backward = 1, 1
            choice = scores.argmax(1)
        elif self.score == "ratio":
            choice = torch.full((len(x),), n - 1, dtype=torch.long, device=x.device)
            open_ = torch.ones(len(x), dtype=torch.bool, device=x.device)
            for k in range(n):
                rows = torch.nonzero(open_).flatten()
                if len(rows) == 0:
                    break
                model.set_task(k)
                out, feats = self._features(ctx, x[rows], k)
                passes += len(rows) / len(x)
                answers[k] = (rows, out)
                claim = self._ratio_claims(k, n, feats)
                choice[rows[claim]] = k
                open_[rows[claim]] = False
        elif self.score == "analytic":
            if "analytic_gram" not in self._buffers:
                raise RuntimeError("task-inference: no analytic statistics; run with "
                                   "score=analytic from the first task")
            logits, h = self._analytic_features(ctx, x)
            if logits is not None:  # subnetwork 0's pass gave the features
                answers[0] = (torch.arange(len(x), device=x.device), logits)
                passes = 1
            choice = self._analytic_choice(h, n)
        elif self.score in MEMORY_SCORES:
            scores, answers = self._memory_scores(ctx, x, n)
            passes = n
            choice = scores.argmax(1)
        elif self.score == "cascade":
            choice = torch.zeros(len(x), dtype=torch.long, device=x.device)
            open_ = torch.ones(len(x), dtype=torch.bool, device=x.device)
            for s in range(n - 1, -1, -1):
                rows = torch.nonzero(open_).flatten()
                if len(rows) == 0:
                    break
                model.set_task(s)
                out = model(x[rows])
                answers[s] = (rows, out)
                out = self._seen_logits(ctx, out, s)
                passes += len(rows) / len(x)
                head = torch.tensor(ctx.benchmark.tasks[s].classes, device=x.device)
                claim = torch.isin(out.argmax(1), head) if s > 0 else torch.ones_like(rows,
                                                                                     dtype=torch.bool)
                choice[rows[claim]] = s
                open_[rows[claim]] = False
        else:
            outs, feats = self._all_features(ctx, x, n)
            rows = torch.arange(len(x), device=x.device)
            answers = {s: (rows, out) for s, out in enumerate(outs)}
            scores = torch.stack([self._score(out, f, s, ctx)
                                  for s, (out, f) in enumerate(zip(outs, feats, strict=True))], 1)
            passes = n
            choice = scores.argmax(1)
        result = torch.full((len(x), ctx.benchmark.n_outputs), float("-inf"), device=x.device)
        for s in torch.unique(choice).tolist():
            rows = torch.nonzero(choice == s).flatten()
            if s in answers:
                full = torch.empty(len(x), ctx.benchmark.n_outputs, device=x.device)
                full[answers[s][0]] = answers[s][1]
                out = full[rows]
            else:
                model.set_task(s)
                out = model(x[rows])
                passes += len(rows) / len(x)
            head = torch.tensor(ctx.benchmark.tasks[s].classes, device=x.device)
            result[rows[:, None], head] = out[:, head]
        model.set_task(None)
        self._count(choice, task_ids, passes, backward, time.perf_counter() - start)
        return result

    # --- pieces ---------------------------------------------------------------------------------
    def _count(self, choice: Tensor, task_ids: Tensor, passes: float, backward: int,
               seconds: float) -> None:
        tally, b = self._tally, len(choice)
        if not tally:
            return
        hit = choice.cpu() == task_ids.cpu()
        for task in torch.unique(task_ids).tolist():
            rows = task_ids.cpu() == task
            tally["correct"][task] = tally["correct"].get(task, 0) + int(hit[rows].sum())
            tally["total"][task] = tally["total"].get(task, 0) + int(rows.sum())
        tally["passes"] += passes * b
        tally["backward"] += backward * b
        tally["samples"] += b
        tally["time_s"] += seconds

    @staticmethod
    def _seen_logits(ctx: Context, logits: Tensor, task: int) -> Tensor:
        """Logits restricted to the outputs task ``task`` was trained on (class scenario: every
        class seen up to it)."""
        allowed = ctx.benchmark.output_mask(torch.tensor([task]), task)[0].to(logits.device)
        return logits.masked_fill(~allowed, float("-inf"))

    def _features(self, ctx: Context, x: Tensor, task: int) -> tuple[Tensor, Tensor]:
        """(logits, features of ``task``'s subnetwork): the activity of the last hidden
        population (``features="last"``) or of all of them (``"all"``), averaged over time
        steps (spike rates), on the units that have an input synapse of the subnetwork."""
        model = ctx.model
        with recording(model):
            logits = model(x)
            activity = model.activity if self.features == "all" else model.activity[-1:]
        layers = model.plastic_layers[:-1]
        layers = layers if self.features == "all" else layers[-1:]
        parts = []
        for h, layer in zip(activity, layers, strict=True):
            h = h.mean(0)
            units = self._units(layer, task)
            if h.dim() > 2:  # channels of a convolutional population: every position
                units = units.repeat_interleave(h[0, 0].numel())
            parts.append(h.flatten(1)[:, units])
        return logits, torch.cat(parts, 1)

    @staticmethod
    def _units(layer: L.PlasticLayer, task: int) -> Tensor:
        """Units of ``layer`` with an input synapse of ``task``'s subnetwork (a set later tasks
        never change: owners are permanent and owned units are never removed)."""
        reads = layer.mask & (layer.owner >= 0) & (layer.owner <= task)
        return reads.flatten(1).any(1)

    def _ratio_claims(self, k: int, n: int, feats: Tensor) -> Tensor:
        """Does subnetwork ``k`` claim each sample: is the nearest (Mahalanobis, pooled
        covariance) of the class means it knows (its own task's and every later task's, in its
        own features) one of its own task's? The last task claims whatever is left."""
        if k == n - 1:
            return torch.ones(len(feats), dtype=torch.bool, device=feats.device)
        tasks, dist = self._ratio_distances(k, n, feats)
        return tasks[dist.argmin(1)] == k

    def _ratio_distances(self, k: int, n: int, feats: Tensor) -> tuple[Tensor, Tensor]:
        """The task of each class mean subnetwork ``k`` keeps for the first ``n`` tasks, and the
        squared Mahalanobis distance (pooled covariance) of every row of ``feats`` to each."""
        groups = self._buffers[f"ratio_groups{k}"]
        known = groups[:, 0] < n
        d = feats[:, None, :] - self._buffers[f"ratio_means{k}"][known][None]
        return groups[known][:, 0], torch.einsum("bcd,de,bce->bc", d, self._ratio_precision(k), d)

    @staticmethod
    def _distance(f: Tensor, means: Tensor, precision: Tensor) -> Tensor:
        """Smallest squared Mahalanobis distance of each row of ``f`` to a class mean."""
        d = f[:, None, :] - means[None]
        if precision.dim() == 1:
            dist = (d * d * precision).sum(2)
        else:
            dist = torch.einsum("bcd,de,bce->bc", d, precision, d)
        return dist.min(1).values

    @staticmethod
    def _logit_score(logits: Tensor, classes: list[int], kind: str) -> Tensor:
        head = logits[:, classes]
        if kind == "energy":
            return torch.logsumexp(head, 1)
        if kind == "max-softmax":
            return F.softmax(head, 1).max(1).values
        logp = F.log_softmax(head, 1)
        return (logp.exp() * logp).sum(1)

    def _score(self, logits: Tensor, feats: Tensor, task: int, ctx: Context) -> Tensor:
        if self.score in LOGIT_SCORES:
            value = self._logit_score(logits, ctx.benchmark.tasks[task].classes, self.score)
            calibration = self._buffers.get(f"score_calibration{task}")
            if not self.calibrate or calibration is None:
                return value
            mean, spread = calibration[LOGIT_SCORES.index(self.score)]
            return (value - mean) / spread
        means = self._buffers.get(f"means{task}")
        if means is None:
            raise RuntimeError(f"task-inference: no feature statistics for task {task}; run "
                               "with score=gaussian or statistics=true from the first task")
        if feats.shape[1] != means.shape[1]:
            raise RuntimeError(f"task-inference: task {task}'s head reads {feats.shape[1]} "
                               f"features, its statistics have {means.shape[1]}")
        mean, spread = self._buffers[f"calibration{task}"]
        distance = self._distance(feats, means, self._buffers[f"precision{task}"])
        return -(distance - mean) / spread

    def _gradient_scores(self, ctx: Context, x: Tensor, n: int) -> Tensor:
        """``-d H / d alpha_s`` per sample and task (SupSup's one-shot inference)."""
        model = ctx.model
        model.set_task(None)
        captured: list[tuple[L.PlasticLayer, Tensor, Tensor]] = []
        handles = [layer.register_forward_hook(
            lambda m, args, out: captured.append((m, args[0].detach(), out)))
            for layer in model.plastic_layers if layer.weight.dim() == 2]
        try:
            with torch.enable_grad():
                logits = self._seen_logits(ctx, model(x), ctx.task_id)
                logp = F.log_softmax(logits, 1)
                entropy = -(logp.exp() * logp.masked_fill(torch.isinf(logp), 0.0)).sum()
                grads = torch.autograd.grad(entropy, [out for _, _, out in captured])
        finally:
            for handle in handles:
                handle.remove()
        scores = torch.zeros(len(x), n, device=x.device)
        with torch.no_grad():
            for (layer, inputs, _), grad in zip(captured, grads, strict=True):
                weight, bias = layer.effective_parameters()
                steps = grad.shape[0] // len(x)  # [T * B, N] time-major or [B, tokens, N]
                for s in range(n):
                    part = layer.mask & (layer.owner == s)
                    bias_part = (layer.bias_owner == s).to(bias.dtype)
                    change = F.linear(inputs, weight * part, bias * bias_part)
                    scores[:, s] -= (change * grad).reshape(steps, len(x), -1).sum((0, 2))
        return scores

    # --- with a replay memory (probe, ratio-probe, negatives=memory) ---------------------------
    def before_task(self, ctx: Context) -> None:
        """Name a missing replay memory before any training (see :meth:`_replay_memory`)."""
        if self.score in MEMORY_SCORES or self.negatives == "memory":
            self._replay_memory(ctx)

    def _replay_memory(self, ctx: Context) -> tuple[Tensor, Tensor, Tensor]:
        """The composed replay strategy's stored ``(x, y, task_ids)``."""
        from .replay import Replay

        replay = next((s for s in ctx.learner.strategies if isinstance(s, Replay)), None)
        if replay is None:
            what = (f"score={self.score}" if self.score in MEMORY_SCORES
                    else f"negatives={self.negatives}")
            raise ValueError(f"task-inference: {what} needs a replay memory: compose it with "
                             "replay (e.g. develop+replay+task-inference)")
        return replay.memory()

    def _memory_negatives(self, ctx: Context) -> Tensor:
        """Replayed samples (earlier tasks) pushed towards the uniform distribution over the
        current task's head: its "none of mine" answer (the batch's logits are reused)."""
        replayed = ctx.task_ids != ctx.task_id
        if not bool(replayed.any()):
            return ctx.logits.new_zeros(())
        head = torch.tensor(ctx.task.classes, device=ctx.logits.device)
        logits = ctx.logits[replayed][:, head]
        return -F.log_softmax(logits, 1).mean(1).mean()

    def _all_features(self, ctx: Context, x: Tensor, n: int) -> tuple[list[Tensor], list[Tensor]]:
        """Logits and features of subnetworks ``0 .. n-1`` (``n`` forward passes)."""
        outs, feats = [], []
        for k in range(n):
            ctx.model.set_task(k)
            out, f = self._features(ctx, x, k)
            outs.append(out)
            feats.append(f)
        ctx.model.set_task(None)
        return outs, feats

    @torch.no_grad()
    def _probe_inputs(self, ctx: Context, task: int) -> tuple[Tensor, Tensor]:
        """Concatenated features of subnetworks ``0 .. task`` and the task of each row: the
        current task's whole training split and the memory's samples of earlier tasks."""
        x_mem, _, t_mem = self._replay_memory(ctx)
        earlier = t_mem < task
        batches = [(x.to(ctx.device), torch.full((len(x),), task, dtype=torch.long,
                                                 device=ctx.device))
                   for x, _ in ctx.task.train.batches(ctx.config.eval_batch_size)]
        size = ctx.config.eval_batch_size
        batches += list(zip(x_mem[earlier].to(ctx.device).split(size),
                            t_mem[earlier].to(ctx.device).split(size), strict=True))
        model = ctx.model
        was_training = model.training
        model.eval()
        try:
            feats = [torch.cat(self._all_features(ctx, x, task + 1)[1], 1) for x, _ in batches]
        finally:
            model.train(was_training)
        return torch.cat(feats), torch.cat([t for _, t in batches])

    def _fit_probe(self, ctx: Context, task: int) -> None:
        """Re-fit the task probe from scratch on memory + current task (module docstring):
        multinomial logistic regression, every task weighing the same, L-BFGS."""
        if task == 0:
            return  # one task: nothing to tell apart
        f, t = self._probe_inputs(ctx, task)
        mean, std = f.mean(0), f.std(0) + 1e-3
        z = (f - mean) / std
        counts = torch.bincount(t, minlength=task + 1).to(z.dtype)
        present = int((counts > 0).sum())
        weight = 1.0 / (counts[t] * present)
        coef = torch.zeros(z.shape[1], task + 1, device=z.device, requires_grad=True)
        bias = torch.zeros(task + 1, device=z.device, requires_grad=True)
        optimizer = torch.optim.LBFGS([coef, bias], max_iter=200, line_search_fn="strong_wolfe")

        def closure() -> Tensor:
            optimizer.zero_grad()
            each = F.cross_entropy(z @ coef + bias, t, reduction="none")
            loss = (each * weight).sum() + self.probe_l2 * (coef * coef).sum()
            loss.backward()
            return loss

        with torch.enable_grad():
            optimizer.step(closure)
        for name, value in (("probe_mean", mean), ("probe_std", std), ("probe_coef", coef),
                            ("probe_bias", bias)):
            self.set_buffer(name, value.detach())

    def _memory_scores(self, ctx: Context, x: Tensor, n: int
                       ) -> tuple[Tensor, dict[int, tuple[Tensor, Tensor]]]:
        """Per-task log-scores of ``probe`` / ``ratio-probe`` and every subnetwork's logits."""
        outs, feats = self._all_features(ctx, x, n)
        rows = torch.arange(len(x), device=x.device)
        answers = {k: (rows, out) for k, out in enumerate(outs)}
        if n == 1:
            return x.new_zeros(len(x), 1), answers
        coef = self._buffers.get("probe_coef")
        if coef is None or coef.shape[1] != n:
            fitted = 0 if coef is None else coef.shape[1]
            raise RuntimeError(f"task-inference: the task probe was fitted on {fitted} tasks, "
                               f"the evaluation asks for {n}")
        z = (torch.cat(feats, 1) - self._buffers["probe_mean"]) / self._buffers["probe_std"]
        probe = F.log_softmax(z @ coef + self._buffers["probe_bias"], 1)
        if self.score == "probe":
            return probe, answers
        return self._soft_ratio(feats, n) + self.probe_weight * probe, answers

    def _soft_ratio(self, feats: list[Tensor], n: int) -> Tensor:
        """``log P(task s) = log c_s + sum_{k<s} log(1 - c_k)``, ``c_k`` the posterior of
        subnetwork ``k``'s own classes against the later tasks' (its ``ratio`` statistics)."""
        out = feats[0].new_zeros(len(feats[0]), n)
        rest = feats[0].new_zeros(len(feats[0]))
        for k in range(n - 1):
            tasks, dist = self._ratio_distances(k, n, feats[k])
            ll = -0.5 * dist
            own = tasks == k
            odds = torch.logsumexp(ll[:, own], 1) - torch.logsumexp(ll[:, ~own], 1)
            out[:, k] = rest + F.logsigmoid(odds)
            rest = rest + F.logsigmoid(-odds)
        out[:, n - 1] = rest
        return out
