"""Free Spoken Digit Dataset (FSDD): 8 kHz spoken digits, real temporal data for SNNs.

The dataset is a folder of ``{digit}_{speaker}_{index}.wav`` files (mono, 16-bit PCM, 8 kHz).
Its own split convention is kept: recordings with index 0-4 form the test set, the rest train.
"""

from __future__ import annotations

import re
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..validation import warn
from .base import ArraySplit, DataError, cache_dir, env_dir
from .download import download_and_extract

SAMPLE_RATE = 8000
DEFAULT_MAX_SAMPLES = 8000
"""One second at 8 kHz: all but 20 of the 3,000 recordings fit whole."""
TEST_INDEX_LIMIT = 5
"""Recordings numbered below this are the dataset's own test split."""
ARCHIVE_URL = (
    "https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/heads/master.zip"
)
ARCHIVE_ROOT = "free-spoken-digit-dataset-master/recordings"
_NAME = re.compile(r"^(\d)_(.+)_(\d+)\.wav$")
_REPO_ROOT = Path(__file__).resolve().parents[3]
"""The checkout holding ``src/neurosculpt``; its sibling ``shared/`` may carry a copy of FSDD."""


@dataclass(frozen=True)
class _Recording:
    path: Path
    digit: int
    speaker: str
    index: int


def _default_places() -> list[tuple[str, Path | None]]:
    """Places searched when no root is given, in order, each labelled for error messages."""
    shared = Path("..") / "shared" / "data" / "fsdd" / "recordings"
    data = env_dir("NEUROSCULPT_DATA")
    return [
        ("$NEUROSCULPT_FSDD", env_dir("NEUROSCULPT_FSDD")),
        ("$NEUROSCULPT_DATA/fsdd/recordings", data / "fsdd" / "recordings" if data else None),
        ("working dir", Path.cwd() / shared),
        ("repository", _REPO_ROOT / shared),
        ("cache", cache_dir("fsdd") / "recordings"),
    ]


def _recordings(folder: Path) -> list[_Recording]:
    """FSDD-named WAV files in ``folder``, sorted by (speaker, digit, index) for determinism."""
    if not folder.is_dir():
        return []
    found, misnamed = [], []
    for path in folder.iterdir():
        match = _NAME.match(path.name)
        if match and path.is_file():
            digit, speaker, index = match.groups()
            found.append(_Recording(path, int(digit), speaker, int(index)))
        elif path.suffix.lower() == ".wav":
            misnamed.append(path.name)
    if found and misnamed:
        shown = ", ".join(sorted(misnamed)[:5]) + (", ..." if len(misnamed) > 5 else "")
        warn(f"{folder}: skipped {len(misnamed)} WAV file(s) not named "
             f"{{digit}}_{{speaker}}_{{index}}.wav: {shown}")
    return sorted(found, key=lambda r: (r.speaker, r.digit, r.index))


def _find(root: str | Path | None, download: bool) -> list[_Recording]:
    """Recordings of the first place holding any; ``root`` alone is searched when given."""
    if root is not None:
        folder = Path(root).expanduser()
        places: list[tuple[str, Path | None]] = [("root", folder), ("root", folder / "recordings")]
    else:
        places = _default_places()
    searched = []
    for label, folder in places:
        if folder is None:
            searched.append(f"{label}: not set")
            continue
        found = _recordings(folder)
        if found:
            return found
        state = "no such folder" if not folder.is_dir() else "no {digit}_{speaker}_{index}.wav"
        searched.append(f"{folder} ({label}): {state}")
    if download:
        target = Path(root).expanduser() if root is not None else cache_dir("fsdd") / "recordings"
        download_and_extract(ARCHIVE_URL, target, member_root=ARCHIVE_ROOT)
        found = _recordings(target)
        if not found:
            raise DataError(f"the archive from {ARCHIVE_URL} held no recordings ({target})")
        return found
    raise DataError(
        "FSDD recordings not found. Searched:\n  - "
        + "\n  - ".join(searched)
        + "\nTo get them: set NEUROSCULPT_FSDD to a folder of {digit}_{speaker}_{index}.wav files"
        " (e.g. the recordings/ folder of a clone of"
        " https://github.com/Jakobovski/free-spoken-digit-dataset), or pass download=True"
        " when online"
    )


