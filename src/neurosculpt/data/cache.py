"""Decoded arrays of data files, kept as ``.npy`` in the cache folder.

Decompressing Fashion-MNIST's gzip files takes most of a second (several under load) on every
run; reading the decoded array back from an ``.npy`` file takes a few milliseconds. An entry is
named after the source file's resolved path and is used only while the source's size and
modification time are those recorded with it, so an edited or replaced file is decoded again.

The folder is ``$NEUROSCULPT_CACHE/decoded`` (see :func:`neurosculpt.data.base.cache_dir`);
``NEUROSCULPT_DATA_CACHE=0`` turns the cache off. A folder that cannot be written (read-only
home, full disk) only costs the decoding time: the cache is never required.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .base import cache_dir

FORMAT = 1


def enabled() -> bool:
    return os.environ.get("NEUROSCULPT_DATA_CACHE", "1").strip().lower() not in ("0", "false",
                                                                                 "no", "off")


def _identity(source: Path) -> dict:
    stat = source.stat()
    return {"format": FORMAT, "path": str(source), "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns}


def _entry(source: Path) -> Path:
    digest = hashlib.sha1(str(source).encode()).hexdigest()[:16]
    return cache_dir("decoded") / f"{source.name}.{digest}"


def cached_array(path: str | Path, decode: Callable[[Path], np.ndarray]) -> np.ndarray:
    """``decode(path)``, or the array it returned before for the same unchanged file."""
    source = Path(path).resolve()
    if not enabled():
        return decode(source)
    entry = _entry(source)
    meta_file, array_file = entry.with_suffix(entry.suffix + ".json"), entry.with_suffix(
        entry.suffix + ".npy")
    identity = _identity(source)
    try:
        if json.loads(meta_file.read_text()) == identity:
            return np.load(array_file, allow_pickle=False)
    except (OSError, ValueError):
        pass  # no entry yet, or a damaged one: decode again and overwrite it
    array = decode(source)
    try:
        _write(array_file, lambda f: np.save(f, array, allow_pickle=False))
        _write(meta_file, lambda f: f.write(json.dumps(identity).encode()))
    except OSError:
        pass
    return array


def _write(path: Path, write: Callable) -> None:
    """Write to a temporary name and rename, so a concurrent run never reads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
