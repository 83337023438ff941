"""The fused LIF kernel must reproduce the readable reference loop exactly.

Spikes are compared bit for bit; gradients (input current, decay, threshold) to rounding, in
float64 so that accumulation order is the only difference. Both the compiled C path and the
pure-torch fallback of the same autograd function are checked.
"""

from __future__ import annotations

import pytest
import torch

from neurosculpt import kernels
from neurosculpt.surrogate import get_surrogate


def _gauss(x: torch.Tensor) -> torch.Tensor:
    """A surrogate the kernel does not know, so it must call it on the saved ``v - thr``."""
    return torch.exp(-4.0 * x * x)


SURROGATES = [
    get_surrogate("fast-sigmoid"),
    get_surrogate("arctan"),
    get_surrogate("triangle", 2.0),
    get_surrogate("sigmoid", 5.0),
    _gauss,
]
SURROGATE_IDS = ["fast-sigmoid", "arctan", "triangle", "sigmoid", "callable"]


@pytest.fixture(params=["native", "torch"])
def path(request, monkeypatch):
    """Run a test once with the C kernels and once with the torch-loop fallback."""
    if request.param == "native":
        if not kernels.native_available():
            pytest.skip("no C compiler: native kernel unavailable")
    else:
        monkeypatch.setattr(kernels._LIBRARY, "load", lambda: None)
    return request.param


def _current(shape: tuple[int, ...], dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=gen, dtype=dtype) * 0.8 + 0.35


def _run(fn, current, beta, thr, reset_value, surrogate, grad_out):
    """Spikes and the grads of ``<spikes, grad_out>`` w.r.t. every input that requires grad."""
    spikes = fn(current, beta, thr, reset_value, surrogate)
    leaves = [x for x in (current, beta, thr) if isinstance(x, torch.Tensor) and x.requires_grad]
    grads = torch.autograd.grad((spikes * grad_out).sum(), leaves)
    return spikes, grads


@pytest.mark.parametrize("reset_value", [None, 0.0, -0.25], ids=["subtract", "zero", "value"])
@pytest.mark.parametrize("surrogate", SURROGATES, ids=SURROGATE_IDS)
def test_matches_reference_float64_learned_params(path, reset_value, surrogate):
    current = _current((12, 3, 37), torch.float64).requires_grad_()
    beta = torch.tensor(0.87, dtype=torch.float64, requires_grad=True)
    thr = torch.tensor(0.9, dtype=torch.float64, requires_grad=True)
    grad_out = _current((12, 3, 37), torch.float64, seed=1)
    ref = _run(kernels.lif_sequence_reference, current, beta, thr, reset_value, surrogate, grad_out)
    got = _run(kernels.lif_sequence, current, beta, thr, reset_value, surrogate, grad_out)
    assert 0.05 < ref[0].mean() < 0.6
    assert torch.equal(got[0], ref[0])
    for g_got, g_ref in zip(got[1], ref[1], strict=True):
        assert g_got.shape == g_ref.shape and g_got.dtype == g_ref.dtype
        torch.testing.assert_close(g_got, g_ref, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("reset_value", [None, 0.0], ids=["subtract", "zero"])
@pytest.mark.parametrize("surrogate", SURROGATES[:2] + SURROGATES[-1:], ids=["fs", "atan", "fn"])
def test_matches_reference_float32_fixed_params(path, reset_value, surrogate):
    # float32 across many neurons and steps: spikes must still agree bit for bit, which needs
    # the same rounding as the reference's separate multiply and add (no fused multiply-add).
    current = _current((25, 16, 300), torch.float32).requires_grad_()
    grad_out = _current((25, 16, 300), torch.float32, seed=2)
    ref = _run(kernels.lif_sequence_reference, current, 0.9, 1.0, reset_value, surrogate, grad_out)
    got = _run(kernels.lif_sequence, current, 0.9, 1.0, reset_value, surrogate, grad_out)
    assert torch.equal(got[0], ref[0])
    torch.testing.assert_close(got[1][0], ref[1][0], rtol=1e-5, atol=1e-6)


def test_float32_learned_params_and_noncontiguous_input(path):
    base = _current((20, 7, 5), torch.float32)
    current = base.transpose(1, 2).requires_grad_()
    beta = torch.tensor(0.8, requires_grad=True)
    thr = torch.tensor(1.1, requires_grad=True)
    grad_out = _current((20, 5, 7), torch.float32, seed=3)
    sg = get_surrogate("fast-sigmoid")
    ref = _run(kernels.lif_sequence_reference, current, beta, thr, None, sg, grad_out)
    got = _run(kernels.lif_sequence, current, beta, thr, None, sg, grad_out)
    assert torch.equal(got[0], ref[0])
    for g_got, g_ref in zip(got[1], ref[1], strict=True):
        torch.testing.assert_close(g_got, g_ref, rtol=1e-4, atol=1e-5)


def test_only_threshold_learned(path):
    current = _current((9, 4, 6), torch.float64)
    thr = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    grad_out = _current((9, 4, 6), torch.float64, seed=4)
    sg = get_surrogate("arctan")
    ref = _run(kernels.lif_sequence_reference, current, 0.95, thr, 0.0, sg, grad_out)
    got = _run(kernels.lif_sequence, current, 0.95, thr, 0.0, sg, grad_out)
    assert torch.equal(got[0], ref[0])
    torch.testing.assert_close(got[1][0], ref[1][0])


def test_inference_and_single_step(path):
    sg = get_surrogate("fast-sigmoid")
    current = _current((1, 50), torch.float32)
    with torch.no_grad():
        out = kernels.lif_sequence(current, 0.9, 0.5, 0.0, sg)
    assert not out.requires_grad
    assert torch.equal(out, (current > 0.5).float())


def test_non_scalar_parameters_use_reference():
    current = _current((6, 2, 3), torch.float64)
    beta = torch.tensor([0.5, 0.8, 0.95], dtype=torch.float64)
    sg = get_surrogate("fast-sigmoid")
    got = kernels.lif_sequence(current, beta, 0.6, None, sg)
    assert torch.equal(got, kernels.lif_sequence_reference(current, beta, 0.6, None, sg))


def test_failed_build_falls_back_with_warning(monkeypatch, tmp_path):
    monkeypatch.setattr(kernels._LIBRARY, "_loaded", {})
    monkeypatch.setenv("NEUROSCULPT_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("CC", "false")
    with pytest.warns(RuntimeWarning, match="torch loop"):
        assert kernels._LIBRARY.load() is None
    current = _current((5, 8), torch.float32)
    sg = get_surrogate("triangle")
    got = kernels.lif_sequence(current, 0.9, 0.4, 0.0, sg)
    assert torch.equal(got, kernels.lif_sequence_reference(current, 0.9, 0.4, 0.0, sg))


def test_env_var_disables_compilation(monkeypatch):
    monkeypatch.setattr(kernels._LIBRARY, "_loaded", {})
    monkeypatch.setenv("NEUROSCULPT_COMPILE", "0")
    assert not kernels.native_available()
