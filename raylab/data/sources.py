"""Data sources -> uint8 tensors, decoded once and cached on disk (batches: raylab/data/batches.py).

Why not a DataLoader: per-image PIL transforms in loader workers cap a small
CIFAR model at ~15-20k images/s and eat the cores other trials need. Here a
data set is decoded once into uint8 arrays (N, 3, H, W), cached on disk, and
every epoch is a permutation plus a few whole-batch tensor ops.

Sources (`load_dataset`):
    cifar10        torchvision's cifar-10-batches-py folder in `root`
    folder:PATH    PATH/train/<class>/*.png|jpg|jpeg and PATH/test/<class>/...,
                   or a .tar / .tar.gz / .tgz / .zip of that tree, read in place
    synthetic[:N]  generated, learnable, offline (tests and smoke runs)

Measured on the shared 2-core CPU dev VM (no GPU; other jobs running, so
ranges), torch 2.14.1, real CIFAR-10 JPEG copy (../shared/data/cifar10-jpg.tar.gz,
60k images), 2-3 runs each:
    first decode        10-14 s (2 decode processes; 13.5-14 s serial)
    cached load         0.06-0.23 s
    augment_batch       85-93k images/s uint8, batch 128, 1 thread (165-175k, 2 threads, quiet VM)
    train_batches       ~40k images/s, augment + normalise, 1 thread
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from raylab.data.archive import decode_folder, stat_key, tree_files
from raylab.declare.config import DATA_SETS, is_dataset_source
from raylab.errors import DataError

CACHE_VERSION = 1  # bump when decoding changes, so stale caches are not reused

@dataclass
class Dataset:
    source: str              # the source string it came from
    classes: list[str]       # label order
    train_x: torch.Tensor    # uint8 (N, 3, H, W), contiguous, CPU
    train_y: torch.Tensor    # int64 (N,)
    test_x: torch.Tensor
    test_y: torch.Tensor


# =============================================================== sources

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
        return _synthetic(source, n)
    if kind == "cifar10" and not sep:
        folder = _cifar10_folder(root, download)
        fingerprint = [stat_key(p) for p in sorted(folder.iterdir()) if p.is_file()]
        return _cached(source, root, "cifar10", fingerprint, lambda: _decode_cifar10(root))
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
        return _cached(source, root, path.name, fingerprint, lambda: decode_folder(path))
    from raylab.data import datasets  # cifar100, svhn, mnist, fashionmnist, arrays:NAME
    if is_dataset_source(source):
        return _cached(source, root, *datasets.locate(source, root, download))
    raise DataError(f"unknown data source '{source}': use cifar10, {', '.join(DATA_SETS)}, "
                    "folder:PATH, arrays:NAME or synthetic[:N]")


def _cifar10_folder(root: Path, download: bool) -> Path:
    folder = root / "cifar-10-batches-py"
    why = "download disabled"
    if not (folder / "batches.meta").is_file() and download:
        import torchvision  # late: only this source needs it

        # One process downloads while the others wait (Ray Tune's example does the same).
        with _locked(root / "cache" / "cifar10-download.lock"):
            try:
                torchvision.datasets.CIFAR10(str(root), train=True, download=True)
            except Exception as e:  # offline: URLError, socket errors, bad checksums
                why = f"download failed ({type(e).__name__})"
    if not (folder / "batches.meta").is_file():
        raise DataError(
            f"CIFAR-10 not found in {folder} and {why}: put torchvision's cifar-10-python "
            "files there, or use --data folder:PATH or synthetic"
        )
    return folder


def _decode_cifar10(root: Path) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    import torchvision

    _check_cifar10_release(root / "cifar-10-batches-py")
    try:
        train = torchvision.datasets.CIFAR10(str(root), train=True, download=False)
        test = torchvision.datasets.CIFAR10(str(root), train=False, download=False)
    except Exception as e:  # torchvision raises RuntimeError on a failed md5 check
        raise DataError(f"CIFAR-10 in {root / 'cifar-10-batches-py'} is incomplete or corrupt ({e}): delete it and download again") from e
    return (list(train.classes), train.data, np.asarray(train.targets),
            test.data, np.asarray(test.targets))


def _check_cifar10_release(folder: Path) -> None:
    """Refuse the batches unless every file has the official release's md5.

    They are Python pickles, and unpickling runs whatever code the file names,
    so nothing here may be unpickled before its checksum matched. torchvision
    checks the same md5s but raises a generic RuntimeError that hides which file
    and what to do. md5 stays safe for this: a match needs a second preimage of
    a fixed file, not a collision.
    """
    from torchvision.datasets import cifar  # its table and check_integrity: the same bytes it will accept

    release = cifar.CIFAR10.train_list + cifar.CIFAR10.test_list + [[cifar.CIFAR10.meta["filename"], cifar.CIFAR10.meta["md5"]]]
    fix = f"delete {folder} and download again (--download), or use --data folder:PATH with an image-folder copy"
    missing = [name for name, _ in release if not (folder / name).is_file()]
    if missing:
        raise DataError(f"CIFAR-10 in {folder} is incomplete (no {', '.join(missing)}): {fix}")
    bad = [name for name, md5 in release if not cifar.check_integrity(str(folder / name), md5)]
    if bad:
        raise DataError(f"{', '.join(bad)} in {folder} do not match the official CIFAR-10 release checksums; "
                        f"these files are Python pickles and are only loaded when they match: {fix}")


# ------------------------------------------------------------ synthetic

def _synthetic(source: str, n: int) -> Dataset:
    """10 classes: a class colour tint whose contrast carries oriented stripes in a
    shifted Gaussian blob, plus pixel noise. Fixed seed: the same tensors every call.

    Colour is the quick cue but 20% of it is random, so colour alone is not
    enough; the stripe angle (18 degrees apart per class) disambiguates. Measured
    (2-core CPU VM, 3 seeds): SimpleNN (8/16 conv, SGD lr 0.01, momentum 0.9,
    batch 128) reaches 0.27-0.47 val acc after 1 epoch, 0.78-0.91 after 2.
    """
    rng = np.random.default_rng(1234)
    palette = rng.uniform(0, 1, (10, 3)).astype(np.float32)
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32)

    def make(count: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = rng.permutation(np.arange(count) % 10)  # balanced: counts differ by at most 1
        r = lambda *shape: rng.random(shape, dtype=np.float32)  # noqa: E731
        cy, cx = 8 + 16 * r(2, count, 1, 1)
        theta = y[:, None, None] * np.float32(np.pi / 10) + 0.08 * (r(count, 1, 1) - 0.5)
        stripes = np.cos(0.9 * (xx * np.cos(theta) + yy * np.sin(theta)) + 2 * np.pi * r(count, 1, 1))
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 8.0**2))
        colour = 0.8 * palette[y] + 0.2 * r(count, 3)
        img = 0.5 + (colour[:, :, None, None] - 0.5) * (1 + 0.8 * (blob * stripes)[:, None])
        img += 0.08 * rng.standard_normal(img.shape, dtype=np.float32)
        x = np.clip(img * 255, 0, 255).astype(np.uint8)
        return torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))

    train_x, train_y = make(n)
    test_x, test_y = make(max(n // 5, 100))
    return Dataset(source, [f"class{i}" for i in range(10)], train_x, train_y, test_x, test_y)


# ---------------------------------------------------------------- cache

def _cached(source: str, root: Path, label: str, fingerprint: list, decode) -> Dataset:
    """Load <root>/cache/<label>-<key>/ or decode under a file lock and write it atomically."""
    key = hashlib.sha256(json.dumps([CACHE_VERSION, fingerprint]).encode()).hexdigest()[:16]
    final = root / "cache" / f"{label}-{key}"
    hit = _read_cache(source, final)
    if hit is not None:
        return hit
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # read-only data root: still usable, just slow every time
        warnings.warn(f"cannot create cache folder {final.parent} ({e}): decoding without a cache")
        return _to_dataset(source, *decode())
    with _locked(final.parent / f"{final.name}.lock"):
        hit = _read_cache(source, final)  # another process may have decoded while we waited
        if hit is not None:
            return hit
        ds = _to_dataset(source, *decode())
        tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            tmp.mkdir()
            for name in _ARRAYS:
                np.save(tmp / f"{name}.npy", getattr(ds, name).numpy())
            (tmp / "meta.json").write_text(json.dumps({"source": source, "classes": ds.classes}))
            shutil.rmtree(final, ignore_errors=True)  # only an unreadable leftover gets here
            os.rename(tmp, final)  # atomic: readers see no cache or a whole one
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return ds


_ARRAYS = ("train_x", "train_y", "test_x", "test_y")


def _read_cache(source: str, folder: Path) -> Dataset | None:
    try:
        classes = json.loads((folder / "meta.json").read_text())["classes"]
        arrays = [torch.from_numpy(np.load(folder / f"{name}.npy")) for name in _ARRAYS]
    except (OSError, ValueError, KeyError):
        return None
    return Dataset(source, classes, *arrays)


def _to_dataset(source, classes, train_x, train_y, test_x, test_y) -> Dataset:
    """Decoded numpy (N, H, W, 3) images and labels -> contiguous CPU tensors, (N, 3, H, W)."""
    def images(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a.transpose(0, 3, 1, 2), dtype=np.uint8))

    def labels(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(a, dtype=np.int64).copy())

    return Dataset(source, list(classes), images(train_x), labels(train_y), images(test_x), labels(test_y))


@contextlib.contextmanager
def _locked(path: Path):
    """Exclusive fcntl lock: concurrent trials on one node decode a source once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def holdout_split(x: torch.Tensor, y: torch.Tensor, n: int, seed: int):
    """Seeded split of train into ((train_x, train_y), (val_x, val_y)) with n images in val."""
    if not 0 < n < len(x):
        raise DataError(f"val holdout of {n} images must be between 1 and {len(x) - 1} (the training set has {len(x)})")
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    # Sorted indices keep the original order inside each part (and memory access sequential).
    val, train = perm[:n].sort().values.to(x.device), perm[n:].sort().values.to(x.device)
    return (x[train], y[train]), (x[val], y[val])
