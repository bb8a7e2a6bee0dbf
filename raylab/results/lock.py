"""One driver per study: `lock_folder` holds a study while a driver runs it.

A local study folder is guarded by flock, which dies with its process.
Object stores (s3://, gs://) have no locks, so a driver writing there holds
`<study>/.lease.json` instead: {host, pid, token, beat}, rewritten every
HEARTBEAT_S seconds by a daemon thread. Another driver is refused while the
lease is fresh (beat within STALE_S), unless the holder is a process on this
same host that no longer exists (a killed driver resumed on the head need
not wait).

On s3:// stores that apply preconditions (AWS S3, MinIO, recent moto: checked
once per bucket, raylab/results/conditional.py) the lease is a compare-and-swap:
it is created with If-None-Match: *, renewed and given back with If-Match on
the ETag its holder wrote, and a stale lease is taken over by replacing
exactly the stale version (If-Match on its ETag). Of any number of drivers
racing for a study, the store lets one write through; the others' writes
fail their precondition, they read the winner's fresh lease, and are refused.

Stores without preconditions (gs://, an S3-compatible server that ignores
them, or no boto3) keep a protocol of plain writes: after writing its lease a
driver waits SETTLE_S and reads it back, and of two drivers that both found no
lease the one whose write landed last keeps it. Two drivers that start within
about SETTLE_S of each other can both pass there; a compare-and-swap store
closes that gap.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
import uuid

from raylab.errors import LockError, StorageError
from raylab.results.conditional import Conflict, conditional_object
from raylab.results.storage import check_writable, delete_file, is_uri, join, read_json, write_bytes

LEASE = ".lease.json"
HEARTBEAT_S = 10.0
STALE_S = 60.0   # six missed beats: the driver is gone, or its host is cut off
SETTLE_S = 1.0   # stores without preconditions: how long a new lease settles before it is read back
TAKE_TRIES = 8   # compare-and-swap rounds before giving up: each lost round means another driver won


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
        self._cas = conditional_object(self.path)  # None: the store applies no preconditions
        self._etag = self._take() if self._cas is not None else self._take_plain()
        self._thread = threading.Thread(target=self._heartbeat, name="raylab-lease", daemon=True)
        self._thread.start()

    def _record(self) -> bytes:
        return json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "token": self.token,
                           "beat": time.time()}).encode()

    def _take(self) -> str:
        """Create the lease, or replace exactly the stale version found; the ETag written."""
        for _ in range(TAKE_TRIES):
            try:
                return self._cas.create(self._record())
            except Conflict:
                pass
            found = self._cas.read()
            if found is None:
                continue  # given back between our create and our read: create again
            holder, etag = _parse(found[0]), found[1]
            if _alive(holder):
                raise LockError(_busy(self.root, holder))
            try:
                return self._cas.replace(self._record(), etag)
            except Conflict:
                continue  # another driver took it over first: read its lease (fresh: refused)
        raise LockError(_busy(self.root, _parse((self._cas.read() or (b"{}",))[0])))

    def _take_plain(self) -> None:
        holder = read_lease(self.path)
        if holder and _alive(holder):
            raise LockError(_busy(self.root, holder))
        write_bytes(self._record(), self.path)
        time.sleep(SETTLE_S)
        holder = read_lease(self.path)
        if not holder or holder.get("token") != self.token:
            raise LockError(_busy(self.root, holder or {}))
        return None

    def _beat(self) -> None:
        if self._cas is None:
            write_bytes(self._record(), self.path)
            return
        try:
            self._etag = self._cas.replace(self._record(), self._etag)
        except Conflict:  # it went stale and another driver took it over: nothing left to renew
            self._stop.set()
            print(f"raylab: another driver took over the lease on {self.root} (this driver's beats "
                  f"stalled past {STALE_S:g} s); its results and this driver's may now mix", file=sys.stderr)

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                self._beat()
            except Exception:  # a storage hiccup: the next beat retries; STALE_S covers several
                pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        if self._cas is not None:
            try:
                self._cas.delete(self._etag)
            except Conflict:  # no longer ours: leave the new holder's lease alone
                pass
            return
        holder = read_lease(self.path)
        if holder and holder.get("token") == self.token:
            delete_file(self.path)


def _parse(body: bytes) -> dict:
    """A lease's record; an unreadable one counts as stale (beat 0)."""
    try:
        record = json.loads(body.decode())
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


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
