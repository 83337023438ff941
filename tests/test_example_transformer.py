"""examples/transformer.py: a plain-PyTorch transformer whose feed-forward hidden units are the
only plastic units, trained by every strategy on a tiny sequence stream (digits as 8 row
tokens), and the controller growing, removing and reinitialising those units within budget."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from expected_warnings import SHORT_TASK, short_tasks, short_tasks_for

import neurosculpt
from neurosculpt.adapter import build_user_model
from neurosculpt.benchmarks import make_benchmark
from neurosculpt.cli import main
from neurosculpt.loading import load_module
from neurosculpt.loop import Learner, TrainConfig
from neurosculpt.strategies import available, make_strategies

EXAMPLE = str(Path(__file__).resolve().parents[1] / "examples" / "transformer.py")
FACTORY = EXAMPLE + ":build"
SMALL = {"d_model": 16, "heads": 2, "hidden": 12}


def learner(strategy: str, params: dict | None = None, benchmark: str = "split-digits",
            tasks: int = 2, steps: int = 20, lr: float = 5e-3, **bench) -> Learner:
    stream = make_benchmark(benchmark, n_tasks=tasks, sequence=True, **bench)
    torch.manual_seed(0)
    net = build_user_model(FACTORY, stream.input_shape, stream.n_outputs, SMALL)
    config = TrainConfig(steps=steps, batch_size=16, lr=lr, progress=False, energy_samples=0)
    return Learner(net, stream, make_strategies(strategy, params or {}), config)


def test_only_the_feed_forward_units_are_plastic_and_weights_are_kept():
    torch.manual_seed(0)
    plain = load_module(EXAMPLE).SequenceTransformer(8, 8, 10, **SMALL)
    torch.manual_seed(0)
    net = build_user_model(FACTORY, (8, 8), 10, SMALL)
    x = torch.rand(3, 8, 8)
    assert torch.allclose(net(x), plain(x), atol=1e-6)
    changeable = [g for g in net.groups if not g.fixed]
    assert [g.producers for g in changeable] == [["blocks.0.ff.0"], ["blocks.1.ff.0"]]
    assert [list(g.consumers) for g in changeable] == [["blocks.0.ff.2"], ["blocks.1.ff.2"]]
    assert all(g.fixed for g in net.groups if g not in changeable)  # the residual stream
    assert net.layer_names[-1] == "head"
    # attention keeps its plain layers (MultiheadAttention reads out_proj.weight directly)
    assert type(net.net.blocks[0].attn.out_proj) is not neurosculpt.layers.PlasticLinear


def test_factory_rejects_images_that_are_not_sequences():
    with pytest.raises(ValueError, match="present images as rows with --sequence"):
        build_user_model(FACTORY, (1, 8, 8), 10)


@pytest.mark.parametrize("strategy", [s for s in available() if s != "joint"] + ["joint"])
def test_every_strategy_runs_on_the_transformer(strategy):
    run = learner(strategy, {"log_every": 0} if strategy == "neuroplastic" else None)
    with short_tasks_for(strategy):
        run.run()
    assert len(run.accuracy) == 2 and all(0.0 <= a <= 1.0 for a in run.accuracy[-1])
    blocks = run.model.net.blocks
    assert all(b.attn.in_proj_weight.shape == (48, 16) for b in blocks)  # attention whole
    assert all(b.ff[2].n_out == 16 for b in blocks)  # residual width whole


def _decisions(run: Learner, action: str) -> list[dict]:
    return [d for rec in run.tasks for d in rec.get("plasticity", {}).get("decisions", [])
            if d["action"] == action]


def test_neuroplastic_grows_prunes_and_reinits_feed_forward_units_within_budget():
    params = {"max_units": 16, "grow": 2, "check_every": 5, "plateau_window": 5,
              "plateau_patience": 1, "dormant_max": 1.0, "maturity": 3, "tau": 0.9,
              "prune_utility": 0.9, "actions": "renew,reinit,grow,prune", "log_every": 0}
    run = learner("neuroplastic", params, benchmark="random-label-digits", tasks=3, steps=30,
                  lr=1e-5, samples_per_task=48)
    run.run()
    for action in ("grow", "prune", "reinit"):
        assert _decisions(run, action), f"no {action} decision"
    net = run.model
    assert [net.units(i).fixed for i in range(4)] == [False, True, False, True]
    widths = [rec["units"] for rec in run.tasks]  # ff.0, residual, ff.0, residual
    assert all(w[0] <= 16 and w[2] <= 16 and w[1] == w[3] == 16 for w in widths)
    assert any(w[0] != 12 or w[2] != 12 for w in widths)
    for block, n in zip(net.net.blocks, net.hidden_sizes()[::2], strict=True):
        assert block.ff[0].n_out == block.ff[2].n_in == n
        assert block.attn.in_proj_weight.shape == (48, 16) and block.ff[2].n_out == 16
    assert torch.isfinite(net(torch.rand(2, 8, 8))).all()


@pytest.mark.filterwarnings(f"always:{SHORT_TASK}:UserWarning")  # printed by the CLI, asserted
def test_cli_and_api_run_the_example_on_a_sequence_stream(tmp_path, capsys):
    args = ["run", "-b", "random-label-digits", "--sequence", "--model", FACTORY,
            "--model-param", "d_model=16", "--model-param", "heads=2",
            "--model-param", "hidden=12", "-s", "neuroplastic", "--tasks", "2", "--steps", "10",
            "--batch-size", "16", "--samples-per-task", "32", "--eval-scope", "current",
            "--threads", "1", "--quiet", "--out", str(tmp_path / "cli")]
    assert main(args) == 0
    assert "neurosculpt: warning: neuroplastic: task 0 trains 10 steps" in capsys.readouterr().err
    results = neurosculpt.read_results(tmp_path / "cli")
    assert results["config"]["sequence"] is True
    assert len(results["tasks"]) == 2
    with short_tasks():
        api = neurosculpt.run(benchmark="random-label-digits", sequence=True, model=FACTORY,
                              model_params=SMALL, strategy="neuroplastic", tasks=2, steps=10,
                              batch_size=16, samples_per_task=32, eval_scope="current",
                              progress=False, threads=1, out=tmp_path / "api")
    assert api.results["accuracy_matrix"] == results["accuracy_matrix"]


def test_cli_names_the_missing_sequence_flag(tmp_path, capsys):
    code = main(["run", "-b", "split-digits", "--model", FACTORY, "--tasks", "2", "--steps", "2",
                 "--quiet", "--out", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--sequence" in err
