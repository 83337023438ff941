"""Continual-learning strategies, one file per method, all plugging into the one loop.

``make_strategies("replay+ewc", {"ewc": {"lam": 100}})`` composes several by name.
"""

from __future__ import annotations

import importlib
import inspect

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
}


def register(cls: type[Strategy], name: str | None = None) -> type[Strategy]:
    """Make a user-defined strategy available by name to ``run`` and the CLI.

    Usable as a decorator: ``@register`` on a ``Strategy`` subclass with a ``name``.
    """
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise TypeError(f"{cls!r} is not a subclass of neurosculpt.strategies.Strategy")
    REGISTRY[name or cls.name] = cls
    return cls


def available() -> list[str]:
    """Names whose implementation exists in this installation."""
    names = []
    for name, target in REGISTRY.items():
        if isinstance(target, type):
            names.append(name)
        elif importlib.util.find_spec(f"{__name__}.{target.split(':')[0]}") is not None:
            names.append(name)
    return names


def strategy_class(name: str) -> type[Strategy]:
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
    params = dict(params or {})
    signature = inspect.signature(cls.__init__).parameters
    accepted = [p for p in signature if p != "self"]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(
            f"strategy {name!r} has no parameter(s) {unknown}; valid: {', '.join(accepted)}"
        )
    defaults = {k: p.default for k, p in signature.items() if p.default is not p.empty}
    check_parameters(f"strategy {name!r}", defaults, params, "the strategy parameters (-p)")
    return cls(**params)


def make_strategies(spec: str, params: dict | None = None) -> list[Strategy]:
    """Compose strategies from ``"a+b"``; ``params`` maps each name to its keyword arguments,
    or, for a single strategy, may hold its keyword arguments directly."""
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
    if stray:
        raise ValueError(
            f"parameters for {stray} given, but {spec!r} does not include "
            f"{'it' if len(stray) == 1 else 'them'}; strategies in the spec: {', '.join(names)}"
        )
    if params and len(names) > 1:
        raise ValueError(
            f"parameters {sorted(params)} are ambiguous for {spec!r}: "
            "prefix them with the strategy name, e.g. ewc.lam=100"
        )
    if params:
        nested[names[0]] = {**nested.get(names[0], {}), **params}
    return [make_strategy(n, nested.get(n)) for n in names]


__all__ = ["REGISTRY", "Naive", "Strategy", "available", "hyper_parameters", "make_strategies",
           "make_strategy", "register", "strategy_class"]
