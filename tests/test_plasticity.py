"""Plasticity signals, unit-level structural operations, the plasticity strategies and the
neuroplasticity controller (tiny networks and streams: the whole file runs in seconds)."""

from __future__ import annotations

import math

import pytest
import torch
from expected_warnings import at_chance, short_tasks

import neurosculpt
from neurosculpt.benchmarks import Split, shared_label_stream
from neurosculpt.loop import Learner, TrainConfig
from neurosculpt.models import build_model
from neurosculpt.network import reset_optimizer_state
from neurosculpt.plasticity.controller import parse_actions
from neurosculpt.plasticity.signals import (
    PlateauDetector,
    UnitStats,
    dormant_scores,
    effective_rank,
    srank,
    unit_activity,
)
from neurosculpt.plasticity.structure import (
    budgets,
    free_units,
    grow_units,
    outgoing_weight,
    reinit_units,
    remove_units,
)
from neurosculpt.report import format_run
from neurosculpt.strategies import available, make_strategies

# --- helpers -----------------------------------------------------------------------------------


def random_labels(n_tasks: int = 3, n: int = 48, dim: int = 10, seed: int = 0):
    """A tiny random-label stream: the same inputs, fresh labels every task (train = test)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=gen)
    y = torch.zeros(n, dtype=torch.long)
    splits = []
    for _ in range(n_tasks):
        split = Split(x, y, labels=torch.randint(0, 4, (n,), generator=gen))
        splits.append((split, split))
    return shared_label_stream("tiny-random-label", splits, 4, "domain", (dim,))


def make_learner(strategies, kind: str = "ann-mlp", steps: int = 60, lr: float = 5e-3,
                 hidden=(16, 16), n_tasks: int = 3) -> Learner:
    bench = random_labels(n_tasks)
    torch.manual_seed(0)
    net = build_model({"kind": kind, "hidden": hidden, "steps": 3}, bench.input_shape,
                      bench.n_outputs)
    config = TrainConfig(steps=steps, batch_size=16, lr=lr, progress=False)
    return Learner(net, bench, strategies, config)


def mlp(hidden=(6, 5), n_in: int = 4, n_out: int = 3, kind: str = "ann-mlp"):
    torch.manual_seed(0)
    return build_model({"kind": kind, "hidden": hidden, "steps": 2}, (n_in,), n_out)


def adam_state(net, x):
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(2):
        opt.zero_grad()
        net(x).pow(2).sum().backward()
        opt.step()
    return opt


# --- signals -----------------------------------------------------------------------------------


def test_effective_rank_and_srank_of_known_spectra():
    assert effective_rank(torch.eye(5)) == pytest.approx(5.0)
    rank_one = torch.ones(6, 1) @ torch.arange(1.0, 5.0)[None]
    assert effective_rank(rank_one) == pytest.approx(1.0, abs=1e-6)
    assert srank(rank_one) == 1
    # singular values 4, 2, 1, 1: p = 0.5, 0.25, 0.125, 0.125
    diag = torch.diag(torch.tensor([4.0, 2.0, 1.0, 1.0]))
    p = torch.tensor([0.5, 0.25, 0.125, 0.125])
    assert effective_rank(diag) == pytest.approx(math.exp(float(-(p * p.log()).sum())))
    # cumulative 0.5, 0.75, 0.875, 1.0: 99% needs all four, 80% three
    assert srank(diag, delta=0.01) == 4 and srank(diag, delta=0.2) == 3
    assert effective_rank(torch.zeros(3, 3)) == 0.0


def test_dormant_scores_and_unit_activity():
    scores = dormant_scores(torch.tensor([0.0, 1.0, 2.0, 1.0]))
    assert torch.allclose(scores, torch.tensor([0.0, 1.0, 2.0, 1.0]))
    assert torch.equal(dormant_scores(torch.zeros(3)), torch.zeros(3))
    spikes = torch.tensor([[[1.0, 0.0]], [[0.0, 0.0]]])  # [T=2, B=1, N=2]
    assert torch.equal(unit_activity(spikes), torch.tensor([[0.5, 0.0]]))
    conv = torch.ones(1, 2, 3, 4, 4)  # [T, B, C, H, W] -> per-channel mean
    assert unit_activity(conv).shape == (2, 3)


def test_unit_stats_running_averages_utility_and_bias_correction():
    net = mlp()
    stats = UnitStats(decay=0.9)
    stats.follow(net)
    h0 = torch.tensor([[[1.0, 0.0, 2.0, 0.0, 1.0, 3.0], [3.0, 0.0, 0.0, 0.0, 1.0, 1.0]]])
    h1 = torch.ones(1, 2, 5)
    stats.update(net, [h0, h1])
    # one update, bias-corrected: exactly this batch's statistics
    assert torch.allclose(stats.mean_activity(0), torch.tensor([2.0, 0, 1, 0, 1, 2]))
    assert torch.allclose(stats.active_fraction(0), torch.tensor([1.0, 0, 0.5, 0, 1, 1]))
    out = net.layers[1].weight.detach().abs().sum(0)
    assert torch.allclose(outgoing_weight(net, 0), out)
    assert torch.allclose(stats.utility(0), torch.tensor([2.0, 0, 1, 0, 1, 2]) * out)
    assert torch.equal(stats.age(0), torch.ones(6, dtype=torch.long))
    stats.update(net, [torch.zeros_like(h0), h1], steps=3)
    # second update stands for 3 steps: weight 1 - 0.9^3 on the new (zero) batch
    raw = torch.tensor([2.0, 0, 1, 0, 1, 2]) * 0.1 * 0.9**3
    assert torch.allclose(stats.mean_activity(0), raw / (1 - 0.9**4))
    # the statistics follow the network's journal, whoever changes it
    net.reinit_units(0, torch.tensor([0]))
    stats.follow(net)
    assert stats.age(0)[0] == 0 and stats.utility(0)[0] == 0
    net.grow_units(1, 2)
    stats.follow(net)
    assert stats.size(1) == 7 and stats.age(1)[-1] == 0
    net.remove_units(0, torch.tensor([0, 3, 4]))
    stats.follow(net)
    assert torch.allclose(stats.mean_activity(0)[1:], (raw / (1 - 0.9**4))[[2, 5]])


def test_unit_stats_refresh_outgoing_weights_every_out_every_updates():
    """The utility's sums of |outgoing weights| are cached for ``out_every`` updates: with 1
    they follow every weight change (Dohare et al.), with 3 they catch up on the third update."""
    h = [torch.ones(1, 2, 6), torch.ones(1, 2, 5)]
    for out_every, catches_up_after in ((1, 1), (3, 3)):
        net = mlp()
        stats = UnitStats(decay=0.5, out_every=out_every)
        stats.update(net, h)
        with torch.no_grad():
            net.layers[1].weight.mul_(2.0)
        new = outgoing_weight(net, 0)
        assert not torch.allclose(stats._out[0], new)
        for update in range(1, 4):
            before = stats.utility(0).clone()
            stats.update(net, h)
            moved = not torch.allclose(stats.utility(0), before)
            assert moved == (update >= catches_up_after), (out_every, update)
        assert torch.allclose(stats._out[0], new)


def test_plateau_detector_flags_flat_loss_only():
    det = PlateauDetector(window=5, tol=0.01, patience=2)
    for step in range(40):
        assert not det.update(10.0 * 0.9**step)
    det.reset()
    flags = [det.update(1.0) for _ in range(15)]
    # first window sets the best, the next two are stale: plateau from step 15 on
    assert not any(flags[:14]) and flags[14]
    state = det.state()
    other = PlateauDetector(window=5, tol=0.01, patience=2)
    other.load(state)
    assert other.plateau and other.best == det.best


# --- structural operations ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["first", "all", "none"])
def test_reinit_units_resets_weights_and_optimizer_entries(mode):
    net = mlp()
    x = torch.randn(8, 4)
    opt = adam_state(net, x)
    cur, nxt = net.layers[0], net.layers[1]
    old_in = cur.weight.detach().clone()
    old_sq = opt.state[cur.weight]["exp_avg_sq"].clone()
    units = torch.tensor([1, 4])
    reinit_units(net, 0, units, opt, optimizer_reset=mode)
    assert not torch.equal(cur.weight[units], old_in[units])
    assert torch.equal(cur.weight[[0, 2, 3, 5]], old_in[[0, 2, 3, 5]])
    assert torch.all(cur.bias[units] == 0) and torch.all(nxt.weight[:, units] == 0)
    m, v = opt.state[cur.weight]["exp_avg"], opt.state[cur.weight]["exp_avg_sq"]
    m_out = opt.state[nxt.weight]["exp_avg"]
    if mode == "none":
        assert bool((m[units] != 0).any())
    else:
        assert torch.all(m[units] == 0) and torch.all(m_out[:, units] == 0)
        assert bool((m[[0, 2]] != 0).any())
    if mode == "first":
        assert torch.equal(v, old_sq)
    if mode == "all":
        assert torch.all(v[units] == 0)
    with pytest.raises(ValueError):
        reset_optimizer_state(opt, cur.weight, 0, units, mode="bogus")


def test_reinit_with_bias_correction_keeps_constant_units_output():
    net = mlp()
    x = torch.randn(8, 4)
    with torch.no_grad():  # unit 2 of layer 0 outputs the constant 0.7 for every input
        net.layers[0].weight[2] = 0.0
        net.layers[0].bias[2] = 0.7
        before = net(x)
        reinit_units(net, 0, torch.tensor([2]), None, mean_act=torch.full((6,), 0.7))
        # the reinitialised unit has no outgoing weights yet, so only its constant moved
        assert torch.allclose(net(x), before, atol=1e-5)


def test_grow_units_preserves_the_function_and_adam_state():
    net = mlp()
    x = torch.randn(8, 4)
    opt = adam_state(net, x)
    old_m = opt.state[net.layers[0].weight]["exp_avg"].clone()
    before = net(x).detach()
    new = grow_units(net, 0, 3, opt)
    assert new.tolist() == [6, 7, 8] and net.hidden_sizes() == [9, 5]
    assert torch.allclose(net(x), before)
    assert torch.equal(opt.state[net.layers[0].weight]["exp_avg"][:6], old_m)
    assert torch.all(net.layers[0].bias[new] == 0)


def test_remove_units_compacts_and_dead_units_leave_no_trace():
    net = mlp()
    x = torch.rand(8, 4)
    opt = adam_state(net, x)
    with torch.no_grad():  # units 0 and 3 never fire on non-negative inputs
        net.layers[0].weight[[0, 3]] = -1.0
        net.layers[0].bias[[0, 3]] = -1.0
    before = net(x).detach()
    kept = remove_units(net, 0, torch.tensor([0, 3]), opt)
    assert kept.tolist() == [1, 2, 4, 5] and net.hidden_sizes() == [4, 5]
    assert net.layers[1].n_in == 4
    assert torch.allclose(net(x), before)
    opt.zero_grad()
    net(x).sum().backward()
    opt.step()  # the optimizer follows the new shapes


def test_free_units_exclude_consolidated_ones():
    net = mlp()
    assert bool(free_units(net, 0).all())
    with torch.no_grad():
        net.layers[1].owner[:, 2] = 0  # a synapse leaving unit 2 belongs to task 0
        net.layers[0].frozen[4, 1] = True  # a frozen synapse entering unit 4
    assert free_units(net, 0).tolist() == [True, True, False, True, False, True]


def test_budgets_and_actions():
    assert budgets(None, [10, 20]) == [15, 30]
    assert budgets(2.0, [10, 20]) == [20, 40]
    assert budgets(12, [10, 20]) == [12, 12]
    assert budgets([11, 21], [10, 20]) == [11, 21]
    with pytest.raises(ValueError):
        budgets([1], [10, 20])
    assert parse_actions("grow,renew") == ["renew", "grow"]
    assert parse_actions(None) == [] and parse_actions("none") == []
    with pytest.raises(ValueError):
        parse_actions("explode")


# --- strategies --------------------------------------------------------------------------------


def decisions(learner: Learner, action: str | None = None) -> list[dict]:
    return [d for rec in learner.tasks for d in rec["plasticity"]["decisions"]
            if action is None or d["action"] == action]


@pytest.mark.parametrize("kind", ["ann-mlp", "snn-mlp"])
def test_cbp_renews_mature_units_at_the_given_rate_and_logs_signals(kind):
    run = make_learner(make_strategies("cbp", {"replacement_rate": 0.02, "maturity": 10,
                                                "log_every": 20}), kind=kind)
    run.run()
    renewed = decisions(run, "renew")
    # per layer and task: rate * eligible units (16 once mature) * steps after maturity
    assert all(0 < d["n"] <= math.ceil(0.02 * 16 * 60) for d in renewed)
    assert run.model.hidden_sizes() == [16, 16]
    snaps = run.tasks[0]["plasticity"]["signals"]
    assert len(snaps) == 3  # after steps 20 and 40, and the end of the task (which the one
    # due after step 60, the task's last, would repeat)
    hidden = snaps[-1]["layers"][0]
    for key in ("dormant", "dead", "erank", "srank", "utility_mean", "weight_mag", "grad_norm",
                "free_synapses", "free_units"):
        assert key in hidden
    assert ("firing_rate" in hidden) == (kind == "snn-mlp")
    assert ("silent" in hidden) == (kind == "snn-mlp")


def test_logging_signals_never_changes_training():
    """Snapshots are measurements: how often they run must not change the trained network, even
    with a rate encoder drawing its spikes from the global random state."""
    def trained(log_every: int) -> Learner:
        bench = random_labels(2)
        torch.manual_seed(0)
        net = build_model({"kind": "snn-mlp", "hidden": (16, 16), "steps": 3,
                           "encoder": "rate"}, bench.input_shape, bench.n_outputs)
        run = Learner(net, bench, make_strategies("neuroplastic", {
            "log_every": log_every, "replacement_rate": 0.05, "maturity": 5, "every": 1}),
            TrainConfig(steps=30, batch_size=16, progress=False))
        run.run()
        return run

    with short_tasks():
        quiet, chatty = trained(0), trained(10)
    a, b = quiet.model.state_dict(), chatty.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert quiet.tasks[-1]["plasticity"]["decisions"] == chatty.tasks[-1]["plasticity"]["decisions"]
    steps = [(s["step"], s.get("end_of_task", False))
             for s in chatty.tasks[1]["plasticity"]["signals"]]
    assert steps == [(39, False), (49, False), (60, True)]  # none due after step 59, the last


def test_plain_training_loses_rank_and_the_signals_show_it():
    """Random labels with a too-high learning rate kill units; the signals must say so."""
    strategies = make_strategies("neuroplastic", {"actions": "none", "log_every": 0})
    run = make_learner(strategies, steps=150, lr=0.2, n_tasks=2)
    run.run()
    end = [s for s in run.tasks[-1]["plasticity"]["signals"] if s.get("end_of_task")][-1]
    assert end["layers"][1]["dead"] >= 0.5
    assert end["layers"][1]["erank"] < 8
    assert decisions(run) == []


def test_redo_reinitialises_dead_units():
    strategies = make_strategies("redo", {"every": 10, "tau": 0.1})
    run = make_learner(strategies, steps=20, n_tasks=1)
    with torch.no_grad():  # units 0..3 of layer 0 are dead from the start
        run.model.layers[0].weight[:4] = -5.0 * run.model.layers[0].weight[:4].sign().abs()
        run.model.layers[0].weight[:4] -= 5.0
        run.model.layers[0].bias[:4] = -50.0
    run.run()
    first = decisions(run, "reinit")[0]
    assert first["layer"] == 0 and first["n"] >= 4 and first["why"]["dormant_fraction"] >= 0.25
    assert bool((run.model.layers[0].bias[:4] > -50).all())


def test_shrink_perturb_at_task_boundaries_only():
    strategies = make_strategies("shrink-perturb", {"shrink": 0.5, "noise": 0.0})
    run = make_learner(strategies, steps=1, n_tasks=2)
    run.train_task(0)
    w = run.model.layers[0].weight.detach().clone()
    with torch.no_grad():
        run.model.layers[0].frozen[0, 0] = True
    assert decisions(run) == []  # task 0: nothing shrunk
    run.ctx.task_id, run.ctx.record = 1, {}
    strategies[0].before_task(run.ctx)  # what train_task(1) does first
    expected = 0.5 * w
    expected[0, 0] = w[0, 0]  # frozen synapses keep their value
    assert torch.allclose(run.model.layers[0].weight, expected)
    assert run.ctx.record["plasticity"]["decisions"][0]["why"] == {"shrink": 0.5, "noise": 0.0}


def test_l2_init_penalty_pulls_towards_the_initial_weights():
    init = make_learner([], n_tasks=1).model.layers[0].weight.detach().clone()
    plain = make_learner([], n_tasks=1)
    plain.run()
    strong = make_learner(make_strategies("l2-init", {"lam": 1.0}), n_tasks=1)
    strong.run()
    drift = (plain.model.layers[0].weight - init).norm()
    assert (strong.model.layers[0].weight - init).norm() < 0.5 * drift
    strategy = strong.strategies[0]
    assert torch.equal(strategy.anchor_w0, init)
    grow_units(strong.model, 0, 2, None)
    strategy._anchors(strong.ctx)  # grown rows are anchored at their value when first seen
    assert strategy.anchor_w0.shape == (18, 10)
    assert torch.equal(strategy.anchor_w0[:16], init)


def test_l2_init_gradient_equals_the_penalty_in_the_loss():
    run = make_learner(make_strategies("l2-init", {"lam": 0.3}), n_tasks=1)
    strategy, model = run.strategies[0], run.model
    strategy.before_task(run.ctx)
    with torch.no_grad():
        for layer in model.layers:
            layer.weight.add_(0.1 * torch.randn_like(layer.weight))
            layer.bias.add_(0.1)
    x, y = next(iter(run.benchmark.tasks[0].train.batches(8)))
    params = [p for layer in model.layers for p in (layer.weight, layer.bias)]
    anchors = [strategy._buffers[f"anchor_{k}{i}"] for i in range(len(model.layers))
               for k in ("w", "b")]
    loss = torch.nn.functional.cross_entropy(model(x), y)
    penalty = sum(((p - a) ** 2).sum() for p, a in zip(params, anchors, strict=True))
    expected = torch.autograd.grad(loss + 0.3 * penalty, params)
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    strategy.after_backward(run.ctx)
    for p, g in zip(params, expected, strict=True):
        assert torch.allclose(p.grad, g, atol=1e-6)


def test_l2_init_leaves_pruned_and_frozen_entries_alone():
    from neurosculpt import layers as L

    run = make_learner(make_strategies("l2-init", {"lam": 0.5}), n_tasks=1)
    strategy, layer = run.strategies[0], run.model.layers[0]
    strategy.before_task(run.ctx)
    with torch.no_grad():
        layer.weight.add_(0.1)
        layer.bias.add_(0.1)
    x, y = next(iter(run.benchmark.tasks[0].train.batches(8)))

    def grads(pull: bool) -> tuple[torch.Tensor, torch.Tensor]:
        run.model.zero_grad()
        torch.nn.functional.cross_entropy(run.model(x), y).backward()
        if pull:
            strategy.after_backward(run.ctx)
        return layer.weight.grad.clone(), layer.bias.grad.clone()

    grads(True)  # builds the keep cache for the dense layer
    remove = torch.zeros_like(layer.mask)
    remove[0, :3] = True
    L.prune_synapses(layer, remove)
    with torch.no_grad():
        layer.frozen[1, :2] = True
        layer.bias_frozen[2] = True
    task_w, task_b = grads(False)
    w, b = grads(True)  # the cached keep mask follows the changed structure
    keep_w = (layer.mask & ~layer.frozen).float()
    pull_w = 2 * 0.5 * (layer.weight.detach() - strategy.anchor_w0) * keep_w
    pull_b = 2 * 0.5 * (layer.bias.detach() - strategy.anchor_b0) * (~layer.bias_frozen).float()
    assert (w[0, :3] == 0).all() and (w[1, :2] == 0).all() and b[2] == 0
    assert torch.allclose(w, task_w + pull_w, atol=1e-6)
    assert torch.allclose(b, task_b + pull_b, atol=1e-6)


def test_dropin_grows_within_budget_and_apoptosis_compacts():
    strategies = make_strategies("dropin", {"grow": 4, "every": 20, "max_units": 24,
                                            "apoptosis": 0.5, "maturity": 5, "dropout": 0.2})
    run = make_learner(strategies, steps=60)
    run.run()
    grown = decisions(run, "grow")
    assert grown and all(d["why"]["units"] + d["n"] <= 24 for d in grown)
    assert max(max(rec["units"]) for rec in run.tasks) <= 24
    pruned = decisions(run, "prune")
    assert pruned, "utility below half the layer mean happens in every layer"
    assert all(rec["units"][0] >= 8 for rec in run.tasks)
    net = run.model
    net.eval()
    x = torch.randn(5, 10)
    assert torch.equal(net(x), net(x))  # no unit dropout at evaluation


def test_neuroplastic_grows_on_plateau_never_above_budget_and_logs_why():
    # lr 1e-5: the loss cannot move, so the plateau detector fires and the controller grows
    params = {"max_units": 20, "grow": 2, "check_every": 10, "plateau_window": 10,
              "plateau_patience": 1, "dormant_max": 1.0, "maturity": 5, "log_every": 0}
    run = make_learner(make_strategies("neuroplastic", params), lr=1e-5, steps=80)
    run.run()
    grown = decisions(run, "grow")
    on_plateau = [d for d in grown if "plateau" in d["why"]]
    unlearned = [d for d in grown if "previous_task_accuracy" in d["why"]]
    assert on_plateau and on_plateau[0]["task"] == 0
    assert len(on_plateau) + len(unlearned) == len(grown)
    for d in grown:
        assert d["why"]["units"] + d["n"] <= 20 and "erank_fraction" in d["why"]
    for d in on_plateau:
        assert d["why"]["plateau"] is True and "loss_window" in d["why"]
    for d in unlearned:  # across tasks: the previous task was not learned
        assert d["step"] == 80 * d["task"] and d["why"]["previous_task_accuracy"] < 0.99
    assert all(n <= 20 for rec in run.tasks for n in rec["units"])
    assert any(d["why"]["units"] + d["n"] == 20 for d in grown)  # it reached the budget


@pytest.mark.parametrize("kind", ["ann-mlp", "snn-mlp"])
def test_neuroplastic_enforces_the_budget_and_reinitialises_dormant_units(kind):
    params = {"max_units": 12, "check_every": 10, "maturity": 5, "tau": 0.5, "log_every": 0}
    run = make_learner(make_strategies("neuroplastic", params), kind=kind, steps=40)
    with short_tasks():
        run.run()
    pruned = decisions(run, "prune")
    assert pruned[0]["why"]["over_budget"] == 4 and pruned[0]["n"] == 4
    assert all(n <= 12 for rec in run.tasks for n in rec["units"])
    reinit = decisions(run, "reinit")
    assert reinit and all(d["why"]["tau"] == 0.5 for d in reinit)


def test_neuroplastic_apoptosis_is_opt_in_and_removes_idle_units_at_task_end():
    base = {"check_every": 10, "maturity": 5, "log_every": 0, "prune_utility": 0.5,
            "actions": "renew,reinit"}
    kept = make_learner(make_strategies("neuroplastic", base), steps=40)
    kept.run()
    assert not decisions(kept, "prune")
    run = make_learner(make_strategies("neuroplastic", {**base, "actions": "renew,reinit,prune"}),
                       steps=40)
    run.run()
    pruned = decisions(run, "prune")
    assert pruned and all(d["step"] % 40 == 0 and "low_utility_fraction" in d["why"]
                          for d in pruned)
    removed = sum(d["n"] for d in pruned if d["task"] == 0 and d["layer"] == 0)
    assert run.tasks[0]["units"][0] == 16 - removed >= 8  # never below min_units


def test_strategies_are_deterministic():
    def once():
        run = make_learner(make_strategies("neuroplastic", {"check_every": 10, "maturity": 5}))
        with short_tasks():
            run.run()
        return run.accuracy, decisions(run)

    assert once() == once()


@pytest.mark.parametrize("strategy", ["neuroplastic", "cbp", "l2-init", "dropin"])
def test_resume_after_an_interruption_gives_identical_results(tmp_path, strategy):
    params = {"neuroplastic": {"check_every": 10, "maturity": 5, "max_units": 1.25,
                               "grow": 2, "plateau_window": 10, "plateau_patience": 1},
              "cbp": {"replacement_rate": 0.01, "maturity": 5},
              "l2-init": {"lam": 0.01},
              "dropin": {"every": 15, "grow": 2, "apoptosis": 0.3, "maturity": 5}}[strategy]
    args = dict(benchmark="random-label-digits", tasks=3, samples_per_task=64, steps=40,
                strategy=strategy, model="ann-mlp", batch_size=16, progress=False,
                model_params={"hidden": [16, 16]}, strategy_params=params,
                keep_checkpoints=True)
    full = neurosculpt.run(out=tmp_path / "run", **args)
    (tmp_path / "run" / "checkpoints" / "task_002.pt").unlink()
    (tmp_path / "run" / "results.json").unlink()
    resumed = neurosculpt.resume(tmp_path / "run")
    assert resumed.accuracy_matrix == full.accuracy_matrix
    last_full, last_resumed = full.results["tasks"][2], resumed.results["tasks"][2]
    assert last_full["plasticity"] == last_resumed["plasticity"]
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    sa, sb = full.strategies[0].state_dict(), resumed.strategies[0].state_dict()
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa if torch.is_tensor(sa[k]))


def test_results_json_keeps_signals_and_decisions_per_task(tmp_path):
    with short_tasks(), at_chance():  # 30 steps of random labels: not memorised yet
        result = neurosculpt.run(benchmark="random-label-digits", tasks=2, samples_per_task=48,
                                 steps=30, strategy="neuroplastic", model="ann-mlp",
                                 batch_size=16, progress=False, model_params={"hidden": [12]},
                                 strategy_params={"log_every": 10, "check_every": 10,
                                                  "maturity": 5, "replacement_rate": 0.05},
                                 out=tmp_path / "run")
    saved = neurosculpt.runs.read_results(tmp_path / "run")
    for task in saved["tasks"]:
        record = task["plasticity"]
        assert len(record["signals"]) == 3 and record["decisions"]  # steps 10, 20, end
        assert {"step", "action", "layer", "n", "why"} <= set(record["decisions"][0])
    assert result.results["config"]["strategy_params"]["neuroplastic"]["check_every"] == 10
    total = sum(d["n"] for task in saved["tasks"] for d in task["plasticity"]["decisions"]
                if d["action"] == "grow")
    assert total > 0 and f"grow {total}" in format_run(saved)  # `neurosculpt show` sums them


def test_conv_models_work_with_unit_operations():
    torch.manual_seed(0)
    net = build_model({"kind": "ann-conv", "channels": (4, 6), "hidden": (8,)}, (1, 8, 8), 3)
    x = torch.rand(5, 1, 8, 8)
    net.record_activity = True
    before = net(x).detach()
    stats = UnitStats()
    stats.update(net, net.activity)
    assert stats.size(1) == 6 and stats.utility(1).shape == (6,)
    assert outgoing_weight(net, 1).shape == (6,)  # conv -> linear: 4 positions per channel
    grow_units(net, 1, 2, None)
    assert torch.allclose(net(x), before, atol=1e-6)
    reinit_units(net, 0, torch.tensor([1]), None, mean_act=torch.zeros(4))
    assert torch.all(net.layers[1].weight[:, 1] == 0)
    remove_units(net, 1, torch.tensor([6, 7]), None)
    assert net.hidden_sizes() == [4, 6, 8]


@pytest.mark.skipif("develop" not in available(), reason="development cycle not installed")
def test_composes_with_the_development_cycle_without_touching_consolidated_units():
    """develop freezes each task's subnetwork (zero forgetting with task identity); the
    controller renews and reinitialises only free units, so that must still hold."""
    params = {"develop": {"initial_hidden": 0.5, "grow": 0.25},
              "neuroplastic": {"check_every": 10, "maturity": 5, "replacement_rate": 0.05,
                               "tau": 0.3, "log_every": 0}}
    with short_tasks(), at_chance():  # 50 steps: a later, permuted task may not be learned
        result = neurosculpt.run(benchmark="permuted-digits", tasks=3, samples_per_task=200,
                                 test_samples_per_task=60, strategy="develop+neuroplastic",
                                 model="ann-mlp", steps=50, batch_size=32, lr=3e-3,
                                 progress=False, model_params={"hidden": [24, 24]},
                                 strategy_params=params)
    acc = result.accuracy_matrix
    assert acc[1][0] == acc[2][0] == acc[0][0] and acc[2][1] == acc[1][1]
    actions = {d["action"] for t in result.results["tasks"] for d in t["plasticity"]["decisions"]}
    assert {"renew", "reinit"} <= actions
    budget = result.strategies[1].controller.budget
    assert budget == [36, 36]
    assert all(n <= b for t in result.results["tasks"] for n, b in zip(t["units"], budget,
                                                                        strict=True))


@pytest.mark.skipif("develop" not in available(), reason="development cycle not installed")
def test_development_cycle_follows_units_the_controller_grows_and_removes():
    """The controller resizes layers in the middle of develop's task: develop's importance
    statistics must follow (grown units start with zero importance) and the run completes
    with zero forgetting."""
    params = {"develop": {"initial_hidden": 1.0},
              "neuroplastic": {"check_every": 5, "maturity": 2, "plateau_window": 3,
                               "plateau_patience": 1, "plateau_tol": 10.0, "grow": 3,
                               "solved": 1.01, "dormant_max": 1.0, "log_every": 0}}
    with at_chance():  # 30 steps of 10-unit layers
        result = neurosculpt.run(benchmark="permuted-digits", tasks=3, samples_per_task=120,
                                 test_samples_per_task=40, strategy="develop+neuroplastic",
                                 model="ann-mlp", steps=30, batch_size=16, progress=False,
                                 model_params={"hidden": [10, 10]}, strategy_params=params)
    grown = [d for t in result.results["tasks"] for d in t["plasticity"]["decisions"]
             if d["action"] == "grow" and 0 < d["step"] - 30 * d["task"] < 30]
    assert grown, "the controller should grow units in the middle of a task"
    develop = result.strategies[0]
    assert develop._serial == result.model.resize_serial > 0
    acc = result.accuracy_matrix
    assert acc[2][0] == acc[0][0] and acc[2][1] == acc[1][1]


def test_resize_journal_replays_growth_and_compaction():
    from neurosculpt.network import follow

    torch.manual_seed(0)
    net = build_model({"kind": "ann-mlp", "hidden": (4, 5)}, (1, 2, 3), 2)
    tensors = [layer.weight.detach().clone() for layer in net.plastic_layers]
    start = net.resize_serial
    net.grow_units(0, 2)
    net.remove_units(1, torch.tensor([1, 3]))
    net.remove_units(0, torch.tensor([0, 2]))
    resizes = net.resizes_since(start)
    tensors = [follow(t, resizes, weight=j) for j, t in enumerate(tensors)]
    for tensor, layer in zip(tensors, net.plastic_layers, strict=True):
        assert tensor.shape == layer.weight.shape
    # kept original entries moved with their units, grown ones are zero
    assert torch.equal(tensors[0][:2], net.plastic_layers[0].weight[:2].detach())
    assert torch.equal(tensors[0][2:], torch.zeros(2, 6))
    with pytest.raises(RuntimeError, match="journal"):
        for _ in range(300):
            net.grow_units(1, 1)
        net.resizes_since(start)
