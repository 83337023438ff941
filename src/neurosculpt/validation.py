"""Checks of user input, in one place: typed and ranged config values, "did you mean" names,
readable JSON/TOML errors, run-folder protection (refusing to overwrite, a lock per folder) and
warnings about training that learns nothing.

Every refusal raises :class:`UserError` (a ``ValueError``) whose message names the input and what
is wrong in one line; ``neurosculpt`` prints it as ``neurosculpt: error: ...`` and exits 2.
Warnings go through :mod:`warnings` as :class:`NeurosculptWarning`, which the command prints as
``neurosculpt: warning: ...``. The table of refused inputs is ``docs/robustness.md``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import importlib
import json
import math
import os
import types
import typing
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path


class UserError(ValueError):
    """Bad input named in the message: a value, a file, a folder. Not a bug."""


class NeurosculptWarning(UserWarning):
    """Legal but probably unintended: training at chance, a skipped file."""


def warn(message: str) -> None:
    """Emit a :class:`NeurosculptWarning` (printed by the CLI as one line)."""
    warnings.warn(message, NeurosculptWarning, stacklevel=2)


# --- names -------------------------------------------------------------------------------------


def did_you_mean(name: str, valid: Sequence[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest valid name, case-insensitively; else ``""``."""
    lowered = {v.lower(): v for v in valid}
    if name.lower() in lowered:
        return f" (did you mean {lowered[name.lower()]!r}?)"
    close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    return f" (did you mean {lowered[close[0]]!r}?)" if close else ""


def unknown_name(kind: str, name: str, valid: Sequence[str]) -> UserError:
    """The error for an unknown benchmark / strategy / model name, with a suggestion."""
    return UserError(f"unknown {kind} {name!r}{did_you_mean(str(name), valid)}; valid "
                     f"{kind} names: {', '.join(valid)}")


# --- typed values ------------------------------------------------------------------------------

_LIMITS: dict[str, tuple[float, float | None]] = {
    # key: (smallest allowed, largest allowed or None); checked for int and float fields
    "epochs": (1, None), "steps": (1, None), "batch_size": (1, None),
    "eval_batch_size": (1, None), "energy_samples": (0, None), "tasks": (1, None),
    "samples_per_task": (1, None), "test_samples_per_task": (1, None), "threads": (1, None),
    "seed": (0, 2**63 - 1), "weight_decay": (0, None), "momentum": (0, None),
    "hidden": (1, None), "channels": (1, None), "beta": (0, 1), "readout_beta": (0, 1),
}
_POSITIVE = ("lr", "threshold", "slope")
"""Keys that must be > 0 (not merely >= a limit)."""


def _type_name(value: object) -> str:
    return "true/false" if isinstance(value, bool) else type(value).__name__


def _accepts(hint: object, value: object) -> bool | None:
    """Whether ``value`` fits the annotation ``hint`` (None: cannot tell, accept)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        answers = [_accepts(h, value) for h in typing.get_args(hint)]
        return True if any(a is not False for a in answers) else False
    if hint is type(None):
        return value is None
    if hint is typing.Any:
        return True
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint is dict or origin is dict:
        return isinstance(value, dict)
    if origin in (tuple, list) or hint in (tuple, list):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        if not isinstance(value, (list, tuple)):  # a single width: ``hidden = 400``
            return _accepts(args[0], value) if args else None
        return all(_accepts(args[0], v) is not False for v in value) if args else True
    return None


def _numbers(value: object) -> list[float]:
    if isinstance(value, (list, tuple)):
        return [v for v in value if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


def check_values(cls: type, values: dict, where: str) -> None:
    """Refuse values of the wrong type or out of range for the dataclass ``cls``'s fields
    (``where`` names the source: a file, ``--model-param``, ...)."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key, value in values.items():
        if key not in names:
            continue
        hint = hints.get(key)
        if hint is not None and _accepts(hint, value) is False:
            raise UserError(f"{key} = {value!r} in {where}: expected {_describe(hint)}, got "
                            f"{_type_name(value)}")
        for number in _numbers(value):
            if not math.isfinite(number):
                raise UserError(f"{key} = {value!r} in {where}: must be a finite number")
            low, high = _LIMITS.get(key, (None, None))
            if key in _POSITIVE and number <= 0:
                raise UserError(f"{key} = {value!r} in {where}: must be > 0")
            if low is not None and number < low:
                raise UserError(f"{key} = {value!r} in {where}: must be >= {low:g}")
            if high is not None and number > high:
                raise UserError(f"{key} = {value!r} in {where}: must be <= {high:g}")


def _describe(hint: object) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(h) for h in typing.get_args(hint))
    if hint is type(None):
        return "nothing (omit the key)"
    if origin in (tuple, list):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        plural = {int: "integers", float: "numbers", str: "strings", bool: "true/false values"}
        return f"a list of {plural.get(args[0], 'values')}" if args else "a list"
    if origin is dict or hint is dict:
        return "a table (key = value pairs)"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(
        hint, getattr(hint, "__name__", str(hint)))


