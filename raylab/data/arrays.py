"""`arrays:NAME`: a data set built in Python by the job file (`raylab.register_data`).

    raylab.register_data("blobs", train=(x, y), test=(x, y))   # -> "arrays:blobs", a config's `data`

The arrays go through the decoded-data cache like any file source, under a hash
of their content: a `raylab resume`, which does not run the job file, finds them there.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from raylab.errors import DataError

ARRAYS: dict[str, tuple] = {}  # NAME -> (classes, train_x, train_y, test_x, test_y), NHWC uint8


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


def locate(source: str, name: str, root: Path):
    """(cache label, fingerprint, decode) of the registered arrays, for the decoded-data cache
    (raylab/data/cache.py); without them, the cache a run with the job file wrote."""
    latest = root / "cache" / f"arrays-{name}.latest"
    if name in ARRAYS:
        classes, *arrays = ARRAYS[name]
        digest = hashlib.sha256()
        for a in arrays:
            digest.update(str(a.shape).encode())
            digest.update(np.ascontiguousarray(a).data)
        try:  # names the cache a resume reads; load_dataset writes the cache itself next
            latest.parent.mkdir(parents=True, exist_ok=True)
            latest.write_text(digest.hexdigest())
        except OSError:  # a read-only data root: no cache, and no resume without the job file
            pass
        return f"arrays-{name}", [digest.hexdigest()], lambda: (classes, *arrays)
    if latest.is_file():
        return (f"arrays-{name}", [latest.read_text()],
                lambda: (_ for _ in ()).throw(DataError(f"cached arrays of {source} are gone")))
    raise DataError(f"data {source}: no data set registered under '{name}': call "
                    f"raylab.register_data({name!r}, train=(x, y), test=(x, y)) in the job file")
