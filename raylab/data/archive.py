"""Untrusted image-folder trees and archives (.tar, .tar.gz, .tgz, .zip), read in place, bounded.

An archive may come from anyone: a few MB of .zip/.tar.gz can declare terabytes
(zip bombs), so declared sizes are checked before anything is decompressed;
member paths with `..`, absolute paths, links and devices are refused before
anything is read; an image's pixel count is checked from its header before it
is decoded. `decode_folder(path)` returns (classes, train_x, train_y, test_x,
test_y) as numpy arrays, in an order that is the same for a tree, a .tar and a .zip.
"""
from __future__ import annotations

import concurrent.futures
import io
import math
import os
import tarfile
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from raylab.errors import DataError

IMAGE_SUFFIXES = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}

# (zip bombs), so declared sizes are checked before anything is decompressed.
# A CIFAR-style image is a few KB and ImageNet-1k has 1.33M files.
MAX_MEMBER_MB = 64        # per file; RAYLAB_MAX_MEMBER_MB overrides
MAX_ARCHIVE_MB = 4096     # all files together; RAYLAB_MAX_ARCHIVE_MB overrides
MAX_MEMBERS = 2_000_000   # entries of any kind: each costs memory even when empty
MAX_IMAGE_PIXELS = 4096 * 4096  # a small PNG can claim gigapixels; CIFAR-style images are 32x32


# ---------------------------------------------------------- image folders

def stat_key(p: Path) -> list:
    """A file's cache fingerprint: (path, size, mtime_ns); any rewrite changes mtime_ns."""
    st = p.stat()
    return [str(p.resolve()), st.st_size, st.st_mtime_ns]


def decode_folder(path: Path):
    """Read every image of a tree or archive, decode, and sort by (split, class, path)."""
    keys, chunks, converted = [], [], []  # (split, class, name) per image, decoded chunks, non-RGB names
    wraps = set()
    with _Decoder() as decoder:
        for parts, name, blob in _members(path):
            # Allow one directory wrapping train/ and test/ (what `tar czf x.tgz mydata/` makes).
            i = 0 if parts[0] in ("train", "test") else 1
            if len(parts) < i + 3 or parts[i] not in ("train", "test"):
                continue  # README, stray files, images directly under train/
            if _suffix(parts[-1]) not in IMAGE_SUFFIXES or parts[-1].startswith("."):
                continue
            wraps.add(parts[:i])
            keys.append((parts[i], parts[i + 1], name))
            decoder.add(name, blob)
        chunks, converted = decoder.results()
    if len(wraps) > 1:
        raise DataError(f"{path} holds more than one train/ tree ({sorted('/'.join(w) for w in wraps)}): keep one")
    classes = sorted({c for split, c, _ in keys if split == "train"})
    if not classes:
        raise DataError(f"{path} has no train/<class>/ folders with .png/.jpg images: expected train/<class>/*.png and test/<class>/*.png")
    extra = sorted({c for split, c, _ in keys if split == "test"} - set(classes))
    if extra:
        raise DataError(f"{path}: test/ has classes not in train/ ({', '.join(extra)}): use the same class folders in both")
    if not any(split == "test" for split, _, _ in keys):
        raise DataError(f"{path} has no test/<class>/ images: add a test/ tree with the same class folders as train/")
    if converted:
        warnings.warn(f"{path}: {len(converted)} image(s) were not RGB (e.g. {converted[0]}), converted to RGB", stacklevel=3)

    shapes = {c.shape[1:] for _, c in chunks}
    if len(shapes) > 1:  # sizes are uniform inside a chunk; name one file of each size
        (n1, c1), (n2, c2) = [next(nc for nc in chunks if nc[1].shape[1:] == s) for s in list(shapes)[:2]]
        raise DataError(f"mixed image sizes: {n1} is {c1.shape[2]}x{c1.shape[1]} but {n2} is {c2.shape[2]}x{c2.shape[1]}: resize all images to one size")
    images = np.concatenate([c for _, c in chunks])  # (N, H, W, 3), reading order
    order = sorted(range(len(keys)), key=keys.__getitem__)  # same order for a tree, .tar and .zip
    label = {c: i for i, c in enumerate(classes)}
    out = []
    for split in ("train", "test"):
        idx = np.array([k for k in order if keys[k][0] == split])
        out += [images[idx], np.array([label[keys[k][1]] for k in idx])]
    return (classes, *out)


