"""Herding selection of the balanced replay memory (iCaRL's exemplar sets, Rebuffi et al. 2017):
the selection itself, its place in a run (class scenario default, shrinking keeps the first
exemplars), checkpoints, and named errors."""

from __future__ import annotations

import pytest
import torch
from tiny_streams import clusters

import neurosculpt
from neurosculpt.cli import main
from neurosculpt.loop import Learner, TrainConfig
from neurosculpt.models import build_model
from neurosculpt.strategies.replay import Replay


def _mean_gap(feats: torch.Tensor, index: torch.Tensor) -> float:
    return float((feats[index].mean(0) - feats.mean(0)).norm())


def test_herding_keeps_every_prefix_close_to_the_mean():
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(500, 16, generator=gen)
    chosen = Replay.herd(feats, 40)
    assert len(chosen) == 40 and len(set(chosen.tolist())) == 40
    assert torch.equal(Replay.herd(feats, 10), chosen[:10])  # a shorter quota is a prefix
    for k in (5, 10, 40):
        herded = _mean_gap(feats, chosen[:k])
        random = [_mean_gap(feats, torch.randperm(500, generator=gen)[:k]) for _ in range(20)]
        assert herded < min(random)
    assert len(Replay.herd(feats[:3], 10)) == 3  # a class smaller than its quota: all of it


def _learner(scenario: str, replay: Replay, tasks: int = 3) -> Learner:
    bench = clusters(tasks, scenario, per_class=20)
    torch.manual_seed(0)
    net = build_model({"kind": "ann-mlp", "hidden": (16,)}, bench.input_shape, bench.n_outputs)
    return Learner(net, bench, [replay], TrainConfig(epochs=1, batch_size=16, progress=False))


def test_auto_herds_in_the_class_scenario_and_shrinking_keeps_the_first_exemplars():
    replay = Replay(buffer_size=12, replay_batch_size=8)
    learner = _learner("class", replay)
    learner.train_task(0)
    x0, y0, _ = replay.memory()
    rank0 = replay.memory_rank[replay.memory_task >= 0]
    assert torch.bincount(y0).tolist() == [6, 6]
    learner.train_task(1)
    learner.train_task(2)
    record = learner.tasks[-1]["replay"]
    assert (record["memory"], record["selection"]) == ("balanced", "herding")
    assert record["per_task"] == {"0": 4, "1": 4, "2": 4}
    x, y, t = replay.memory()
    for label in (0, 1):  # task 0 keeps its first two exemplars of each class, in order
        first = x0[(y0 == label) & (rank0 < 2)]
        kept = x[(t == 0) & (y == label)]
        assert sorted(map(tuple, kept.tolist())) == sorted(map(tuple, first.tolist()))
    # the exemplars are the task's own training examples
    train = learner.benchmark.tasks[2].train
    xs, _ = train.get(torch.arange(len(train)))
    stored = x[t == 2]
    assert all(bool((xs == row).all(1).any()) for row in stored)


def test_herding_summarises_a_class_better_than_the_random_memory():
    """Same run, same memory size: the herded exemplars' mean lies closer to each class mean
    of the inputs than the random sample's (averaged over classes)."""
    gaps = {}
    for selection in ("random", "herding"):
        replay = Replay(buffer_size=6, memory="balanced", selection=selection)
        learner = _learner("class", replay, tasks=1)
        learner.train_task(0)
        train = learner.benchmark.tasks[0].train
        xs, ys = train.get(torch.arange(len(train)))
        x, y, _ = replay.memory()
        gaps[selection] = sum(float((x[y == c].mean(0) - xs[ys == c].mean(0)).norm())
                              for c in (0, 1))
    assert gaps["herding"] < gaps["random"]


def test_the_task_scenario_keeps_the_random_reservoir():
    replay = Replay(buffer_size=12)
    learner = _learner("task", replay, tasks=2)
    learner.train_task(0)
    record = learner.tasks[-1]["replay"]
    assert (record["memory"], record["selection"]) == ("reservoir", "random")
    assert "memory_rank" not in replay.state_dict()


def test_class_scenario_run_checkpoints_and_resumes_identically(tmp_path):
    args = dict(benchmark="split-digits", scenario="class", class_order="natural", tasks=5,
                samples_per_task=60, test_samples_per_task=30, strategy="replay",
                model="ann-mlp", epochs=1, batch_size=16, progress=False,
                keep_checkpoints=True, model_params={"hidden": [16]},
                strategy_params={"buffer_size": 12})
    full = neurosculpt.run(out=tmp_path / "run", **args)
    assert full.results["tasks"][-1]["replay"]["selection"] == "herding"
    (tmp_path / "run" / "checkpoints" / "task_004.pt").unlink()
    (tmp_path / "run" / "checkpoints" / "task_003.pt").unlink()
    (tmp_path / "run" / "results.json").unlink()
    resumed = neurosculpt.resume(tmp_path / "run")
    assert resumed.accuracy_matrix == full.accuracy_matrix
    sa, sb = full.strategies[0].state_dict(), resumed.strategies[0].state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_bad_selections_are_named(tmp_path, capsys):
    with pytest.raises(ValueError, match="selection must be one of auto, random, herding"):
        Replay(selection="best")
    with pytest.raises(ValueError, match="selection=herding .* needs memory=balanced"):
        Replay(memory="reservoir", selection="herding")
    base = ["run", "-b", "split-digits", "-m", "ann-mlp", "--model-param", "hidden=8",
            "--steps", "1", "--samples-per-task", "20", "--no-progress", "-s", "replay",
            "-p", "buffer_size=8", "-p", "selection=herding"]
    # the task scenario's memory is the reservoir: herding cannot apply
    assert main([*base, "--scenario", "task", "-o", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "needs memory=balanced" in err
