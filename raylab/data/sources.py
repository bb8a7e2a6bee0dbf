"""Data sources -> uint8 tensors, decoded once and cached on disk (batches: raylab/data/batches.py).

Why not a DataLoader: per-image PIL transforms in loader workers cap a small
CIFAR model at ~15-20k images/s and eat the cores other trials need. Here a
data set is decoded once into uint8 arrays (N, 3, H, W), cached on disk
(raylab/data/cache.py), and every epoch is a permutation plus a few whole-batch
tensor ops.

Sources (`load_dataset`), each read by its own module:
    cifar10, cifar100, svhn,   torchvision's files in `root`             readers.py
      mnist, fashionmnist
    folder:PATH                PATH/train/<class>/*.png|jpg|jpeg and    archive.py
                               PATH/test/<class>/..., or a .tar / .tar.gz
                               / .tgz / .zip of that tree, read in place
    arrays:NAME                raylab.register_data(NAME, ...)           arrays.py
    synthetic[:N]              generated, learnable, offline (tests)     synthetic.py

Measured on the shared 2-core CPU dev VM (no GPU; other jobs running, so
ranges), torch 2.14.1, real CIFAR-10 JPEG copy (../shared/data/cifar10-jpg.tar.gz,
60k images), 2-3 runs each:
    first decode        10-14 s (2 decode processes; 13.5-14 s serial)
    cached load         0.06-0.23 s
    augment_batch       85-93k images/s uint8, batch 128, 1 thread (165-175k, 2 threads, quiet VM)
    train_batches       ~40k images/s, augment + normalise, 1 thread
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from raylab.data import arrays, readers
from raylab.data.archive import decode_folder, stat_key, tree_files
from raylab.data.cache import cached
from raylab.data.synthetic import synthetic
from raylab.declare.config import DATA_SETS, SOURCES
from raylab.errors import DataError


@dataclass
class Dataset:
    source: str              # the source string it came from
    classes: list[str]       # label order
    train_x: torch.Tensor    # uint8 (N, 3, H, W), contiguous, CPU
    train_y: torch.Tensor    # int64 (N,)
    test_x: torch.Tensor
    test_y: torch.Tensor


def load_dataset(source: str, root: str | Path = "data", *, download: bool = True) -> Dataset:
    """Resolve a source string to uint8 tensors; decoded sources are cached in <root>/cache/.

    Archives (folder:X.tar/.tar.gz/.tgz/.zip) are refused, before anything is
    decompressed, when a member declares more than RAYLAB_MAX_MEMBER_MB MiB
    (default 64), all members together more than RAYLAB_MAX_ARCHIVE_MB MiB
    (default 4096), or there are more than MAX_MEMBERS entries. The environment
    variables take positive numbers of MiB, fractions allowed. An unpacked folder
    has no such limits: its files already take their full size on disk.

    cifar10 loads torchvision's pickled batches only after each file matched the
    official release's md5 (pickles run code when loaded).
    """
    root = Path(root)
    kind, sep, arg = source.partition(":")
    if kind == "synthetic":
        try:
            n = int(arg) if sep else 5000
        except ValueError:
            n = -1
        if n < 10:
            raise DataError(f"'{source}': synthetic:N needs an integer N >= 10 (training images)")
        return Dataset(source, *synthetic(n))
    if kind == "cifar10" and not sep:
        return Dataset(source, *cached(source, root, *readers.cifar10(root, download)))
    if kind == "folder" and arg:
        path = Path(arg).expanduser().resolve()
        if not path.exists():
            raise DataError(f"folder source {path} does not exist: give an image-folder tree or a .tar/.tar.gz/.zip of one")
        if path.is_dir():
            # Key on every file's (path, size, mtime_ns): one stat per image, ~0.1 s for 60k.
            fingerprint = [stat_key(p) for p in tree_files(path)]
        else:
            # Key on (path, size, mtime_ns), not a content hash: hashing grows with the
            # archive (ImageNet-size: minutes), while any rewrite of the file changes mtime_ns.
            fingerprint = [stat_key(path)]
        return Dataset(source, *cached(source, root, path.name, fingerprint, lambda: decode_folder(path)))
    if kind == "arrays" and arg:
        return Dataset(source, *cached(source, root, *arrays.locate(source, arg, root)))
    if source in DATA_SETS:
        return Dataset(source, *cached(source, root, *readers.locate(source, root, download)))
    raise DataError(f"unknown data source '{source}': use {SOURCES}")


def holdout_split(x: torch.Tensor, y: torch.Tensor, n: int, seed: int):
    """Seeded split of train into ((train_x, train_y), (val_x, val_y)) with n images in val."""
    if not 0 < n < len(x):
        raise DataError(f"val holdout of {n} images must be between 1 and {len(x) - 1} (the training set has {len(x)})")
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    # Sorted indices keep the original order inside each part (and memory access sequential).
    val, train = perm[:n].sort().values.to(x.device), perm[n:].sort().values.to(x.device)
    return (x[train], y[train]), (x[val], y[val])
