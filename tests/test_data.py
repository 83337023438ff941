"""Tests of the data loaders on tiny generated files (plus the real FSDD copy when present)."""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import http.server
import io
import stat
import struct
import tarfile
import threading
import wave
import zipfile
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pytest
import torch

from neurosculpt import data
from neurosculpt.data import (
    ArraySplit,
    DataError,
    download_and_extract,
    download_file,
    extract_archive,
    fsdd_speakers,
    load_fashion_mnist,
    load_fsdd,
    load_mnist,
    read_idx,
    read_wav,
)
from neurosculpt.data import download as download_mod
from neurosculpt.data import fsdd as fsdd_mod
from neurosculpt.data import idx as idx_mod

IDX_CODES = {np.dtype("u1"): 0x08, np.dtype("i1"): 0x09, np.dtype(">i2"): 0x0B,
             np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    big = array.astype(array.dtype.newbyteorder(">")) if array.dtype.itemsize > 1 else array
    header = bytes([0, 0, IDX_CODES[big.dtype], array.ndim])
    return header + struct.pack(f">{array.ndim}I", *array.shape) + big.tobytes()


def write_idx(path: Path, array: np.ndarray, compress: bool | None = None) -> Path:
    payload = idx_bytes(array)
    compress = path.suffix == ".gz" if compress is None else compress
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path


def make_idx_set(folder: Path, n_train: int, n_test: int, gz: bool = True, seed: int = 0) -> dict:
    """Write a four-file MNIST-like set; returns the arrays for comparison."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for name, array in arrays.items():
        write_idx(folder / (f"{name}.gz" if gz else name), array)
    return arrays


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No NEUROSCULPT_* variables, a private cache, and no real system or shared data folders."""
    for var in ("NEUROSCULPT_FMNIST", "NEUROSCULPT_MNIST", "NEUROSCULPT_DATA", "NEUROSCULPT_FSDD"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NEUROSCULPT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(idx_mod, "FASHION_MNIST", dataclasses.replace(
        idx_mod.FASHION_MNIST, system_dirs=(tmp_path / "system" / "fashion-mnist",)))
    monkeypatch.setattr(idx_mod, "MNIST", dataclasses.replace(
        idx_mod.MNIST, system_dirs=(tmp_path / "system" / "mnist",)))
    monkeypatch.setattr(fsdd_mod, "_REPO_ROOT", tmp_path / "checkout")
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    return tmp_path


def no_leftovers(folder: Path) -> bool:
    return not folder.exists() or not [p for p in folder.rglob("*") if p.name.startswith(".")]


# ---------------------------------------------------------------- IDX files


@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
@pytest.mark.parametrize("dtype", ["u1", "i1", ">i2", ">i4", ">f4", ">f8"])
def test_read_idx_round_trip(tmp_path: Path, name: str, dtype: str) -> None:
    array = (np.arange(2 * 3 * 4) - 7).reshape(2, 3, 4).astype(dtype)
    out = read_idx(write_idx(tmp_path / name, array))
    assert out.shape == (2, 3, 4)
    assert out.dtype.isnative
    np.testing.assert_array_equal(out, array)


def test_read_idx_detects_gzip_by_content(tmp_path: Path) -> None:
    array = np.arange(10, dtype=np.uint8)
    path = write_idx(tmp_path / "labels-no-suffix", array, compress=True)
    np.testing.assert_array_equal(read_idx(path), array)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: b"\x08\x03" + b[2:], "wrong magic"),
        (lambda b: b[:2] + b"\x42" + b[3:], "unknown dtype"),
        (lambda b: b[:-5], "truncated"),
        (lambda b: b + b"\x00", "longer"),
        (lambda b: b[:9], "header"),
        (lambda b: b[:3], "too short"),
    ],
)
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_rejects_corrupt_files(tmp_path: Path, mutate, message: str, gz: bool) -> None:
    payload = mutate(idx_bytes(np.zeros((4, 5, 6), dtype=np.uint8)))
    path = tmp_path / ("broken.gz" if gz else "broken")
    path.write_bytes(gzip.compress(payload) if gz else payload)
    with pytest.raises(DataError, match=message) as err:
        read_idx(path)
    assert str(path) in str(err.value)


def test_read_idx_rejects_truncated_gzip(tmp_path: Path) -> None:
    blob = gzip.compress(idx_bytes(np.arange(1000, dtype=np.uint8)))
    path = tmp_path / "cut.gz"
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match="gzip") as err:
        read_idx(path)
    assert "cut.gz" in str(err.value)


