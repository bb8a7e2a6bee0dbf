"""Append-only Parquet parts of a study folder: written per flush, resolved by key on read,
compacted into the three files of the contract.

    STUDY/metrics.parquet                                compacted: today's contract
    STUDY/parts/metrics/L0-0000000012-0000000012.parquet rows of flush 12, not compacted yet
    STUDY/parts/metrics/L1-0000000000-0000000015.parquet flushes 0..15, merged

A part is named L<level>-<first flush>-<last flush>; the numbers are zero padded, so
name order is write order for any reader that lists the folder (pyarrow datasets,
DuckDB `read_parquet('STUDY/parts/metrics/*.parquet', filename=true)`, Spark). Each
part is one atomic write (temp + rename locally, one PUT on object stores), so a
killed writer leaves whole parts only.

A compacted file records in its schema metadata (`raylab.through`) the last flush
it holds; parts at or below it are already in it and are skipped. A merged part
covers the flush range of the parts it replaced, which are skipped too. Readers
list the parts *before* they open the compacted file: whichever of a concurrent
compaction's states they see, every row is read once (a part deleted under a
reader makes it list again).

A flush writes its metrics and weights parts first and its trials part last (empty
if no trial changed): a flush counts once its trials part exists, and readers skip
metrics and weights parts of flushes after the last committed one. A writer killed
mid-flush so leaves no half flush that any reader sees.

Rows replace earlier ones by key, the later flush winning: (trial_id, epoch) in
metrics, trial_id in trials, and in weights all rows of a trial come from the last
flush that wrote that trial's histograms. This module imports neither torch nor Ray.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from raylab import storage as S
from raylab import tables as T
from raylab.errors import ResultsError, StorageError

THROUGH = b"raylab.through"       # schema metadata of a compacted file: last flush it holds
FANOUT = 16                       # this many parts of one level merge into one of the next
_NAME = re.compile(r"^L(\d+)-(\d{10})-(\d{10})\.parquet$")
_READ_TRIES = 8                   # a reader racing a merge or compaction lists again this often


@dataclass(frozen=True)
class Part:
    level: int
    first: int
    last: int

    @property
    def name(self) -> str:
        return f"L{self.level}-{self.first:010d}-{self.last:010d}.parquet"


def part_dir(root: str, table: str) -> str:
    return S.join(root, "parts", table.removesuffix(".parquet"))


def list_parts(root: str, table: str) -> list[Part]:
    """Every part file of `table` (temps and foreign files ignored), in write order."""
    fs, p = S.resolve_fs(part_dir(root, table))
    try:
        infos = fs.get_file_info(pafs.FileSelector(p, allow_not_found=True))
    except OSError:
        return []
    found = (_NAME.match(i.base_name) for i in infos if i.type == pafs.FileType.File)
    return sorted((Part(int(m[1]), int(m[2]), int(m[3])) for m in found if m), key=lambda q: (q.first, -q.last))


def live(parts: list[Part], through: int) -> list[Part]:
    """Parts still to read: after the compacted file and not inside a merged part."""
    out = []
    for q in parts:  # sorted by first flush, widest first: a covering part precedes what it covers
        if q.last > through and not (out and out[-1].first <= q.first and q.last <= out[-1].last):
            out.append(q)
    return out


def compacted_through(root: str, table: str) -> int:
    """The last flush held by the compacted file; -1 for none or one written before parts."""
    fs, p = S.resolve_fs(S.join(root, table))
    try:
        meta = pq.read_schema(p, filesystem=fs).metadata or {}
    except (FileNotFoundError, pa.ArrowInvalid, OSError):
        return -1
    return int(meta.get(THROUGH, b"-1"))


def next_flush(root: str) -> int:
    """The number a new writer's first flush takes: after every part and compacted file."""
    last = -1
    for table in T.REQUIRED:
        last = max([last, compacted_through(root, table), *(q.last for q in list_parts(root, table))])
    return last + 1


def committed(root: str) -> int:
    """The last flush whose trials part (written last) is on disk or compacted."""
    return max([compacted_through(root, T.TRIALS), *(q.last for q in list_parts(root, T.TRIALS))])


def snapshot(root: str, table: str) -> list[Part]:
    """The parts of `table` a reader may take: of committed flushes only (see module docstring)."""
    limit = committed(root) if table != T.TRIALS else None  # before listing: a later flush is skipped
    return [q for q in list_parts(root, table) if limit is None or q.last <= limit]


