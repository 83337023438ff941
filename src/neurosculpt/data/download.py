"""Atomic, checksum-verified downloads and safe archive extraction.

Every write goes to a temporary name in the destination folder first and is moved into place with
``os.replace`` only once complete and verified, so an interrupted or corrupt download never
leaves a file that a later run would mistake for good data.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import stat
import tarfile
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path, PurePosixPath
from typing import IO, BinaryIO

from .base import DataError

Fetch = Callable[[str, BinaryIO], None]
"""Writes the body found at a URL into an open binary file; raise ``OSError`` on failure."""

_CHUNK = 1 << 20
_TIMEOUT_S = 60.0


def urllib_fetch(url: str, out: BinaryIO) -> None:
    """Default fetcher: stream ``url`` into ``out`` with the standard library."""
    request = urllib.request.Request(url, headers={"User-Agent": "neurosculpt"})
    with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
        shutil.copyfileobj(response, out, _CHUNK)


def file_md5(path: str | Path) -> str:
    """Hex MD5 of a file, read in chunks (MD5 is what the data sets publish; integrity only)."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def download_file(
    url: str, dest: str | Path, md5: str | None = None, fetch: Fetch | None = None
) -> Path:
    """Download ``url`` to ``dest`` atomically, checking ``md5`` when given.

    ``fetch`` is injectable so tests (or proxies) can supply the bytes; it defaults to
    :func:`urllib_fetch`. On any failure the temporary file is removed and ``dest`` is untouched.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fetch = fetch if fetch is not None else urllib_fetch
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                fetch(url, out)
            except (OSError, http.client.HTTPException) as exc:
                raise DataError(f"could not download {url} to {dest}: {exc}") from exc
            out.flush()
            os.fsync(out.fileno())
        if md5 is not None:
            actual = file_md5(tmp)
            if actual != md5.lower():
                raise DataError(
                    f"checksum mismatch for {url} (would be saved as {dest}): "
                    f"expected md5 {md5.lower()}, got {actual}; nothing was saved"
                )
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


def _member_path(name: str, archive: Path) -> PurePosixPath:
    """Archive member name as a relative path; anything escaping the target is refused."""
    path = PurePosixPath(name.replace("\\", "/"))
    first = path.parts[0] if path.parts else ""
    if path.is_absolute() or ".." in path.parts or ":" in first:
        raise DataError(f"refusing to extract {archive}: unsafe member path {name!r}")
    return path


def _regular_members(archive: Path) -> Iterator[tuple[str, IO[bytes]]]:
    """Yield (name, open stream) for each regular file; links, devices and folders are skipped."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                file_type = stat.S_IFMT(info.external_attr >> 16)
                if info.is_dir() or file_type not in (0, stat.S_IFREG):
                    continue
                with zf.open(info) as handle:
                    yield info.filename, handle
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive, "r:*") as tf:
            for member in tf:
                handle = tf.extractfile(member) if member.isreg() else None
                if handle is not None:
                    with handle:
                        yield member.name, handle
    else:
        raise DataError(f"{archive} is neither a zip nor a tar archive")


def extract_archive(archive: str | Path, dest: str | Path, member_root: str | None = None) -> Path:
    """Extract the regular files of a zip/tar archive into a new folder ``dest``, atomically.

    Only members under ``member_root`` (a folder inside the archive) are kept, with that prefix
    stripped. Members with absolute paths or ``..`` abort the whole extraction; symlinks and
    other special members are never created. ``dest`` must not exist or be an empty folder.
    """
    archive, dest = Path(archive), Path(dest)
    root_parts = _member_path(member_root, archive).parts if member_root else ()
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent))
    try:
        count = 0
        try:
            with closing(_regular_members(archive)) as members:
                for name, src in members:
                    parts = _member_path(name, archive).parts
                    if parts[: len(root_parts)] != root_parts or len(parts) == len(root_parts):
                        continue
                    target = work.joinpath(*parts[len(root_parts) :])
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with open(target, "wb") as out:
                        shutil.copyfileobj(src, out, _CHUNK)
                    count += 1
        except (OSError, EOFError, zipfile.BadZipFile, tarfile.TarError) as exc:
            raise DataError(f"cannot extract {archive}: {exc}") from exc
        if count == 0:
            where = f" under {member_root!r}" if member_root else ""
            raise DataError(f"{archive} has no files{where}")
        if dest.is_dir() and not any(dest.iterdir()):
            dest.rmdir()
        if dest.exists():
            raise DataError(f"{dest} already exists; remove it to extract {archive} again")
        os.replace(work, dest)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return dest


def download_and_extract(
    url: str,
    dest: str | Path,
    md5: str | None = None,
    fetch: Fetch | None = None,
    member_root: str | None = None,
) -> Path:
    """Download an archive next to ``dest`` and extract it there with :func:`extract_archive`.

    The archive itself is deleted afterwards, whether extraction worked or not.
    """
    dest = Path(dest)
    archive = dest.parent / f".{dest.name}.archive"
    try:
        download_file(url, archive, md5=md5, fetch=fetch)
        return extract_archive(archive, dest, member_root=member_root)
    finally:
        archive.unlink(missing_ok=True)
