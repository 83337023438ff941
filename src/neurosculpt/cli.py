"""The ``neurosculpt`` command line: run, show, compare, list (and more as they land)."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path


def _value(text: str) -> object:
    """Parse ``--param`` values: numbers, booleans, comma lists, else strings."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    if "," in text:
        return [_value(t) for t in text.split(",") if t]
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_params(pairs: Sequence[str], flag: str) -> dict:
    """Repeated ``KEY=VALUE`` flags as keyword arguments; a dotted key addresses one part of a
    combined strategy: ``["lam=100", "ewc.lam=5"]`` -> ``{"lam": 100, "ewc": {"lam": 5}}``.
    Public so that the benchmarks under ``bench/`` read parameters as the CLI does."""
    out: dict = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"{flag} expects KEY=VALUE, got {pair!r}")
        key, text = pair.split("=", 1)
        if "." in key:
            head, key = key.split(".", 1)
            out.setdefault(head, {})[key] = _value(text)
        else:
            out[key] = _value(text)
    return out


def _run_config(args: argparse.Namespace):
    from .runs import RunConfig, load_toml

    values: dict = load_toml(args.config) if args.config else {}
    RunConfig.from_dict(values, source=str(args.config))
    source = f"the command line or {args.config}" if args.config else "the command line"
    flags = {
        "benchmark": args.benchmark, "strategy": args.strategy, "model": args.model,
        "scenario": args.scenario, "tasks": args.tasks, "epochs": args.epochs,
        "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
        "optimizer": args.optimizer, "eval_scope": args.eval_scope, "seed": args.seed,
        "data_root": args.data_root,
        "samples_per_task": args.samples_per_task,
        "test_samples_per_task": args.test_samples_per_task, "threads": args.threads,
        "class_order": args.class_order,
        "precision": args.precision,
        "device": args.device,
    }
    values.update({k: v for k, v in flags.items() if v is not None})
    if args.validation:
        values["validation"] = True
    if args.sequence:
        values["sequence"] = True
    if args.keep_checkpoints:
        values["keep_checkpoints"] = True
    if args.log:
        values["curves"] = sorted(set(args.log))
    if args.plugin:
        values["plugins"] = [*values.get("plugins", []), *args.plugin]
    if args.no_progress or args.quiet:
        values["progress"] = False
    values["strategy_params"] = {**values.get("strategy_params", {}),
                                 **parse_params(args.param, "--param")}
    values["model_params"] = {**values.get("model_params", {}),
                              **parse_params(args.model_param, "--model-param")}
    return RunConfig.from_dict(values, source=source)


def cmd_run(args: argparse.Namespace) -> int:
    from . import runs
    from .report import format_run
    from .strategies import load_plugin
    from .validation import check_resume_flags, check_run_folders, parse_seeds

    log = print if not args.quiet else None
    if args.resume:
        check_resume_flags(args, vars(build_parser().parse_args(["run"])))
        for plugin in args.plugin:  # besides those config.json names
            load_plugin(plugin)
        result = runs.resume(args.resume, log=log, device=args.device)
        print(format_run(result.results))
        return 0
    config = _run_config(args)
    seeds = parse_seeds(args.seeds, args.seed) if args.seeds else [config.seed]
    base = Path(args.out) if args.out else None
    configs = [runs.RunConfig.from_dict({**config.__dict__, "seed": seed}) for seed in seeds]
    outs = [runs.default_out(cfg) if base is None else (
        base / f"seed{cfg.seed}" if len(seeds) > 1 else base) for cfg in configs]
    check_run_folders(outs, args.overwrite)  # before the first seed trains
    for cfg, out in zip(configs, outs, strict=True):
        if log:
            print(f"run folder: {out}")
        result = runs.run(cfg, out=out, log=log, overwrite=args.overwrite)
        print(format_run(result.results))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from .report import compare_table, find_runs, format_run
    from .runs import read_results

    runs = [read_results(p) for p in find_runs([args.run])]
    print("\n\n".join(format_run(r) for r in runs))
    if len(runs) > 1:  # a parent folder of several seeds (or settings): their summary too
        print("\n" + compare_table(runs))
    return 0


_SUFFIX_FORMATS = {".md": "markdown", ".tex": "latex", ".csv": "csv", ".txt": "text"}