def has_table(root: str, table: str) -> bool:
    return S.exists(S.join(root, table)) or bool(list_parts(root, table))


# ------------------------------------------------------------------ reading
def read_resolved(root: str, table: str) -> pd.DataFrame | None:
    """The table as every reader must see it: compacted file + live parts, one row per key.
    None when the study has neither."""
    for attempt in range(_READ_TRIES):
        parts = snapshot(root, table)  # first: see the module docstring
        try:
            sources = _read_sources(root, table, parts)
        except FileNotFoundError:
            if attempt == _READ_TRIES - 1:
                raise
            continue  # a merge or compaction removed a part after we listed it
        return resolve(table, sources).to_pandas() if sources else None
    return None


def _read_sources(root: str, table: str, parts: list[Part]) -> list[pa.Table]:
    fs, p = S.resolve_fs(S.join(root, table))
    sources, through = [], -1
    if fs.get_file_info(p).type == pafs.FileType.File:
        compacted = _read_file(fs, p)
        through = int((compacted.schema.metadata or {}).get(THROUGH, b"-1"))
        sources.append(compacted)
    pfs, pdir = S.resolve_fs(part_dir(root, table))
    sources += [_read_file(pfs, f"{pdir}/{q.name}") for q in live(parts, through)]
    return sources


def _read_file(fs: pafs.FileSystem, path: str) -> pa.Table:
    try:
        return pq.read_table(path, filesystem=fs)
    except FileNotFoundError:
        raise
    except (pa.ArrowInvalid, OSError) as exc:
        if fs.get_file_info(path).type == pafs.FileType.NotFound:
            raise FileNotFoundError(path) from None
        raise ResultsError(f"{path} is not a readable Parquet file ({exc})") from None


def resolve(table: str, sources: list[pa.Table]) -> pa.Table:
    """Concatenate sources oldest first and keep the last row per key (see module docstring),
    sorted by key. Keys become integer codes: no Python object per row."""
    sources = [t for t in sources if len(t)] or sources[:1]
    if len(sources) == 1:
        return sources[0]
    merged = pa.concat_tables([t.replace_schema_metadata(None) for t in sources], promote_options="permissive")
    trial = pc.dictionary_encode(merged["trial_id"]).combine_chunks().indices.to_numpy(zero_copy_only=False)
    src = np.repeat(np.arange(len(sources)), [len(t) for t in sources])
    if table == T.WEIGHTS:  # a trial's histogram is whole: all rows from its latest source
        latest = np.full(trial.max() + 1, -1)
        np.maximum.at(latest, trial, src)
        keep = np.flatnonzero(src == latest[trial])
    else:
        key = trial.astype("int64")
        if table == T.METRICS:
            epoch = merged["epoch"].to_numpy().astype("int64")
            key = key * (epoch.max() + 1) + epoch
        _, first_from_end = np.unique(key[::-1], return_index=True)
        keep = np.sort(len(key) - 1 - first_from_end)  # the last row of each key
    order = [("trial_id", "ascending")] + ([("epoch", "ascending")] if table == T.METRICS else [])
    return merged.take(pa.array(keep)).sort_by(order)  # stable: a histogram keeps its bin order


# ------------------------------------------------------------------ writing
def write_part(root: str, table: str, data: pa.Table, part: Part) -> None:
    _write(data, S.join(part_dir(root, table), part.name))


def merge_tail(root: str, table: str, stack: list[Part]) -> list[Part]:
    """While the newest FANOUT parts share a level, merge them into one of the next level.

    Each row is rewritten once per level, log_FANOUT(flushes) times in all, and a
    table never has more than FANOUT - 1 parts per level: bytes stay O(rows) and a
    reader of a live sweep opens a few dozen files, not one per flush.
    """
    while len(stack) >= FANOUT and len({q.level for q in stack[-FANOUT:]}) == 1:
        group = stack[-FANOUT:]
        pfs, pdir = S.resolve_fs(part_dir(root, table))
        merged = resolve(table, [_read_file(pfs, f"{pdir}/{q.name}") for q in group])
        new = Part(group[0].level + 1, group[0].first, group[-1].last)
        write_part(root, table, merged, new)
        _delete(root, table, group)
        stack = [*stack[:-FANOUT], new]
    return stack


