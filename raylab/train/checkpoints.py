"""Trial checkpoints, one scheme for every caller: `raylab train`, sweep trials and DDP trials.

One file per trial, `<study>/checkpoints/<trial_id>.pt`, holding the last
finished epoch: model, optimiser, epoch, history and every RNG state. `build`
makes it (raylab/train/loop.py calls it through the report's `checkpoint()`), `TrialFile`
writes it after each epoch and finds it whenever a trial starts, whoever
restarts it (Tune after a crashed trial or a lost node, `raylab resume` after a
killed driver, `raylab train --resume`), and `restore` puts it back into a
model, an optimiser and the data generator. Tune's own checkpoint bookkeeping
is not used, because after a killed driver it can point at a checkpoint it had
already pruned, and the restore then fails; DDP trials use the same file
(rank 0 writes it), not Ray Train checkpoints.

Writes are atomic (temp name, fsync, rename on local disks; a single PUT on
object stores), so a kill or a full disk mid-write leaves the previous
checkpoint. Reads use `torch.load(weights_only=True)`: nothing is unpickled.
"""
from __future__ import annotations

import io
import json
import os
from typing import Any

import torch

from raylab.declare.config import TrialConfig
from raylab.errors import CheckpointError
from raylab.results.storage import exists, join, resolve_fs, write_bytes

CHECKPOINT_VERSION = 1
# A checkpoint's weights fit only a net built with these fields alike.
IDENTITY_FIELDS = ("model", "batchnorm", "activation", "shortcut", "seed")


def checkpoint_path(study_dir: str, trial_id: str) -> str:
    """Where a trial keeps the checkpoint of its last finished epoch."""
    return join(study_dir, "checkpoints", f"{trial_id}.pt")


# ------------------------------------------------------------ build / restore
def build(cfg: TrialConfig, epoch: int, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
          history: list[dict], generator: torch.Generator, device: torch.device) -> dict[str, Any]:
    """Everything needed to continue after `epoch` as if never stopped."""
    rng = {"data": generator.get_state(), "torch": torch.get_rng_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    return {"version": CHECKPOINT_VERSION, "config": cfg.to_json(), "epoch": epoch,
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "history": list(history), "rng": rng}


def restore(state: dict, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
            generator: torch.Generator, device: torch.device) -> tuple[list[dict], int]:
    """Load `state` into the live objects; returns (history so far, first epoch to train)."""
    model.load_state_dict(state["model"])
    load_optimizer_state(optimizer, state["optimizer"])
    generator.set_state(state["rng"]["data"])
    torch.set_rng_state(state["rng"]["torch"])
    if device.type == "cuda" and "cuda" in state["rng"]:
        torch.cuda.set_rng_state(state["rng"]["cuda"], device)
    return list(state["history"]), int(state["epoch"]) + 1


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Restore moments and step counts, but keep this config's hyperparameters: under PBT
    the checkpoint is another trial's, and its momentum and weight decay are not ours
    (lr is set every epoch from the config anyway)."""
    keep = [{k: g[k] for k in ("weight_decay", "momentum", "betas") if k in g} for g in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, values in zip(optimizer.param_groups, keep):
        group.update(values)


def check_resumable(state: dict, cfg: TrialConfig) -> None:
    """Refuse a checkpoint of another model or run: its weights would load into the wrong net."""
    saved = json.loads(state["config"])
    for name in IDENTITY_FIELDS:
        if saved.get(name) != getattr(cfg, name):
            raise CheckpointError(f"checkpoint was made with {name}={saved.get(name)!r}, "
                                  f"this run has {name}={getattr(cfg, name)!r}: use another --out")


# --------------------------------------------------------------- read / write
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
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(exc).__name__}): "
                              "delete it or use another --out") from None
    if not isinstance(ckpt, dict) or ckpt.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path} is not a raylab checkpoint (version {CHECKPOINT_VERSION})")
    return ckpt


def find_checkpoint(path: str) -> dict | None:
    """The checkpoint at `path`, or None when the trial has not finished an epoch yet."""
    return load_checkpoint(path) if exists(path) else None


class TrialFile:
    """A trial's checkpoint file: what it resumes from, and where each epoch goes.

        ckpt = TrialFile(path, cfg)            # reads and checks the file, if there is one
        train(cfg, data, report, resume=ckpt.state)
        ckpt.save(checkpoint)                  # in report(row, checkpoint), after every epoch
    """

    def __init__(self, path: str, cfg: TrialConfig, *, read: bool = True) -> None:
        self.path = path
        self.state = find_checkpoint(path) if read else None  # read=False: a fresh start overwrites it
        if self.state is not None:
            check_resumable(self.state, cfg)  # e.g. left in the folder by a run of another model

    def save(self, checkpoint) -> dict:
        """`checkpoint` is the builder train() hands to report(): nothing is built unless saved.
        Returns what it wrote (PBT hands it to Tune as well: sweep/pbt.py)."""
        state = checkpoint()
        save_checkpoint(state, self.path)
        return state

    def replay(self) -> dict:
        """After a restore, the first report carries the checkpoint's history: the driver
        may have died before it wrote those epochs, and no one reports them again."""
        return {"history": list(self.state["history"])} if self.state is not None else {}