def test_read_idx_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nothere"):
        read_idx(tmp_path / "nothere")


# ---------------------------------------------------------------- Fashion-MNIST / MNIST


def test_load_from_explicit_root_mixed_gz_and_raw(isolated: Path) -> None:
    root = isolated / "fm"
    arrays = make_idx_set(root, 12, 5, gz=True)
    raw = root / "t10k-labels-idx1-ubyte"
    (root / "t10k-labels-idx1-ubyte.gz").unlink()
    write_idx(raw, arrays["t10k-labels-idx1-ubyte"])
    train, test = load_fashion_mnist(root)
    assert train.x.shape == (12, 1, 28, 28) and test.x.shape == (5, 1, 28, 28)
    assert train.x.dtype == torch.float32 and train.y.dtype == torch.int64
    assert 0.0 <= float(train.x.min()) and float(train.x.max()) <= 1.0
    expected = torch.from_numpy(arrays["train-images-idx3-ubyte"].astype(np.float32) / 255)
    torch.testing.assert_close(train.x[:, 0], expected)
    assert test.y.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()


def test_explicit_root_accepts_parent_folder(isolated: Path) -> None:
    make_idx_set(isolated / "all" / "mnist", 3, 2, gz=False)
    train, test = load_mnist(isolated / "all")
    assert (len(train), len(test)) == (3, 2)


