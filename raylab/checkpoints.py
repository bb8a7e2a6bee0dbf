"""Trial checkpoints: one file per trial, `<study>/checkpoints/<trial_id>.pt`.

A trial writes its own checkpoint after every epoch and reads it back when it
starts, whoever restarts it: Tune after a crashed trial or a lost node,
`raylab resume` after a killed driver, `raylab train --resume`. Tune's own
checkpoint bookkeeping is not used for this, because after a killed driver it
can point at a checkpoint it had already pruned, and the restore then fails.

Writes are atomic (temp name, fsync, rename on local disks; a single PUT on
object stores), so a kill or a full disk mid-write leaves the previous
checkpoint. Reads use `torch.load(weights_only=True)`: nothing is unpickled.
"""
from __future__ import annotations

import io
import os

import pyarrow.fs as pafs
import torch

from raylab.config import ConfigError
from raylab.results import resolve_fs, write_bytes

CHECKPOINT_VERSION = 1


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)  # in memory first: torch's own file writer hides a full disk's errno
    write_bytes(buf.getbuffer(), str(path))


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint without unpickling arbitrary objects (weights_only)."""
    path = str(path)
    fs, p = resolve_fs(path)
    try:
        with fs.open_input_file(p) as fh:
            ckpt = torch.load(io.BytesIO(fh.read()), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a truncated or foreign file
        raise ConfigError(f"{path} is not a readable checkpoint ({type(exc).__name__}): "
                          "delete it or use another --out") from None
    if not isinstance(ckpt, dict) or ckpt.get("version") != CHECKPOINT_VERSION:
        raise ConfigError(f"{path} is not a raylab checkpoint (version {CHECKPOINT_VERSION})")
    return ckpt


def find_checkpoint(path: str) -> dict | None:
    """The checkpoint at `path`, or None when the trial has not finished an epoch yet."""
    fs, p = resolve_fs(path)
    if fs.get_file_info(p).type == pafs.FileType.NotFound:
        return None
    return load_checkpoint(path)
