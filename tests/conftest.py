"""Shared tiny fixtures: small models and run configs that keep the whole suite fast."""

from __future__ import annotations

import pytest
import torch

# One torch thread: the machine is shared, and intra-op threads contending for two cores made
# a tiny MLP 30x slower; one thread also keeps results identical between processes.
torch.set_num_threads(1)

TINY_MODEL = {"hidden": (32, 32), "steps": 4}


@pytest.fixture
def tiny_model() -> dict:
    """Model options for a network small enough to train in a fraction of a second."""
    return dict(TINY_MODEL)


@pytest.fixture
def quick_run() -> dict:
    """A run config (``neurosculpt.run`` keywords) that trains 5 tiny split-digits tasks fast."""
    return {
        "benchmark": "split-digits", "model": "ann-mlp", "epochs": 1, "batch_size": 32,
        "lr": 5e-3, "samples_per_task": 64, "test_samples_per_task": 40, "progress": False,
        "threads": 1, "model_params": dict(TINY_MODEL),
    }


@pytest.fixture(scope="session")
def digits():
    """The split-digits benchmark (seed 0), built once."""
    from neurosculpt import make_benchmark

    return make_benchmark("split-digits")
