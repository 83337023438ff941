"""Continual-learning strategies, one file per method, all plugging into the one loop.

``make_strategies("replay+ewc", {"ewc": {"lam": 100}})`` composes several by name. A user's
strategy joins the registry through :func:`register`, a plugin (:func:`load_plugin`, the CLI's
``--plugin``) or an installed package's ``neurosculpt.strategies`` entry point.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
from collections.abc import Callable

from ..renames import renamed_parameters
from ..validation import check_parameters, unknown_name
from .base import Naive, Strategy, hyper_parameters

# name -> "module:Class", imported on demand so a newcomer can open one file per method;
# strategies defined outside the package are registered as classes (:func:`register`)
REGISTRY: dict[str, str | type[Strategy]] = {
    "naive": "base:Naive",
    "joint": "joint:Joint",
    "ewc": "ewc:EWC",
    "online-ewc": "ewc:OnlineEWC",
    "si": "si:SI",
    "mas": "mas:MAS",
    "lwf": "lwf:LwF",
    "replay": "replay:Replay",
    "packnet": "packnet:PackNet",
    "develop": "develop:Develop",
    "dsd": "dsd:DSD",
    "dropin": "dropin:Dropin",
    "cbp": "cbp:ContinualBackprop",
    "redo": "redo:ReDo",
    "shrink-perturb": "shrink_perturb:ShrinkPerturb",
    "l2-init": "l2_init:L2Init",
    "neuroplastic": "neuroplastic:Neuroplastic",
    "task-inference": "task_inference:TaskInference",
}


def register(cls: type[Strategy], name: str | None = None) -> type[Strategy]:
    """Make a user-defined strategy available by name to ``run`` and the CLI.

    Usable as a decorator: ``@register`` on a ``Strategy`` subclass with a ``name``.
    """
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise TypeError(f"{cls!r} is not a subclass of neurosculpt.strategies.Strategy")
    name = name or cls.__dict__.get("name")
    if not name:  # an inherited name would silently replace the parent's registration
        raise TypeError(f"{cls.__name__} needs its own `name` class attribute to be registered")
    REGISTRY[name] = cls
    return cls


ENTRY_POINT_GROUP = "neurosculpt.strategies"
_entry_points_loaded = False


def load_entry_points() -> None:
    """Register the strategies installed packages declare in the ``neurosculpt.strategies``
    entry point group (``name = "package.module:Class"``; a module entry is imported so that
    its ``@register`` decorators run). Read once per process."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            target = entry.load()
        except Exception as err:
            raise ValueError(f"strategy entry point {entry.name!r} ({entry.value}) failed to "
                             f"load: {type(err).__name__}: {err}") from err
        if isinstance(target, type):
            register(target, entry.name)


def load_plugin(spec: str) -> list[str]:
    """Import a user's strategies: ``path/file.py`` or ``package.module`` (its ``@register``
    decorators run), or ``file.py:Class`` / ``module:Class`` (registered under ``Class.name``).
    Returns the names it added."""
    from ..loading import load_module, load_object

    if ":" in spec:
        target = load_object(spec, "strategy plugin")
        if not (isinstance(target, type) and issubclass(target, Strategy)):
            raise ValueError(f"strategy plugin {spec!r} is not a subclass of "
                             "neurosculpt.strategies.Strategy")
        try:
            register(target)
        except TypeError as err:
            raise ValueError(f"strategy plugin {spec!r}: {err}") from None
        return [target.__dict__["name"]]
    module = load_module(spec, "strategy plugin")
    added = sorted(name for name, target in REGISTRY.items()
                   if isinstance(target, type) and target.__module__ == module.__name__)
    if not added:
        raise ValueError(f"strategy plugin {spec!r} registered no strategy: decorate its "
                         "Strategy subclass with @neurosculpt.strategies.register")
    return added


