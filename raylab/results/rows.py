"""Rows of the contract's tables as dicts: an epoch's metrics, a trial's summary, its config columns.

Every row carries the trial's resolved config as plain columns named after the
config fields, except the config's `lr`, which is `base_lr` (in metrics, `lr`
is the learning rate used during that epoch). Tuple fields (mean, std,
milestones) are JSON text so that columns stay hashable for `groupby`.
Imports neither torch nor Ray.
"""
from __future__ import annotations

import json
import math
from typing import Any

from raylab.declare.config import HIDDEN_FIELDS
from raylab.results.contract import EPOCH_COLUMNS


# ---------------------------------------------------------------- epoch rows
def epoch_row(*values: Any) -> dict[str, Any]:
    """One epoch's metrics, in EPOCH_COLUMNS order."""
    if len(values) != len(EPOCH_COLUMNS):
        raise TypeError(f"epoch_row takes {len(EPOCH_COLUMNS)} values ({', '.join(EPOCH_COLUMNS)})")
    return dict(zip(EPOCH_COLUMNS, values))


def best_and_final(rows: list[dict]) -> dict[str, Any]:
    """best_val_acc, best_epoch and final_val_acc of a trial's epoch rows, in epoch order.

    The best is the first epoch with the highest finite val_acc (a diverged
    epoch's NaN never wins); final is the last epoch's, whatever it is.
    """
    rows = sorted(rows, key=lambda r: int(r["epoch"]))
    best = max(rows, key=lambda r: r["val_acc"] if math.isfinite(r["val_acc"]) else -1.0)
    return {"best_val_acc": best["val_acc"], "best_epoch": int(best["epoch"]), "final_val_acc": rows[-1]["val_acc"]}


# --------------------------------------------------------------------- config
def config_column(name: str) -> str:
    """Column that holds config field `name` (the config's lr is `base_lr`)."""
    return "base_lr" if name == "lr" else name


def config_columns(config: dict[str, Any]) -> dict[str, Any]:
    """Flatten a config dict into contract columns; `seed` is a key column already,
    and test hooks (config.HIDDEN_FIELDS) are no column at all."""
    out = {}
    for name, value in config.items():
        if name == "seed" or name in HIDDEN_FIELDS:
            continue
        if isinstance(value, (list, tuple)):
            value = json.dumps(list(value))
        out[config_column(name)] = value
    return out


# ------------------------------------------------------------ row builders
def epoch_record(meta: dict, config: dict, row: dict) -> dict:
    """A metrics.parquet row: keys, the epoch's metrics, then the config."""
    return {**meta, "seed": config["seed"], **row, **config_columns(config)}


def trial_record(meta: dict, config: dict, **values: Any) -> dict:
    """A trials.parquet row; `values` are the contract's trial columns."""
    return {**meta, "seed": config["seed"], **values, **config_columns(config)}


def count(value: Any) -> int:
    """A trials row's count (epochs_run, restarts): missing or NaN (not reported yet) reads as 0."""
    return int(value) if value is not None and value == value else 0


def running_best(previous: dict | None, result: dict) -> dict:
    """best / final val acc of a running trial, kept up to date from its reports so far
    (the driver holds no epoch rows: readers take these as written)."""
    acc, epoch = result.get("val_acc"), int(result["epoch"])
    best, best_epoch = (previous or {}).get("best_val_acc"), (previous or {}).get("best_epoch")
    ran = (previous or {}).get("epochs_run")
    if ran is not None and ran >= epoch and best_epoch is not None and best_epoch >= epoch:
        best = best_epoch = None  # that best came from an epoch this attempt replays
    if acc is not None and acc == acc and (best is None or best != best or acc > best):
        best, best_epoch = float(acc), epoch
    return {"best_val_acc": best, "best_epoch": best_epoch, "final_val_acc": acc}


def weight_records(meta: dict, config: dict, rows: list[dict]) -> list[dict]:
    return [{**meta, "seed": config["seed"], **r} for r in rows]
