"""`raylab compact STUDY`: a study's parts merged into its three files (raylab/results/parts.py),
refused while a driver holds the study."""
from __future__ import annotations

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
    with _unless_running(root):
        changed = compact(root)
    return f"{root}: {'compacted into' if changed else 'already compact:'} {', '.join(T.REQUIRED)}"


class _unless_running:
    """Hold the study while compacting, as a driver does (raylab/results/lock.py): a running
    driver merges parts of its own, so its folder is not ours to rewrite. Locally that is
    the driver's flock; on object stores its lease, which a compaction takes for itself."""

    def __init__(self, root: str) -> None:
        self.held = None
        busy = ResultsError(f"a sweep is running in {root}: it compacts when it ends; "
                            "run `raylab compact` after it stops")
        if S.is_uri(root):
            from raylab.results.lock import StorageLease
            try:
                self.held = StorageLease(root)
            except LockError:
                raise busy from None
            return
        if not os.path.exists(S.join(root, ".lock")):
            return  # no .lock: no sweep ever ran here
        import fcntl
        self.held = open(S.join(root, ".lock"), "r")
        try:
            fcntl.flock(self.held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.held.close()
            raise busy from None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        if self.held is not None:
            self.held.close()
