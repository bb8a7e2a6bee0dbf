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
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from raylab import parts
from raylab.config import HIDDEN_FIELDS
from raylab.errors import ResultsError, StorageError  # noqa: F401  (analysis catches ResultsError from here)
from raylab.storage import exists, join, resolve_fs, write_bytes  # noqa: F401  (re-exported for readers)
from raylab.tables import (EPOCH_COLUMNS, KEY_COLUMNS, METRIC_COLUMNS, METRICS, REQUIRED,  # noqa: F401  (the contract)
                           SUMMARY_COLUMNS, TRIAL_COLUMNS, TRIALS, WEIGHT_COLUMNS, WEIGHTS, arrow_table)


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
    """Read one contract table of a study folder, checking its columns: the compacted
    file and the parts flushed since, one row per key (raylab/parts.py)."""
    path = join(study_dir, name)
    try:
        df = parts.read_resolved(study_dir, name)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ResultsError(f"{path} is not a readable Parquet file ({exc})") from None
    if df is None:
        if required:
            raise ResultsError(f"{path} not found: is {study_dir} a raylab study folder?")
        return pd.DataFrame(columns=REQUIRED[name])
    missing = [c for c in REQUIRED[name] if c not in df.columns]
    if missing:
        raise ResultsError(f"{path} lacks contract columns {missing}: not a raylab results file")
    return df


# --------------------------------------------------------------------- writer
SMALL_ROWS = 20_000  # up to this many rows on disk, every flush also compacts (~50 ms here)
_MERGER = ThreadPoolExecutor(1, thread_name_prefix="raylab-merge")  # merges of parts, off the flush path


@dataclass
class StudyWriter:
    """Writes one study folder: each flush appends only the rows added since the last
    one, as one Parquet part per table (raylab/parts.py), so its cost does not grow
    with the study.

    It holds the latest row of each trial (`trials`, what a driver decides with)
    and the rows not flushed yet, never the study's history. Rows are keyed
    ((trial_id, epoch), trial_id, a trial's histograms), and readers keep the
    latest, so an epoch reported again after a restart replaces its earlier row.
    A resumed sweep starts from the trials already on disk and appends after
    them. While the study holds at most `small_rows` rows every flush compacts,
    so small studies are the three files they always were; `close` compacts any.
    """

    root: str
    small_rows: int = SMALL_ROWS
    trials: dict[str, dict] = field(default_factory=dict)
    _metrics: list[dict] = field(default_factory=list)
    _weights: dict[str, list[dict]] = field(default_factory=dict)
    _dirty: set[str] = field(default_factory=set)
    _merging: Future | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        for row in read_table(self.root, TRIALS, required=False).to_dict("records"):
            self.trials[row["trial_id"]] = row
        parts.drop_uncommitted(self.root)
        self._flush_no = parts.next_flush(self.root)
        self._stacks = {t: parts.live(parts.list_parts(self.root, t), parts.compacted_through(self.root, t))
                        for t in REQUIRED}
        self._rows_on_disk = sum(_rows(self.root, t) for t in REQUIRED)

    def add_epoch(self, row: dict) -> None:
        self._metrics.append(row)

    def drop_epochs_after(self, trial_id: str, epoch: int) -> None:
        """Forget rows a crashed attempt reported past the checkpoint it restarts from."""
        self.flush()
        self.wait_for_merges()
        parts.compact(self.root, drop_after={trial_id: epoch})
        self._stacks = {t: [] for t in REQUIRED}

    def set_trial(self, row: dict) -> None:
        self.trials[row["trial_id"]] = {**self.trials.get(row["trial_id"], {}), **row}
        self._dirty.add(row["trial_id"])

    def set_weights(self, trial_id: str, rows: list[dict]) -> None:
        self._weights[trial_id] = rows

    def flush(self) -> None:
        """Write what is new as one part per table; merge or compact as the layout requires."""
        new = {METRICS: arrow_table(self._metrics, METRIC_COLUMNS),
               TRIALS: arrow_table([self.trials[t] for t in sorted(self._dirty)], TRIAL_COLUMNS),
               WEIGHTS: arrow_table([r for t in sorted(self._weights) for r in self._weights[t]], WEIGHT_COLUMNS)}
        if not any(len(df) for df in new.values()):
            return
        part = parts.Part(0, self._flush_no, self._flush_no)
        for table in (METRICS, WEIGHTS, TRIALS):  # trials last, even empty: it commits the flush
            if len(new[table]) or table == TRIALS:
                parts.write_part(self.root, table, new[table], part)
                with self._lock:
                    self._stacks[table].append(part)
        self._flush_no += 1
        self._rows_on_disk += sum(len(df) for df in new.values())
        self._metrics, self._weights, self._dirty = [], {}, set()
        if self._rows_on_disk <= self.small_rows:
            self.close()
        else:
            self._merge_in_background()  # only after the commit: a merged part holds committed flushes

    def close(self) -> None:
        """Flush, then merge every part into the three files (a sweep's end)."""
        self.flush()
        self.wait_for_merges()
        parts.compact(self.root)
        self._stacks = {t: [] for t in REQUIRED}

    def _merge_in_background(self) -> None:
        """Merge full levels of parts on a thread of their own: a flush that fills a level
        returns as fast as any other (an inline level-2 merge held Tune's loop for seconds).
        One merge at a time; what flushes add while it runs, its next pass merges."""
        if self._merging is not None:
            if not self._merging.done():
                return
            self.wait_for_merges()  # raises what the last merge met (a StorageError: one line)
        self._merging = _MERGER.submit(self._merge_levels)

    def _merge_levels(self) -> None:
        busy = True
        while busy:  # again while flushes landed meanwhile: readers of a live sweep find few parts
            busy = False
            for table in REQUIRED:
                with self._lock:
                    seen = list(self._stacks[table])
                merged = parts.merge_levels(self.root, table, seen)  # the flush thread only appends meanwhile
                with self._lock:
                    self._stacks[table] = merged + self._stacks[table][len(seen):]
                busy = busy or len(merged) < len(seen)

    def wait_for_merges(self) -> None:
        merging, self._merging = self._merging, None
        if merging is not None:
            merging.result()


def _rows(root: str, table: str) -> int:
    """Rows on disk for `table` (an upper bound: a replaced row counts twice), from footers only."""
    paths = [join(root, table)] + [join(parts.part_dir(root, table), q.name) for q in parts.list_parts(root, table)]
    total = 0
    for path in paths:
        fs, p = resolve_fs(path)
        try:
            total += pq.read_metadata(p, filesystem=fs).num_rows
        except (FileNotFoundError, pa.ArrowInvalid, OSError):
            pass
    return total


# ------------------------------------------------------------ row builders
def epoch_record(meta: dict, config: dict, row: dict) -> dict:
    """A metrics.parquet row: keys, the epoch's metrics, then the config."""
    return {**meta, "seed": config["seed"], **row, **config_columns(config)}


def trial_record(meta: dict, config: dict, **values: Any) -> dict:
    """A trials.parquet row; `values` are the contract's trial columns."""
    return {**meta, "seed": config["seed"], **values, **config_columns(config)}


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
