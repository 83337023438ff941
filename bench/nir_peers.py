"""Cross-check neurosculpt's NIR export with the NIR importers of snnTorch and Norse.

Trains small spiking networks briefly on scikit-learn's digits (all ten classes, one task),
writes them with :func:`neurosculpt.export.nir.export_nir`, reads the files back with
``nir.read``, loads them with ``snntorch.import_nir.import_from_nir`` and
``norse.torch.from_nir`` and runs both peers step by step on the same encoded inputs that
neurosculpt sees. Reported per network and peer: mismatching spikes of every spiking population
(hooks on the peers' neuron modules) and of the output, and the largest difference of the output
layer's current when the graph ends in the membrane readout.

Neither importer maps NIR ``LI`` nodes (our default membrane readout: snnTorch's raises, Norse's
drops the node without a word), so membrane-readout models are exported with
``readout="affine"``: the whole graph, ending in the output ``Affine``, whose per-step output
weighted by the metadata's ``readout_weights`` gives the class scores. Reported: the largest
difference of those scores from neurosculpt's and whether every predicted class agrees; the
LI-readout graph itself is round-tripped through neurosculpt's importer.
Norse's importer knows ``SumPool2d`` but not ``AvgPool2d``, so convolutional graphs for Norse
are exported with ``pooling="sum"``. Both importers map NIR ``Flatten(start_dim=0)`` to
``torch.nn.Flatten(0)``, which would also flatten a batch dimension, so convolutional graphs are
fed one unbatched sample at a time.

Run in an environment with snnTorch, Norse and nir (for example the peers venv):
``PYTHONPATH=src /work/peers-venv/bin/python bench/nir_peers.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import io
import json
import logging
import tempfile
import warnings
from pathlib import Path

import nir
import torch
from torch import Tensor, nn

from neurosculpt.benchmarks import make_benchmark
from neurosculpt.export.nir import export_nir, from_nir
from neurosculpt.loop import Learner, TrainConfig
from neurosculpt.models import build_model


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def train(kind: str, readout: str, encoder: str, neuron: str, epochs: int, seed: int
          ) -> tuple[nn.Module, Tensor]:
    """A briefly trained network and a test batch of digits."""
    bench = make_benchmark("split-digits", n_tasks=1, seed=seed)
    torch.manual_seed(seed)
    config = {"kind": kind, "hidden": (128, 64) if kind == "snn-mlp" else (64,),
              "channels": (8, 16), "steps": 10, "readout": readout, "encoder": encoder,
              "neuron": neuron}
    model = build_model(config, bench.input_shape, bench.n_outputs)
    Learner(model, bench, [], TrainConfig(epochs=epochs, batch_size=64, lr=2e-3, seed=seed,
                                          progress=False)).run()
    model.eval()
    return model, bench.tasks[0].test.get(torch.arange(64))[0]


def ours(model: nn.Module, encoded: Tensor) -> tuple[list[Tensor], Tensor, Tensor]:
    """neurosculpt's hidden spikes, output-layer current and output spikes for ``encoded``."""
    captured: dict[str, Tensor] = {}
    handles = [model.layers[-1].register_forward_hook(
        lambda mod, args, out: captured.__setitem__("current", out))]
    if model.config.readout == "spikes":
        handles.append(model.output_neurons.register_forward_hook(
            lambda mod, args, out: captured.__setitem__("spikes", out)))
    model.record_activity = True
    try:
        with torch.no_grad():
            model(encoded, encoded=True)
    finally:
        model.record_activity = False
        for h in handles:
            h.remove()
    steps, batch = encoded.shape[:2]
    current = captured["current"].view(steps, batch, -1)
    return [a.flatten(2) for a in model.activity], current, captured.get("spikes")


def run_peer(net: nn.Module, peer: str, encoded: Tensor, batched: bool
             ) -> tuple[list[Tensor], Tensor]:
    """Run an imported graph over time; spikes of its neuron modules and its output per step."""
    if peer == "snntorch":
        import snntorch
        from snntorch import utils as snn_utils

        neuron_types: tuple[type, ...] = (snntorch.Leaky,)
    else:
        from norse.torch.module.iaf import IAFCell
        from norse.torch.module.lif_box import LIFBoxCell

        neuron_types = (LIFBoxCell, IAFCell)
    cells = [m for m in net.modules() if isinstance(m, neuron_types)]
    record: dict[int, list[Tensor]] = {i: [] for i in range(len(cells))}
    handles = []
    for i, cell in enumerate(cells):
        def hook(mod, args, out, i=i):
            record[i].append((out[0] if isinstance(out, tuple) else out).detach().clone())
        handles.append(cell.register_forward_hook(hook))
    samples = [encoded] if batched else [encoded[:, b:b + 1] for b in range(encoded.shape[1])]
    outputs, spikes = [], {i: [] for i in range(len(cells))}
    with torch.no_grad():
        for sample in samples:
            for rec in record.values():
                rec.clear()
            if peer == "snntorch":
                snn_utils.reset(net)  # init_hidden neurons keep their state between calls
            state = None
            steps = []
            for t in range(sample.shape[0]):
                x = sample[t] if batched else sample[t, 0]
                if peer == "snntorch":
                    out, _ = net(x)
                else:
                    out, state = net(x, state)
                steps.append(out.reshape(1, 1, -1) if not batched else out.unsqueeze(0))
            outputs.append(torch.cat(steps, 0) if batched else torch.cat(steps, 0))
            for i, rec in record.items():
                spikes[i].append(torch.stack([r.reshape(x.shape[0] if batched else 1, -1)
                                              for r in rec]))
    for h in handles:
        h.remove()
    out = torch.cat(outputs, 1)
    return [torch.cat(spikes[i], 1) for i in range(len(cells))], out


