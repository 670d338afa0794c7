"""The CIFAR-10 python batches: find them, read them safely, and write small ones for tests.

The format is the one of ``cifar-10-python.tar.gz``: six pickled dicts, ``data_batch_1`` ...
``data_batch_5`` (the 50,000 training images) and ``test_batch`` (the 10,000 test images), each
with ``b"data"``, a uint8 array ``[N, 3072]`` (1024 red, 1024 green, 1024 blue values of a 32x32
image, row by row), and ``b"labels"``, N integers in 0..9. The task reads them from ``-o data_dir``,
else ``$ROBUST_CIFAR10_DIR``, else the cache (``$ROBUST_CACHE_DIR/cifar10``, by default
``~/.cache/robustcli/cifar10``), where ``robust data fetch-cifar10`` puts them
(:mod:`robust_cifar10.fetch`); nothing is downloaded while a task runs.

The pickles are read with an unpickler that only rebuilds numpy arrays, so a foreign file in the
folder cannot run code.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from robustcli.errors import InputError

__all__ = [
    "ENV_VAR",
    "TEST_FILE",
    "TRAIN_FILES",
    "cache_dir",
    "default_dir",
    "read_batch",
    "read_split",
    "resolve_dir",
    "write_batches",
]

ENV_VAR = "ROBUST_CIFAR10_DIR"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
#: the folder cifar-10-python.tar.gz extracts to; accepted inside the given folder too
TAR_FOLDER = "cifar-10-batches-py"
PIXELS = 3 * 32 * 32

_WHAT = (
    "data_batch_1 ... data_batch_5 and test_batch (the python version of CIFAR-10, "
    "cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html, extracted)"
)


def cache_dir() -> Path:
    """``$ROBUST_CACHE_DIR/cifar10`` if set, else ``~/.cache/robustcli/cifar10``."""
    root = os.environ.get("ROBUST_CACHE_DIR")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "robustcli"
    return base / "cifar10"


def default_dir() -> tuple[Path, str]:
    """Where the task looks without ``-o data_dir`` (and where ``robust data fetch-cifar10``
    downloads by default), and where that came from: ``$ROBUST_CIFAR10_DIR``, else the cache."""
    raw = os.environ.get(ENV_VAR, "")
    if raw:
        return Path(raw).expanduser(), f"${ENV_VAR}"
    return cache_dir(), f"the cache; ${ENV_VAR} or -o data_dir=PATH picks another folder"


def resolve_dir(data_dir: str | os.PathLike[str] | None) -> Path:
    """The folder holding the six batches: ``data_dir`` (the task option), else
    ``$ROBUST_CIFAR10_DIR``, else :func:`cache_dir`.

    A folder that holds ``cifar-10-batches-py/`` is accepted too. Missing data raise a one-line
    :class:`InputError` naming the command that downloads them there.
    """
    if data_dir is not None:
        given, where = Path(str(data_dir)).expanduser(), "-o data_dir"
        fetch = f"robust data fetch-cifar10 --dest {given}"
    else:
        given, where = default_dir()
        fetch = "robust data fetch-cifar10"
    path = given / TAR_FOLDER if (given / TAR_FOLDER).is_dir() else given
    missing = [f for f in (*TRAIN_FILES, TEST_FILE) if not (path / f).is_file()]
    if missing:
        lacks = "the folder does not exist" if not path.is_dir() else f"missing {', '.join(missing)}"
        raise InputError(
            f"CIFAR-10 data not found in {path} (from {where}): {lacks}; `{fetch}` downloads them there, "
            f"or put {_WHAT} there"
        )
    return path


class _ArraysOnly(pickle.Unpickler):
    """Rebuilds numpy arrays and plain containers; refuses any other class."""

    _ALLOWED = {
        ("_codecs", "encode"),  # how protocol 2 stores bytes written by Python 3
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR-10 batch")


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> (uint8 images ``[N, 3072]``, int64 labels ``[N]``), validated."""
    try:
        with open(path, "rb") as fh:
            batch = _ArraysOnly(fh, encoding="bytes").load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise InputError(f"{path}: not a CIFAR-10 python batch ({type(exc).__name__}: {exc})") from None
    if not isinstance(batch, dict):
        raise InputError(f"{path}: not a CIFAR-10 python batch (a {type(batch).__name__}, not a dict)")
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise InputError(f"{path}: a CIFAR-10 batch needs the keys b'data' and b'labels'; found {sorted(batch)}")
    data = np.asarray(batch["data"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != PIXELS:
        raise InputError(f"{path}: b'data' must be uint8 [N, {PIXELS}], got {data.dtype} {list(data.shape)}")
    labels = np.asarray(batch["labels"])
    if labels.shape != (data.shape[0],) or not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"{path}: b'labels' must hold {data.shape[0]} integers, got {labels.dtype} {list(labels.shape)}")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise InputError(f"{path}: labels must lie in 0..9, found {int(labels.min())}..{int(labels.max())}")
    return data, labels.astype(np.int64)


def read_split(folder: Path, files: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    parts = [read_batch(folder / f) for f in files]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def write_batches(
    folder: str | os.PathLike[str],
    train: tuple[np.ndarray, Sequence[int]],
    test: tuple[np.ndarray, Sequence[int]],
) -> Path:
    """Write images and labels in the CIFAR-10 python format (the training set in five batches).

    For tests and small demonstrations: ``train`` and ``test`` are (uint8 ``[N, 3072]``, labels).
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    x, y = np.asarray(train[0], dtype=np.uint8), np.asarray(train[1], dtype=np.int64)
    chunks = np.array_split(np.arange(len(y)), len(TRAIN_FILES))
    for name, idx in zip(TRAIN_FILES, chunks, strict=True):
        _dump(out / name, x[idx], y[idx], name)
    _dump(out / TEST_FILE, np.asarray(test[0], dtype=np.uint8), np.asarray(test[1], dtype=np.int64), TEST_FILE)
    return out


def _dump(path: Path, x: np.ndarray, y: np.ndarray, label: str) -> None:
    batch = {b"batch_label": label.encode(), b"labels": [int(v) for v in y], b"data": np.ascontiguousarray(x)}
    with open(path, "wb") as fh:
        pickle.dump(batch, fh, protocol=2)
