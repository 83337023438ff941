"""What a strategy's parameters are: name, default, meaning and the values tuned in the docs.

Meanings come from the ``Args:`` section of each strategy's class docstring (one entry per
constructor parameter, ``name: meaning`` with indented continuation lines), so the text a
developer reads in the source is the text ``neurosculpt list STRATEGY`` prints.
"""

from __future__ import annotations

import inspect
import re

# Hyper-parameter values in the tables of docs/results.md ("Continual-learning baselines
# (spiking MLP)", column "hyper-parameter"; chosen on validation splits as described there),
# per strategy, parameter and table ("benchmark/scenario"). Copied once from that file; the test
# suite checks the two agree.
TUNED: dict[str, dict[str, dict[str, float]]] = {
    "ewc": {"lam": {
        "split-fmnist/task": 1e5, "split-fmnist/class": 1e5, "permuted-fmnist-10/task": 1e5,
        "permuted-fmnist-50/task": 1e5, "fsdd-speakers/domain": 1e4, "fsdd-speakers/task": 1e4}},
    "online-ewc": {"lam": {
        "split-fmnist/task": 1e5, "split-fmnist/class": 1e5, "permuted-fmnist-10/task": 1e5,
        "fsdd-speakers/domain": 100.0, "fsdd-speakers/task": 1e4}},
    "si": {"c": {
        "split-fmnist/task": 10.0, "split-fmnist/class": 100.0, "permuted-fmnist-10/task": 10.0,
        "permuted-fmnist-50/task": 10.0, "fsdd-speakers/domain": 0.1, "fsdd-speakers/task": 10.0}},
    "mas": {"lam": {
        "split-fmnist/task": 1.0, "split-fmnist/class": 10.0, "permuted-fmnist-10/task": 10.0,
        "fsdd-speakers/domain": 0.1, "fsdd-speakers/task": 10.0}},
    "lwf": {"alpha": {
        "split-fmnist/task": 2.0, "split-fmnist/class": 2.0, "permuted-fmnist-10/task": 1.0,
        "fsdd-speakers/domain": 1.0, "fsdd-speakers/task": 2.0}},
    "packnet": {"prune_ratio": {
        "split-fmnist/task": 0.5, "split-fmnist/class": 0.5, "permuted-fmnist-10/task": 0.5,
        "permuted-fmnist-50/task": 0.5, "fsdd-speakers/domain": 0.5, "fsdd-speakers/task": 0.5}},
    "develop": {
        "recover_lr": {
            "split-fmnist/task": 1.0, "split-fmnist/class": 1.0, "permuted-fmnist-10/task": 3.0,
            "permuted-fmnist-50/task": 10.0, "fsdd-speakers/domain": 3.0,
            "fsdd-speakers/task": 10.0},
        "keep": {"permuted-fmnist-50/task": 0.05},
        "budget": {"permuted-fmnist-50/task": 0.5},
        "keep_output": {"permuted-fmnist-50/task": 0.5},
    },
}

_ENTRY = re.compile(r"^(\*{0,2}\w+)\s*(\([^)]*\))?\s*:\s*(.*)$")


def docstring_args(cls: type) -> dict[str, str]:
    """``{parameter: meaning}`` from the ``Args:`` section of ``cls``'s docstring."""
    doc = inspect.cleandoc(cls.__doc__ or "")
    lines = doc.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Args:")
    except StopIteration:
        return {}
    out: dict[str, str] = {}
    indent: int | None = None
    current: str | None = None
    for line in lines[start + 1:]:
        if not line.strip():
            continue
        depth = len(line) - len(line.lstrip())
        if indent is None:
            indent = depth
        if depth < indent:
            break
        match = _ENTRY.match(line.strip()) if depth == indent else None
        if match:
            current = match.group(1)
            out[current] = match.group(3).strip()
        elif current is not None:
            out[current] = f"{out[current]} {line.strip()}".strip()
    return out


def parameters(name: str) -> list[dict]:
    """Each constructor parameter of strategy ``name``: ``name``, ``default``, ``doc`` (its
    meaning, None if undocumented) and ``tuned`` (``{"benchmark/scenario": value}`` from
    docs/results.md, empty when that table has none)."""
    from . import strategy_class

    cls = strategy_class(name)
    docs = docstring_args(cls)
    tuned = TUNED.get(name, {})
    out = []
    for param in list(inspect.signature(cls.__init__).parameters.values())[1:]:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        default = None if param.default is inspect.Parameter.empty else param.default
        out.append({"name": param.name, "default": default, "doc": docs.get(param.name),
                    "tuned": dict(tuned.get(param.name, {}))})
    return out


def describe(name: str) -> str:
    """Text ``neurosculpt list STRATEGY`` prints: the strategy's summary, then every parameter
    with its default, meaning and tuned values."""
    from . import strategy_class

    cls = strategy_class(name)
    summary = inspect.cleandoc(cls.__doc__ or "").split("\n\n")[0].replace("\n", " ")
    lines = [f"{name}: {summary}"]
    params = parameters(name)
    if not params:
        lines.append("no parameters")
    for p in params:
        lines.append(f"  {p['name']} = {p['default']!r}")
        lines.append(f"      {p['doc'] or '(undocumented)'}")
        if p["tuned"]:
            values = ", ".join(f"{k} {v:g}" for k, v in p["tuned"].items())
            lines.append(f"      tuned (docs/results.md): {values}")
    lines.append(f"set with -p KEY=VALUE, or [strategy_params.{name}] in a --config file")
    return "\n".join(lines)
