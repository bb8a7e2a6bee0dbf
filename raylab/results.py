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

import itertools
import json
import os
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

METRICS, TRIALS, WEIGHTS = "metrics.parquet", "trials.parquet", "weights.parquet"
KEY_COLUMNS = ["study", "trial_id", "variant", "seed"]
METRIC_COLUMNS = KEY_COLUMNS + [
    "epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr",
    "epoch_seconds", "images_per_second", "train_images",
]
TRIAL_COLUMNS = KEY_COLUMNS + [
    "status", "epochs_run", "best_val_acc", "best_epoch", "final_val_acc",
    "n_params", "macs", "wall_seconds", "restarts", "error",
]
WEIGHT_COLUMNS = KEY_COLUMNS + ["layer", "bin_left", "bin_right", "count"]
REQUIRED = {METRICS: METRIC_COLUMNS, TRIALS: TRIAL_COLUMNS, WEIGHTS: WEIGHT_COLUMNS}
_TEXT = {"study", "trial_id", "variant", "status", "error", "layer"}  # the contract's text columns
STATUSES = ("running", "completed", "diverged", "failed", "stopped")


class ResultsError(ValueError):
    """A folder or file that is not in the contract; the message says which and why."""


class StorageError(ResultsError):
    """A results file could not be written: disk full, read-only or not permitted."""

    def __init__(self, path: str, exc: BaseException) -> None:
        # pyarrow's OSError has no strerror, only "Failed to open ... Detail: [errno 28] No space left"
        detail = re.search(r"\[errno \d+\] ([^\n]+)", str(exc))
        reason = getattr(exc, "strerror", None) or (detail.group(1) if detail else " ".join(str(exc).split()))
        super().__init__(f"cannot write {path}: {reason}: free space or fix permissions there, "
                         "or choose another --storage / --out; files already written are intact")


def check_writable(folder: str) -> None:
    """Fail before a run starts, not hours in, when `folder` cannot take new files."""
    if "://" in folder:
        return  # object stores: a failed PUT changes nothing
    existing = os.path.abspath(folder)
    while not os.path.isdir(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)  # probe where the folder would be made: create nothing
    probe = os.path.join(existing, f".write-test-{os.getpid()}")
    try:
        with open(probe, "w") as fh:
            fh.write("ok")
        os.remove(probe)
    except OSError as exc:
        raise StorageError(folder, exc) from None


# --------------------------------------------------------------------- config
def config_column(name: str) -> str:
    """Column that holds config field `name` (the config's lr is `base_lr`)."""
    return "base_lr" if name == "lr" else name


def config_columns(config: dict[str, Any]) -> dict[str, Any]:
    """Flatten a config dict into contract columns; `seed` is a key column already."""
    out = {}
    for name, value in config.items():
        if name == "seed":
            continue
        if isinstance(value, (list, tuple)):
            value = json.dumps(list(value))
        out[config_column(name)] = value
    return out


# -------------------------------------------------------------------- storage
def resolve_fs(root: str) -> tuple[pafs.FileSystem, str]:
    if "://" in root:
        return pafs.FileSystem.from_uri(root)
    return pafs.LocalFileSystem(), os.path.abspath(root)


def join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *parts])


def checkpoint_path(study_dir: str, trial_id: str) -> str:
    """Where a trial keeps the checkpoint of its last finished epoch (raylab/checkpoints.py)."""
    return join(study_dir, "checkpoints", f"{trial_id}.pt")


def exists(path: str) -> bool:
    fs, p = resolve_fs(path)
    return fs.get_file_info(p).type != pafs.FileType.NotFound


def write_table(df: pd.DataFrame, path: str) -> None:
    """Write `df` as Parquet to `path`, atomically (see write_bytes)."""
    buf = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), buf)
    write_bytes(buf.getvalue(), path)


def write_bytes(data, path: str) -> None:
    """Replace the file at `path` with `data` (bytes-like) so that readers see the old
    file or the new one, never part of one, even if this process is killed mid-write.

    Local disks: temp name, fsync, rename. Object stores (s3://, gs://) publish a
    PUT whole, so there the write goes in place. A full or read-only disk raises
    StorageError and leaves the previous file as it was.
    """
    fs, p = resolve_fs(path)
    try:
        if not isinstance(fs, pafs.LocalFileSystem):  # keys need no folders: one PUT, nothing else
            with fs.open_output_stream(p) as fh:
                fh.write(data)
            return
        fs.create_dir(p.rsplit("/", 1)[0], recursive=True)
        _remove_stale_temps(p)
        tmp = f"{p}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())  # the rename must not land before the bytes do
            os.replace(tmp, p)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    except OSError as exc:
        raise StorageError(path, exc) from None


