"""IDX files (the MNIST family's format) and the Fashion-MNIST / MNIST loaders built on them."""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .base import ArraySplit, DataError, cache_dir, env_dir
from .cache import cached_array
from .download import download_file

_IDX_DTYPES: dict[int, str] = {
    0x08: "u1",
    0x09: "i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}

TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"
IDX_FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)


def read_idx(path: str | Path, ndim: int | None = None) -> np.ndarray:
    """Read an IDX file, gzip-compressed or raw, into a native-endian array.

    Gzip is recognised by its magic bytes rather than the file name. The header's magic, dtype
    code and dimensions (``ndim`` when given: 1 for labels, 3 for images) are checked and the
    payload must have exactly the announced length, so a truncated or corrupt file raises
    :class:`DataError` naming it instead of yielding garbage.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read IDX file {path}: {exc}") from exc
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"IDX file {path} is not a valid gzip stream: {exc}") from exc
    if len(raw) < 4:
        raise DataError(f"IDX file {path} is too short ({len(raw)} bytes) to hold a header")
    expected_magic = (f"0x000008{ndim:02x} (unsigned bytes, {ndim} dimension"
                      f"{'s' if ndim != 1 else ''})" if ndim else "0x0000 + dtype + dimensions")
    if raw[:2] != b"\x00\x00":
        raise DataError(f"IDX file {path} has wrong magic number 0x{raw[:4].hex()}, expected "
                        f"{expected_magic}: not an IDX file")
    code, found_ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise DataError(f"IDX file {path} has wrong magic number 0x{raw[:4].hex()} (unknown "
                        f"dtype code 0x{code:02x}), expected {expected_magic}")
    if found_ndim == 0 or (ndim is not None and found_ndim != ndim):
        raise DataError(f"IDX file {path} has wrong magic number 0x{raw[:4].hex()} "
                        f"({found_ndim} dimensions), expected {expected_magic}")
    ndim = found_ndim
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"IDX file {path} is truncated inside its {ndim}-dimension header")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = math.prod(dims) * dtype.itemsize
    found = len(raw) - header
    if found != expected:
        what = "truncated" if found < expected else "longer than its header says"
        raise DataError(
            f"IDX file {path} is {what}: shape {dims} needs {expected} payload bytes, "
            f"found {found}"
        )
    data = np.frombuffer(raw, dtype=dtype, count=math.prod(dims), offset=header)
    return data.reshape(dims).astype(dtype.newbyteorder("="))


@dataclass(frozen=True)
class IdxSource:
    """Where one IDX data set may live and how to fetch it; replaceable in tests."""

    title: str
    folder: str
    env_var: str
    system_dirs: tuple[Path, ...]
    mirrors: tuple[str, ...]
    md5: dict[str, str]
    install_hint: str | None = None


FASHION_MNIST = IdxSource(
    title="Fashion-MNIST",
    folder="fashion-mnist",
    env_var="NEUROSCULPT_FMNIST",
    system_dirs=(Path("/usr/share/datasets/fashion-mnist"),),
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    md5={
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    install_hint="apt-get install dataset-fashion-mnist",
)

MNIST = IdxSource(
    title="MNIST",
    folder="mnist",
    env_var="NEUROSCULPT_MNIST",
    system_dirs=(Path("/usr/share/datasets/mnist"),),
    mirrors=("https://ossci-datasets.s3.amazonaws.com/mnist/",),
    md5={
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
)


def _files_in(folder: Path) -> tuple[dict[str, Path], list[str]]:
    """The four IDX files found in ``folder`` (``.gz`` preferred) and the names missing."""
    found: dict[str, Path] = {}
    missing: list[str] = []
    for base in IDX_FILES:
        for name in (f"{base}.gz", base):
            if (folder / name).is_file():
                found[base] = folder / name
                break
        else:
            missing.append(base)
    return found, missing


def _candidates(source: IdxSource, root: str | Path | None) -> list[tuple[str, Path | None]]:
    """Places to look, in order, each with a label for the error message.

    An explicit ``root`` is the only place searched: asking for a folder and silently getting
    data from elsewhere would be worse than an error.
    """
    if root is not None:
        folder = Path(root).expanduser()
        return [("root", folder), ("root", folder / source.folder)]
    data = env_dir("NEUROSCULPT_DATA")
    return [
        (f"${source.env_var}", env_dir(source.env_var)),
        (f"$NEUROSCULPT_DATA/{source.folder}", data / source.folder if data else None),
        *(("system", folder) for folder in source.system_dirs),
        ("cache", cache_dir(source.folder)),
    ]


def _fetch_missing(source: IdxSource, folder: Path, missing: list[str]) -> None:
    """Download the missing files into ``folder``, trying each mirror in turn."""
    for base in missing:
        name = f"{base}.gz"
        errors = []
        for mirror in source.mirrors:
            try:
                download_file(mirror + name, folder / name, md5=source.md5.get(name))
                break
            except DataError as exc:
                errors.append(str(exc))
        else:
            detail = "\n  ".join(errors)
            raise DataError(f"could not download {source.title} file {name}:\n  {detail}")


def _locate(source: IdxSource, root: str | Path | None, download: bool) -> dict[str, Path]:
    searched: list[str] = []
    for label, folder in _candidates(source, root):
        if folder is None:
            searched.append(f"{label}: not set")
            continue
        found, missing = _files_in(folder)
        if not missing:
            return found
        state = "no such folder" if not folder.is_dir() else "lacks " + ", ".join(missing)
        searched.append(f"{folder} ({label}): {state}")
    if download:
        target = Path(root).expanduser() if root is not None else cache_dir(source.folder)
        _fetch_missing(source, target, _files_in(target)[1])
        return _files_in(target)[0]
    hints = [f"`{source.install_hint}`"] if source.install_hint else []
    hints += [
        f"set {source.env_var} (or NEUROSCULPT_DATA/{source.folder}) to a folder holding "
        + ", ".join(f"{b}[.gz]" for b in IDX_FILES),
        "pass download=True when online",
    ]
    raise DataError(
        f"{source.title} not found. Searched:\n  - "
        + "\n  - ".join(searched)
        + "\nTo get it: "
        + "; or ".join(hints)
    )


N_CLASSES = 10
"""MNIST and Fashion-MNIST both have ten classes, labelled 0-9."""


def _split(images_path: Path, labels_path: Path) -> ArraySplit:
    images = cached_array(images_path, lambda path: read_idx(path, ndim=3))
    labels = cached_array(labels_path, lambda path: read_idx(path, ndim=1))
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(
            f"{images_path} should hold uint8 images [N, H, W], got {images.dtype} {images.shape}"
        )
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise DataError(
            f"{labels_path} holds labels of shape {labels.shape} for {images.shape[0]} images "
            f"in {images_path}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= N_CLASSES):
        bad = int(labels.max()) if labels.max() >= N_CLASSES else int(labels.min())
        raise DataError(f"{labels_path} holds label {bad}; the data set has {N_CLASSES} "
                        f"classes, labelled 0-{N_CLASSES - 1}")
    x = torch.from_numpy(images).to(torch.float32).div_(255.0).unsqueeze(1)
    return ArraySplit(x, torch.from_numpy(labels.astype(np.int64)))


def _load(
    source: IdxSource, root: str | Path | None, download: bool
) -> tuple[ArraySplit, ArraySplit]:
    files = _locate(source, root, download)
    train = _split(files[TRAIN_IMAGES], files[TRAIN_LABELS])
    return train, _split(files[TEST_IMAGES], files[TEST_LABELS])


def load_fashion_mnist(
    root: str | Path | None = None, download: bool = False
) -> tuple[ArraySplit, ArraySplit]:
    """Fashion-MNIST as (train, test); x is float32 in [0, 1] shaped [N, 1, 28, 28].

    Looked for in ``root`` alone if given; otherwise in ``$NEUROSCULPT_FMNIST``,
    ``$NEUROSCULPT_DATA/fashion-mnist``, ``/usr/share/datasets/fashion-mnist`` (Debian's
    ``dataset-fashion-mnist``) and the cache. ``download=True`` fetches missing files into
    ``root`` or the cache, checking the published MD5 sums.
    """
    return _load(FASHION_MNIST, root, download)


def load_mnist(
    root: str | Path | None = None, download: bool = False
) -> tuple[ArraySplit, ArraySplit]:
    """MNIST as (train, test), searched and fetched like :func:`load_fashion_mnist`.

    Places: ``root`` alone if given, else ``$NEUROSCULPT_MNIST``, ``$NEUROSCULPT_DATA/mnist``,
    ``/usr/share/datasets/mnist`` and the cache.
    """
    return _load(MNIST, root, download)