def read_wav(path: str | Path) -> np.ndarray:
    """Samples of a mono 16-bit PCM 8 kHz WAV file as float32 in [-1, 1).

    Anything else (not RIFF, compressed, stereo, another width or rate, or fewer frames than the
    header announces) raises :class:`DataError` naming the file.
    """
    path = Path(path)
    try:
        with wave.open(str(path), "rb") as wav:
            channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            frames = wav.getnframes()
            data = wav.readframes(frames)
    except (wave.Error, EOFError, OSError) as exc:
        size = path.stat().st_size if path.is_file() else None
        reason = "the file is empty (0 bytes)" if size == 0 else (
            str(exc) or f"{type(exc).__name__}: the file ends inside its header")
        raise DataError(f"bad WAV file {path}: {reason}") from exc
    if (channels, width, rate) != (1, 2, SAMPLE_RATE):
        raise DataError(
            f"bad WAV file {path}: need mono 16-bit {SAMPLE_RATE} Hz, got {channels} channel(s), "
            f"{8 * width}-bit, {rate} Hz"
        )
    if frames == 0:
        raise DataError(f"bad WAV file {path}: it holds no audio (0 frames)")
    if len(data) != 2 * frames:
        raise DataError(
            f"bad WAV file {path}: truncated, header says {frames} frames, found {len(data) // 2}"
        )
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0


def fsdd_speakers(root: str | Path | None = None) -> list[str]:
    """Speaker names in id order: ``meta["speaker"]`` from :func:`load_fsdd` indexes this list."""
    return sorted({r.speaker for r in _find(root, download=False)})


def load_fsdd(
    root: str | Path | None = None, download: bool = False, max_samples: int | None = None
) -> tuple[ArraySplit, ArraySplit]:
    """FSDD as (train, test) waveforms.

    x is float32 in [-1, 1] shaped [N, max_samples]: each recording is cropped after, or
    zero-padded to, ``max_samples`` samples (default 8000 = 1 s at 8 kHz). y is the digit;
    ``meta`` holds int64 ``speaker`` (index into :func:`fsdd_speakers`), ``index`` (recording
    number) and ``length`` (samples before cropping/padding). Test = indices 0-4, train = the rest.

    Searched in ``root`` alone if given, else ``$NEUROSCULPT_FSDD``,
    ``$NEUROSCULPT_DATA/fsdd/recordings``, ``../shared/data/fsdd/recordings`` from the working
    directory and from the repository checkout, and the cache; ``download=True`` fetches the
    dataset's GitHub archive into ``root`` or the cache when nothing is found.
    """
    length = DEFAULT_MAX_SAMPLES if max_samples is None else max_samples
    if length <= 0:
        raise ValueError(f"max_samples must be positive, got {max_samples}")
    recordings = _find(root, download)
    speakers = sorted({r.speaker for r in recordings})
    speaker_id = {name: i for i, name in enumerate(speakers)}
    x = np.zeros((len(recordings), length), dtype=np.float32)
    lengths = np.empty(len(recordings), dtype=np.int64)
    for row, rec in enumerate(recordings):
        samples = read_wav(rec.path)
        lengths[row] = samples.shape[0]
        kept = samples[:length]
        x[row, : kept.shape[0]] = kept
    y = np.array([r.digit for r in recordings], dtype=np.int64)
    speaker = np.array([speaker_id[r.speaker] for r in recordings], dtype=np.int64)
    index = np.array([r.index for r in recordings], dtype=np.int64)
    is_test = index < TEST_INDEX_LIMIT

    def part(mask: np.ndarray) -> ArraySplit:
        meta = {"speaker": speaker[mask], "index": index[mask], "length": lengths[mask]}
        return ArraySplit(
            torch.from_numpy(x[mask]),
            torch.from_numpy(y[mask]),
            {k: torch.from_numpy(v) for k, v in meta.items()},
        )

    return part(~is_test), part(is_test)