def _remove_stale_temps(path: str) -> None:
    """Temp files of writers that were killed mid-write: readers never open them, but tidy up."""
    folder, name = os.path.split(path)
    try:
        entries = os.listdir(folder)
    except OSError:
        return
    for entry in entries:
        if not entry.startswith(f"{name}.tmp-"):
            continue
        try:
            pid = int(entry.split("-")[1])
            os.kill(pid, 0)  # still alive: its write is in flight
        except ProcessLookupError:
            try:
                os.remove(os.path.join(folder, entry))
            except OSError:
                pass
        except (ValueError, IndexError, PermissionError):
            pass


def read_table(study_dir: str, name: str, *, required: bool = True) -> pd.DataFrame:
    """Read one contract table of a study folder, checking its columns: the compacted
    file and the parts flushed since, one row per key (raylab/parts.py)."""
    from raylab.parts import read_resolved

    path = join(study_dir, name)
    try:
        df = read_resolved(study_dir, name)
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

    def __post_init__(self) -> None:
        from raylab import parts

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
        from raylab import parts

        self.flush()
        parts.compact(self.root, drop_after={trial_id: epoch})
        self._stacks = {t: [] for t in REQUIRED}

    def set_trial(self, row: dict) -> None:
        self.trials[row["trial_id"]] = {**self.trials.get(row["trial_id"], {}), **row}
        self._dirty.add(row["trial_id"])

    def set_weights(self, trial_id: str, rows: list[dict]) -> None:
        self._weights[trial_id] = rows

    def flush(self) -> None:
        """Write what is new as one part per table; merge or compact as the layout requires."""
        from raylab import parts

        new = {METRICS: arrow_table(self._metrics, METRIC_COLUMNS),
               TRIALS: arrow_table([self.trials[t] for t in sorted(self._dirty)], TRIAL_COLUMNS),
               WEIGHTS: arrow_table([r for t in sorted(self._weights) for r in self._weights[t]], WEIGHT_COLUMNS)}
        if not any(len(df) for df in new.values()):
            return
        part = parts.Part(0, self._flush_no, self._flush_no)
        for table in (METRICS, WEIGHTS, TRIALS):  # trials last, even empty: it commits the flush
            if len(new[table]) or table == TRIALS:
                parts.write_part(self.root, table, new[table], part)
                self._stacks[table].append(part)
        for table in REQUIRED:  # merges only after the commit: a merged part holds committed flushes
            self._stacks[table] = parts.merge_tail(self.root, table, self._stacks[table])
        self._flush_no += 1
        self._rows_on_disk += sum(len(df) for df in new.values())
        self._metrics, self._weights, self._dirty = [], {}, set()
        if self._rows_on_disk <= self.small_rows:
            self.close()

    def close(self) -> None:
        """Flush, then merge every part into the three files (a sweep's end)."""
        from raylab import parts

        self.flush()
        parts.compact(self.root)
        self._stacks = {t: [] for t in REQUIRED}


def _rows(root: str, table: str) -> int:
    """Rows on disk for `table` (an upper bound: a replaced row counts twice), from footers only."""
    from raylab import parts

    paths = [join(root, table)] + [join(parts.part_dir(root, table), q.name) for q in parts.list_parts(root, table)]
    total = 0
    for path in paths:
        fs, p = resolve_fs(path)
        try:
            total += pq.read_metadata(p, filesystem=fs).num_rows
        except (FileNotFoundError, pa.ArrowInvalid, OSError):
            pass
    return total


def arrow_table(rows: list[dict], leading: list[str]) -> pa.Table:
    """Rows (dicts) as a table: the contract's columns first, then every other key seen.

    Built column by column, ~10x faster than a DataFrame of 45 config columns; a
    contract column no row has is null, typed as the contract says (text or float).
    """
    names = list(leading) + [k for k in dict.fromkeys(itertools.chain.from_iterable(rows)) if k not in leading]
    columns = {}
    for name in names:
        values = [r.get(name) for r in rows]
        column = pa.array(values, from_pandas=True)
        if pa.types.is_null(column.type) and name in leading:
            column = column.cast(pa.string() if name in _TEXT else pa.float64())
        columns[name] = column
    return pa.table(columns)


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
