"""Where do the rare spike mismatches between neurosculpt and the NIR peers come from?

Trains a ``snn-mlp`` (hidden 120-60, beta 0.8, threshold 0.7, 12 steps, rate coding: the
setting in which 2 of 432,000 hidden spikes differed) on split-digits, exports the last task's
subnetwork, and runs it in snnTorch (and Norse if installed) on the same encoded input. For
every differing spike it reports how far the membrane was from the threshold, computed in
float64 from the spikes both runs shared up to that step, and compares both runs with
float64 references of the two parameterisations:

* ours: ``v = beta*v + W x``, spike when ``v > thr``;
* the graph's: weights times ``tau/dt = 1/(1-beta)`` (what NIR's ``LIF`` with ``r = 1`` needs),
  integrated as each peer does (snnTorch: ``v = beta*v + W' x`` against ``thr/(dt/tau)``;
  Norse: ``v = v + dt/tau*(-v + W' x)`` against ``thr``).

Run: ``PYTHONPATH=src /tmp/robust/peers/bin/python bench/nir_threshold.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
from pathlib import Path

import nir
import torch

import neurosculpt
from neurosculpt.export.nir import export_nir


def hidden_spikes(model, encoded: torch.Tensor) -> list[torch.Tensor]:
    model.record_activity = True
    with torch.no_grad():
        model(encoded, encoded=True)
    model.record_activity = False
    return [a.clone() for a in model.activity]


def peer_spikes(peer: str, graph: nir.NIRGraph, encoded: torch.Tensor) -> list[torch.Tensor]:
    if peer == "snntorch":
        import snntorch
        from snntorch import utils as snn_utils
        from snntorch.import_nir import import_from_nir

        with contextlib.redirect_stdout(io.StringIO()):
            net = import_from_nir(graph)
        cells = [m for m in net.modules() if isinstance(m, snntorch.Leaky)]
        snn_utils.reset(net)
    else:
        import norse.torch
        from norse.torch.module.lif_box import LIFBoxCell

        net = norse.torch.from_nir(graph, dt=float(graph.metadata["dt"]))
        cells = [m for m in net.modules() if isinstance(m, LIFBoxCell)]
    record: list[list[torch.Tensor]] = [[] for _ in cells]
    hooks = [c.register_forward_hook(
        lambda m, a, out, i=i: record[i].append((out[0] if isinstance(out, tuple) else out)
                                                .detach().clone()))
        for i, c in enumerate(cells)]
    state = None
    with torch.no_grad():
        for t in range(encoded.shape[0]):
            if peer == "snntorch":
                net(encoded[t])
            else:
                _, state = net(encoded[t], state)
    for h in hooks:
        h.remove()
    return [torch.stack(r) for r in record]


def float64_run(model, encoded: torch.Tensor, peer: str | None) -> tuple[list, list]:
    """Spikes and membranes in float64: ours (``peer=None``) or a peer's parameterisation."""
    layers = model.layers[:-1]
    beta = float(model.config.beta)
    thr = float(model.config.threshold)
    scale = 1.0 / (1.0 - beta)  # tau / dt
    h = encoded.double()
    spikes, membranes = [], []
    for layer in layers:
        w = layer.effective_weight().detach().double()
        b = layer.effective_bias().detach().double()
        if peer is not None:
            w, b = w * scale, b * scale
        current = h @ w.T + b
        v = torch.zeros_like(current[0])
        out, mem = [], []
        for t in range(current.shape[0]):
            if peer == "snntorch":
                v = beta * v + current[t]
                s = (v > thr * scale).double()
            elif peer == "norse":
                v = v + (1.0 - beta) * (-v + current[t])
                s = (v > thr).double()
            else:
                v = beta * v + current[t]
                s = (v > thr).double()
            mem.append(v.clone())
            out.append(s)
            v = v * (1 - s)
        spikes.append(torch.stack(out))
        membranes.append(torch.stack(mem) / (scale if peer == "snntorch" else 1.0))
        h = spikes[-1]
    return spikes, membranes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    result = neurosculpt.run(
        benchmark="split-digits", strategy="naive", model="snn-mlp", epochs=args.epochs,
        seed=args.seed, progress=False, threads=1, energy_samples=0,
        model_params={"hidden": [120, 60], "beta": 0.8, "threshold": 0.7, "steps": 12,
                      "encoder": "rate"})
    model = result.model.eval()
    task = len(result.benchmark) - 1
    model.set_task(task)
    x = torch.cat([t.test.get(torch.arange(len(t.test)))[0] for t in result.benchmark.tasks])
    torch.manual_seed(1)
    encoded = model.encoder(x).flatten(2)
    ours = hidden_spikes(model, encoded)
    total = sum(s.numel() for s in ours)
    print(f"{len(x)} test samples x 12 steps x 180 hidden units = {total} spike slots, "
          f"{int(sum(s.sum() for s in ours))} spikes")
    ref, ref_mem = float64_run(model, encoded, None)
    print(f"ours (float32) vs ours in float64: "
          f"{sum(int((a != b).sum()) for a, b in zip(ours, ref, strict=True))} differ")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.nir"
        export_nir(model, path, task, readout="affine")
        graph = nir.read(str(path))
    for peer in ("snntorch", "norse"):
        try:
            theirs = peer_spikes(peer, graph, encoded)
        except ImportError:
            print(f"{peer}: not installed")
            continue
        peer64, _ = float64_run(model, encoded, peer)
        flips = [(i, idx) for i, (a, b) in enumerate(zip(ours, theirs, strict=True))
                 for idx in (a != b.reshape(a.shape)).nonzero().tolist()]
        own = sum(int((a != b.reshape(a.shape)).sum())
                  for a, b in zip(peer64, theirs, strict=True))
        print(f"{peer}: {len(flips)} of {total} hidden spikes differ from ours; "
              f"{peer} vs its own parameterisation in float64: {own} differ; "
              f"float64 ours vs float64 {peer}: "
              f"{sum(int((a != b).sum()) for a, b in zip(ref, peer64, strict=True))} differ")
        for layer, (t, b, j) in flips[:10]:
            first = min(k for k in range(t + 1)
                        if not torch.equal(ours[layer][k, b], theirs[layer][k, b]))
            margin = float(ref_mem[layer][t, b, j]) - float(model.config.threshold)
            print(f"  layer {layer}, step {t}, sample {b}, unit {j}: ours "
                  f"{int(ours[layer][t, b, j])}, {peer} {int(theirs[layer][t, b, j])}; "
                  f"float64 membrane - threshold = {margin:+.3e} "
                  f"({margin / float(model.config.threshold) / 2**-24:+.2f} float32 half-ulps "
                  f"of the threshold); first differing step of this sample's layer: {first}")
    print(json.dumps({"done": True}))


if __name__ == "__main__":
    main()
