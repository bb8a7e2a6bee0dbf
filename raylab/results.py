"""The Parquet contract: one folder per study holding three tidy tables.

    metrics.parquet  one row per (trial_id, epoch); epoch 0 = evaluation before training
    trials.parquet   one row per trial_id
    weights.parquet  per-layer histograms of each trial's final weights

Every row carries the trial's resolved config as plain columns named after the
config fields, except the config's `lr`, which is `base_lr` (in metrics, `lr`
is the learning rate used during that epoch). Tuple fields (mean, std,
milestones) are JSON text so that columns stay hashable for `groupby`.

Files are written to a temporary name and renamed, so a reader sees the old
file or the new one, never half of one. This module imports neither torch nor
Ray: the `analysis` package and notebooks use it with pandas alone.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from raylab.config import HIDDEN_FIELDS
from raylab.errors import ResultsError, StorageError  # noqa: F401  (analysis catches ResultsError from here)
from raylab.storage import exists, join, resolve_fs, write_bytes  # noqa: F401  (re-exported for readers)

METRICS, TRIALS, WEIGHTS = "metrics.parquet", "trials.parquet", "weights.parquet"
KEY_COLUMNS = ["study", "trial_id", "variant", "seed"]
# What train() measures per epoch; train_images: images trained on that epoch,
# summed over DDP ranks (the whole split once; 0 for epoch 0, which only evaluates).
EPOCH_COLUMNS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr",
                 "epoch_seconds", "images_per_second", "train_images"]
METRIC_COLUMNS = KEY_COLUMNS + EPOCH_COLUMNS
SUMMARY_COLUMNS = ["best_val_acc", "best_epoch", "final_val_acc"]  # best_and_final() computes them
TRIAL_COLUMNS = KEY_COLUMNS + [
    "status", "epochs_run", *SUMMARY_COLUMNS,
    "n_params", "macs", "wall_seconds", "restarts", "error",
]
WEIGHT_COLUMNS = KEY_COLUMNS + ["layer", "bin_left", "bin_right", "count"]
REQUIRED = {METRICS: METRIC_COLUMNS, TRIALS: TRIAL_COLUMNS, WEIGHTS: WEIGHT_COLUMNS}


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


def write_table(df: pd.DataFrame, path: str) -> None:
    """Write `df` as Parquet to `path`, atomically (see write_bytes)."""
    buf = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), buf)
    write_bytes(buf.getvalue(), path)




def read_table(study_dir: str, name: str, *, required: bool = True) -> pd.DataFrame:
    """Read one contract table of a study folder, checking its columns."""
    path = join(study_dir, name)
    fs, p = resolve_fs(path)
    if fs.get_file_info(p).type == pafs.FileType.NotFound:
        if required:
            raise ResultsError(f"{path} not found: is {study_dir} a raylab study folder?")
        return pd.DataFrame(columns=REQUIRED[name])
    try:
        df = pq.read_table(p, filesystem=fs).to_pandas()
    except (pa.ArrowInvalid, OSError) as exc:
        raise ResultsError(f"{path} is not a readable Parquet file ({exc})") from None
    missing = [c for c in REQUIRED[name] if c not in df.columns]
    if missing:
        raise ResultsError(f"{path} lacks contract columns {missing}: not a raylab results file")
    return df


# --------------------------------------------------------------------- writer
@dataclass
class StudyWriter:
    """Accumulates rows for one study folder and rewrites its tables atomically.

    Rows are upserted by key ((trial_id, epoch), trial_id, (trial_id, layer,
    bin)), so an epoch reported again after a restart from a checkpoint
    replaces its earlier row instead of doubling it. Existing tables are read
    back on start, which is what makes a resumed sweep append, not overwrite.
    """

    root: str
    metrics: dict[tuple[str, int], dict] = field(default_factory=dict)
    trials: dict[str, dict] = field(default_factory=dict)
    weights: dict[str, list[dict]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for row in read_table(self.root, METRICS, required=False).to_dict("records"):
            self.metrics[(row["trial_id"], int(row["epoch"]))] = row
        for row in read_table(self.root, TRIALS, required=False).to_dict("records"):
            self.trials[row["trial_id"]] = row
        for row in read_table(self.root, WEIGHTS, required=False).to_dict("records"):
            self.weights.setdefault(row["trial_id"], []).append(row)

    def add_epoch(self, row: dict) -> None:
        self.metrics[(row["trial_id"], int(row["epoch"]))] = row

    def drop_epochs_after(self, trial_id: str, epoch: int) -> None:
        """Forget rows a crashed attempt reported past the checkpoint it restarts from."""
        for key in [k for k in self.metrics if k[0] == trial_id and k[1] > epoch]:
            del self.metrics[key]

    def set_trial(self, row: dict) -> None:
        self.trials[row["trial_id"]] = {**self.trials.get(row["trial_id"], {}), **row}

    def set_weights(self, trial_id: str, rows: list[dict]) -> None:
        self.weights[trial_id] = rows

    def flush(self) -> None:
        metrics = sorted(self.metrics.values(), key=lambda r: (r["trial_id"], int(r["epoch"])))
        trials = sorted(self.trials.values(), key=lambda r: r["trial_id"])
        weights = [r for tid in sorted(self.weights) for r in self.weights[tid]]
        write_table(_frame(metrics, METRIC_COLUMNS), join(self.root, METRICS))
        write_table(_frame(trials, TRIAL_COLUMNS), join(self.root, TRIALS))
        write_table(_frame(weights, WEIGHT_COLUMNS), join(self.root, WEIGHTS))


def _frame(rows: list[dict], leading: list[str]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    for col in leading:
        if col not in df.columns:
            df[col] = pd.Series(dtype="float64")
    rest = [c for c in df.columns if c not in leading]
    df = df[leading + rest]
    # Object columns mixing None and str would otherwise be typed by whichever comes first.
    for col in ("error",):
        if col in df.columns:
            df[col] = df[col].astype("string")
    return df


# ------------------------------------------------------------ row builders
def epoch_record(meta: dict, config: dict, row: dict) -> dict:
    """A metrics.parquet row: keys, the epoch's metrics, then the config."""
    return {**meta, "seed": config["seed"], **row, **config_columns(config)}


def trial_record(meta: dict, config: dict, **values: Any) -> dict:
    """A trials.parquet row; `values` are the contract's trial columns."""
    return {**meta, "seed": config["seed"], **values, **config_columns(config)}


def weight_records(meta: dict, config: dict, rows: list[dict]) -> list[dict]:
    return [{**meta, "seed": config["seed"], **r} for r in rows]
