"""Load neurosculpt's ``--nir-version 1.0.4`` graphs in sinabs and rockpool (SynSense), which pin
nir <= 1.0.4, and compare their hidden spikes with neurosculpt's.

Two steps in two environments (the toolchains need nir 1.0.4, neurosculpt's own venv has the
current nir)::

    PYTHONPATH=src .venv/bin/python bench/nir_synsense.py make /tmp/synsense-files
    /tmp/robust/synsense/bin/python bench/nir_synsense.py check /tmp/synsense-files

``make`` trains a 64-unit snn-mlp with a spike readout (LIF, then IF neurons) on digits for two
epochs, writes each as a nir-1.0.4 file and saves 32 encoded test samples with neurosculpt's
hidden spikes; ``check`` reads the files with that nir, builds them with
``sinabs.nir.from_nir`` and ``rockpool``'s ``from_nir`` and counts differing spike entries.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch


def make(folder: Path) -> None:
    import neurosculpt
    from neurosculpt.export.nir import export_nir

    torch.set_num_threads(1)
    folder.mkdir(parents=True, exist_ok=True)
    for neuron in ("lif", "if"):
        result = neurosculpt.run(
            benchmark="split-digits", model="snn-mlp", epochs=2, tasks=1, progress=False,
            energy_samples=0, model_params={"hidden": [64], "steps": 10, "neuron": neuron,
                                            "readout": "spikes"})
        model = result.model.eval()
        encoded = model.encoder(result.benchmark.tasks[0].test.get(torch.arange(32))[0]
                                ).flatten(2)
        model.record_activity = True
        with torch.no_grad():
            model(encoded, encoded=True)
        export_nir(model, folder / f"{neuron}.nir", nir_version="1.0.4")
        torch.save({"encoded": encoded, "hidden": [a.flatten(2) for a in model.activity]},
                   folder / f"{neuron}.pt")
        print(f"wrote {folder / neuron}.nir")


def check(folder: Path) -> None:
    import nir

    for neuron in ("lif", "if"):
        data = torch.load(folder / f"{neuron}.pt")
        encoded, ours = data["encoded"], data["hidden"]
        steps, batch = encoded.shape[:2]
        graph = nir.read(str(folder / f"{neuron}.nir"))
        print(f"{neuron}: nir {nir.version} reads nodes {list(graph.nodes)}")
        try:
            import sinabs
            import sinabs.layers as sl
            from sinabs.nir import from_nir

            net = from_nir(graph, batch_size=batch, num_timesteps=steps)
            record: list[torch.Tensor] = []
            for module in net.modules():
                if isinstance(module, (sl.LIFSqueeze, sl.IAFSqueeze)):
                    module.register_forward_hook(
                        lambda m, a, out, record=record: record.append(out.detach().clone()))
            with torch.no_grad():
                net(encoded.transpose(0, 1).reshape(batch * steps, -1))
            for i, (theirs, mine) in enumerate(zip(record, ours, strict=False)):
                theirs = theirs.reshape(batch, steps, -1).transpose(0, 1)
                print(f"  sinabs {sinabs.__version__}: layer {i}: "
                      f"{int((theirs != mine).sum())}/{mine.numel()} spike entries differ "
                      f"(neurosculpt {int(mine.sum())} spikes, sinabs {int(theirs.sum())}, "
                      f"at most {int(theirs.max())} per step)")
        except Exception as exc:  # noqa: BLE001 - reported, not hidden
            print(f"  sinabs: {type(exc).__name__}: {exc}")
        try:
            import rockpool
            from rockpool.nn.modules.torch.nir import from_nir as rockpool_from_nir

            rockpool_from_nir(graph)
            print(f"  rockpool {rockpool.__version__}: loads")
        except Exception as exc:  # noqa: BLE001 - reported, not hidden
            print(f"  rockpool: {type(exc).__name__}: {exc}")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("make", "check"):
        sys.exit(__doc__)
    (make if sys.argv[1] == "make" else check)(Path(sys.argv[2]))
