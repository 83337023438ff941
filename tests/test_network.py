"""The PlasticNetwork interface: the built-in models implement it, a network written against it
alone runs every structural strategy, the journal carries state through any resize."""

import pytest
import torch
from torch import nn

from neurosculpt import layers as L
from neurosculpt.benchmarks import Split, shared_label_stream
from neurosculpt.loop import Learner, TrainConfig
from neurosculpt.models import build_model
from neurosculpt.network import (
    Consumer,
    Coupled,
    PlasticNetwork,
    Units,
    check_network,
    follow,
    remap,
)
from neurosculpt.strategies import make_strategies
from neurosculpt.strategies.ewc import EWC


class TwoBranch(PlasticNetwork):
    """Not a built-in model: a LayerNorm after the first layer (coupled to its units), whose
    units feed two branches that are summed (their units are fixed: a residual-style sum)."""

    def __init__(self, n_in: int = 10, width: int = 12, branch: int = 6, n_out: int = 4):
        super().__init__()
        self.stem = L.PlasticLinear(n_in, width)
        self.norm = nn.LayerNorm(width)
        self.left = L.PlasticLinear(width, branch)
        self.right = L.PlasticLinear(width, branch)
        self.head = L.PlasticLinear(branch, n_out)

    @property
    def plastic_layers(self) -> list[L.PlasticLayer]:
        return [self.stem, self.left, self.right, self.head]

    def units(self, layer: int) -> Units:
        if layer == 0:
            return Units(consumers=(Consumer(1), Consumer(2)),
                         coupled=(Coupled(self.norm, "weight", fill=1.0),
                                  Coupled(self.norm, "bias")))
        return Units(consumers=(Consumer(3),), fixed=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(nn.functional.layer_norm(self.stem(x), self.norm.weight.shape,
                                                self.norm.weight, self.norm.bias))
        a, b = torch.relu(self.left(h)), torch.relu(self.right(h))
        if self.record_activity:
            self.activity = [t.unsqueeze(0) for t in (h, a, b)]
        return self.head(a + b)


def stream(n_tasks: int = 3, n: int = 48, dim: int = 10):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, dim, generator=gen)
    splits = []
    for _ in range(n_tasks):
        split = Split(x, torch.zeros(n, dtype=torch.long),
                      labels=torch.randint(0, 4, (n,), generator=gen))
        splits.append((split, split))
    return shared_label_stream("tiny", splits, 4, "domain", (dim,))


@pytest.mark.parametrize("kind,shape", [("ann-mlp", (1, 6, 6)), ("snn-mlp", (1, 6, 6)),
                                        ("ann-conv", (1, 8, 8)), ("snn-conv", (1, 8, 8))])
def test_builtin_networks_satisfy_the_interface(kind, shape):
    net = build_model({"kind": kind, "hidden": (5,), "channels": (3, 4), "steps": 2}, shape, 3)
    assert isinstance(net, PlasticNetwork)
    assert check_network(net, torch.rand(2, *shape)) == []
    assert net.initial_widths() == net.hidden_sizes()
    if kind.endswith("conv"):  # the flatten: every channel feeds H * W inputs of the linear
        assert net.units(1).consumers == (Consumer(2, net.flatten_factor),)


def test_check_network_names_what_is_wrong():
    assert check_network(nn.Linear(2, 2)) == ["Linear is not a neurosculpt.network.PlasticNetwork"]
    net = TwoBranch()
    assert check_network(net, torch.rand(3, 10)) == []
    net.left = L.PlasticLinear(11, 6)
    assert "layer 0: 12 units x width 1 != 11 inputs of layer 1" in check_network(net)


def test_unit_operations_change_consumers_and_coupled_tensors_together():
    torch.manual_seed(0)
    net = TwoBranch()
    x = torch.rand(5, 10)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    net(x).sum().backward()
    opt.step()
    new = net.grow_units(0, 3, opt)
    assert torch.equal(new, torch.arange(12, 15))
    assert net.left.n_in == net.right.n_in == 15
    assert net.norm.weight.shape == (15,) and bool((net.norm.weight[12:] == 1).all())
    assert any(p is net.norm.weight for p in opt.param_groups[0]["params"])
    assert check_network(net, x) == []
    net.reinit_units(0, torch.tensor([1, 13]), opt)
    assert bool((net.left.weight[:, [1, 13]] == 0).all())
    assert bool((net.right.weight[:, [1, 13]] == 0).all())
    kept = net.remove_units(0, torch.tensor([0, 14]), opt)
    assert torch.equal(kept, torch.tensor([1, *range(2, 14)]))
    assert net.hidden_sizes() == [13, 6, 6] and net.norm.bias.shape == (13,)
    net(x).sum().backward()
    opt.step()
    kinds = [r.kind for r in net.resizes_since(0)]
    assert kinds == ["grow", "reinit", "remove"]
    with pytest.raises(ValueError, match="fixed"):
        net.grow_units(1, 1)