def _members(path: Path) -> Iterator[tuple[tuple[str, ...], str, bytes]]:
    """Yield (path parts, display name, file bytes) from a tree, tar or zip, never extracting."""
    name = path.name.lower()
    try:
        if path.is_dir():
            if not (path / "train").is_dir():
                raise DataError(f"{path} has no train/ folder: expected train/<class>/*.png and test/<class>/*.png")
            for p in tree_files(path):
                yield p.relative_to(path).parts, str(p), p.read_bytes()
        elif name.endswith(".zip"):
            with zipfile.ZipFile(path) as zf:
                infos = zf.infolist()  # the central directory: sizes known before any data is read
                budget = _Budget.from_env(path)
                for info in infos:
                    budget.add(info.filename, info.file_size)
                for info in infos:
                    is_link = (info.external_attr >> 16) & 0o170000 == 0o120000
                    parts = _safe_parts(path, info.filename, is_link)
                    if parts and not info.is_dir():
                        yield parts, f"{path}:{info.filename}", _read_zip_member(zf, info)
        elif name.endswith((".tar", ".tar.gz", ".tgz")):
            # A tar states sizes only in each member's header, met as the stream is read:
            # check each on arrival, so an endless stream stops once the budget is spent.
            budget = _Budget.from_env(path)
            with tarfile.open(path, "r:*", tarinfo=budget.tarinfo_class()) as tf:  # streams: gzip is read once
                for m in tf:
                    budget.add(m.name, m.size)
                    parts = _safe_parts(path, m.name, not (m.isfile() or m.isdir()))
                    if parts and m.isfile():
                        yield parts, f"{path}:{m.name}", tf.extractfile(m).read()
        else:
            raise DataError(f"{path} is not a folder, .tar, .tar.gz, .tgz or .zip: give an image-folder tree or an archive of one")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as e:
        raise DataError(f"cannot read {path} ({e}): check it is a readable folder or a complete .tar/.tar.gz/.zip") from e


def _read_zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    # zipfile never returns more than file_size bytes, so the declared sizes the
    # budget checked bound what is kept. read(file_size), not zf.read(): read()
    # lets zlib inflate up to 1 GiB per call before trimming to file_size, so a
    # member that understates its size still peaked at ~1.4 GB RSS (measured: 700 MB
    # of zeros declared as 10 bytes); read(n) inflates at most max(n, 4 KiB).
    with zf.open(info) as f:
        return f.read(info.file_size)


@dataclass
class _Budget:
    """Declared uncompressed sizes of an archive, checked before a member is read."""
    archive: Path
    member_limit: int  # bytes
    total_limit: int   # bytes
    max_members: int
    total: int = 0
    count: int = 0

    @classmethod
    def from_env(cls, archive: Path) -> _Budget:
        return cls(archive, _limit_bytes("RAYLAB_MAX_MEMBER_MB", MAX_MEMBER_MB),
                   _limit_bytes("RAYLAB_MAX_ARCHIVE_MB", MAX_ARCHIVE_MB), MAX_MEMBERS)

    def add(self, member: str, size: int) -> None:
        self.check_member(member, size)
        self.count += 1
        self.total += size
        if self.total > self.total_limit:
            raise DataError(
                f"{self.archive}: members declare over {_mib(self.total_limit)} uncompressed in total "
                f"(passed at member {member}, {_mib(self.total)} so far), a possible zip bomb: "
                "extract it yourself and use folder:DIR, or raise RAYLAB_MAX_ARCHIVE_MB if the size is genuine")
        if self.count > self.max_members:
            raise DataError(
                f"{self.archive}: more than {self.max_members:,} members (passed at member {member}), "
                "a possible zip bomb: extract it yourself and use folder:DIR")

    def check_member(self, member: str, size: int) -> None:
        if size > self.member_limit:
            raise DataError(
                f"{self.archive}: member {member} declares {_mib(size)} uncompressed, over the "
                f"{_mib(self.member_limit)} limit per file, a possible zip bomb: remove it from the archive, "
                "or raise RAYLAB_MAX_MEMBER_MB if the size is genuine")

    def tarinfo_class(self) -> type[tarfile.TarInfo]:
        """TarInfo that checks every header as tarfile parses it.

        tarfile reads a pax or GNU long-name header's whole payload into memory
        before it yields the member that follows, so a bomb hidden there is never
        seen by the loop over members; frombuf (public API) sees every header first.
        """
        budget = self

        class Checked(tarfile.TarInfo):
            __slots__ = ()  # like TarInfo: no per-member __dict__ (60k+ members)

            @classmethod
            def frombuf(cls, buf, encoding, errors):
                info = super().frombuf(buf, encoding, errors)
                budget.check_member(info.name, info.size)
                return info

        return Checked


