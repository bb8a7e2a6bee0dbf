"""Where results live: a local path or a pyarrow filesystem URI (s3://, gs://).

One helper says which (`is_uri`); files are replaced atomically (`write_bytes`).
The lock a driver holds on its study folder is lock.py. Imports neither
torch nor Ray.
"""
from __future__ import annotations

import json
import os
import uuid
from typing import Any

import pyarrow.fs as pafs

from raylab.errors import StorageError


def is_uri(path: str) -> bool:
    """True for s3://, gs://, file:// ...: a pyarrow filesystem URI, not a local path."""
    return "://" in str(path)


def absolute(path: str) -> str:
    """A URI as it is, a local path made absolute."""
    return path if is_uri(path) else os.path.abspath(path)


def resolve_fs(root: str) -> tuple[pafs.FileSystem, str]:
    if is_uri(root):
        return pafs.FileSystem.from_uri(root)
    return pafs.LocalFileSystem(), os.path.abspath(root)


def join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts])


def exists(path: str) -> bool:
    fs, p = resolve_fs(path)
    return fs.get_file_info(p).type != pafs.FileType.NotFound


def write_bytes(data, path: str) -> None:
    """Replace the file at `path` with `data` (bytes-like) so that readers see the old
    file or the new one, never part of one, even if this process is killed mid-write.

    Local disks: temp name, fsync, rename. Object stores (s3://, gs://) publish a
    PUT whole, so there the write goes in place. A full or read-only disk raises
    StorageError and leaves the previous file as it was.
    """
    fs, p = resolve_fs(path)
    try:
        if not isinstance(fs, pafs.LocalFileSystem):  # keys need no folders: one PUT, nothing else
            with fs.open_output_stream(p) as fh:
                fh.write(data)
            return
        fs.create_dir(p.rsplit("/", 1)[0], recursive=True)
        _remove_stale_temps(p)
        tmp = f"{p}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())  # the rename must not land before the bytes do
            os.replace(tmp, p)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    except OSError as exc:
        raise StorageError(path, exc) from None


def _remove_stale_temps(path: str) -> None:
    folder, name = os.path.split(path)
    remove_stale_temps(folder, prefix=f"{name}.tmp-")


def remove_stale_temps(folder: str, prefix: str = "") -> None:
    """Temp files (NAME.tmp-PID-RANDOM) of writers killed mid-write: readers never open
    them, but tidy up; a temp whose writer is alive is a write in flight and stays."""
    try:
        entries = os.listdir(folder)
    except OSError:
        return
    for entry in entries:
        if not entry.startswith(prefix) or ".tmp-" not in entry:
            continue
        try:
            pid = int(entry.rsplit(".tmp-", 1)[1].split("-")[0])
            os.kill(pid, 0)  # still alive: its write is in flight
        except ProcessLookupError:
            try:
                os.remove(os.path.join(folder, entry))
            except OSError:
                pass
        except (ValueError, IndexError, PermissionError):
            pass


def check_writable(folder: str) -> None:
    """Fail before a run starts, not hours in, when `folder` cannot take new files."""
    if is_uri(folder):
        return  # object stores: a failed PUT changes nothing
    existing = os.path.abspath(folder)
    while not os.path.isdir(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)  # probe where the folder would be made: create nothing
    probe = os.path.join(existing, f".write-test-{os.getpid()}")
    try:
        with open(probe, "w") as fh:
            fh.write("ok")
        os.remove(probe)
    except OSError as exc:
        raise StorageError(folder, exc) from None


def delete_file(path: str) -> None:
    """Delete one file or object, leaving no empty folder marker behind on s3:// (see
    raylab/results/conditional.py's delete_object)."""
    from raylab.results.conditional import delete_object

    if path.startswith("s3://") and delete_object(path):
        return
    fs, p = resolve_fs(path)
    fs.delete_file(p)


def read_bytes(path: str) -> bytes:
    fs, p = resolve_fs(path)
    with fs.open_input_stream(p) as fh:
        return fh.read()


def read_json(path: str) -> Any:
    return json.loads(read_bytes(path).decode())


def write_json(path: str, obj: Any) -> None:
    write_bytes(json.dumps(obj, indent=1, default=str).encode(), path)
