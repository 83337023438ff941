"""Whole continual-learning experiments: neurosculpt against Avalanche 0.6 driving snnTorch.

The same experiment on both sides: split Fashion-MNIST in the task scenario (five tasks of two
classes in natural order 0-1, 2-3, ..., 8-9; the task id selects the task's two outputs of a
ten-output layer), a spiking MLP ``784-H-H-10`` with LIF units (decay 0.9, threshold 1, reset
to zero, fast-sigmoid surrogate of slope 25) and a leaky-integrator readout averaged over ``T``
steps, direct coding (the image is the input current at every step, so the first layer's
product is computed once per sample on both sides), the same initial weights (neurosculpt's
He-uniform draw for the seed, loaded by both), Adam (lr 1e-3), the same epochs and batch
size, strategies naive, EWC, replay and PackNet. Each side runs in its own process and is timed
from the moment the process is started to the moment it has printed the final accuracy matrix:
interpreter start, imports, data loading, training, every evaluation. The two sides alternate
(neurosculpt first in even rounds, Avalanche first in odd ones), so a busy shared machine slows
both alike; each figure is the median over rounds.

The peer side is what a researcher would assemble today: ``avalanche.benchmarks.classic
.SplitFMNIST`` (torchvision's ``FashionMNIST`` with ``ToTensor``) and Avalanche's ``Naive``,
``EWC`` (``mode="separate"``), ``Replay`` and ``PackNet`` strategies, an snnTorch network
(``snntorch.Leaky`` units, stepped after one matrix product per layer over all time steps, the
fastest idiomatic form) wrapped in an Avalanche ``MultiTaskModule`` (``PackNetModel`` for
PackNet). The neurosculpt side uses its Python API with the same explicit class order.

Where the two libraries' methods differ by design, each keeps its own documented default and
the bench prints it (see ``PEER_NOTES``): EWC's Fisher (neurosculpt: per-sample gradients of 256
samples; Avalanche: mini-batch gradients over the whole task), replay's memory policy
(neurosculpt: reservoir; Avalanche: balanced per experience), both with 500 samples and a
replayed batch as large as the training batch.

Run from the repository with both stacks importable, e.g. the peers' environment::

    PYTHONPATH=src /tmp/speed/peers/bin/python bench/experiment_speed.py

The last line is ``experiment_speedup_min: X.XX``: the smallest ratio over strategies of the
peer stack's wall time to neurosculpt's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

STRATEGIES = ("naive", "ewc", "replay", "packnet")
ORDER = [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
BETA, THRESHOLD, SLOPE = 0.9, 1.0, 25.0
REPLAY_MEMORY = 500
EWC_LAMBDA = 1000.0  # neurosculpt's lam; Avalanche's penalty has no 1/2: ewc_lambda = lam / 2
PACKNET_PRUNE, PACKNET_RETRAIN_EPOCHS = 0.5, 1
PEER_NOTES = {
    "ewc": "Fisher: neurosculpt per-sample gradients of 256 samples per task (its default); "
           "Avalanche mini-batch gradients over every sample of the task (its only mode)",
    "replay": "memory of 500: neurosculpt reservoir sampling, Avalanche experience-balanced "
              "buffer; both add a replayed batch as large as the training batch",
    "packnet": "prune 50% of the free weights per layer after each task but the last, retrain "
               "1 epoch at the training lr (Avalanche has no lr factor; neurosculpt's default "
               "0.1x is set to 1x here), fresh Adam per task on both sides",
}


def _process_age() -> float | None:
    """Seconds since this process was started (Linux), so import time is counted too."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - started
    except (OSError, ValueError, IndexError):
        return None


def _peak_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- data: one set of IDX files read by both sides --------------------------------------------


