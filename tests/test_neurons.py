import math
import pickle

import pytest
import torch

from neurosculpt.neurons import IF, LI, LIF, make_neuron
from neurosculpt.surrogate import SURROGATES, Surrogate, get_surrogate


def spike_times(spikes: torch.Tensor) -> list[int]:
    return spikes.flatten().nonzero().flatten().tolist()


def constant(value: float, steps: int) -> torch.Tensor:
    return torch.full((steps, 1), value)


# --- LIF / IF / LI dynamics against hand-computed traces ---------------------------------------


def test_lif_zero_reset_hand_trace():
    # v: 0.35, 0.665, 0.9485, 1.20365 -> spike at t=3, reset to 0, so the cycle repeats every 4.
    spikes, mem = LIF(beta=0.9).membrane(constant(0.35, 17))
    assert spike_times(spikes) == [3, 7, 11, 15]
    expected = torch.tensor([0.35, 0.665, 0.9485, 1.20365, 0.35])
    torch.testing.assert_close(mem[:5, 0], expected)


def test_lif_subtract_reset_keeps_residual():
    # After the t=3 spike v = 0.20365 remains: 0.5333, 0.8300, 1.0970 -> spike at t=6 (not 7);
    # residual 0.0970: 0.4373, 0.7436, 1.0192 -> t=9; residual 0.0192 needs four steps -> t=13;
    # residual 0.2163: 0.5447, 0.8402, 1.1062 -> t=16.
    spikes = LIF(beta=0.9, reset="subtract")(constant(0.35, 17))
    assert spike_times(spikes) == [3, 6, 9, 13, 16]


def test_lif_reset_value():
    # Reset to 0.5: after the first spike v restarts at 0.5 -> 0.8, 1.07 spikes two steps later.
    spikes = LIF(beta=0.9, reset_value=0.5)(constant(0.35, 10))
    assert spike_times(spikes) == [3, 5, 7, 9]


def test_if_strict_threshold_and_resets():
    # Exact binary arithmetic: v = 0.25, 0.5, 0.75, 1.0 (not > 1, no spike), 1.25 -> spike at t=4.
    assert spike_times(IF()(constant(0.25, 20))) == [4, 9, 14, 19]
    # Subtraction leaves 0.25, so later spikes come every 4 steps.
    assert spike_times(IF(reset="subtract")(constant(0.25, 20))) == [4, 8, 12, 16]
    assert float(IF().beta) == 1.0


def test_li_trace():
    li = LI(beta=0.5)
    current = torch.tensor([1.0, 0.0, 0.0, 1.0]).view(4, 1, 1)
    torch.testing.assert_close(li(current).flatten(), torch.tensor([1.0, 0.5, 0.25, 1.125]))


def test_neurons_are_stateless_and_keep_shape():
    torch.manual_seed(0)
    x = torch.rand(6, 2, 3, 4, 4) * 0.8
    lif = LIF()
    first = lif(x)
    assert first.shape == x.shape
    torch.testing.assert_close(lif(x), first)
    assert LI()(x).shape == x.shape


def test_membrane_helper_matches_forward():
    torch.manual_seed(1)
    x = torch.rand(25, 4, 7)
    for neuron in (LIF(), LIF(reset="subtract"), IF(threshold=2.0)):
        spikes, mem = neuron.membrane(x)
        torch.testing.assert_close(spikes, neuron(x))
        assert torch.equal(spikes.bool(), mem > neuron.threshold)


# --- tau / dt mapping -------------------------------------------------------------------------


def test_tau_dt_to_beta():
    assert float(LIF(tau=10.0, dt=2.0).beta) == pytest.approx(0.8)
    assert float(LI(tau=4.0).beta) == pytest.approx(0.75)
    assert LIF(beta=0.8, dt=2.0).tau == pytest.approx(10.0)
    assert LIF().tau == pytest.approx(10.0)
    assert math.isinf(IF().tau)
    assert float(LIF().beta) == pytest.approx(0.9)


@pytest.mark.parametrize(
    "kwargs", [{"beta": 0.9, "tau": 5.0}, {"tau": 0.5}, {"beta": 1.5}, {"beta": -0.1}]
)
def test_bad_decay_raises(kwargs):
    with pytest.raises(ValueError):
        LIF(**kwargs)


def test_forward_euler_of_nir_lif():
    # NIR: tau dv/dt = (v_leak - v) + r I with v_leak = 0, r = 1 and input scaled by tau/dt.
    tau, dt = 8.0, 0.5
    torch.manual_seed(2)
    current = torch.rand(30, 3) * 0.3
    spikes, mem = LIF(tau=tau, dt=dt).membrane(current)
    v = torch.zeros(3)
    for t in range(30):
        v = v + dt / tau * (-v + (tau / dt) * current[t])
        torch.testing.assert_close(mem[t], v)
        v = torch.where(v > 1.0, torch.zeros_like(v), v)
    assert spikes.sum() > 0