def _limit_bytes(var: str, default_mb: float) -> int:
    text = os.environ.get(var, "").strip()
    if not text:
        return int(default_mb * 2**20)
    try:
        mb = float(text)
    except ValueError:
        mb = math.nan
    if not (math.isfinite(mb) and mb > 0):
        raise DataError(f"{var}={text!r} is not a positive number of MiB: unset it (default {default_mb}) or give e.g. {var}={default_mb}")
    return int(mb * 2**20)


def _mib(n: int) -> str:
    # Bytes below 1 MiB: a small RAYLAB_*_MB limit would otherwise print as "0.0 MiB".
    return f"{n / 2**20:,.1f} MiB" if n >= 2**20 else f"{n:,} bytes"


def tree_files(path: Path) -> list[Path]:
    return [p for split in ("train", "test") for p in sorted((path / split).rglob("*")) if p.is_file()]


def _safe_parts(archive: Path, member: str, special: bool) -> tuple[str, ...]:
    """Refuse members that could point outside the tree even though nothing is extracted."""
    if special:
        raise DataError(f"{archive}: member {member} is a link or device: archives may hold only files and folders")
    parts = member.replace("\\", "/").split("/")  # string ops: pathlib costs ~1 s per 60k members
    if parts[0] == "" or ":" in parts[0] or ".." in parts:
        raise DataError(f"{archive}: member {member} has an absolute or '..' path: rebuild the archive with relative paths")
    return tuple(p for p in parts if p not in ("", ".") and not p.startswith("__MACOSX"))


def _suffix(name: str) -> str:
    return "." + name.rpartition(".")[2].lower()


# ------------------------------------------------------------- decoding

class _Decoder:
    """Decode images in chunks; past the first chunk, in worker processes.

    PIL spends ~100 us per 32x32 JPEG, mostly Python overhead under the GIL, so
    threads do not help (measured slower); processes overlap decoding with the
    (single-threaded) tar stream. Small data sets never start a pool.
    """
    CHUNK = 2048

    def __init__(self):
        self.pool, self.pending, self.names, self.blobs = None, [], [], []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)

    def add(self, name: str, blob: bytes) -> None:
        self.names.append(name)
        self.blobs.append(blob)
        if len(self.names) == self.CHUNK:
            self._submit()

    def _submit(self) -> None:
        names, blobs, self.names, self.blobs = self.names, self.blobs, [], []
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        if self.pool is None and self.pending and workers > 1:
            import multiprocessing

            # fork: the child needs only PIL and numpy; spawn would re-import torch (~2 s) per worker.
            ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
            self.pool = concurrent.futures.ProcessPoolExecutor(min(workers, 8), mp_context=ctx)
        if self.pool is None:
            self.pending.append(concurrent.futures.Future())
            self.pending[-1].set_result(_decode_chunk(names, blobs))
        else:
            self.pending.append(self.pool.submit(_decode_chunk, names, blobs))

    def results(self) -> tuple[list[tuple[str, np.ndarray]], list[str]]:
        if self.names:
            self._submit()
        out = [f.result() for f in self.pending]
        return [(n, a) for n, a, _ in out], [c for _, _, conv in out for c in conv]


def _decode_chunk(names: list[str], blobs: list[bytes]) -> tuple[str, np.ndarray, list[str]]:
    """-> (first name, uint8 (n, H, W, 3), names of non-RGB images converted)."""
    arrays, converted = [], []
    for name, blob in zip(names, blobs):
        try:
            # The format hint skips PIL's probing of every plugin: ~15% faster on 32x32 JPEGs.
            with Image.open(io.BytesIO(blob), formats=(IMAGE_SUFFIXES[_suffix(name)],)) as im:
                if im.width * im.height > MAX_IMAGE_PIXELS:  # known from the header, before decoding
                    raise DataError(f"image {name} claims {im.width}x{im.height} pixels, over the "
                                    f"{MAX_IMAGE_PIXELS:,}-pixel bound for small-image data sets: "
                                    "resize it or remove it")
                if im.mode != "RGB":
                    converted.append(name)
                    im = im.convert("RGB")
                # tobytes + frombuffer: np.asarray(im) takes the same path with more overhead
                a = np.frombuffer(im.tobytes(), np.uint8).reshape(im.height, im.width, 3)
        except DataError:
            raise
        except Exception as e:  # PIL raises many types for broken files
            raise DataError(f"cannot decode image {name} ({type(e).__name__}: {e}): replace or delete it") from None
        if arrays and a.shape != arrays[0].shape:
            raise DataError(f"mixed image sizes: {names[0]} is {arrays[0].shape[1]}x{arrays[0].shape[0]} but {name} is {a.shape[1]}x{a.shape[0]}: resize all images to one size")
        arrays.append(a)
    return names[0], np.stack(arrays), converted