def prepare_data(root: Path, per_class: int | None, test_per_class: int | None) -> Path:
    """Uncompressed IDX files under ``root/FashionMNIST/raw`` (where torchvision looks; the
    neurosculpt side reads the same files), optionally cut to the first ``per_class`` training
    and ``test_per_class`` test images of every class. Done once, before anything is timed."""
    import numpy as np

    from neurosculpt.data.idx import FASHION_MNIST, _locate, read_idx

    raw = root / "FashionMNIST" / "raw"
    stamp = raw / f"cut-{per_class}-{test_per_class}"
    if stamp.is_file():
        return raw
    raw.mkdir(parents=True, exist_ok=True)
    files = _locate(FASHION_MNIST, None, download=False)
    for images_name, labels_name, cap in (
            ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", per_class),
            ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", test_per_class)):
        images, labels = read_idx(files[images_name]), read_idx(files[labels_name])
        if cap is not None:
            keep = np.sort(np.concatenate([np.flatnonzero(labels == c)[:cap] for c in range(10)]))
            images, labels = images[keep], labels[keep]
        for name, array in ((images_name, images), (labels_name, labels)):
            header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
                int(d).to_bytes(4, "big") for d in array.shape)
            (raw / name).write_bytes(header + array.astype(np.uint8).tobytes())
    for old in raw.glob("cut-*"):
        old.unlink()
    stamp.write_text("")
    return raw


def initial_weights(root: Path, seed: int, hidden: list[int]) -> Path:
    """The initial weights and biases of seed ``seed`` (neurosculpt's He-uniform rule, drawn by
    building its model), saved once so that both sides start from the same values."""
    import torch

    from neurosculpt.models import build_model

    path = root / f"init-{seed}-{'-'.join(map(str, hidden))}.pt"
    if not path.is_file():
        torch.manual_seed(seed)
        model = build_model({"kind": "snn-mlp", "hidden": tuple(hidden)}, (1, 28, 28), 10)
        torch.save([(layer.weight.detach().clone(), layer.bias.detach().clone())
                    for layer in model.layers], path)
    return path


def _load_initial(layers, path: str) -> None:
    import torch

    with torch.no_grad():
        for layer, (weight, bias) in zip(layers, torch.load(path), strict=True):
            layer.weight.copy_(weight)
            layer.bias.copy_(bias)


# --- the neurosculpt side ---------------------------------------------------------------------


def run_neurosculpt(args: argparse.Namespace) -> dict:
    import torch

    from neurosculpt.benchmarks import class_split
    from neurosculpt.data import load_fashion_mnist
    from neurosculpt.loop import Learner, TrainConfig
    from neurosculpt.models import build_model
    from neurosculpt.strategies import make_strategies

    imported = _process_age()
    torch.set_num_threads(args.threads)
    train, test = load_fashion_mnist(args.data)
    bench = class_split("split-fmnist", (train.x, train.y), (test.x, test.y), ORDER, "task",
                        seed=args.seed)
    params = {"naive": {}, "ewc": {"lam": EWC_LAMBDA}, "replay": {"buffer_size": REPLAY_MEMORY},
              "packnet": {"prune_ratio": PACKNET_PRUNE, "retrain_epochs": PACKNET_RETRAIN_EPOCHS,
                          "retrain_lr_factor": 1.0}}[args.strategy]
    torch.manual_seed(args.seed)
    model = build_model({"kind": "snn-mlp", "hidden": tuple(args.hidden), "steps": args.steps,
                         "beta": BETA, "threshold": THRESHOLD, "slope": SLOPE},
                        bench.input_shape, bench.n_outputs)
    _load_initial(model.layers, args.init)
    learner = Learner(model, bench, make_strategies(args.strategy, params), TrainConfig(
        epochs=args.epochs, batch_size=args.batch, lr=args.lr, seed=args.seed, progress=False,
        precision=args.precision))
    loaded = _process_age()
    matrix = learner.run()["accuracy_matrix"]
    return {"matrix": matrix, "imported_s": imported, "ready_s": loaded}


# --- the Avalanche + snnTorch side ------------------------------------------------------------