def cmd_compare(args: argparse.Namespace) -> int:
    from .report import compare_table, find_runs
    from .runs import read_results, write_text

    fmt = args.format
    if fmt is None and args.out:
        fmt = _SUFFIX_FORMATS.get(Path(args.out).suffix.lower())
        if fmt is None:
            raise ValueError(f"-o {args.out}: cannot tell the format from its suffix; use .md, "
                             ".tex, .csv or .txt, or give --format")
    table = compare_table([read_results(p) for p in find_runs(args.runs)], fmt or "text")
    if args.out:
        write_text(Path(args.out), table if table.endswith("\n") else table + "\n")
        print(f"wrote {args.out}")
    else:
        print(table)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .html_report import write_report

    out = write_report(args.runs, args.out, title=args.title)
    print(f"wrote {out} (figures as PNG and SVG in {out.parent / (out.stem + '_files')})")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from .sweeps import load_sweep, run_sweep

    if args.dry_run:
        sweep = load_sweep(args.file, args.out)
        for cell in sweep.cells:
            print(cell.folder)
        print(f"{len(sweep.cells)} cells")
        return 0
    result = run_sweep(args.file, executor=args.executor, address=args.address,
                       workers=args.workers, out=args.out, report=not args.no_report,
                       progress=not args.no_progress)
    print(result.table)
    if result.report is not None:
        print(f"report: {result.report}")
    print(f"sweep took {result.wall_s:.1f} s")
    for failure in result.failures:
        print(f"neurosculpt: cell {failure.label} failed after {failure.attempts} attempts: "
              f"{failure.error}", file=sys.stderr)
    return 1 if result.failures else 0


def cmd_list(args: argparse.Namespace) -> int:
    from . import strategies
    from .benchmarks import BENCHMARKS, SCENARIOS
    from .models import MODELS

    for plugin in args.plugin:
        strategies.load_plugin(plugin)
    if args.strategy:
        for name in args.strategy:
            print(strategies.describe(name))
        return 0
    print("benchmarks: " + ", ".join(BENCHMARKS) + "  (or path/file.py:factory)")
    print("scenarios:  " + ", ".join(SCENARIOS))
    print("strategies: " + ", ".join(strategies.available()) + "  (compose with +)")
    print("models:     " + ", ".join(MODELS))
    print("parameters of a strategy: neurosculpt list STRATEGY")
    return 0


