"""Deployment: NIR export/import (:mod:`neurosculpt.export.nir`, needs ``nir``), model folders,
rebuilding a run's model, and the ``export`` / ``import`` / ``energy`` commands.

A model folder holds ``model.json`` (the :class:`~neurosculpt.models.ModelConfig`, input shape,
number of outputs) and ``model.pt`` (the ``state_dict``, loaded with ``weights_only=True``); it is
what ``neurosculpt import`` writes and what :func:`load_model` reads back.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..adapter import build_user_model
from ..benchmarks import Benchmark, make_benchmark
from ..loading import is_spec
from ..models import ModelConfig, Network
from ..runs import (
    RunConfig,
    config_from_folder,
    latest_checkpoint,
    load_checkpoint,
    load_state_resizing,
    write_json,
)
from ..validation import UserError, first_line, read_json, torch_load_reason

MODEL_FORMAT = 1


def save_model(model: Network, folder: str | Path) -> Path:
    """Write ``model`` to a model folder; return the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "model.json", {
        "format": MODEL_FORMAT,
        "config": model.config.to_dict(),
        "input_shape": list(model.input_shape),
        "n_outputs": model.layers[-1].n_out,
        "sequence": model.sequence,
    })
    torch.save(model.state_dict(), folder / "model.pt")
    return folder


def load_model(folder: str | Path) -> Network:
    """The ``Network`` saved by :func:`save_model` (shapes after growth included)."""
    folder = Path(folder)
    meta_file = folder / "model.json"
    if not meta_file.is_file():
        raise FileNotFoundError(f"{folder} is not a model folder (no model.json)")
    meta = read_json(meta_file, "model description")
    if not isinstance(meta, dict) or meta.get("format") != MODEL_FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise UserError(f"{meta_file} has format {found}, this neurosculpt reads format "
                        f"{MODEL_FORMAT}")
    try:
        model = Network(ModelConfig(**meta["config"]), tuple(meta["input_shape"]),
                        meta["n_outputs"], sequence=meta["sequence"])
    except (KeyError, TypeError) as exc:
        raise UserError(f"{meta_file} does not describe a model ({type(exc).__name__}: "
                        f"{exc})") from exc
    weights = folder / "model.pt"
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        reason = torch_load_reason(exc)
        raise UserError(f"model weights {weights} cannot be read ({reason})") from exc
    if not isinstance(state, dict):
        raise UserError(f"model weights {weights} hold {type(state).__name__}, not a state_dict")
    try:
        load_state_resizing(model, state)
    except (AttributeError, KeyError, RuntimeError) as exc:
        reason = first_line(exc)
        raise UserError(f"model weights {weights} do not fit {meta_file} ({reason})") from exc
    return model.eval()


def model_from_run(path: str | Path) -> tuple[Network, Benchmark, RunConfig]:
    """Rebuild a run's model from ``config.json`` and its latest checkpoint, with its benchmark.

    Layers learn which task is being trained from the checkpoint, so ``model.set_task(t)``
    selects the same subnetworks the run evaluated.
    """
    path = Path(path)
    config = config_from_folder(path)
    checkpoint = latest_checkpoint(path)
    if checkpoint is None:
        raise FileNotFoundError(f"{path} has no checkpoint yet (no task finished)")
    benchmark = make_benchmark(
        config.benchmark, n_tasks=config.tasks, scenario=config.scenario, seed=config.seed,
        data_root=config.data_root, validation=config.validation,
        samples_per_task=config.samples_per_task,
        test_samples_per_task=config.test_samples_per_task,
    )
    if is_spec(config.model):  # a user's model: rebuilt by its factory (neurosculpt.adapter)
        model = build_user_model(config.model, benchmark.input_shape, benchmark.n_outputs,
                                 config.model_params)
    else:
        model = Network(config.model_config(), benchmark.input_shape, benchmark.n_outputs,
                        sequence=benchmark.sequence)
    try:
        load_state_resizing(model, load_checkpoint(checkpoint)["model"])
    except (AttributeError, KeyError, RuntimeError) as exc:
        reason = first_line(exc)
        raise UserError(f"checkpoint {checkpoint} does not fit the model {path}/config.json "
                        f"describes ({reason})") from exc
    return model.eval(), benchmark, config


__all__ = ["load_model", "model_from_run", "save_model"]
