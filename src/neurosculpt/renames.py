"""Names that changed, in one place, so that what a user already has keeps working.

The structural element strategies grow, remove and reinitialise is a *unit*
(docs/architecture.md); parameters and ``results.json`` keys that called it a neuron were
renamed. Old strategy parameters (``-p max_neurons=...``, config files, ``strategy_params``,
the config of a resumed run folder) are mapped by :func:`renamed_parameters`, with a one-line
warning; records written before the rename (``results.json``, a checkpoint's run config and
task history) are upgraded when read by :func:`upgrade_results` and :func:`upgrade_checkpoint`.
Old Python names (``neuron_scores``, ``PlasticLayer.live_neurons``) still work, with a warning
(:func:`renamed_attribute`, :func:`deprecated_name`).
"""

from __future__ import annotations

import inspect
from collections.abc import Collection

from .validation import UserError, warn

PARAMETERS = {"max_neurons": "max_units", "min_neurons": "min_units",
              "keep_neurons": "keep_units"}
"""Strategy parameters: old name -> new name."""

TASK_KEYS = {"neurons": "units"}
"""Keys of a ``tasks[k]`` record of ``results.json``."""
STRUCTURE_KEYS = {"neurons": "units", "live_neurons": "live_units"}
"""Keys of a phase of ``tasks[k]["structure"]``."""
SIGNAL_KEYS = {"neurons": "units", "free_neurons": "headroom"}
"""Keys of a layer of a ``tasks[k]["plasticity"]["signals"]`` snapshot."""
DECISION_KEYS = {"neurons": "units"}
"""Keys of ``why`` of a ``tasks[k]["plasticity"]["decisions"]`` entry."""
EVENT_KEYS = {"develop": {"removed_neurons": "removed_units"},
              "dsd": {"pruned_neurons": "pruned_units"}}
"""Keys of a strategy's own entry of a task record, per strategy."""
# the per-layer "neurons" of tasks[k]["energy"] count neuron populations (a convolution's
# positions too), not units: that name is right and stays

ATTRIBUTES = {"neuron_scores": "unit_scores", "NEURON_SCORES": "UNIT_SCORES"}
"""Module-level Python names: old -> new."""


def renamed_parameters(owner: str, params: dict, accepted: Collection[str]) -> dict:
    """``params`` with every old name of an ``accepted`` parameter replaced by the new one,
    warning once per old name. A name the owner itself accepts (a user's strategy with its own
    ``max_neurons``) is left alone."""
    out: dict = {}
    for key, value in params.items():
        new = PARAMETERS.get(key)
        if new is not None and new in accepted and key not in accepted:
            if new in params:
                raise UserError(f"{owner}: {key!r} and {new!r} both given; {key!r} is the old "
                                f"name of {new!r}, give only {new!r}")
            warn(f"{owner}: parameter {key!r} is now called {new!r}; the old name still works "
                 "but is deprecated")
            key = new
        out[key] = value
    return out


def _rename(record: object, keys: dict[str, str]) -> None:
    """Rename ``keys`` of the dict ``record`` in place, keeping the order of its keys."""
    if not isinstance(record, dict) or not any(old in record for old in keys):
        return
    items = []
    for key, value in record.items():
        new = keys.get(key)
        items.append((new if new is not None and new not in record else key, value))
    record.clear()
    record.update(items)


def _dicts(value: object) -> list[dict]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def upgrade_task_record(record: dict) -> dict:
    """A ``tasks[k]`` record of ``results.json`` with the current key names (in place). Only
    records written before the rename are touched (every record since has ``units``), so a
    user's strategy's own keys in a new record are never renamed."""
    if not isinstance(record, dict) or "neurons" not in record or "units" in record:
        return record
    _rename(record, TASK_KEYS)
    structure = record.get("structure")
    if isinstance(structure, dict):
        for phase in structure.values():
            _rename(phase, STRUCTURE_KEYS)
    plasticity = record.get("plasticity")
    if isinstance(plasticity, dict):
        for snapshot in _dicts(plasticity.get("signals")):
            for layer in _dicts(snapshot.get("layers")):
                _rename(layer, SIGNAL_KEYS)
        for decision in _dicts(plasticity.get("decisions")):
            _rename(decision.get("why"), DECISION_KEYS)
    for strategy, keys in EVENT_KEYS.items():
        _rename(record.get(strategy), keys)
    return record


def _accepted(strategy: str) -> Collection[str] | None:
    """Parameter names of strategy ``strategy``, None if it is not known in this process (a
    plugin not loaded): its section is then left as written."""
    from .strategies import REGISTRY, strategy_class

    if strategy not in REGISTRY:
        return None
    return inspect.signature(strategy_class(strategy).__init__).parameters


def upgrade_config(config: dict) -> dict:
    """A resolved run config (``config.json``, ``results.json``'s ``config``, a checkpoint's
    ``run_config``) with the current strategy parameter names (in place, silently: it
    describes a run, it is no new input)."""
    sections = config.get("strategy_params") if isinstance(config, dict) else None
    if not isinstance(sections, dict):
        return config
    for name, params in sections.items():
        if not (isinstance(params, dict) and any(old in params for old in PARAMETERS)):
            continue
        accepted = _accepted(name)
        if accepted is not None:
            _rename(params, {old: new for old, new in PARAMETERS.items()
                             if new in accepted and old not in accepted})
    return config


def upgrade_results(results: dict) -> dict:
    """``results.json`` as read, with the current key names (in place)."""
    upgrade_config(results.get("config"))
    for record in _dicts(results.get("tasks")):
        upgrade_task_record(record)
    return results


def upgrade_checkpoint(state: dict) -> dict:
    """A checkpoint's run config and task history with the current names (in place)."""
    upgrade_config(state.get("run_config"))
    learner = state.get("learner")
    if isinstance(learner, dict):
        for record in _dicts(learner.get("tasks")):
            upgrade_task_record(record)
    return state


def deprecated_name(old: str, new: str) -> None:
    """The one-line warning for a Python name used under its old spelling."""
    warn(f"{old} is now called {new}; the old name still works but is deprecated")


def renamed_attribute(module: str, name: str, names: dict) -> object:
    """For a module's ``__getattr__``: the new object under an old name, with a warning."""
    new = ATTRIBUTES.get(name)
    if new is None or new not in names:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    deprecated_name(f"{module}.{name}", new)
    return names[new]