def _add_run(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="train a model on a benchmark with a strategy",
                       description="Train task after task, evaluate every task after each one, "
                       "and write a run folder (config, results.json, metrics.csv, checkpoints).")
    p.add_argument("--benchmark", "-b", help="benchmark name (see `neurosculpt list`), or "
                   "path/file.py:factory (a function returning a neurosculpt.Benchmark)")
    p.add_argument("--strategy", "-s", help="strategy name, or several joined by + (replay+ewc)")
    p.add_argument("--model", "-m", help="snn-mlp, snn-conv, ann-mlp, ann-conv, or your own: "
                   "path/to/file.py:factory or package.module:factory (docs/own-models.md)")
    p.add_argument("--scenario", choices=["task", "class", "domain"])
    p.add_argument("--tasks", type=int, help="number of tasks (streams that allow it)")
    p.add_argument("--class-order", metavar="natural|seed|LIST",
                   help="class order of class-split benchmarks: natural (0-1, 2-3, ...), seed "
                        "(drawn from the seed; default) or a permutation such as 0,1,2,...,9")
    p.add_argument("--epochs", type=int, help="epochs per task")
    p.add_argument("--steps", type=int, help="optimizer steps per task (overrides --epochs)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="learning rate")
    p.add_argument("--optimizer", choices=["adam", "adamw", "sgd"])
    p.add_argument("--eval-scope", choices=["auto", "all", "seen", "current"],
                   help="tasks tested after each task: all, seen (so far and the next), "
                        "current (the new task only, for loss-of-plasticity streams) or auto "
                        "(all up to 20 tasks, else seen)")
    p.add_argument("--config", help="run.toml with any RunConfig keys")
    p.add_argument("--seed", type=int)
    p.add_argument("--seeds", help="comma-separated seeds, one run folder each (e.g. 0,1,2)")
    p.add_argument("--out", "-o", help="run folder (default runs/<benchmark>-<strategy>-...)")
    p.add_argument("--resume", metavar="RUN", help="continue a stopped run from its checkpoint")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run already in the -o folder (default: refuse)")
    p.add_argument("--param", "-p", action="append", default=[], metavar="KEY=VALUE",
                   help="strategy parameter, e.g. lam=100 or ewc.lam=100 (repeatable)")
    p.add_argument("--model-param", action="append", default=[], metavar="KEY=VALUE",
                   help="model option, e.g. hidden=400,400 or steps=25 (repeatable)")
    p.add_argument("--data-root", help="folder holding the data set files")
    p.add_argument("--samples-per-task", type=int, help="cap on training samples per task")
    p.add_argument("--test-samples-per-task", type=int, help="cap on test samples per task")
    p.add_argument("--validation", action="store_true",
                   help="evaluate on 10%% held out from training data (for tuning)")
    p.add_argument("--sequence", action="store_true",
                   help="present images as sequences of rows (Fashion-MNIST: 28 tokens of 28 "
                        "features), for transformers and networks that read one row per step")
    p.add_argument("--threads", type=int, help="torch threads")
    p.add_argument("--precision", choices=["fp32", "bf16"],
                   help="bf16: matrix products in bfloat16 under autocast, membranes and "
                        "optimizer in float32 (needs native bf16: AVX-512 BF16/AMX or a GPU)")
    p.add_argument("--device", help="cpu (default), cuda, cuda:N or mps; with --resume, moves "
                   "the run there")
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE_OR_FILE",
                   help="import a user's strategies (path/file.py or package.module, whose "
                        "@register decorators run; or file.py:Class); repeatable, recorded in "
                        "config.json so --resume loads them too")
    p.add_argument("--keep-checkpoints", action="store_true",
                   help="keep the checkpoint of every task (default: only the latest)")
    p.add_argument("--log", action="append", choices=["tensorboard", "csv"],
                   help="per-step curves (loss, accuracy, plasticity signals, structural "
                   "events) as TensorBoard files and/or curves.csv in the run folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--quiet", "-q", action="store_true", help="print only the final table")
    p.set_defaults(func=cmd_run)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .export.commands import add_commands as add_deployment_commands

    parser = argparse.ArgumentParser(
        prog="neurosculpt",
        description="Continual learning with spiking networks that grow, prune and consolidate.",
    )
    parser.add_argument("--version", action="version", version=f"neurosculpt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_run(sub)
    p = sub.add_parser("show", help="print a run's accuracy matrix and metrics")
    p.add_argument("run", help="run folder, or a folder of run folders (e.g. one per seed)")
    p.set_defaults(func=cmd_show)
    p = sub.add_parser("compare", help="side-by-side table of runs (mean ± std over seeds)")
    p.add_argument("runs", nargs="+", help="run folders, or folders containing run folders")
    p.add_argument("--format", "-f", choices=["text", "markdown", "latex", "csv"],
                   help="table format (default: from the suffix of -o, else text)")
    p.add_argument("--out", "-o", help="write the table to this file (.md, .tex, .csv, .txt)")
    p.set_defaults(func=cmd_compare)
    p = sub.add_parser("report", help="HTML report with figures of runs (needs matplotlib)",
                       description="One self-contained HTML page (figures embedded) plus every "
                       "figure as PNG and SVG in <name>_files/ beside it.")
    p.add_argument("runs", nargs="+", help="run folders, or folders containing run folders")
    p.add_argument("--out", "-o", default="report.html", help="HTML file (default report.html)")
    p.add_argument("--title", help="page title")
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("sweep", help="run a grid of runs from a sweep file, locally or on Ray",
                       description="Every cell of the grid in a sweep.toml (see docs/sweeps.md) "
                       "as a run folder; finished cells are skipped, stopped ones resume. Ends "
                       "with the compare table and report.html in the sweep folder.")
    p.add_argument("file", help="sweep.toml")
    p.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="local worker processes (default) or one Ray task per cell")
    p.add_argument("--address", help="Ray cluster address (e.g. auto, ray://head:10001); "
                   "default: start Ray on this machine")
    p.add_argument("--workers", type=int, help="local worker processes (default: one per core)")
    p.add_argument("--out", "-o", help="sweep folder (overrides `out` in the file)")
    p.add_argument("--no-report", action="store_true", help="skip report.html")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--dry-run", action="store_true", help="list the cells' folders and stop")
    p.set_defaults(func=cmd_sweep)
    p = sub.add_parser("list", help="name the benchmarks, strategies and models; with a "
                       "strategy name, its parameters")
    p.add_argument("strategy", nargs="*", help="strategies whose parameters, defaults, meaning "
                   "and tuned values to print")
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE_OR_FILE",
                   help="import a user's strategies first (see `run --plugin`)")
    p.set_defaults(func=cmd_list)
    add_deployment_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    from .loop import TrainingDiverged
    from .validation import NeurosculptWarning, describe_os_error

    def show_warning(message, category, *rest) -> None:  # one line, like the errors
        if issubclass(category, NeurosculptWarning):
            print(f"neurosculpt: warning: {message}", file=sys.stderr)
        else:
            default_show(message, category, *rest)

    default_show, warnings.showwarning = warnings.showwarning, show_warning
    try:
        return args.func(args)
    except TrainingDiverged as exc:
        print(f"neurosculpt: training diverged: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # UserError, DataError, NIR errors: bad input, named
        print(f"neurosculpt: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a path the user gave: missing, unwritable, full
        print(f"neurosculpt: error: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("neurosculpt: interrupted; finished tasks are saved (resume with --resume)",
              file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = default_show


if __name__ == "__main__":
    sys.exit(main())