def compact(root: str, drop_after: dict[str, int] | None = None) -> bool:
    """Merge each table's parts into its compacted file, then delete the parts.

    Idempotent, and safe to kill at any point: a compacted file is replaced
    atomically and names the last flush it holds, so until the parts are deleted
    readers skip them. `drop_after` {trial_id: epoch} forgets metrics rows past
    that epoch (a trial resumed from an earlier checkpoint). Returns whether
    anything was rewritten.
    """
    done: dict[str, list[Part]] = {}
    for table in (T.METRICS, T.WEIGHTS, T.TRIALS):  # trials last, as in a flush
        parts = snapshot(root, table)
        through = compacted_through(root, table)
        dropping = table == T.METRICS and drop_after
        if not live(parts, through) and not dropping and S.exists(S.join(root, table)):
            done[table] = []
            continue
        for attempt in range(_READ_TRIES):
            try:
                sources = _read_sources(root, table, snapshot(root, table))
                break
            except FileNotFoundError:
                if attempt == _READ_TRIES - 1:
                    raise
        # no rows yet (no trial has finished): the contract still has the file
        data = resolve(table, sources) if sources else T.arrow_table([], T.REQUIRED[table])
        if dropping:
            keys = data.select(["trial_id", "epoch"]).to_pandas()
            stale = pd.Series(False, index=keys.index)
            for tid, epoch in drop_after.items():
                stale |= (keys["trial_id"] == tid) & (keys["epoch"].astype("int64") > epoch)
            data = data.filter(pa.array(~stale.to_numpy()))
        last = max([through, *(q.last for q in parts)])
        _write(data.replace_schema_metadata({THROUGH: str(last).encode()}), S.join(root, table))
        done[table] = parts
    for table, parts in done.items():  # only once every table holds its parts
        _delete(root, table, parts)
    _remove_empty_dirs(root)
    return any(done.values()) or bool(drop_after)


def drop_uncommitted(root: str) -> None:
    """Parts a killed writer left of a flush it never committed: no reader took them,
    and a new writer's flush numbers would make them count."""
    limit = committed(root)
    for table in (T.METRICS, T.WEIGHTS):
        _delete(root, table, [q for q in list_parts(root, table) if q.last > limit])


def _write(data: pa.Table, path: str) -> None:
    buf = pa.BufferOutputStream()
    pq.write_table(data, buf)
    S.write_bytes(buf.getvalue(), path)


def _delete(root: str, table: str, parts: list[Part]) -> None:
    fs, pdir = S.resolve_fs(part_dir(root, table))
    try:
        for q in parts:
            try:
                fs.delete_file(f"{pdir}/{q.name}")
            except FileNotFoundError:
                pass  # a compaction that was killed after deleting it
    except OSError as exc:
        raise StorageError(f"{pdir}/", exc) from None


def _remove_empty_dirs(root: str) -> None:
    """Leave no empty parts/ folders behind: a compacted study looks as before parts existed
    (object stores have no folders to remove)."""
    if "://" in root:
        return
    for folder in [part_dir(root, t) for t in T.REQUIRED] + [S.join(root, "parts")]:
        S.remove_stale_temps(folder)  # parts have unique names: no later write of one sweeps its temp
        try:
            os.rmdir(folder)
        except OSError:
            pass  # absent, or not empty (a temp in flight)


def compact_study(root: str) -> str:
    """`raylab compact`: refuse a folder that is no study or whose sweep still runs; one line."""
    if not any(has_table(root, t) for t in T.REQUIRED):
        raise ResultsError(f"{root} holds no raylab results (no {T.METRICS} or parts/): "
                             "give a study folder, e.g. results/lab2_lr_sweep")
    with _unless_running(root):
        changed = compact(root)
    return f"{root}: {'compacted into' if changed else 'already compact:'} {', '.join(T.REQUIRED)}"


class _unless_running:
    """Hold the study's folder lock (raylab.storage.lock_folder takes it) while compacting:
    a running driver merges parts of its own, so its folder is not ours to rewrite."""

    def __init__(self, root: str) -> None:
        self.fh = None
        if "://" in root or not os.path.exists(S.join(root, ".lock")):
            return  # object stores have no lock; no .lock: no sweep ever ran here
        import fcntl
        self.fh = open(S.join(root, ".lock"), "r")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.fh.close()
            raise ResultsError(f"a sweep is running in {root}: it compacts when it ends; "
                                 "run `raylab compact` after it stops") from None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        if self.fh is not None:
            self.fh.close()