def check_parameters(owner: str, defaults: dict, values: dict, where: str) -> None:
    """Refuse keyword values whose type cannot stand for the parameter's default in
    ``defaults`` (a string where a number is expected, say): ``ewc.lam=abc`` names ``lam``
    instead of failing later inside training."""
    for key, value in values.items():
        default = defaults.get(key)
        if default is None or value is None:
            continue
        if isinstance(default, bool):
            ok = isinstance(value, bool)
            want = "true or false"
        elif isinstance(default, (int, float)):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            want = "a number"
            if ok and not math.isfinite(value):
                raise UserError(f"{owner} parameter {key}={value!r} in {where}: must be finite")
        elif isinstance(default, str):
            ok, want = isinstance(value, str), "a string"
        else:
            continue
        if not ok:
            raise UserError(f"{owner} parameter {key}={value!r} in {where}: expected {want} "
                            f"(default {default!r}), got {_type_name(value)}")


# --- files -------------------------------------------------------------------------------------


def read_json(path: str | Path, what: str = "JSON file") -> object:
    """``json.loads`` of a file, with errors that name the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise UserError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
    try:
        return json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{what} {path} is not valid JSON ({exc}); it may be damaged") from exc


def read_toml(path: str | Path) -> dict:
    """Parse a TOML config file, with errors that name it and say that TOML is expected."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError as exc:
            raise UserError("reading TOML on Python 3.10 needs: pip install tomli") from exc
    path = Path(path)
    if path.is_dir():
        raise UserError(f"config file {path} is a folder; --config expects a TOML file "
                        "(run.toml)")
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    hint = " (a JSON file? --config reads TOML)" if path.suffix.lower() == ".json" else ""
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"config file {path} is not valid TOML{hint}: {exc}; expected lines "
                        "such as: epochs = 2") from exc
    except UnicodeDecodeError as exc:
        raise UserError(f"config file {path} is not a text (TOML) file{hint}") from exc


def require(module: str, message: str) -> types.ModuleType:
    """Import the optional ``module``, or a one-line :class:`UserError` ``message`` (which
    names the extra that installs it) when it is missing."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise UserError(message) from exc


def check_choice(what: str, value: object, valid: Sequence[str]) -> None:
    """A ``ValueError`` "``what`` must be one of ..., got ``value``" unless ``value`` is in
    ``valid``."""
    if value not in valid:
        raise ValueError(f"{what} must be one of {', '.join(valid)}, got {value!r}")


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s message, or its type's name when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def torch_load_reason(exc: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` failed, in a few words (torch's own message advises
    loading without ``weights_only``, which would run any code the file holds)."""
    text = str(exc)
    if isinstance(exc, EOFError) or not text.strip():
        return "the file is empty or cut short"
    if "WeightsUnpickler error" in text:
        detail = text.split("WeightsUnpickler error:", 1)[1].strip().split("\n")[0].strip()
        return f"not a torch file of tensors ({detail}); code in a file is never run"
    return first_line(exc)[:200]