# --- learnable parameters and gradients ---------------------------------------------------------


def test_fixed_parameters_are_buffers():
    lif = LIF()
    assert list(lif.parameters()) == []
    assert set(lif.state_dict()) == {"beta", "threshold"}


def test_learnable_beta_and_threshold_get_gradients():
    torch.manual_seed(3)
    lif = LIF(learn_beta=True, learn_threshold=True)
    assert {name for name, _ in lif.named_parameters()} == {"beta", "threshold"}
    x = torch.rand(20, 8, 5)
    lif(x).sum().backward()
    assert lif.beta.grad is not None and lif.beta.grad.abs() > 0
    assert lif.threshold.grad is not None and lif.threshold.grad.abs() > 0
    # A lower threshold makes spikes more likely, so the spike count's gradient is negative.
    assert lif.threshold.grad < 0


def test_learnable_li_beta_gets_gradient():
    li = LI(learn_beta=True)
    li(torch.ones(5, 2, 3)).sum().backward()
    assert li.beta.grad is not None and li.beta.grad > 0


def test_gradient_flows_below_threshold():
    # One step, v = 0.9 < 1: no spike, but dS/dI is the surrogate at x = -0.1.
    current = torch.full((1, 1), 0.9, requires_grad=True)
    spikes = LIF()(current)
    spikes.sum().backward()
    assert spikes.item() == 0.0
    assert current.grad.item() == pytest.approx(1.0 / (1.0 + 25 * 0.1) ** 2, rel=1e-5)


def test_gradient_flows_through_time():
    current = torch.full((5, 1), 0.15, requires_grad=True)
    LIF(surrogate="arctan")(current)[-1].sum().backward()
    assert (current.grad.abs() > 0).all()


# --- surrogates ---------------------------------------------------------------------------------


def test_surrogate_values_match_formulas():
    x = torch.tensor([-0.5, -0.1, 0.0, 0.2, 1.0])
    fast = get_surrogate("fast-sigmoid")
    torch.testing.assert_close(fast(x), 1.0 / (1.0 + 25.0 * x.abs()) ** 2)
    atan = get_surrogate("arctan", slope=3.0)
    torch.testing.assert_close(atan(x), 1.5 / (1.0 + (math.pi / 2 * 3.0 * x) ** 2))
    tri = get_surrogate("triangle", slope=2.0)
    torch.testing.assert_close(tri(x), torch.tensor([0.0, 1.6, 2.0, 1.2, 0.0]))
    sig = get_surrogate("sigmoid")
    s = torch.sigmoid(25.0 * x)
    torch.testing.assert_close(sig(x), 25.0 * s * (1 - s))
    assert get_surrogate("arctan")(torch.tensor(0.0)).item() == pytest.approx(1.0)


def test_surrogates_peak_at_zero_and_are_symmetric():
    x = torch.linspace(-2, 2, 401, dtype=torch.float64)
    for name in SURROGATES:
        g = get_surrogate(name)(x)
        assert g.argmax().item() == 200
        torch.testing.assert_close(g, g.flip(0))
        assert (g >= 0).all()
    tri = get_surrogate("triangle", 1.5)(x)
    assert torch.trapezoid(tri, x).item() == pytest.approx(1.0, abs=1e-3)


def test_surrogate_config_roundtrip():
    sur = get_surrogate("triangle", 0.5)
    assert sur == Surrogate("triangle", 0.5)
    assert pickle.loads(pickle.dumps(sur)) == sur
    assert get_surrogate(sur.name, sur.slope)(torch.tensor(0.0)).item() == 0.5
    assert get_surrogate("fast-sigmoid").slope == 25.0


def test_surrogate_errors():
    with pytest.raises(ValueError, match="fast-sigmoid"):
        get_surrogate("boxcar")
    with pytest.raises(ValueError):
        get_surrogate("arctan", slope=0.0)


# --- factory and printing -----------------------------------------------------------------------


def test_make_neuron():
    lif = make_neuron("lif", beta=0.7, threshold=0.5, surrogate="sigmoid", slope=4.0)
    assert type(lif) is LIF and float(lif.beta) == pytest.approx(0.7)
    assert lif.surrogate == Surrogate("sigmoid", 4.0)
    neuron = make_neuron("if", beta=0.9, threshold=2.0, learn_beta=False)
    assert type(neuron) is IF and float(neuron.beta) == 1.0 and float(neuron.threshold) == 2.0
    with pytest.raises(ValueError, match="lif"):
        make_neuron("izhikevich")
    with pytest.raises(ValueError):
        make_neuron("if", learn_beta=True)
    with pytest.raises(ValueError, match="subtract"):
        LIF(reset="hard")


def test_extra_repr():
    text = repr(LIF(beta=0.8, reset="subtract", surrogate="arctan", learn_threshold=True))
    assert "beta=0.8" in text and "'subtract'" in text and "arctan(2)" in text
    assert "learn_threshold=True" in text
    assert "beta=0.5" in repr(LI(beta=0.5))
