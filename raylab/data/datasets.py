"""Data sets beyond CIFAR-10: torchvision's CIFAR-100, SVHN, MNIST and FashionMNIST files,
and arrays built in Python (`register_data`), with the same cache and object-store sharing.

    --data cifar100       <root>/cifar-100-python/{train,test,meta}      (fine labels)
    --data svhn           <root>/{train,test}_32x32.mat                  (label 10 is digit 0)
    --data mnist          <root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]
    --data fashionmnist   <root>/FashionMNIST/raw/... (same files)
    --data arrays:NAME    raylab.register_data(NAME, ...) in the job file

These are torchvision's on-disk layouts, so `torchvision.datasets.X(root,
download=True)` fills them where there is internet. MNIST's 28x28 digits are
zero-padded to 32x32, as LeNet-5 read them (LeCun et al. 1998), so every
built-in model takes them; their one channel reaches the model as
in_channels=1. A source without published normalisation statistics gets its
training split's per-channel mean and std (`with_stats`), unless the config
names its own.
"""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import pickle
from pathlib import Path

import numpy as np

from raylab.data.archive import stat_key
from raylab.declare.config import is_dataset_source
from raylab.errors import DataError

MNIST_PAD = 2  # 28 + 2 * 2 = 32
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                   "Bag", "Ankle boot"]
ARRAYS: dict[str, tuple] = {}  # NAME -> (classes, train_x, train_y, test_x, test_y), NHWC uint8


def locate(source: str, root: Path, download: bool):
    """(cache label, fingerprint, decode) of one of this module's sources, for data.load_dataset's
    decoded-data cache; decode() returns (classes, train_x, train_y, test_x, test_y), NHWC."""
    kind, _, name = source.partition(":")
    if kind == "arrays":
        return _arrays(source, name, root)
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


# ------------------------------------------------------------------ arrays
def register_data(name: str, *, train: tuple, test: tuple, classes: list[str] | None = None) -> str:
    """A data set built in Python: `train=(x, y)`, `test=(x, y)`, x uint8 of shape (N, H, W, C)
    or (N, H, W). Returns the source string, 'arrays:NAME', for a config's `data`."""
    if not name or not all(c.isalnum() or c in "_-" for c in name):
        raise DataError(f"register_data: name {name!r} must be letters, digits, '_' or '-'")
    splits = []
    for which, (x, y) in (("train", train), ("test", test)):
        x, y = np.asarray(x), np.asarray(y)
        if x.ndim == 3:
            x = x[..., None]
        if x.ndim != 4 or x.dtype != np.uint8:
            raise DataError(f"register_data {name}: {which} images must be uint8 (N, H, W[, C]), "
                            f"got {x.dtype} {x.shape}")
        if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer) or (y < 0).any():
            raise DataError(f"register_data {name}: {which} labels must be {len(x)} integers >= 0")
        splits += [x, y.astype(np.int64)]
    if splits[0].shape[1:] != splits[2].shape[1:]:
        raise DataError(f"register_data {name}: train images are {splits[0].shape[1:]}, test {splits[2].shape[1:]}")
    n = int(max(splits[1].max(), splits[3].max())) + 1
    classes = [str(c) for c in classes] if classes is not None else [str(i) for i in range(n)]
    if len(classes) < n:
        raise DataError(f"register_data {name}: labels go up to {n - 1} but {len(classes)} class names were given")
    ARRAYS[name] = (classes, *splits)
    return f"arrays:{name}"


def _arrays(source: str, name: str, root: Path):
    """The registered arrays, through the decoded-data cache: a `raylab resume`, which
    does not run the job file, finds them there."""
    if name in ARRAYS:
        classes, *arrays = ARRAYS[name]
        digest = hashlib.sha256()
        for a in arrays:
            digest.update(str(a.shape).encode())
            digest.update(np.ascontiguousarray(a).data)
        latest = root / "cache" / f"arrays-{name}.latest"
        try:  # names the cache a resume reads; data.load_dataset writes the cache itself next
            latest.parent.mkdir(parents=True, exist_ok=True)
            latest.write_text(digest.hexdigest())
        except OSError:  # a read-only data root: no cache, and no resume without the job file
            pass
        return f"arrays-{name}", [digest.hexdigest()], lambda: (classes, *arrays)
    latest = root / "cache" / f"arrays-{name}.latest"
    if latest.is_file():
        return (f"arrays-{name}", [latest.read_text()],
                lambda: (_ for _ in ()).throw(DataError(f"cached arrays of {source} are gone")))
    raise DataError(f"data {source}: no data set registered under '{name}': call "
                    f"raylab.register_data({name!r}, train=(x, y), test=(x, y)) in the job file")


# ------------------------------------------------------------------ statistics
PUBLISHED = {  # per-channel mean/std on [0, 1] pixels, as the literature normalises these sets
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}  # MNIST's published (0.1307, 0.3081) are of unpadded 28x28 digits: ours are computed
_STATS: dict[str, tuple] = {}


def with_stats(cfg, data):
    """The config with the data set's normalisation when the config kept the CIFAR-10 default
    and the source is one of this module's (cifar10, folder: and synthetic keep the course's)."""
    default = {f.name: f.default for f in dataclasses.fields(cfg)}  # TrialConfig's: CIFAR-10's mean/std
    if not is_dataset_source(data.source) or (tuple(cfg.mean), tuple(cfg.std)) != (default["mean"], default["std"]):
        return cfg
    if data.source in PUBLISHED:
        mean, std = PUBLISHED[data.source]
    else:
        if data.source not in _STATS:
            _STATS[data.source] = channel_stats(data.train_x)
        mean, std = _STATS[data.source]
    return dataclasses.replace(cfg, mean=mean, std=std)


def channel_stats(x_uint8, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std on [0, 1] pixels of (N, C, H, W) uint8, in chunks: a float64
    copy of CIFAR-size data at once would take 1.2 GB."""
    import torch

    total = torch.zeros(x_uint8.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for i in range(0, len(x_uint8), chunk):
        part = x_uint8[i:i + chunk].double() / 255.0
        total += part.sum(dim=(0, 2, 3))
        squares += (part * part).sum(dim=(0, 2, 3))
    n = x_uint8.numel() / x_uint8.shape[1]
    mean = total / n
    std = (squares / n - mean * mean).clamp_min(1e-6).sqrt()
    return tuple(round(v, 4) for v in mean.tolist()), tuple(round(max(v, 1e-3), 4) for v in std.tolist())
