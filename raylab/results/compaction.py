"""`raylab compact STUDY`: a study's parts merged into its three files (raylab/results/parts.py),
refused while a driver holds the study."""
from __future__ import annotations

import contextlib
import os

from raylab.results import storage as S
from raylab.results import contract as T
from raylab.errors import LockError, ResultsError
from raylab.results.parts import compact, has_table


def compact_study(root: str) -> str:
    """`raylab compact`: refuse a folder that is no study or whose sweep still runs; one line."""
    if not any(has_table(root, t) for t in T.REQUIRED):
        raise ResultsError(f"{root} holds no raylab results (no {T.METRICS} or parts/): "
                           "give a study folder, e.g. results/lab2_lr_sweep")
    with _hold_study(root):
        changed = compact(root)
    return f"{root}: {'compacted into' if changed else 'already compact:'} {', '.join(T.REQUIRED)}"


@contextlib.contextmanager
def _hold_study(root: str):
    """Hold the study while compacting, as a driver does (raylab/results/lock.py), or refuse: a
    running driver merges parts of its own, so its folder is not ours to rewrite. Locally that
    is the driver's flock; on object stores its lease, which a compaction takes for itself."""
    busy = ResultsError(f"a sweep is running in {root}: it compacts when it ends; "
                        "run `raylab compact` after it stops")
    if S.is_uri(root):
        from raylab.results.lock import StorageLease
        try:
            held = StorageLease(root)
        except LockError:
            raise busy from None
    elif os.path.exists(S.join(root, ".lock")):
        import fcntl
        held = open(S.join(root, ".lock"), "r")
        try:
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held.close()
            raise busy from None
    else:
        yield  # no .lock: no sweep ever ran here
        return
    try:
        yield
    finally:
        held.close()
