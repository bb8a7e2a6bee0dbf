"""The decoded-data cache: a source decoded once into uint8 arrays under <root>/cache/, reused after.

    <root>/cache/<label>-<key>/{train_x,train_y,test_x,test_y}.npy + meta.json

The key hashes CACHE_VERSION and the source's fingerprint (each file's path,
size and mtime_ns, or a content hash for arrays built in Python), so a changed
file is decoded again. Concurrent trials on one node decode a source once: the
first takes a file lock, the others wait and then read what it wrote. A cache
folder appears whole or not at all (written under a temporary name, renamed).
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch

CACHE_VERSION = 1  # bump when decoding changes, so stale caches are not reused
_ARRAY_FILES = ("train_x", "train_y", "test_x", "test_y")  # <name>.npy in a cache folder
# classes, train_x, train_y, test_x, test_y: images uint8 (N, 3, H, W), labels int64 (N,)
Tensors = tuple[list[str], torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def cached(source: str, root: Path, label: str, fingerprint: list, decode: Callable[[], tuple]) -> Tensors:
    """Load <root>/cache/<label>-<key>/ or decode under a file lock and write it atomically.

    `decode()` returns (classes, train_x, train_y, test_x, test_y) as numpy, images (N, H, W, C)."""
    key = hashlib.sha256(json.dumps([CACHE_VERSION, fingerprint]).encode()).hexdigest()[:16]
    final = root / "cache" / f"{label}-{key}"
    hit = _read(final)
    if hit is not None:
        return hit
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # read-only data root: still usable, just slow every time
        warnings.warn(f"cannot create cache folder {final.parent} ({e}): decoding without a cache")
        return as_tensors(*decode())
    with file_lock(final.parent / f"{final.name}.lock"):
        hit = _read(final)  # another process may have decoded while we waited
        if hit is not None:
            return hit
        decoded = as_tensors(*decode())
        tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            tmp.mkdir()
            for name, tensor in zip(_ARRAY_FILES, decoded[1:]):
                np.save(tmp / f"{name}.npy", tensor.numpy())
            (tmp / "meta.json").write_text(json.dumps({"source": source, "classes": decoded[0]}))
            shutil.rmtree(final, ignore_errors=True)  # only an unreadable leftover gets here
            os.rename(tmp, final)  # atomic: readers see no cache or a whole one
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return decoded


def _read(folder: Path) -> Tensors | None:
    try:
        classes = json.loads((folder / "meta.json").read_text())["classes"]
        arrays = [torch.from_numpy(np.load(folder / f"{name}.npy")) for name in _ARRAY_FILES]
    except (OSError, ValueError, KeyError):
        return None
    return (classes, *arrays)


def as_tensors(classes, train_x, train_y, test_x, test_y) -> Tensors:
    """Decoded numpy (N, H, W, C) images and labels -> contiguous CPU tensors, (N, C, H, W)."""
    def images(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2), dtype=np.uint8))

    def labels(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(a, dtype=np.int64).copy())

    return list(classes), images(train_x), labels(train_y), images(test_x), labels(test_y)


@contextlib.contextmanager
def file_lock(path: Path):
    """Exclusive fcntl lock: concurrent trials on one node decode (or download) a source once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