def load_peer(peer: str, graph: nir.NIRGraph, dt: float) -> nn.Module:
    if peer == "snntorch":
        from snntorch.import_nir import import_from_nir

        with contextlib.redirect_stdout(io.StringIO()):  # it prints its weight rescaling
            return import_from_nir(graph)
    import norse.torch

    return norse.torch.from_nir(graph, dt=dt)


def compare(name: str, model: nn.Module, x: Tensor, folder: Path, dt: float) -> list[str]:
    """Rows of the result table for one trained network."""
    torch.manual_seed(1)
    encoded = model.encoder(x)
    hidden, current, out_spikes = ours(model, encoded)
    rows = []
    conv = model.config.conv
    for peer in ("snntorch", "norse"):
        path = folder / f"{name}-{peer}.nir"
        graph = export_nir(model, path, dt=dt, pooling="sum" if peer == "norse" else "avg")
        back = from_nir(path)
        with torch.no_grad():
            same = torch.equal(_fixed(model, encoded), _fixed(back, encoded))
        graph = nir.read(str(path))
        if model.config.readout != "spikes":
            try:
                loaded = load_peer(peer, graph, dt)
                kept = "readout" in dict(loaded.named_children())
                li = "loads" if kept else "loads without its LI node (silently dropped)"
            except Exception as exc:  # noqa: BLE001 - reported, not hidden
                li = f"fails ({type(exc).__name__})"
            export_nir(model, path, dt=dt, pooling="sum" if peer == "norse" else "avg",
                       readout="affine")
            graph = nir.read(str(path))
        else:
            li = "n/a"
        try:
            net = load_peer(peer, graph, dt)
        except Exception as exc:  # noqa: BLE001 - reported, not hidden
            rows.append(f"{name:<22} {peer:<9} cannot load the graph: {type(exc).__name__}: "
                        f"{exc}; neurosculpt round trip identical: {same}")
            continue
        spikes, out = run_peer(net, peer, encoded if conv else encoded.flatten(2), not conv)
        if len(spikes) != len(hidden) + (out_spikes is not None):
            raise RuntimeError(f"{peer}: found {len(spikes)} neuron modules")
        mism = [int((s != h.reshape(s.shape)).sum()) for s, h in zip(spikes, hidden, strict=False)]
        total = sum(h.numel() for h in hidden)
        n_spikes = int(sum(h.sum() for h in hidden))
        if out_spikes is not None:
            out_mism = int((out != out_spikes.reshape(out.shape)).sum())
            out_text = f"{out_mism}/{out.numel()} output spikes differ"
        else:
            weights = torch.tensor(json.loads(graph.metadata["readout_weights"]),
                                   dtype=torch.float64)
            scores = (out.double() * weights.view(-1, 1, 1)).sum(0)
            with torch.no_grad():
                expected = model(encoded, encoded=True).double()
            diff = float((scores - expected).abs().max())
            agree = bool(torch.equal(scores.argmax(1), expected.argmax(1)))
            out_text = (f"whole graph (affine readout): class scores max |diff| {diff:.2e}, "
                        f"same predicted class for every sample: {agree}")
        rows.append(
            f"{name:<22} {peer:<9} hidden spikes differing {sum(mism)}/{total} "
            f"({n_spikes} spikes); {out_text}; LI graph {li}; "
            f"neurosculpt round trip identical: {same}"
        )
    return rows


def _fixed(model: nn.Module, encoded: Tensor) -> Tensor:
    """Model output for already encoded input."""
    return model(encoded, encoded=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--dt", type=float, default=1e-4,
                        help="time step of the graph (snnTorch's importer assumes 1e-4)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    print(f"nir {_version('nir')}, nirtorch {_version('nirtorch')}, snntorch "
          f"{_version('snntorch')}, norse {_version('norse')}, torch {torch.__version__}")
    cases = [("snn-mlp/spikes/direct", "snn-mlp", "spikes", "direct", "lif"),
             ("snn-mlp/spikes/rate", "snn-mlp", "spikes", "rate", "lif"),
             ("snn-mlp/membrane/direct", "snn-mlp", "membrane", "direct", "lif"),
             ("snn-mlp/if/spikes", "snn-mlp", "spikes", "direct", "if"),
             ("snn-conv/spikes/direct", "snn-conv", "spikes", "direct", "lif"),
             ("snn-conv/membrane/rate", "snn-conv", "membrane", "rate", "lif")]
    with tempfile.TemporaryDirectory() as tmp:
        for name, kind, readout, encoder, neuron in cases:
            model, x = train(kind, readout, encoder, neuron, args.epochs, args.seed)
            for row in compare(name.replace("/", "-"), model, x, Path(tmp), args.dt):
                print(row, flush=True)


if __name__ == "__main__":
    main()