def _snntorch_net(args: argparse.Namespace, packnet: bool):
    """The same spiking MLP in snnTorch, inside an Avalanche multi-task module whose task id
    selects the task's two outputs (masked logits, as neurosculpt's task scenario does)."""
    import snntorch
    import torch
    from avalanche.models import MultiTaskModule
    from snntorch import surrogate
    from torch import nn

    sizes = [784, *args.hidden, 10]
    grad = surrogate.fast_sigmoid(slope=SLOPE)

    class SpikingMLP(MultiTaskModule):
        def __init__(self) -> None:
            super().__init__()
            self.fcs = nn.ModuleList(
                nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True))
            self.lifs = nn.ModuleList(
                snntorch.Leaky(beta=BETA, threshold=THRESHOLD, reset_mechanism="zero",
                               spike_grad=grad) for _ in args.hidden)
            self.readout = snntorch.Leaky(beta=BETA, reset_mechanism="none")
            self.max_class_label = sizes[-1]  # ten outputs from the start, as neurosculpt

        def forward_single_task(self, x, task_label):
            steps = args.steps
            current = self.fcs[0](x.flatten(1))  # direct coding: the same current every step
            current = current.unsqueeze(0).expand(steps, *current.shape)
            for i, lif in enumerate(self.lifs):
                mem = lif.init_leaky()
                spikes = []
                for t in range(steps):
                    spk, mem = lif(current[t], mem)
                    spikes.append(spk)
                current = self.fcs[i + 1](torch.stack(spikes).flatten(0, 1)).unflatten(
                    0, (steps, x.shape[0]))
            mem = self.readout.init_leaky()
            trace = []
            for t in range(steps):
                _, mem = self.readout(current[t], mem)
                trace.append(mem)
            logits = torch.stack(trace).mean(0)
            allowed = torch.zeros(10, dtype=torch.bool, device=logits.device)
            allowed[torch.tensor(ORDER[int(task_label)])] = True
            return logits.masked_fill(~allowed, float("-inf"))

    net = SpikingMLP()
    _load_initial(net.fcs, args.init)
    if not packnet:
        return net
    from avalanche.models.packnet import PackNetModel

    class TaskPackNet(PackNetModel):
        """``PackNetModel`` calls its wrappee without the task id; this one passes it on, so
        the task's outputs are selected as in the other strategies."""

        def forward(self, input, task_id):
            task = int(task_id[0])
            assert bool(task_id.eq(task).all()), "one task per batch"
            self.activate_task(min(task, self.task_count))
            return self.wrappee.forward_single_task(input, task)

    return TaskPackNet(net)


def run_avalanche(args: argparse.Namespace) -> dict:
    import torch
    from avalanche.benchmarks.classic import SplitFMNIST
    from avalanche.evaluation.metrics import accuracy_metrics
    from avalanche.training import EWC, Naive, PackNet, Replay
    from avalanche.training.plugins import EvaluationPlugin
    from torchvision import transforms

    imported = _process_age()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    benchmark = SplitFMNIST(
        n_experiences=len(ORDER), return_task_id=True, seed=args.seed,
        fixed_class_order=[c for task in ORDER for c in task],
        train_transform=transforms.ToTensor(), eval_transform=transforms.ToTensor(),
        dataset_root=str(Path(args.data).parents[1]))
    model = _snntorch_net(args, packnet=args.strategy == "packnet")
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    evaluator = EvaluationPlugin(accuracy_metrics(experience=True), loggers=[])
    criterion = torch.nn.CrossEntropyLoss()
    common = {"model": model, "optimizer": optimizer, "criterion": criterion,
              "train_mb_size": args.batch, "train_epochs": args.epochs, "eval_mb_size": 1000,
              "evaluator": evaluator, "device": "cpu"}
    if args.strategy == "naive":
        strategy = Naive(**common)
    elif args.strategy == "ewc":
        strategy = EWC(ewc_lambda=EWC_LAMBDA / 2, mode="separate", **common)
    elif args.strategy == "replay":
        strategy = Replay(mem_size=REPLAY_MEMORY, **common)
    else:
        common["train_epochs"] = args.epochs + PACKNET_RETRAIN_EPOCHS  # Avalanche counts both
        strategy = PackNet(post_prune_epochs=PACKNET_RETRAIN_EPOCHS,
                           prune_proportion=[PACKNET_PRUNE] * (len(ORDER) - 1) + [0.0],
                           **common)
    loaded = _process_age()
    matrix = []
    for experience in benchmark.train_stream:
        # a fresh Adam state per task, as neurosculpt's loop does (Avalanche keeps it by default)
        strategy.train(experience, reset_optimizer_state=True)
        results = strategy.eval(benchmark.test_stream)
        matrix.append([_exp_accuracy(results, j) for j in range(len(ORDER))])
    return {"matrix": matrix, "imported_s": imported, "ready_s": loaded}


