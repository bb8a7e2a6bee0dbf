"""Test hooks in the training loop: where the fault tests kill or hold a trial, and the
fault a config can inject. Both are inert in normal runs (no env var, no hidden field).
"""
from __future__ import annotations

import os
import time


def fault_point(phase: str, epoch: int) -> None:
    """Where tests/test_faults.py SIGKILLs a trial, so that its kills land at points a seed
    chose, not wherever timing put them. Outside that test RAYLAB_FAULT_POINTS is unset and
    this returns at once. With it set to a folder, a trial that reaches a point named by a
    file <folder>/<trial>.<phase>.<epoch> (<trial>: the name of the trial's working folder,
    Tune's trial name, or `any` for the first process of any trial to get there, as a DDP
    worker whose folder is Ray Train's) renames it to ...hit.<pid> (atomic: a restarted
    trial passes on) and waits there for the kill, or until the test deletes the hit file
    (it holds the trial still while something else is killed, then lets it go on)."""
    folder = os.environ.get("RAYLAB_FAULT_POINTS")
    if not folder:
        return
    for trial in (os.path.basename(os.getcwd()), "any"):
        point = os.path.join(folder, f"{trial}.{phase}.{epoch}")
        hit = f"{point}.hit.{os.getpid()}"
        try:
            os.rename(point, hit)
            break
        except FileNotFoundError:
            continue
    else:
        return
    deadline = time.monotonic() + 600
    while os.path.exists(hit):
        if time.monotonic() > deadline:
            raise RuntimeError(f"fault point {point}: no kill or release came in 600 s")
        time.sleep(0.1)


class InjectedFault(RuntimeError):
    """Raised by the hidden test hook `fail_at_epoch` to test restarts; never in normal runs."""