def available() -> list[str]:
    """Names whose implementation exists in this installation."""
    load_entry_points()
    names = []
    for name, target in REGISTRY.items():
        if isinstance(target, type):
            names.append(name)
        elif importlib.util.find_spec(f"{__name__}.{target.split(':')[0]}") is not None:
            names.append(name)
    return names


def strategy_class(name: str) -> type[Strategy]:
    """The class registered as ``name`` (built-in, registered, plugin or entry point)."""
    valid = available()
    if name not in valid:
        raise unknown_name("strategy", name, valid)
    target = REGISTRY[name]
    if isinstance(target, type):
        return target
    module, cls = target.split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)


def make_strategy(name: str, params: dict | None = None) -> Strategy:
    """Build strategy ``name`` with keyword ``params``; unknown parameters are named."""
    cls = strategy_class(name)
    signature = inspect.signature(cls.__init__).parameters
    accepted = [p for p in signature if p != "self"]
    params = renamed_parameters(f"strategy {name!r}", dict(params or {}), accepted)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(
            f"strategy {name!r} has no parameter(s) {unknown}; valid: {', '.join(accepted)}"
        )
    # a number default whose annotation also admits a word (fisher_samples=all) is checked by
    # the strategy itself
    defaults = {k: p.default for k, p in signature.items() if p.default is not p.empty
                and not (isinstance(p.default, (int, float)) and "str" in str(p.annotation))}
    check_parameters(f"strategy {name!r}", defaults, params, "the strategy parameters (-p)")
    strategy = cls(**params)
    if not hasattr(strategy, "hparams"):  # a user's strategy: record what it was built with
        strategy.hparams = params
    return strategy


def make_strategies(spec: str, params: dict | None = None,
                    log: Callable[[str], None] | None = None) -> list[Strategy]:
    """Compose strategies from ``"a+b"``; ``params`` maps each name to its keyword arguments,
    or, for a single strategy, may hold its keyword arguments directly.

    Sections for other known strategies are ignored (and ``log`` says so): one config file may
    carry the parameters of every strategy a sweep uses. A section for a name that is no
    strategy at all is an error, as is an unknown parameter of a strategy in use.
    """
    names = [n.strip() for n in spec.split("+")]
    if not any(names):
        raise ValueError("empty strategy name")
    if not all(names):
        raise ValueError(f"strategy {spec!r} has an empty part: join names with one + "
                         "(e.g. replay+ewc)")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"strategy {spec!r} names {', '.join(repeated)} twice")
    params = dict(params or {})
    nested = {n: params.pop(n) for n in names if isinstance(params.get(n), dict)}
    stray = sorted(k for k, v in params.items() if isinstance(v, dict))
    unknown = [k for k in stray if k not in available()]
    if unknown:
        raise ValueError(
            f"parameters for {unknown} given, but {'it is' if len(unknown) == 1 else 'they are'}"
            f" no strategy; strategies in {spec!r}: {', '.join(names)}; known strategies: "
            f"{', '.join(available())}"
        )
    for key in stray:
        params.pop(key)
    if stray and log is not None:
        log(f"strategy parameters for {', '.join(stray)} ignored: {spec!r} does not use "
            f"{'it' if len(stray) == 1 else 'them'}")
    if params and len(names) > 1:
        raise ValueError(
            f"parameters {sorted(params)} are ambiguous for {spec!r}: "
            "prefix them with the strategy name, e.g. ewc.lam=100"
        )
    if params:
        nested[names[0]] = {**nested.get(names[0], {}), **params}
    return [make_strategy(n, nested.get(n)) for n in names]


from .describe import describe, parameters  # noqa: E402  (needs strategy_class above)

__all__ = ["ENTRY_POINT_GROUP", "REGISTRY", "Naive", "Strategy", "available", "describe",
           "hyper_parameters", "load_entry_points", "load_plugin", "make_strategies",
           "make_strategy", "parameters", "register", "strategy_class"]
