"""One driver per study: `lock_folder` holds a study while a driver runs it.

A local study folder is guarded by flock, which dies with its process.
Object stores (s3://, gs://) have no locks, so a driver writing there holds
`<study>/.lease.json` instead: {host, pid, token, beat}, rewritten every
HEARTBEAT_S seconds by a daemon thread. Another driver is refused while the
lease is fresh (beat within STALE_S), unless the holder is a process on this
same host that no longer exists (a killed driver resumed on the head need
not wait). After writing its lease a driver waits SETTLE_S and reads it back:
of two drivers that both found no lease, the one whose write landed last
keeps it and the other is refused (S3 reads are strongly consistent, and
SETTLE_S is far longer than the read-then-write gap of a starting driver).
"""
from __future__ import annotations

import os
import socket
import threading
import time
import uuid

from raylab.errors import LockError, StorageError
from raylab.results.storage import check_writable, is_uri, join, read_json, resolve_fs, write_json

LEASE = ".lease.json"
HEARTBEAT_S = 10.0
STALE_S = 60.0   # six missed beats: the driver is gone, or its host is cut off
SETTLE_S = 1.0


def lock_folder(root: str):
    """Hold an exclusive lock on a study folder while a driver runs it; returns the open lock file.

    flock dies with its process, so a SIGKILLed driver never leaves a stale lock.
    Object stores have no flock: there the driver holds a StorageLease.
    """
    if is_uri(root):
        return StorageLease(root)
    import fcntl
    check_writable(root)
    try:
        os.makedirs(root, exist_ok=True)
        fh = open(os.path.join(root, ".lock"), "a+")
    except OSError as exc:
        raise StorageError(root, exc) from None
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "?"
        fh.close()
        raise LockError(f"another raylab process (pid {holder}) is running a sweep in {root}: "
                        f"wait for it to end, or watch it with `raylab status {root}`") from None
    fh.seek(0)
    fh.truncate()
    fh.write(str(os.getpid()))
    fh.flush()
    return fh


class StorageLease:
    """Held while a driver runs a study on object storage; close() gives it back."""

    def __init__(self, root: str):
        self.path = join(root, LEASE)
        self.root = root
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()
        holder = read_lease(self.path)
        if holder and _alive(holder):
            raise LockError(_busy(root, holder))
        self._beat()
        time.sleep(SETTLE_S)
        holder = read_lease(self.path)
        if not holder or holder.get("token") != self.token:
            raise LockError(_busy(root, holder or {}))
        self._thread = threading.Thread(target=self._heartbeat, name="raylab-lease", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        write_json(self.path, {"host": socket.gethostname(), "pid": os.getpid(), "token": self.token,
                               "beat": time.time()})

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self._beat()
            except Exception:  # a storage hiccup: the next beat retries; STALE_S covers several
                pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        holder = read_lease(self.path)
        if holder and holder.get("token") == self.token:
            fs, p = resolve_fs(self.path)
            fs.delete_file(p)


def read_lease(path: str) -> dict | None:
    try:
        return read_json(path)
    except (FileNotFoundError, ValueError):
        return None
    except OSError as exc:  # pyarrow's S3 reports a missing key as OSError on some versions
        if "NoSuchKey" in str(exc) or "does not exist" in str(exc) or "Path does not exist" in str(exc):
            return None
        raise


def _alive(holder: dict) -> bool:
    """A fresh beat, unless the holder is a dead process on this very host."""
    if time.time() - float(holder.get("beat", 0)) > STALE_S:
        return False
    if holder.get("host") == socket.gethostname():
        try:
            os.kill(int(holder["pid"]), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
    return True


def _busy(root: str, holder: dict) -> str:
    age = time.time() - float(holder.get("beat", time.time()))
    return (f"another raylab driver (host {holder.get('host', '?')}, pid {holder.get('pid', '?')}, "
            f"alive {age:.0f} s ago) is running the sweep in {root}: wait for it to end, or watch it with "
            f"`raylab status {root}`; a lease older than {STALE_S:g} s is taken over")