def describe_os_error(exc: OSError) -> str:
    """One line for a file-system error: what failed, on which path."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    where = f" {exc.filename}" if exc.filename else ""
    hint = {28: "; free space and resume with --resume",
            30: "; choose a writable folder with -o",
            13: "; choose a folder you may write with -o"}.get(exc.errno or 0, "")
    return f"{reason}:{where}{hint}" if where else f"{reason}{hint}"


# --- run folders -------------------------------------------------------------------------------

RUN_FILES = ("config.json", "results.json", "metrics.csv", "checkpoints")
"""What makes a folder a run folder (and what ``overwrite`` removes)."""


def is_run_folder(path: Path) -> bool:
    return any((path / name).exists() for name in RUN_FILES)


def prepare_out(path: Path, overwrite: bool) -> None:
    """Check that ``path`` may become a new run folder; with ``overwrite``, empty an old one.

    Call while holding :func:`lock_run_folder`, so that two runs started at once into the same
    folder cannot both pass the check.
    """
    if is_run_folder(path):
        if not overwrite:
            raise UserError(f"{path} already holds a run (config.json, results.json or "
                            "checkpoints); continue it with --resume, pick another -o, or pass "
                            "--overwrite to replace it")
        import shutil

        for name in RUN_FILES:
            target = path / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    remove_temporary_files(path)


def check_out_path(path: Path) -> None:
    """A run folder path that exists as a file, or cannot be created, is refused early."""
    if path.exists() and not path.is_dir():
        raise UserError(f"-o {path} is an existing file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create run folder {path}: {describe_os_error(exc)}") from exc


def remove_temporary_files(path: Path) -> list[Path]:
    """Delete the ``.NAME.*.tmp`` files a killed write left behind; return them."""
    found = [p for folder in (path, path / "checkpoints") if folder.is_dir()
             for p in folder.glob(".*.tmp") if p.is_file()]
    for p in found:
        p.unlink(missing_ok=True)
    return found


@contextlib.contextmanager
def lock_run_folder(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the run folder while writing it.

    ``flock`` on the folder itself: the kernel releases it when the process ends, however it
    ends, so a killed run never leaves a stale lock behind, and no lock file litters the folder.
    A second writer gets a :class:`UserError` at once instead of waiting.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no locking
        yield
        return
    check_out_path(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"run folder {path} is being written by another neurosculpt "
                            "process; wait for it to finish or choose another -o") from None
        yield
    finally:
        os.close(fd)  # releases the lock


# --- run-level settings ------------------------------------------------------------------------


def parse_seeds(text: str, seed: int | None) -> list[int]:
    """``--seeds 0,1,2``; refuses ``--seed`` beside it, duplicates and non-integers."""
    if seed is not None:
        raise UserError(f"--seed {seed} and --seeds {text} both given; use one (--seeds "
                        "runs one folder per seed)")
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise UserError(f"--seeds {text!r}: expected comma-separated integers such as 0,1,2")
    seeds = []
    for part in parts:
        try:
            value = int(part)
        except ValueError:
            raise UserError(f"--seeds {text!r}: {part!r} is not an integer") from None
        if value < 0:
            raise UserError(f"--seeds {text!r}: seeds must be >= 0, got {value}")
        seeds.append(value)
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise UserError(f"--seeds {text!r} repeats {', '.join(map(str, repeated))}: each seed "
                        "gets one run folder")
    return seeds


RESUME_FLAGS_KEPT = ("resume", "quiet", "no_progress", "plugin", "device")
"""``run`` options that make sense beside ``--resume`` (``--plugin`` provides the code of a
strategy the run names, ``--device`` moves the run); every other option would be ignored, so
it is refused."""


def check_resume_flags(args: object, defaults: dict) -> None:
    """Refuse ``--resume RUN`` with options that would be ignored (the run's settings come from
    its ``config.json``). ``defaults``: the ``run`` parser's values when no option is given."""
    given = [key for key, value in vars(args).items()
             if key in defaults and key not in RESUME_FLAGS_KEPT and value != defaults[key]]
    if given:
        flags = ", ".join("--" + key.replace("_", "-") for key in sorted(given))
        raise UserError(f"--resume {args.resume} continues the run with the settings "
                        f"of its config.json; {flags} would be ignored: drop "
                        f"{'it' if len(given) == 1 else 'them'}, or start a new run with -o")


def check_run_folders(outs: Sequence[Path], overwrite: bool) -> None:
    """Refuse, before anything trains, run folders that are files or hold a run already."""
    for out in outs:
        if out.exists() and not out.is_dir():
            raise UserError(f"-o {out} is an existing file, not a folder")
        if not overwrite and out.is_dir() and is_run_folder(out):
            prepare_out(out, overwrite=False)  # raises, naming the folder


def config_differences(saved: dict, current: dict, ignore: Sequence[str] = ()) -> list[str]:
    """``key: saved -> current`` for every key whose value differs between two configs (nested
    tables by dotted key: ``model_params.hidden``)."""
    out = []
    for k in sorted((set(saved) | set(current)) - set(ignore)):
        a, b = saved.get(k), current.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{k}.{d}" for d in config_differences(a, b)]
        elif a != b:
            out.append(f"{k}: {a!r} -> {b!r}")
    return out


# --- training that learns nothing --------------------------------------------------------------


CHANCE_MIN_STEPS = 20
"""Tasks trained for fewer optimizer steps are not judged by :func:`chance_warning`."""


def chance_warning(record: dict, allowed_outputs: int, n_test: int) -> str | None:
    """A warning when task ``record`` ended at chance level: the last training phase's accuracy
    and the test accuracy both within noise of ``1 / allowed_outputs`` after at least
    ``CHANCE_MIN_STEPS`` steps (a learning rate far too high trains to chance without a NaN)."""
    if allowed_outputs < 2 or record.get("accuracy") is None or not record.get("train"):
        return None
    chance = 1.0 / allowed_outputs
    noise = 2.0 * math.sqrt(chance * (1.0 - chance) / max(n_test, 1))
    train = record["train"][-1]
    if sum(phase.get("steps", 0) for phase in record["train"]) < CHANCE_MIN_STEPS:
        return None  # too short to tell
    if record["accuracy"] > chance + max(noise, 0.02) or train["train_acc"] > chance + 0.05:
        return None
    loss = train["loss"]
    return (f"task {record['task']} ({record['name']}) stayed at chance: test accuracy "
            f"{record['accuracy']:.3f}, training accuracy {train['train_acc']:.3f}, chance "
            f"{chance:.3f}, mean loss {loss:.3g} (ln {allowed_outputs} = "
            f"{math.log(allowed_outputs):.3g}); a learning rate too high (--lr) or too few "
            "steps are the usual causes")