def test_search_order(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_idx_set(isolated / "cache" / "fashion-mnist", 1, 1)
    assert len(load_fashion_mnist()[0]) == 1
    make_idx_set(isolated / "system" / "fashion-mnist", 2, 1)
    assert len(load_fashion_mnist()[0]) == 2
    make_idx_set(isolated / "general" / "fashion-mnist", 3, 1)
    monkeypatch.setenv("NEUROSCULPT_DATA", str(isolated / "general"))
    assert len(load_fashion_mnist()[0]) == 3
    make_idx_set(isolated / "specific", 4, 1)
    monkeypatch.setenv("NEUROSCULPT_FMNIST", str(isolated / "specific"))
    assert len(load_fashion_mnist()[0]) == 4
    make_idx_set(isolated / "explicit", 5, 1)
    assert len(load_fashion_mnist(isolated / "explicit")[0]) == 5


def test_mnist_uses_its_own_places(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_idx_set(isolated / "fm", 4, 1)
    monkeypatch.setenv("NEUROSCULPT_FMNIST", str(isolated / "fm"))
    with pytest.raises(DataError, match=r"MNIST not found(.|\n)*NEUROSCULPT_MNIST: not set"):
        load_mnist()
    make_idx_set(isolated / "system" / "mnist", 6, 2)
    assert len(load_mnist()[0]) == 6


def test_explicit_root_is_not_bypassed(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_idx_set(isolated / "specific", 4, 1)
    monkeypatch.setenv("NEUROSCULPT_FMNIST", str(isolated / "specific"))
    with pytest.raises(DataError, match="elsewhere"):
        load_fashion_mnist(isolated / "elsewhere")


def test_missing_lists_every_place(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    partial = isolated / "partial"
    make_idx_set(partial, 2, 2)
    (partial / "t10k-images-idx3-ubyte.gz").unlink()
    monkeypatch.setenv("NEUROSCULPT_FMNIST", str(partial))
    with pytest.raises(DataError) as err:
        load_fashion_mnist()
    text = str(err.value)
    assert "lacks t10k-images-idx3-ubyte" in text
    assert "$NEUROSCULPT_DATA/fashion-mnist: not set" in text
    assert str(isolated / "system" / "fashion-mnist") in text
    assert str(isolated / "cache" / "fashion-mnist") in text
    assert "apt-get install dataset-fashion-mnist" in text and "download=True" in text


def test_mismatched_label_count_is_an_error(isolated: Path) -> None:
    root = isolated / "fm"
    make_idx_set(root, 6, 2)
    write_idx(root / "train-labels-idx1-ubyte.gz", np.zeros(5, dtype=np.uint8))
    with pytest.raises(DataError, match="train-labels"):
        load_fashion_mnist(root)


class FakeServer:
    """Stands in for the mirrors: serves a dict of URL -> bytes and counts requests."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.requests: list[str] = []

    def __call__(self, url: str, out: BinaryIO) -> None:
        self.requests.append(url)
        if url not in self.files:
            raise OSError(f"404 for {url}")
        out.write(self.files[url])


def fake_mirror_blobs(mirror: str, seed: int = 0) -> dict[str, bytes]:
    """URL -> gzip IDX bytes of a 7-train/3-test set, as a mirror would serve it."""
    blobs = {}
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (7, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, 7, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, 3, dtype=np.uint8),
    }
    for name, array in arrays.items():
        blobs[f"{mirror}{name}.gz"] = gzip.compress(idx_bytes(array), mtime=0)
    return blobs


@pytest.fixture
def fake_mirrors(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> FakeServer:
    blobs = fake_mirror_blobs("http://mirror-b.test/")
    md5 = {url.rsplit("/", 1)[1]: hashlib.md5(b).hexdigest() for url, b in blobs.items()}
    monkeypatch.setattr(idx_mod, "FASHION_MNIST", dataclasses.replace(
        idx_mod.FASHION_MNIST, mirrors=("http://mirror-a.test/", "http://mirror-b.test/"),
        md5=md5))
    server = FakeServer(blobs)
    monkeypatch.setattr(download_mod, "urllib_fetch", server)
    return server


def test_download_into_cache_with_checksums(isolated: Path, fake_mirrors: FakeServer) -> None:
    with pytest.raises(DataError, match="download=True"):
        load_fashion_mnist()
    assert fake_mirrors.requests == []
    train, test = load_fashion_mnist(download=True)
    assert (len(train), len(test)) == (7, 3)
    assert sum("mirror-a" in u for u in fake_mirrors.requests) == 4  # tried first, failed
    cached = isolated / "cache" / "fashion-mnist"
    assert sorted(p.name for p in cached.iterdir()) == sorted(
        f"{n}.gz" for n in idx_mod.IDX_FILES)
    count = len(fake_mirrors.requests)
    load_fashion_mnist(download=True)
    assert len(fake_mirrors.requests) == count  # found in the cache, nothing fetched again


def test_download_checksum_mismatch_leaves_nothing(
    isolated: Path, fake_mirrors: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = idx_mod.FASHION_MNIST
    bad = dict(source.md5, **{"train-labels-idx1-ubyte.gz": "0" * 32})
    monkeypatch.setattr(idx_mod, "FASHION_MNIST", dataclasses.replace(source, md5=bad))
    with pytest.raises(DataError, match="checksum mismatch"):
        load_fashion_mnist(download=True)
    cached = isolated / "cache" / "fashion-mnist"
    assert not (cached / "train-labels-idx1-ubyte.gz").exists()
    assert no_leftovers(cached)


# ---------------------------------------------------------------- download_file


def test_download_file_good_md5(tmp_path: Path) -> None:
    body = b"hello neurons" * 1000
    server = FakeServer({"u": body})
    dest = download_file("u", tmp_path / "sub" / "f.bin", md5=hashlib.md5(body).hexdigest(),
                         fetch=server)
    assert dest.read_bytes() == body
    assert sorted(p.name for p in dest.parent.iterdir()) == ["f.bin"]


def test_download_file_bad_md5_keeps_old_file(tmp_path: Path) -> None:
    dest = tmp_path / "f.bin"
    dest.write_bytes(b"old")
    with pytest.raises(DataError, match="checksum mismatch"):
        download_file("u", dest, md5="0" * 32, fetch=FakeServer({"u": b"new"}))
    assert dest.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_download_file_error_midway_leaves_nothing(tmp_path: Path) -> None:
    def broken(url: str, out: BinaryIO) -> None:
        out.write(b"partial")
        raise ConnectionResetError("peer went away")

    with pytest.raises(DataError, match="peer went away"):
        download_file("http://x.test/f", tmp_path / "f.bin", fetch=broken)
    assert list(tmp_path.iterdir()) == []


def test_download_file_interrupt_cleans_up(tmp_path: Path) -> None:
    def interrupted(url: str, out: BinaryIO) -> None:
        out.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        download_file("u", tmp_path / "f.bin", fetch=interrupted)
    assert list(tmp_path.iterdir()) == []


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def local_http(tmp_path: Path):
    """A real HTTP server on 127.0.0.1 serving tmp_path/www; yields its base URL."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(QuietHandler, directory=str(www))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", www
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_download_file_over_local_http(tmp_path: Path, local_http) -> None:
    base, www = local_http
    body = bytes(range(256)) * 5000
    (www / "blob.bin").write_bytes(body)
    out = tmp_path / "dl"
    dest = download_file(base + "blob.bin", out / "blob.bin", md5=hashlib.md5(body).hexdigest())
    assert dest.read_bytes() == body
    with pytest.raises(DataError, match="404"):
        download_file(base + "missing.bin", out / "missing.bin")
    with pytest.raises(DataError, match="checksum"):
        download_file(base + "blob.bin", out / "other.bin", md5="f" * 32)
    assert sorted(p.name for p in out.iterdir()) == ["blob.bin"]


# ---------------------------------------------------------------- archives


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, body in members.items():
            zf.writestr(name, body)
    return buffer.getvalue()


def test_extract_zip_member_root(tmp_path: Path) -> None:
    archive = tmp_path / "a.zip"
    archive.write_bytes(zip_bytes({
        "proj-master/README": b"readme",
        "proj-master/recordings/a.wav": b"A",
        "proj-master/recordings/sub/b.wav": b"B",
    }))
    dest = extract_archive(archive, tmp_path / "out", member_root="proj-master/recordings")
    assert (dest / "a.wav").read_bytes() == b"A"
    assert (dest / "sub" / "b.wav").read_bytes() == b"B"
    assert not (dest / "README").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zip", "out"]


@pytest.mark.parametrize("evil", ["../escape.txt", "/abs/escape.txt", "ok/../../escape.txt"])
def test_extract_refuses_path_traversal(tmp_path: Path, evil: str) -> None:
    archive = tmp_path / "a.zip"
    archive.write_bytes(zip_bytes({"fine.txt": b"x", evil: b"pwned"}))
    with pytest.raises(DataError, match="unsafe member"):
        extract_archive(archive, tmp_path / "box" / "out")
    assert list((tmp_path / "box").iterdir()) == []
    assert not (tmp_path / "escape.txt").exists()


def test_extract_zip_skips_symlinks(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr(zipfile.ZipInfo("r/file.txt"), b"ok")
        link = zipfile.ZipInfo("r/link")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, b"/etc/passwd")
    archive = tmp_path / "a.zip"
    archive.write_bytes(buffer.getvalue())
    dest = extract_archive(archive, tmp_path / "out", member_root="r")
    assert [p.name for p in dest.iterdir()] == ["file.txt"]


def test_extract_tar_skips_links_and_refuses_absolute(tmp_path: Path) -> None:
    archive = tmp_path / "a.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        info = tarfile.TarInfo("data/file.txt")
        info.size = 3
        tf.addfile(info, io.BytesIO(b"abc"))
        link = tarfile.TarInfo("data/link")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tf.addfile(link)
    dest = extract_archive(archive, tmp_path / "out", member_root="data")
    assert [p.name for p in dest.iterdir()] == ["file.txt"]
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tf:
        info = tarfile.TarInfo("/tmp/x.txt")
        info.size = 1
        tf.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(DataError, match="unsafe"):
        extract_archive(evil, tmp_path / "out2")


def test_extract_rejects_non_archive_and_empty_root(tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"not an archive at all")
    with pytest.raises(DataError, match="neither a zip nor a tar"):
        extract_archive(junk, tmp_path / "out")
    archive = tmp_path / "a.zip"
    archive.write_bytes(zip_bytes({"other/x": b"1"}))
    with pytest.raises(DataError, match="no files under"):
        extract_archive(archive, tmp_path / "out", member_root="recordings")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zip", "junk"]


def test_download_and_extract_removes_archive(tmp_path: Path) -> None:
    server = FakeServer({"u": zip_bytes({"r/x.txt": b"1"})})
    dest = download_and_extract("u", tmp_path / "out", fetch=server, member_root="r")
    assert (dest / "x.txt").read_bytes() == b"1"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


# ---------------------------------------------------------------- digits


def test_load_digits_shapes_and_stratification() -> None:
    pytest.importorskip("sklearn")
    train, test = data.load_digits(test_fraction=0.25, seed=0)
    assert train.x.shape[1:] == (1, 8, 8) and test.x.shape[1:] == (1, 8, 8)
    assert len(train) + len(test) == 1797
    assert float(train.x.min()) == 0.0 and float(train.x.max()) == 1.0
    assert train.x.dtype == torch.float32 and train.y.dtype == torch.int64
    per_class = torch.bincount(train.y) + torch.bincount(test.y)
    assert torch.all((torch.bincount(test.y) - 0.25 * per_class).abs() <= 0.5)
    again, _ = data.load_digits(test_fraction=0.25, seed=0)
    assert torch.equal(again.x, train.x)
    other, _ = data.load_digits(test_fraction=0.25, seed=1)
    assert not torch.equal(other.x, train.x)
    rows = {tuple(r.flatten().tolist()) for r in test.x}
    assert len(rows) > 0.9 * len(test)  # sanity: the split really holds distinct images
    with pytest.raises(ValueError, match="test_fraction"):
        data.load_digits(test_fraction=1.0)


# ---------------------------------------------------------------- FSDD


def write_wav(path: Path, samples: np.ndarray, rate: int = 8000, width: int = 2,
              channels: int = 1) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(width)
        wav.setframerate(rate)
        wav.writeframes(samples.tobytes())
    return path


def tone(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(-32768, 32768, n).astype("<i2")


def make_fsdd(folder: Path, speakers=("zoe", "adam"), digits=(0, 3, 9),
              indices=(0, 4, 5, 12)) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for s_i, speaker in enumerate(speakers):
        for digit in digits:
            for index in indices:
                n = 40 + 10 * index + digit  # lengths straddle the max_samples used below
                samples = tone(n, seed=1000 * s_i + 10 * digit + index)
                name = f"{digit}_{speaker}_{index}.wav"
                write_wav(folder / name, samples)
                written[name] = samples
    (folder / "notes.txt").write_text("ignored")
    return written


def test_fsdd_split_speakers_and_padding(isolated: Path) -> None:
    root = isolated / "rec"
    written = make_fsdd(root)
    train, test = load_fsdd(root, max_samples=100)
    assert (len(train), len(test)) == (12, 12)
    assert train.x.shape == (12, 100) and train.x.dtype == torch.float32
    assert set(test.meta["index"].tolist()) == {0, 4}
    assert set(train.meta["index"].tolist()) == {5, 12}
    assert fsdd_speakers(root) == ["adam", "zoe"]
    assert sorted(torch.bincount(train.meta["speaker"]).tolist()) == [6, 6]
    assert sorted(set(train.y.tolist())) == [0, 3, 9]
    assert float(train.x.abs().max()) <= 1.0
    for split in (train, test):
        for row in range(len(split)):
            speaker = fsdd_speakers(root)[int(split.meta["speaker"][row])]
            name = f"{int(split.y[row])}_{speaker}_{int(split.meta['index'][row])}.wav"
            samples = written[name].astype(np.float32) / 32768
            assert int(split.meta["length"][row]) == samples.size
            kept = min(100, samples.size)
            np.testing.assert_allclose(split.x[row, :kept].numpy(), samples[:kept])
            assert torch.all(split.x[row, kept:] == 0)
    long_train, _ = load_fsdd(root)
    assert long_train.x.shape == (12, 8000)
    with pytest.raises(ValueError, match="max_samples"):
        load_fsdd(root, max_samples=0)


@pytest.mark.parametrize("kind", ["not_riff", "truncated", "8bit", "stereo", "rate"])
def test_fsdd_bad_wav_names_file(isolated: Path, kind: str) -> None:
    root = isolated / "rec"
    make_fsdd(root, speakers=("ann",), digits=(1,), indices=(0, 6))
    bad = root / "7_ann_3.wav"
    if kind == "not_riff":
        bad.write_bytes(b"ID3" + b"\x00" * 100)
    elif kind == "truncated":
        write_wav(bad, tone(500, 1))
        bad.write_bytes(bad.read_bytes()[:-100])
    elif kind == "8bit":
        write_wav(bad, np.zeros(50, dtype=np.uint8), width=1)
    elif kind == "stereo":
        write_wav(bad, tone(100, 2), channels=2)
    else:
        write_wav(bad, tone(100, 3), rate=16000)
    with pytest.raises(DataError, match="7_ann_3.wav"):
        load_fsdd(root)
    with pytest.raises(DataError, match="7_ann_3.wav"):
        read_wav(bad)


def test_fsdd_search_order(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def count() -> int:
        train, test = load_fsdd(max_samples=10)
        return len(train) + len(test)

    make_fsdd(isolated / "cache" / "fsdd" / "recordings", digits=(1,), indices=(0,))
    assert count() == 2
    make_fsdd(isolated / "checkout" / ".." / "shared" / "data" / "fsdd" / "recordings",
              digits=(1, 2), indices=(0,))
    assert count() == 4
    make_fsdd(isolated / "shared" / "data" / "fsdd" / "recordings", digits=(1, 2, 3),
              indices=(0,))  # ../shared relative to the working dir
    assert count() == 6
    make_fsdd(isolated / "d" / "fsdd" / "recordings", digits=(1, 2, 3, 4), indices=(0,))
    monkeypatch.setenv("NEUROSCULPT_DATA", str(isolated / "d"))
    assert count() == 8
    make_fsdd(isolated / "env", digits=(1, 2, 3, 4, 5), indices=(0,))
    monkeypatch.setenv("NEUROSCULPT_FSDD", str(isolated / "env"))
    assert count() == 10
    make_fsdd(isolated / "explicit" / "recordings", digits=(1,), indices=(0, 9))
    train, test = load_fsdd(isolated / "explicit")
    assert (len(train), len(test)) == (2, 2)


def test_fsdd_missing_lists_places(isolated: Path) -> None:
    (isolated / "cache" / "fsdd" / "recordings").mkdir(parents=True)
    with pytest.raises(DataError) as err:
        load_fsdd()
    text = str(err.value)
    assert "$NEUROSCULPT_FSDD: not set" in text
    assert str(isolated / "cwd" / ".." / "shared" / "data" / "fsdd" / "recordings") in text
    assert str(isolated / "checkout" / ".." / "shared") in text
    assert "(cache): no {digit}_{speaker}_{index}.wav" in text
    assert "download=True" in text and "free-spoken-digit-dataset" in text


def test_fsdd_download_extracts_recordings(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    staging = isolated / "staging"
    make_fsdd(staging, speakers=("bo",), digits=(2,), indices=(1, 8))
    members = {f"{fsdd_mod.ARCHIVE_ROOT}/{p.name}": p.read_bytes() for p in staging.iterdir()}
    members["free-spoken-digit-dataset-master/README.md"] = b"readme"
    server = FakeServer({fsdd_mod.ARCHIVE_URL: zip_bytes(members)})
    monkeypatch.setattr(download_mod, "urllib_fetch", server)
    train, test = load_fsdd(download=True)
    assert (len(train), len(test)) == (1, 1)
    target = isolated / "cache" / "fsdd" / "recordings"
    assert sorted(p.name for p in target.iterdir()) == ["2_bo_1.wav", "2_bo_8.wav", "notes.txt"]
    assert no_leftovers(isolated / "cache")
    load_fsdd(download=True)
    assert len(server.requests) == 1


REAL_FSDD = fsdd_mod._REPO_ROOT / ".." / "shared" / "data" / "fsdd" / "recordings"


@pytest.mark.skipif(not REAL_FSDD.is_dir(), reason="shared FSDD copy not present")
def test_real_fsdd() -> None:
    train, test = load_fsdd(REAL_FSDD)
    assert (len(train), len(test)) == (2700, 300)
    assert train.x.shape == (2700, 8000)
    assert len(fsdd_speakers(REAL_FSDD)) == 6
    assert torch.bincount(train.meta["speaker"]).tolist() == [450] * 6
    assert torch.bincount(test.y).tolist() == [30] * 10
    assert int(test.meta["index"].max()) == 4 and int(train.meta["index"].min()) == 5


# ---------------------------------------------------------------- ArraySplit and cache


def test_array_split_validates_and_selects() -> None:
    split = ArraySplit(torch.arange(12.0).reshape(6, 2), torch.tensor([0, 1, 2, 0, 1, 2]),
                       {"speaker": torch.tensor([5, 5, 6, 6, 7, 7])})
    picked = split.select(split.y == 1)
    assert picked.x.tolist() == [[2.0, 3.0], [8.0, 9.0]]
    assert picked.meta["speaker"].tolist() == [5, 7]
    assert len(split.select([0, 5])) == 2
    with pytest.raises(ValueError, match="float32"):
        ArraySplit(torch.zeros(2, dtype=torch.float64), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="int64"):
        ArraySplit(torch.zeros(2), torch.zeros(2, dtype=torch.int32))
    with pytest.raises(ValueError, match="samples"):
        ArraySplit(torch.zeros(3), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="meta"):
        ArraySplit(torch.zeros(2), torch.zeros(2, dtype=torch.int64), {"s": torch.zeros(3)})


def test_cache_dir_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NEUROSCULPT_CACHE", str(tmp_path / "c"))
    assert data.cache_dir("mnist") == tmp_path / "c" / "mnist"
    monkeypatch.delenv("NEUROSCULPT_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert data.cache_dir() == tmp_path / "x" / "neurosculpt"
