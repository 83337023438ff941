"""Plastic layers: growth and compaction keep the function of the kept part, optimizer state
follows the parameters, frozen synapses never move or get pruned, subnetworks per task."""

from __future__ import annotations

import pytest
import torch

from neurosculpt import build_model
from neurosculpt import layers as L
from neurosculpt.loop import Learner, TrainConfig
from neurosculpt.strategies.base import Strategy


def _layer(kind: str, n_in: int = 3, n_out: int = 4) -> L.PlasticLayer:
    torch.manual_seed(0)
    return L.PlasticLinear(n_in, n_out) if kind == "linear" else L.PlasticConv2d(n_in, n_out)


def _input(kind: str, n_in: int = 3) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    shape = (5, n_in) if kind == "linear" else (5, n_in, 6, 6)
    return torch.randn(shape, generator=gen)


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_grow_outputs_keeps_old_units(kind):
    layer, x = _layer(kind), _input(kind)
    before = layer(x)
    new = L.grow_outputs(layer, 3)
    assert new.tolist() == [4, 5, 6]
    after = layer(x)
    assert after.shape[1] == 7
    torch.testing.assert_close(after[:, :4], before, rtol=0, atol=1e-6)
    assert layer.mask.all() and (layer.owner == L.FREE).all() and not layer.frozen.any()


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_grow_inputs_is_silent_while_new_inputs_are_zero(kind):
    layer, x = _layer(kind), _input(kind)
    before = layer(x)
    L.grow_inputs(layer, 2)
    assert layer.n_in == 5
    # the new synapses are real, trainable and non-zero...
    assert layer.weight[:, 3:].abs().sum() > 0
    # ...but contribute nothing while the new inputs are silent
    silent = torch.cat([x, torch.zeros_like(x[:, :2])], dim=1)
    torch.testing.assert_close(layer(silent), before, rtol=0, atol=1e-6)


def _silence(layer: L.PlasticLayer, rows: torch.Tensor) -> None:
    """Make output units ``rows`` never active (no input weight, very negative bias)."""
    with torch.no_grad():
        layer.weight[rows] = 0.0
        layer.bias[rows] = -100.0


@pytest.mark.parametrize("kind", ["snn-mlp", "ann-mlp", "snn-conv", "ann-conv"])
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 12, 12)])
def test_grow_then_keep_restores_the_network(kind, shape, tiny_model):
    """Every hidden layer, including the conv -> linear flatten boundary of the conv models."""
    torch.manual_seed(0)
    model = build_model({"kind": kind, **tiny_model, "channels": (3, 4)}, shape, 5).eval()
    x = torch.rand(6, *shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        reference = model(x)
    sizes = model.hidden_sizes()
    for index in range(len(sizes)):
        new = model.grow_units(index, 2)
        assert model.hidden_sizes()[index] == sizes[index] + 2
        _silence(model.layers[index], new)
        with torch.no_grad():
            torch.testing.assert_close(model(x), reference, rtol=0, atol=1e-5)
        model.remove_units(index, new)
        assert model.hidden_sizes() == sizes
        with torch.no_grad():
            assert torch.equal(model(x), reference)


@pytest.mark.parametrize("kind", ["ann-conv", "snn-conv"])
def test_remove_units_at_flatten_boundary_drops_the_right_inputs(kind, tiny_model):
    """Compacting the last conv layer removes exactly the flattened features of the dropped
    channel: same output as the full network with that channel silenced."""
    torch.manual_seed(0)
    model = build_model({"kind": kind, **tiny_model, "channels": (3, 4)}, (1, 8, 8), 5).eval()
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    _silence(model.layers[1], torch.tensor([1]))
    with torch.no_grad():
        reference = model(x)
    assert torch.equal(model.remove_units(1, torch.tensor([1])), torch.tensor([0, 2, 3]))
    assert model.layers[1].n_out == 3
    assert model.layers[2].n_in == 3 * model.flatten_factor
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference, rtol=0, atol=1e-5)


def _adam_after_one_step(layer: L.PlasticLayer) -> torch.optim.Adam:
    opt = torch.optim.Adam(layer.parameters(), lr=0.01)
    layer(_input("linear", layer.n_in)).pow(2).sum().backward()
    opt.step()
    return opt


def test_replace_parameter_carries_adam_state_on_growth():
    layer = _layer("linear")
    opt = _adam_after_one_step(layer)
    old = {k: v.clone() for k, v in opt.state[layer.weight].items()}
    old_bias = opt.state[layer.bias]["exp_avg"].clone()
    L.grow_outputs(layer, 2, opt)
    state = opt.state[layer.weight]
    assert any(p is layer.weight for p in opt.param_groups[0]["params"])
    assert len(opt.param_groups[0]["params"]) == 2
    for key in ("exp_avg", "exp_avg_sq"):
        assert torch.equal(state[key][:4], old[key])
        assert (state[key][4:] == 0).all()
        assert old[key].abs().sum() > 0
    assert torch.equal(state["step"], old["step"])
    assert torch.equal(opt.state[layer.bias]["exp_avg"][:4], old_bias)
    L.grow_inputs(layer, 1, opt)
    assert torch.equal(opt.state[layer.weight]["exp_avg"][:4, :3], old["exp_avg"])
    assert (opt.state[layer.weight]["exp_avg"][:, 3] == 0).all()
    # the optimizer keeps working on the new tensors
    layer(_input("linear", 4)).sum().backward()
    opt.step()


def test_remove_outputs_moves_adam_state_with_the_kept_rows():
    layer = _layer("linear")
    opt = _adam_after_one_step(layer)
    old = opt.state[layer.weight]["exp_avg"].clone()
    L.remove_outputs(layer, torch.tensor([2, 0]), opt)
    assert torch.equal(opt.state[layer.weight]["exp_avg"], old[[1, 3]])
    assert opt.state[layer.bias]["exp_avg"].shape == (2,)


