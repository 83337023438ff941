"""CLI commands ``export``, ``import`` and ``energy``; :func:`add_commands` registers them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..models import Network
from ..validation import UserError


def _load(source: str) -> tuple[Network, object]:
    """A model from a run folder (latest checkpoint) or a model folder; benchmark if a run."""
    from . import load_model, model_from_run

    path = Path(source)
    if (path / "model.json").is_file():
        return load_model(path), None
    model, benchmark, _ = model_from_run(path)
    return model, benchmark


def cmd_export(args: argparse.Namespace) -> int:
    from .nir import describe, export_nir

    model, _ = _load(args.run)
    last = int(model.current_task)
    if args.task is not None and not 0 <= args.task <= last:
        raise UserError(f"--task {args.task}: {args.run} holds tasks 0-{last}")
    out = Path(args.out) if args.out else Path(args.run) / (
        "model.nir" if args.task is None else f"model_task{args.task}.nir")
    graph = export_nir(model, out, args.task, dt=args.dt, pooling=args.pooling,
                       readout=args.readout, nir_version=args.nir_version)
    scope = "all live synapses" if args.task is None else f"task {args.task}'s subnetwork"
    print(f"wrote {out} ({scope}, {model.live_synapses()} live synapses in the model)")
    print("\n".join(describe(graph)))
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from . import save_model
    from .nir import from_nir

    source = Path(args.file)
    if not source.is_file():
        raise FileNotFoundError(f"{source} does not exist")
    model = from_nir(source, dt=args.dt, steps=args.steps, encoder=args.encoder)
    out = save_model(model, Path(args.out) if args.out else source.with_suffix(""))
    cfg = model.config
    print(f"imported {source} as {cfg.kind}: input {model.input_shape}, hidden "
          f"{model.hidden_sizes()}, {model.layers[-1].n_out} outputs, {cfg.neuron} beta "
          f"{cfg.beta:g} threshold {cfg.threshold:g}, {cfg.steps} steps, {cfg.encoder} encoder, "
          f"{cfg.readout} readout, {model.live_synapses()} live synapses")
    print(f"wrote model folder {out} (neurosculpt.export.load_model({str(out)!r}))")
    return 0


def cmd_energy(args: argparse.Namespace) -> int:
    from ..energy import format_energy, measure_energy

    if args.max_samples < 1:
        raise UserError(f"--max-samples {args.max_samples}: must be >= 1")
    model, benchmark = _load(args.run)
    if benchmark is None:
        raise ValueError(f"{args.run} is a model folder: energy needs a run folder for test data")
    reports = []
    for task in benchmark.tasks:
        select = task.id if benchmark.scenario == "task" else None
        report = measure_energy(model, task.test, args.max_samples, task=select)
        reports.append({"task": task.id, "name": task.name, **report})
        if not args.json:
            print(format_energy(report, f"task {task.id} ({task.name}), "
                                        f"{report['samples']} test samples"))
            print()
    if args.json:
        print(json.dumps(reports, indent=2))
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``export``, ``import`` and ``energy`` on the ``neurosculpt`` subparsers."""
    p = sub.add_parser("export", help="write a run's spiking network as a NIR graph",
                       description="Rebuild the model of a run folder (config.json + latest "
                       "checkpoint) or a model folder and write it with nir.write.")
    p.add_argument("run", help="run folder or model folder")
    p.add_argument("--task", type=int, help="export only this task's subnetwork")
    p.add_argument("--out", "-o", help="output file (default RUN/model.nir)")
    p.add_argument("--dt", type=float, default=1e-4,
                   help="time step stored in the graph (default 1e-4, what snnTorch assumes)")
    p.add_argument("--pooling", choices=["avg", "sum"], default="avg",
                   help="pooling node for snn-conv (sum: for importers without AvgPool2d)")
    p.add_argument("--readout", choices=["li", "affine"], default="li",
                   help="membrane readout as Affine + NIR LI (default; neurosculpt reads it), or "
                        "as the output Affine alone with the LI's mean as readout_weights in the "
                        "metadata (snnTorch and Norse load the whole graph)")
    p.add_argument("--nir-version", metavar="VERSION",
                   help="write for this nir release (e.g. 1.0.4: no v_reset fields, for sinabs "
                        "and rockpool, which pin nir <= 1.0.4); default: the installed nir's")
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("import", help="read a NIR graph as a neurosculpt model folder",
                       description="Build a neurosculpt network from a NIR file and save it as "
                       "a model folder that neurosculpt.export.load_model reads.")
    p.add_argument("file", help="NIR file")
    p.add_argument("--out", "-o", help="model folder (default: the file name without .nir)")
    p.add_argument("--dt", type=float, help="time step (default: graph metadata, else 1e-4)")
    p.add_argument("--steps", type=int, help="time steps (default: graph metadata, else 10)")
    p.add_argument("--encoder", help="input encoder (default: graph metadata, else direct)")
    p.set_defaults(func=cmd_import)
    p = sub.add_parser("energy", help="synaptic operations, sparsity, footprint and energy",
                       description="Per task: evaluate the task's subnetwork on its test split "
                       "and report ACs/MACs, sparsity, footprint and an energy estimate next to "
                       "the non-spiking network of the same topology.")
    p.add_argument("run", help="run folder")
    p.add_argument("--max-samples", type=int, default=256, help="test samples per task")
    p.add_argument("--json", action="store_true", help="print the reports as JSON")
    p.set_defaults(func=cmd_energy)
