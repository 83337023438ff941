"""Small C libraries compiled on first use: the fused LIF time loop (:mod:`.kernels`) and the
event-driven inference pass (:mod:`.sparse`).

Each library is built once per (source, flags, compiler, CPU) into the cache folder
(``NEUROSCULPT_CACHE_DIR``, else ``$XDG_CACHE_HOME/neurosculpt`` or ``~/.cache/neurosculpt``) with
``-march=native`` when the compiler accepts it, and without otherwise. Without a working C
compiler, or with ``NEUROSCULPT_COMPILE=0``, :meth:`NativeLibrary.load` returns ``None`` and the
caller runs its torch fallback (with a warning when a build failed).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

STRICT_FLOAT = ["-O3", "-ffp-contract=off", "-fno-fast-math"]


def cpu_signature() -> str:
    """Identify the CPU so a ``-march=native`` build is never reused on a different machine."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    lines = [ln for ln in text.splitlines() if ln.startswith(("model name", "flags", "Features"))]
    return "\n".join(sorted(set(lines)))


def cache_dir() -> Path:
    """Where built libraries live; ``NEUROSCULPT_CACHE_DIR`` overrides ``~/.cache/neurosculpt``."""
    root = os.environ.get("NEUROSCULPT_CACHE_DIR")
    if root:
        return Path(root)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "neurosculpt"


def build_library(stem: str, source: str, compiler: str, flags: Sequence[str] = (),
                  libraries: Sequence[str] = ()) -> Path:
    """Compile ``source`` into ``<cache>/<stem>_<hash>.so`` unless that file exists; the file
    appears atomically, so concurrent processes never load a half-written library."""
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    errors = []
    for arch in (["-march=native"], []):
        attempt = [*STRICT_FLOAT, *arch, *flags]
        key = "\0".join([source, " ".join(attempt), compiler, platform.machine(), cpu_signature()])
        target = cache / f"{stem}_{hashlib.sha256(key.encode()).hexdigest()[:20]}.so"
        if target.exists():
            return target
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            src, out = Path(tmp) / f"{stem}.c", Path(tmp) / f"{stem}.so"
            src.write_text(source)
            cmd = [compiler, *attempt, "-shared", "-fPIC", str(src), "-o", str(out), *libraries]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
            if proc.returncode == 0:
                os.replace(out, target)
                return target
            errors.append(proc.stderr.strip())
    raise RuntimeError("\n".join(errors))


class NativeLibrary:
    """A C library built and loaded once per process, thread-safely.

    ``declare`` sets the ``restype``/``argtypes`` of the loaded functions; ``what`` and
    ``fallback`` name the library and the torch path used instead in the warning.
    """

    def __init__(self, stem: str, source: str, declare: Callable[[ctypes.CDLL], None],
                 what: str, fallback: str, flags: Sequence[str] = (),
                 libraries: Sequence[str] = ()) -> None:
        self.stem, self.source, self.declare = stem, source, declare
        self.what, self.fallback = what, fallback
        self.flags, self.libraries = list(flags), list(libraries)
        self._lock = threading.Lock()
        self._loaded: dict[str, ctypes.CDLL | None] = {}

    def load(self) -> ctypes.CDLL | None:
        """The library, or ``None`` when disabled or when no working C compiler exists."""
        if os.environ.get("NEUROSCULPT_COMPILE", "1") == "0":
            return None
        with self._lock:
            if "lib" in self._loaded:
                return self._loaded["lib"]
            lib = None
            compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
            try:
                if compiler is None:
                    raise RuntimeError("no C compiler found")
                lib = ctypes.CDLL(str(build_library(self.stem, self.source, compiler,
                                                    self.flags, self.libraries)))
                self.declare(lib)
            except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
                warnings.warn(f"neurosculpt: {self.what} unavailable, using {self.fallback} "
                              f"({exc})", RuntimeWarning, stacklevel=3)
                lib = None
            self._loaded["lib"] = lib
            return lib

    def forget(self) -> None:
        """Drop the loaded library so the next :meth:`load` decides again (for tests)."""
        with self._lock:
            self._loaded.clear()