def test_prune_never_removes_frozen_synapses():
    layer = _layer("linear", 6, 5)
    torch.manual_seed(3)
    half = torch.rand(layer.weight.shape) < 0.5
    assert L.prune_synapses(layer, half) == int(half.sum())
    assert torch.equal(layer.mask, ~half)
    assert L.consolidate(layer, 0) == int((~half).sum())
    assert L.reopen_free_synapses(layer) == int(half.sum())
    assert layer.mask.all()
    removed = L.prune_synapses(layer, torch.ones_like(layer.mask))
    assert removed == int(half.sum())
    assert torch.equal(layer.mask, layer.frozen)
    assert torch.equal(layer.frozen, ~half)


def test_synapse_mask_subnetworks():
    layer = _layer("linear", 4, 3)
    L.set_training_task([layer], 2)
    # nothing owned yet: every task sees every live synapse
    for task in (0, 1, 2, None):
        assert torch.equal(layer.synapse_mask(task), layer.mask)
    with torch.no_grad():
        layer.owner[0] = 0
        layer.owner[1, :2] = 1
        layer.mask[2, 3] = False
    owned0 = torch.zeros(3, 4, dtype=torch.bool)
    owned0[0] = True
    owned1 = owned0.clone()
    owned1[1, :2] = True
    assert torch.equal(layer.synapse_mask(0), owned0)
    assert torch.equal(layer.synapse_mask(1), owned1)
    for task in (2, 3, None):  # the task being trained, later ones, class-IL inference
        assert torch.equal(layer.synapse_mask(task), layer.mask)
    assert layer.live_synapses(0) == 4 and layer.live_synapses() == 11
    # the forward pass of task 0 uses only its synapses
    x = torch.randn(2, 4)
    layer.active_task = 0
    expected = x @ (layer.weight * owned0).T + layer.bias
    torch.testing.assert_close(layer(x), expected)


def test_partition_sizes_counts_live_synapses_per_owner():
    layer = _layer("linear", 4, 3)
    assert L.partition_sizes(layer) == {"free": 12}
    with torch.no_grad():
        layer.owner[0] = 0
        layer.owner[1, :3] = 1
        layer.mask[1, 0] = False  # pruned synapses are not counted
    assert L.partition_sizes(layer) == {"free": 5, "0": 4, "1": 2}


class _PackLike(Strategy):
    """Before each task, reopen the free synapses and prune a random half of them; after it,
    give the live free synapses to the task and freeze them."""

    name = "pack-like"

    def before_task(self, ctx) -> None:
        gen = torch.Generator().manual_seed(ctx.task_id)
        for layer in ctx.model.plastic_layers:
            L.reopen_free_synapses(layer)
            drop = torch.rand(layer.weight.shape, generator=gen) < 0.5
            L.prune_synapses(layer, drop & L.free_synapse_mask(layer))

    def after_task(self, ctx) -> None:
        for layer in ctx.model.plastic_layers:
            L.consolidate(layer, ctx.task_id)


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_frozen_synapses_do_not_move_under_adam_with_weight_decay(digits, optimizer, tiny_model):
    torch.manual_seed(0)
    model = build_model({"kind": "ann-mlp", **tiny_model}, digits.input_shape, digits.n_outputs)
    strategy = _PackLike()
    config = TrainConfig(epochs=5, batch_size=32, lr=0.01, optimizer=optimizer,
                         weight_decay=0.1, reset_optimizer=False, progress=False)
    learner = Learner(model, digits, [strategy], config)
    learner.train_task(0)
    frozen = [(layer.frozen.clone(), layer.frozen_weight.clone(), layer.bias_frozen.clone(),
               layer.effective_bias().detach().clone()) for layer in model.plastic_layers]
    learner.train_task(1)
    for layer, (mask, values, bias_mask, bias) in zip(model.plastic_layers, frozen, strict=True):
        weight = layer.effective_weight().detach()
        assert torch.equal(weight[mask], values[mask])
        assert torch.equal(layer.effective_bias().detach()[bias_mask], bias[bias_mask])
        assert bias_mask.all()
    # the reopened synapses learned task 1, and now belong to it
    assert learner.accuracy[1][1] > 0.85
    assert all((layer.owner == 1).any() for layer in model.plastic_layers)
    # task 0 is evaluated on its own frozen subnetwork: no forgetting at all
    assert learner.accuracy[1][0] == learner.accuracy[0][0]
    assert learner.accuracy[0][0] > 0.9


def test_top_by_position_matches_a_stable_descending_sort():
    """Pruning keeps exactly the synapses a stable sort would keep, ties going to the earlier
    position (the counts per task are exact and runs reproduce)."""
    gen = torch.Generator().manual_seed(0)
    for _ in range(300):
        n = int(torch.randint(1, 40, (1,), generator=gen))
        values = torch.randint(0, 4, (n,), generator=gen).float()  # many ties
        k = int(torch.randint(-1, n + 2, (1,), generator=gen))
        expected = torch.zeros(n, dtype=torch.bool)
        expected[torch.argsort(values, descending=True, stable=True)[:max(k, 0)]] = True
        assert torch.equal(L.top_by_position(values, k), expected)
    values = torch.tensor([0.5, float("nan"), 0.2, 0.9, float("nan"), 0.1])
    for k in range(len(values) + 1):
        expected = torch.zeros(len(values), dtype=torch.bool)
        expected[torch.argsort(values, descending=True, stable=True)[:k]] = True
        assert torch.equal(L.top_by_position(values, k), expected)
