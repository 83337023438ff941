"""``--precision bf16``: autocast for the matrix products, float32 membranes and optimizer, and a
clear refusal where bfloat16 would only be emulated."""

from __future__ import annotations

import pytest
import torch

from neurosculpt import loop, run
from neurosculpt.cli import main
from neurosculpt.models import build_model

TINY = ["-b", "split-digits", "-m", "snn-mlp", "--epochs", "1", "--batch-size", "64",
        "--samples-per-task", "64", "--test-samples-per-task", "30",
        "--model-param", "hidden=16,16", "--model-param", "steps=3", "--threads", "1"]


def test_unsupported_machine_gets_one_line_error(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(loop, "bf16_supported", lambda device: False)
    code = main(["run", *TINY, "--precision", "bf16", "-q", "-o", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("neurosculpt: error: precision bf16:") and err.count("\n") == 1
    assert "--precision fp32" in err


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        loop.TrainConfig(precision="fp8")


def test_autocast_keeps_membranes_and_parameters_in_float32():
    net = build_model({"kind": "snn-mlp", "hidden": (8,), "steps": 3}, (1, 4, 4), 3)
    net.record_activity = True
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(torch.rand(5, 1, 4, 4))
    assert net.activity[0].dtype == torch.float32  # spikes of an fp32 membrane
    assert out.dtype == torch.float32  # the LI readout integrates in fp32 too
    assert all(p.dtype == torch.float32 for p in net.parameters())


def test_bf16_run_learns_like_fp32(monkeypatch, quick_run):
    monkeypatch.setattr(loop, "bf16_supported", lambda device: True)
    quick_run = {**quick_run, "model": "snn-mlp", "epochs": 3,
                 "model_params": {"hidden": (16,), "steps": 3}}
    fp32 = run(quick_run)
    bf16 = run({**quick_run, "precision": "bf16"})
    assert bf16.results["config"]["precision"] == "bf16"
    assert all(p.dtype == torch.float32 for p in bf16.model.parameters())
    assert fp32.metrics["acc"] > 0.6  # above chance (0.5): there is something to match
    assert abs(bf16.metrics["acc"] - fp32.metrics["acc"]) < 0.1
