"""Ray's and Tune's log lines about a storage fault that raylab reports itself, kept off stderr.

A folder that fills up, turns read-only or refuses writes mid-sweep ends the sweep with
raylab's one line (raylab.errors.StorageError, exit 2). On the way out Tune logs the same
fault again: "Trial controller checkpointing failed: cannot write ...", "Experiment state
snapshotting failed", a failed sync of its own state. On stderr those lines came before or
after raylab's, so a user met Tune's noise first. This filter sits on Ray's stderr handler
only: a handler a user adds to the "ray" logger (a log file) still gets every record, and
`--debug` (the "raylab" logger at DEBUG) lets them all through.
"""
from __future__ import annotations

import logging
import re
import sys

from raylab.errors import DISK_ERRNOS, StorageError

_ERRNO = re.compile(r"\[errno (\d+)\]", re.IGNORECASE)  # pyarrow's OSError keeps the errno in its text


class StorageFaultFilter(logging.Filter):
    """Drops a record whose exception (attached, or being handled where it was logged) is,
    or was caused by, raylab's StorageError or an OSError of a full, read-only or forbidden disk."""

    def filter(self, record: logging.LogRecord) -> bool:
        if logging.getLogger("raylab").isEnabledFor(logging.DEBUG):
            return True
        exc = record.exc_info[1] if record.exc_info else sys.exc_info()[1]
        return not any(_is_storage_fault(e) for e in _chain(exc))


def hush_storage_faults() -> None:
    """Put the filter on Ray's stream handler(s), not on log files (once; Ray makes its handler
    when it is imported)."""
    for handler in logging.getLogger("ray").handlers:
        if (isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)
                and not any(isinstance(f, StorageFaultFilter) for f in handler.filters)):
            handler.addFilter(StorageFaultFilter())


def _chain(exc: BaseException | None):
    """The exception, what caused it, and what a RayTaskError wraps (its `cause`)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__ or getattr(exc, "cause", None)


def _is_storage_fault(exc: BaseException) -> bool:
    if isinstance(exc, StorageError):
        return True
    if not isinstance(exc, OSError):
        return False
    code = exc.errno if exc.errno is not None else next((int(m) for m in _ERRNO.findall(str(exc))), None)
    return code in DISK_ERRNOS