def _exp_accuracy(results: dict, exp: int) -> float:
    key = next(k for k in results
               if k.startswith("Top1_Acc_Exp/eval_phase/test_stream") and
               k.endswith(f"/Exp{exp:03d}"))
    return float(results[key])


# --- driver -----------------------------------------------------------------------------------


def worker(args: argparse.Namespace) -> None:
    result = (run_neurosculpt if args.worker == "neurosculpt" else run_avalanche)(args)
    matrix = result["matrix"]
    last = matrix[-1]
    result.update({"acc": sum(last) / len(last), "peak_mib": _peak_mib()})
    print(json.dumps(result), flush=True)


def _worker_command(python: str, side: str, strategy: str, seed: int,
                    args: argparse.Namespace, data: Path) -> list[str]:
    return [python, __file__, "--worker", side, "--strategy", strategy, "--seed", str(seed),
            "--data", str(data), "--epochs", str(args.epochs), "--batch", str(args.batch),
            "--lr", str(args.lr), "--steps", str(args.steps), "--threads", str(args.threads),
            "--precision", args.precision, "--init", str(initial_weights(data, seed, args.hidden)),
            "--hidden", *map(str, args.hidden)]


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(command: list[str], env: dict) -> tuple[float, dict]:
    """Wall seconds from starting the process to its exit (it exits right after printing the
    matrix), and its report with the process's CPU seconds added."""
    cpu = _children_cpu()
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    cpu = _children_cpu() - cpu
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise SystemExit(f"{command[3]} side failed ({' '.join(command[3:9])}):\n{tail}")
    return wall, {**json.loads(done.stdout.strip().splitlines()[-1]), "cpu_s": cpu}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--rounds", type=int, default=1, help="timed repeats of every (strategy, "
                   "seed) pair; the figure is the median over all runs")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--steps", type=int, default=8, help="time steps T")
    p.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--per-class", type=int, help="training images per class (default: all "
                   "6,000); the same first ones on both sides")
    p.add_argument("--test-per-class", type=int, help="test images per class (default: all)")
    p.add_argument("--data-dir", default=None, help="where the shared IDX files are written "
                   "(default: $NEUROSCULPT_CACHE/experiment-speed or ~/.cache/neurosculpt/...)")
    p.add_argument("--peer-python", default=sys.executable,
                   help="interpreter with avalanche-lib and snntorch (default: this one)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                   help="neurosculpt side only")
    p.add_argument("--worker", choices=["neurosculpt", "avalanche"], help=argparse.SUPPRESS)
    p.add_argument("--strategy", choices=STRATEGIES, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--init", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return

    from neurosculpt.data import cache_dir

    root = Path(args.data_dir) if args.data_dir else cache_dir("experiment-speed")
    data = prepare_data(root, args.per_class, args.test_per_class)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads),
           "PYTHONPATH": os.pathsep.join(
               filter(None, [str(Path(__file__).resolve().parents[1] / "src"),
                             os.environ.get("PYTHONPATH")]))}
    sides = {"neurosculpt": sys.executable, "avalanche": args.peer_python}
    with os.popen("uptime") as f:
        load_before = f.read().strip()
    print(f"split-fmnist task scenario, classes {ORDER}, snn-mlp 784-"
          f"{'-'.join(map(str, args.hidden))}-10, T={args.steps}, {args.epochs} epoch(s), batch "
          f"{args.batch}, Adam lr {args.lr}, {args.threads} thread(s), seeds {args.seeds}, "
          f"{args.rounds} round(s); data {data}"
          + (f" (cut to {args.per_class}/{args.test_per_class} per class)"
             if args.per_class or args.test_per_class else ""))
    print(f"load before: {load_before}")
    # untimed warm-up: page cache, the C kernel's build cache, the decoded-data cache
    for side, python in sides.items():
        _timed(_worker_command(python, side, "naive", 0, args, data) + ["--epochs", "0"], env)
    walls: dict[tuple[str, str], list[float]] = {}
    accs: dict[tuple[str, str], list[float]] = {}
    infos: dict[tuple[str, str], list[dict]] = {}
    flip = 0
    for _ in range(args.rounds):
        for strategy in args.strategies:
            for seed in args.seeds:
                order = list(sides) if flip % 2 == 0 else list(sides)[::-1]
                flip += 1
                for side in order:
                    wall, info = _timed(
                        _worker_command(sides[side], side, strategy, seed, args, data), env)
                    walls.setdefault((strategy, side), []).append(wall)
                    infos.setdefault((strategy, side), []).append(info)
                    if len(infos[(strategy, side)]) <= len(args.seeds):
                        accs.setdefault((strategy, side), []).append(info["acc"])
                    print(f"  {strategy:8s} seed {seed} {side:12s} {wall:7.2f} s wall "
                          f"{info['cpu_s']:7.2f} s CPU  ACC "
                          f"{info['acc']:.4f}  imports {info['imported_s'] or 0:5.2f} s  "
                          f"ready {info['ready_s'] or 0:5.2f} s  peak {info['peak_mib']:.0f} MiB"
                          f"  final row {' '.join(f'{a:.3f}' for a in info['matrix'][-1])}",
                          flush=True)
    with os.popen("uptime") as f:
        print(f"load after: {f.read().strip()}")
    print(f"\n{'strategy':10s}{'neurosculpt s':>15s}{'peers s':>10s}{'ratio':>8s}"
          f"{'CPU ratio':>11s}{'ACC neurosculpt':>18s}{'ACC peers':>16s}{'peak MiB':>14s}")
    ratios = []
    for strategy in args.strategies:
        ns, pe = (infos[(strategy, s)] for s in sides)
        ns_wall, pe_wall = walls[(strategy, "neurosculpt")], walls[(strategy, "avalanche")]
        # each pair ran back to back under the same load: the median of the pairs' ratios
        ratio = statistics.median(p / n for p, n in zip(pe_wall, ns_wall, strict=True))
        cpu_ratio = statistics.median(p["cpu_s"] / n["cpu_s"] for p, n in zip(pe, ns, strict=True))
        ratios.append(ratio)
        acc = {s: accs[(strategy, s)] for s in sides}
        peak = "/".join(f"{max(i['peak_mib'] for i in infos[(strategy, s)]):.0f}" for s in sides)
        print(f"{strategy:10s}{statistics.median(ns_wall):15.2f}{statistics.median(pe_wall):10.2f}"
              f"{ratio:8.2f}{cpu_ratio:11.2f}"
              f"{_mean_sd(acc['neurosculpt']):>18s}{_mean_sd(acc['avalanche']):>16s}{peak:>14s}")
    for strategy in args.strategies:
        if strategy in PEER_NOTES:
            print(f"note {strategy}: {PEER_NOTES[strategy]}")
    print(f"experiment_speedup_min: {min(ratios):.2f}")


def _mean_sd(values: list[float]) -> str:
    if len(values) < 2:
        return f"{100 * values[0]:.1f}"
    return f"{100 * statistics.mean(values):.1f}±{100 * statistics.stdev(values):.1f}"


if __name__ == "__main__":
    main()
