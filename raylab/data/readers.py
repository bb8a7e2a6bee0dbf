"""File readers: torchvision's on-disk layouts of CIFAR-10, CIFAR-100, SVHN, MNIST and FashionMNIST.

    --data cifar10        <root>/cifar-10-batches-py/                    (md5-checked pickles)
    --data cifar100       <root>/cifar-100-python/{train,test,meta}      (fine labels)
    --data svhn           <root>/{train,test}_32x32.mat                  (label 10 is digit 0)
    --data mnist          <root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]
    --data fashionmnist   <root>/FashionMNIST/raw/... (same files)

`torchvision.datasets.X(root, download=True)` fills these where there is
internet (cifar10 downloads under a file lock: one process per node). Each
`locate` returns what the decoded-data cache (raylab/data/cache.py) needs:
a label, a fingerprint of the files, and a decode() giving (classes, train_x,
train_y, test_x, test_y) as numpy, images (N, H, W, C). MNIST's 28x28 digits
are zero-padded to 32x32, as LeNet-5 read them (LeCun et al. 1998), so every
built-in model takes them; their one channel reaches the model as in_channels=1.
"""
from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np

from raylab.data.archive import stat_key
from raylab.data.cache import file_lock
from raylab.errors import DataError

MNIST_PAD = 2  # 28 + 2 * 2 = 32
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                   "Bag", "Ankle boot"]


# ------------------------------------------------------------------ CIFAR-10
def cifar10(root: Path, download: bool):
    """(cache label, fingerprint, decode) of torchvision's cifar-10-batches-py in `root`.

    The batches are loaded only after each file matched the official release's
    md5 (pickles run code when loaded)."""
    folder = _cifar10_folder(root, download)
    fingerprint = [stat_key(p) for p in sorted(folder.iterdir()) if p.is_file()]
    return "cifar10", fingerprint, lambda: _decode_cifar10(root)


def _cifar10_folder(root: Path, download: bool) -> Path:
    folder = root / "cifar-10-batches-py"
    why = "download disabled"
    if not (folder / "batches.meta").is_file() and download:
        import torchvision  # late: only this source needs it

        # One process downloads while the others wait (Ray Tune's example does the same).
        with file_lock(root / "cache" / "cifar10-download.lock"):
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


# ------------------------------------------------------------------ the others
def locate(kind: str, root: Path, download: bool):
    """(cache label, fingerprint, decode) of cifar100, svhn, mnist or fashionmnist in `root`."""
    folder, files, decode = {"cifar100": (root / "cifar-100-python", ["train", "test", "meta"], _cifar100),
                             "svhn": (root, ["train_32x32.mat", "test_32x32.mat"], _svhn),
                             "mnist": (root / "MNIST" / "raw", _IDX, _mnist),
                             "fashionmnist": (root / "FashionMNIST" / "raw", _IDX, _mnist)}[kind]
    paths = [_find(folder, f) for f in files]
    if any(p is None for p in paths) and download:
        _download(kind, root)
        paths = [_find(folder, f) for f in files]
    missing = [f for f, p in zip(files, paths) if p is None]
    if missing:
        raise DataError(f"{kind} not found: {folder} lacks {', '.join(missing)}; put torchvision's {kind} files "
                        "there (e.g. on a machine with internet: torchvision.datasets with download=True)")
    return kind, [stat_key(p) for p in paths], lambda: decode(kind, dict(zip(files, paths)))


def _find(folder: Path, name: str) -> Path | None:
    for p in (folder / name, folder / f"{name}.gz"):
        if p.is_file():
            return p
    return None


def _download(kind: str, root: Path) -> None:
    import torchvision.datasets as tvd  # late: only a download needs it

    make = {"cifar100": lambda: [tvd.CIFAR100(str(root), train=t, download=True) for t in (True, False)],
            "svhn": lambda: [tvd.SVHN(str(root), split=s, download=True) for s in ("train", "test")],
            "mnist": lambda: tvd.MNIST(str(root), download=True),
            "fashionmnist": lambda: tvd.FashionMNIST(str(root), download=True)}[kind]
    try:
        make()
    except Exception:  # offline: the missing-files error that follows says what to do
        pass


# ------------------------------------------------------------------ CIFAR-100
class _ArrayUnpickler(pickle.Unpickler):
    """CIFAR-100's pickles hold dicts of bytes, lists and numpy arrays: allow exactly
    numpy's array rebuilders, so a crafted file cannot run code (pickle.load would)."""
    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a CIFAR-100 file")


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            return _ArrayUnpickler(fh, encoding="latin1").load()
    except Exception as exc:
        raise DataError(f"{path} is not a CIFAR-100 python file ({type(exc).__name__}: {exc})") from None


def _cifar100(kind: str, paths: dict[str, Path]):
    def split(name):
        d = _unpickle(paths[name])
        x = np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        return x, np.asarray(d["fine_labels"], dtype=np.int64)

    classes = [str(c) for c in _unpickle(paths["meta"])["fine_label_names"]]
    return (classes, *split("train"), *split("test"))


# ------------------------------------------------------------------ SVHN
def _svhn(kind: str, paths: dict[str, Path]):
    try:
        from scipy.io import loadmat
    except ImportError:
        raise DataError("--data svhn reads MATLAB files with scipy: pip install 'raylab[data]'") from None

    def split(name):
        m = loadmat(paths[name])
        x = np.asarray(m["X"], dtype=np.uint8).transpose(3, 0, 1, 2)  # (32, 32, 3, N) -> NHWC
        y = np.asarray(m["y"], dtype=np.int64).reshape(-1) % 10       # SVHN labels digit 0 as 10
        return x, y

    return ([str(i) for i in range(10)], *split("train_32x32.mat"), *split("test_32x32.mat"))


# ------------------------------------------------------------------ MNIST
_IDX = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def _idx(path: Path) -> np.ndarray:
    """An IDX file (big-endian dims after a magic of 0, 0, type 0x08 = uint8, ndim)."""
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[:3] != b"\x00\x00\x08":
        raise DataError(f"{path} is not an IDX file of unsigned bytes")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(int)
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DataError(f"{path} holds {body.size} bytes, its header says {int(np.prod(dims))}")
    return body.reshape(dims)


def _mnist(kind: str, paths: dict[str, Path]):
    def images(name):
        x = _idx(paths[name])
        x = np.pad(x, ((0, 0), (MNIST_PAD, MNIST_PAD), (MNIST_PAD, MNIST_PAD)))
        return x[..., None]  # NHWC, one channel

    classes = FASHION_CLASSES if kind == "fashionmnist" else [str(i) for i in range(10)]
    return (classes, images(_IDX[0]), _idx(paths[_IDX[1]]).astype(np.int64),
            images(_IDX[2]), _idx(paths[_IDX[3]]).astype(np.int64))
