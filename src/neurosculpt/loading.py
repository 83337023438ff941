"""Load a user's object (a model factory, a benchmark factory, a strategy plugin) named on the
command line: ``path/to/file.py:name`` or ``package.module:name``.

The one loader every ``--model``, ``--benchmark`` and ``--plugin`` spec goes through, so that the
same spec means the same thing everywhere and a mistake gets the same one-line error.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def is_spec(text: str) -> bool:
    """Whether ``text`` names a user object (``file.py:name`` / ``module:name``) rather than a
    built-in name such as ``snn-mlp``."""
    return ":" in text or text.endswith(".py")


def load_module(source: str, what: str = "module") -> ModuleType:
    """Import ``source``: a path to a ``.py`` file or a dotted module name.

    A file is imported under a name derived from its resolved path, so two files with the same
    base name do not collide and importing the same file twice returns the same module.
    """
    if source.endswith(".py") or "/" in source or "\\" in source:
        path = Path(source).expanduser()
        if not path.is_file():
            raise ValueError(f"{what} file {source!r} does not exist")
        resolved = path.resolve()
        digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:8]
        name = f"neurosculpt_user_{resolved.stem}_{digest}"
        if name in sys.modules:
            return sys.modules[name]
        spec = importlib.util.spec_from_file_location(name, resolved)
        if spec is None or spec.loader is None:
            raise ValueError(f"{what} file {source!r} cannot be imported as Python")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as err:
            del sys.modules[name]
            raise ValueError(f"{what} file {source!r} failed to import: "
                             f"{type(err).__name__}: {err}") from err
        return module
    try:
        return importlib.import_module(source)
    except ImportError as err:
        raise ValueError(f"{what} module {source!r} cannot be imported: {err}") from err


def load_object(spec: str, what: str = "object") -> object:
    """The object named by ``spec`` (``path/to/file.py:name`` or ``package.module:name``).

    ``what`` names the kind of object in error messages (``"model factory"``, ...).
    """
    source, sep, attr = spec.rpartition(":")
    if not sep or not source or not attr:
        raise ValueError(
            f"{what} {spec!r}: expected 'path/to/file.py:name' or 'package.module:name'"
        )
    module = load_module(source, what)
    try:
        return getattr(module, attr)
    except AttributeError:
        public = sorted(n for n in vars(module) if not n.startswith("_"))
        raise ValueError(f"{what} {spec!r}: {source!r} has no attribute {attr!r}; "
                         f"it defines {', '.join(public[:12]) or 'nothing public'}") from None
