"""User mistakes, as one family: the CLI prints any `UserError` as one line and exits 2.

Everything else is a bug in raylab and keeps its traceback. Each kind names
where the mistake is, so a caller can catch one without the others.
"""
from __future__ import annotations

import errno
import re

# The disk, not the code: a full, read-only or forbidden folder is the user's to fix.
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM})


class UserError(ValueError):
    """Bad input or a state the user can fix; the message names what is wrong and what to do."""


class ConfigError(UserError):
    """A config field or run option with a wrong name, type or value."""


class UsageError(UserError):
    """A command line that does not parse, or a job file that defines no study."""


class DataError(UserError):
    """A data source that cannot be read, or that breaks a bound on untrusted input."""


class ResultsError(UserError):
    """A folder or file that is not in the Parquet contract."""


class CheckpointError(UserError):
    """A checkpoint that is unreadable, foreign, or of another model or seed."""


class LockError(UserError):
    """A study folder another live driver holds, or a sweep already there."""


class ClusterError(UserError):
    """A Ray cluster that cannot be started or reached, or that no trial could fit on."""


class StorageError(ResultsError):
    """A results file could not be written: disk full, read-only or not permitted."""

    def __init__(self, path: str, exc: BaseException) -> None:
        # pyarrow's OSError has no strerror, only "Failed to open ... Detail: [errno 28] No space left"
        detail = re.search(r"\[errno \d+\] ([^\n]+)", str(exc))
        reason = getattr(exc, "strerror", None) or (detail.group(1) if detail else " ".join(str(exc).split()))
        self.reason = reason  # the disk's or the store's own words, for a caller that names the fix itself
        super().__init__(f"cannot write {path}: {reason}: free space or fix permissions there, "
                         "or choose another --storage / --out; files already written are intact")

    def __reduce__(self):
        # Ray copies and pickles a trial's exception on its way to the driver: rebuild it from
        # its message, since __init__ wants the OSError that is gone by then.
        return _from_message, (type(self), str(self))


def _from_message(cls: type, message: str) -> UserError:
    error = cls.__new__(cls)
    UserError.__init__(error, message)
    return error
