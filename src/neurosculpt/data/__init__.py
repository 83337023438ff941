"""Data loaders returning in-memory (train, test) splits as :class:`ArraySplit`.

Only torch and numpy are required; scikit-learn is imported lazily by :func:`load_digits`.
"""

from .base import ArraySplit, DataError, cache_dir
from .digits import load_digits
from .download import download_and_extract, download_file, extract_archive
from .fsdd import fsdd_speakers, load_fsdd, read_wav
from .idx import load_fashion_mnist, load_mnist, read_idx

__all__ = [
    "ArraySplit",
    "DataError",
    "cache_dir",
    "download_and_extract",
    "download_file",
    "extract_archive",
    "fsdd_speakers",
    "load_digits",
    "load_fashion_mnist",
    "load_fsdd",
    "load_mnist",
    "read_idx",
    "read_wav",
]
