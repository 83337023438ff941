"""The decoded-array cache: reused while the source is unchanged, rebuilt when it changes."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from neurosculpt.data import cache, load_mnist, read_idx


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(gzip.compress(header + array.tobytes()))


@pytest.fixture
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NEUROSCULPT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("NEUROSCULPT_DATA_CACHE", raising=False)
    return tmp_path / "cache" / "decoded"


def test_second_read_comes_from_the_cache(tmp_path: Path, private_cache: Path) -> None:
    source = tmp_path / "a-idx1-ubyte.gz"
    _write_idx(source, np.arange(7, dtype=np.uint8))
    calls = []

    def decode(path: Path) -> np.ndarray:
        calls.append(path)
        return read_idx(path)

    first = cache.cached_array(source, decode)
    second = cache.cached_array(source, decode)
    assert len(calls) == 1
    np.testing.assert_array_equal(first, second)
    assert len(list(private_cache.glob("*.npy"))) == 1


def test_changed_source_is_decoded_again(tmp_path: Path, private_cache: Path) -> None:
    source = tmp_path / "a-idx1-ubyte.gz"
    _write_idx(source, np.arange(7, dtype=np.uint8))
    cache.cached_array(source, read_idx)
    _write_idx(source, np.arange(9, dtype=np.uint8))  # new size
    np.testing.assert_array_equal(cache.cached_array(source, read_idx), np.arange(9))
    _write_idx(source, np.arange(1, 10, dtype=np.uint8))  # same size: the mtime tells
    stat = source.stat()
    os.utime(source, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    np.testing.assert_array_equal(cache.cached_array(source, read_idx), np.arange(1, 10))


def test_damaged_entry_and_switch_off(tmp_path: Path, private_cache: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "a-idx1-ubyte.gz"
    _write_idx(source, np.arange(5, dtype=np.uint8))
    cache.cached_array(source, read_idx)
    (entry,) = private_cache.glob("*.npy")
    entry.write_bytes(b"garbage")
    np.testing.assert_array_equal(cache.cached_array(source, read_idx), np.arange(5))
    monkeypatch.setenv("NEUROSCULPT_DATA_CACHE", "0")
    calls = []
    cache.cached_array(source, lambda p: calls.append(p) or read_idx(p))
    assert calls


def test_unwritable_cache_still_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("NEUROSCULPT_CACHE", str(blocker))
    source = tmp_path / "a-idx1-ubyte.gz"
    _write_idx(source, np.arange(3, dtype=np.uint8))
    np.testing.assert_array_equal(cache.cached_array(source, read_idx), np.arange(3))


def test_loader_uses_the_cache(tmp_path: Path, private_cache: Path) -> None:
    rng = np.random.default_rng(0)
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name, shape in (("train-images-idx3-ubyte", (6, 28, 28)), ("train-labels-idx1-ubyte", (6,)),
                        ("t10k-images-idx3-ubyte", (4, 28, 28)), ("t10k-labels-idx1-ubyte", (4,))):
        _write_idx(folder / f"{name}.gz", rng.integers(0, 10, shape, dtype=np.uint8))
    first, _ = load_mnist(folder)
    assert len(list(private_cache.glob("*.npy"))) == 4
    again, _ = load_mnist(folder)
    assert (first.x == again.x).all() and (first.y == again.y).all()