def test_follow_carries_state_through_grow_remove_and_reinit():
    torch.manual_seed(0)
    net = TwoBranch()
    start = net.resize_serial
    per_unit = torch.arange(12.0)
    per_synapse = net.left.weight.detach().clone()
    norm = net.norm.weight.detach().clone() + torch.arange(12.0)
    net.remove_units(0, torch.tensor([0, 5]))
    net.grow_units(0, 2)
    net.reinit_units(0, torch.tensor([3]))
    resizes = net.resizes_since(start)
    kept = torch.tensor([1, 2, 3, 4, 6, 7, 8, 9, 10, 11])
    out = follow(per_unit, resizes, units=0, fill=-1.0)
    assert torch.equal(out, torch.cat([kept.float(), torch.tensor([-1.0, -1.0])]))
    history = follow(per_unit, resizes, units=0, fill=-1.0, reinit=True)
    assert history[3] == -1.0 and history[2] == 3.0
    synapses = follow(per_synapse, resizes, weight=1)  # left reads the units: columns move
    assert torch.equal(synapses[:, :10], per_synapse[:, kept])
    assert bool((synapses[:, 10:] == 0).all())
    assert torch.equal(follow(norm, resizes, name="norm.weight")[:10], norm[kept])
    current = torch.full((12,), 7.0)
    taken = follow(per_unit, resizes, units=0, fill=current)
    assert torch.equal(taken[10:], current[10:]) and torch.equal(taken[:10], kept.float())
    assert torch.equal(remap(torch.tensor([5, 6]), 0, torch.tensor([1, -1, 0]), 9),
                       torch.tensor([6, 9, 5]))


def test_ewc_records_stay_on_their_units_after_removal_and_regrowth():
    """Remove unit 0 and grow one: the layer has its old shape again, so records matched by
    shape would compare unit 1's weights with unit 0's anchor. Through the journal the record
    of every surviving unit stays on its row, and the regrown unit is free."""
    torch.manual_seed(0)
    net = build_model({"kind": "ann-mlp", "hidden": (6,)}, (4,), 3)
    ewc = EWC(lam=2.0)
    for name, p in net.named_parameters():
        ewc.store("fisher0", name, torch.ones_like(p))
        ewc.store("anchor0", name, p)
    ewc.set_buffer("consolidated", torch.tensor([0]))
    ewc.follow(net)
    assert float(ewc.penalty(net).detach()) == 0.0
    net.remove_units(0, torch.tensor([0]))
    net.grow_units(0, 1)
    assert net.layers[0].weight.shape == (6, 4)  # the recorded shape again
    # the model is unchanged except for the regrown unit: nothing to penalise
    assert float(ewc.penalty(net).detach()) == 0.0
    ewc.follow(net)
    anchor = ewc.stored("anchor0", "layers.0.weight")
    assert torch.equal(anchor[:5], net.layers[0].weight[:5].detach())
    assert bool((ewc.stored("fisher0", "layers.0.weight")[5] == 0).all())
    assert bool((ewc.stored("fisher0", "layers.1.weight")[:, 5] == 0).all())
    with torch.no_grad():
        net.layers[0].weight[0] += 1.0  # old unit 1, now on row 0, is still protected
    assert float(ewc.penalty(net).detach()) == pytest.approx(4.0)  # lam / 2 * 4 inputs


@pytest.mark.parametrize("spec", ["naive", "ewc", "si", "mas", "l2-init", "online-ewc",
                                  "develop+ewc", "dsd", "neuroplastic+si", "cbp", "redo",
                                  "dropin", "packnet", "lwf", "replay"])
def test_strategies_run_on_a_network_written_against_the_interface(spec):
    params = {"neuroplastic": {"check_every": 5, "maturity": 2, "plateau_window": 3,
                               "plateau_patience": 1, "grow": 2, "solved": 1.01,
                               "dormant_max": 1.0, "log_every": 0},
              "cbp": {"replacement_rate": 0.05, "maturity": 2},
              "redo": {"every": 5, "tau": 10.0},
              "dropin": {"every": 5, "grow": 2, "dropout": 0.2}}
    names = spec.split("+")
    strategies = make_strategies(spec, {n: params.get(n, {}) for n in names})
    torch.manual_seed(0)
    net = TwoBranch()
    learner = Learner(net, stream(), strategies,
                      TrainConfig(steps=20, batch_size=16, lr=5e-3, progress=False))
    result = learner.run()
    assert len(result["accuracy_matrix"]) == 3
    assert check_network(net, torch.rand(2, 10)) == []
    assert net.hidden_sizes()[1:] == [6, 6]  # fixed units are never resized


def test_unit_dropout_silences_a_unit_in_every_consumer():
    """dropin's unit dropout works on any PlasticNetwork: the inputs a dropped unit feeds are
    zero in every consumer, the others are scaled by 1 / (1 - p)."""
    strategy = make_strategies("dropin", {"dropout": 0.5})[0]
    torch.manual_seed(0)
    net = TwoBranch()
    strategy._install_dropout(net)
    seen = {}
    net.left.register_forward_pre_hook(lambda m, a: seen.__setitem__("left", a[0]))
    net.right.register_forward_pre_hook(lambda m, a: seen.__setitem__("right", a[0]))
    net.record_activity = True
    net.train()
    net(torch.rand(8, 10))
    h = net.activity[0][0]
    dropped = seen["left"] == 0
    assert torch.equal(dropped & (h != 0), (seen["right"] == 0) & (h != 0))
    assert 0 < int((dropped & (h != 0)).sum()) < int((h != 0).sum())
    torch.testing.assert_close(seen["left"][~dropped], 2 * h[~dropped])
    net.eval()
    net(torch.rand(8, 10))
    torch.testing.assert_close(seen["left"], net.activity[0][0])


def test_journal_drops_reinitialisations_before_resizes():
    """A long stream of renewals must not push out a growth that a strategy following only
    shapes (once per task) has not seen yet."""
    net = TwoBranch()
    start = net.resize_serial
    net.grow_units(0, 1)
    for _ in range(300):
        net.reinit_units(0, torch.tensor([0]))
    since = net.resizes_since(start)
    assert since[0].kind == "grow" and len(since) == 256
    assert net.resize_serial == 301
