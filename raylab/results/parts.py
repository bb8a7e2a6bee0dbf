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
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from raylab.results import latest
from raylab.results import storage as S
from raylab.results import contract as T
from raylab.errors import ResultsError, StorageError

if TYPE_CHECKING:
    import pandas as pd

THROUGH = b"raylab.through"       # schema metadata of a compacted file: last flush it holds
FANOUT = 16                       # this many parts of one level merge into one of the next
_NAME = re.compile(r"^L(\d+)-(\d{10})-(\d{10})\.parquet$")
_READ_TRIES = 8                   # a reader racing a merge or compaction lists again this often
IN_MEMORY_ROWS = 1_000_000        # a merge of more rows streams source by source (unsorted on disk)
ROW_GROUP = 262_144               # rows a streaming merge holds at once: files are written in groups of this


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
def read_resolved(root: str, table: str) -> "pd.DataFrame | None":
    """The table as every reader must see it: compacted file + live parts, one row per key,
    sorted by key. None when the study has neither."""
    kept: dict[str, pa.Table] = {}  # a committed part's name is never reused: read it once across retries

    def read() -> list[pa.Table]:
        parts = snapshot(root, table)  # first: see the module docstring
        return [_read_part(fs, p, kept) for fs, p in _sources(root, table, parts)]

    sources = _listing_again(read)
    return latest.resolve(table, sources).to_pandas() if sources else None


def _listing_again(attempt):
    """attempt(), which lists parts and then opens them, again while a concurrent merge or
    compaction removes a part after it was listed (FileNotFoundError), _READ_TRIES times at most."""
    for tries_left in reversed(range(_READ_TRIES)):
        try:
            return attempt()
        except FileNotFoundError:
            if not tries_left:
                raise


def _sources(root: str, table: str, parts: list[Part]) -> list[tuple[pafs.FileSystem, str]]:
    """The files that hold `table`, oldest first: the compacted file, then the parts it lacks."""
    fs, p = S.resolve_fs(S.join(root, table))
    found, through = [], -1
    if fs.get_file_info(p).type == pafs.FileType.File:
        through = int((_read_schema(fs, p).metadata or {}).get(THROUGH, b"-1"))
        found.append((fs, p))
    pfs, pdir = S.resolve_fs(part_dir(root, table))
    return found + [(pfs, f"{pdir}/{q.name}") for q in live(parts, through)]


def _read_part(fs: pafs.FileSystem, path: str, kept: dict[str, pa.Table]) -> pa.Table:
    if not _NAME.match(path.rsplit("/", 1)[-1]):  # the compacted file: a compaction replaces it in place
        return _read_file(fs, path)
    if path not in kept:
        kept[path] = _read_file(fs, path)
    return kept[path]


def _read_file(fs: pafs.FileSystem, path: str, columns: list[str] | None = None) -> pa.Table:
    return _reading(fs, path, lambda: pq.read_table(path, filesystem=fs, columns=columns))


def _read_schema(fs: pafs.FileSystem, path: str) -> pa.Schema:
    return _reading(fs, path, lambda: pq.read_schema(path, filesystem=fs))


def _reading(fs: pafs.FileSystem, path: str, read):
    """FileNotFoundError for a file gone (a concurrent merge: list again), one line otherwise."""
    try:
        return read()
    except FileNotFoundError:
        raise
    except (pa.ArrowInvalid, OSError) as exc:
        if fs.get_file_info(path).type == pafs.FileType.NotFound:
            raise FileNotFoundError(path) from None
        raise ResultsError(f"{path} is not a readable Parquet file ({exc})") from None


def merge_files(table: str, files: list[tuple[pafs.FileSystem, str]], out: str,
                metadata: dict | None = None, drop_after: dict[str, int] | None = None) -> None:
    """Write the surviving rows of `files` (oldest first) to `out` as one atomic file.

    Up to IN_MEMORY_ROWS rows the files are resolved as a reader does (sorted by key, as
    small studies always were); above, what survives is decided from the key columns alone
    and each source is read, filtered and appended a row group at a time (readers sort).
    `drop_after` {trial_id: epoch} forgets metrics rows past that epoch.
    """
    # Empty files add no rows and no types: the contract's empty file types every column it
    # names (epoch as float), which would turn a later int column into floats.
    counts = [_reading(fs, p, lambda: pq.read_metadata(p, filesystem=fs)).num_rows for fs, p in files]
    files = [f for f, n in zip(files, counts) if n]
    if sum(counts) <= IN_MEMORY_ROWS:  # no rows yet (no trial has finished): the contract still has the file
        data = latest.resolve(table, [_read_file(fs, p) for fs, p in files]) if files else \
            T.arrow_table([], T.REQUIRED[table])
        if drop_after and table == T.METRICS:
            data = latest.take(data, _drop(data.select(latest.KEYS[table]), None, drop_after))
        return _write(data.replace_schema_metadata(metadata or {}), out)
    keys = [_read_file(fs, p, latest.KEYS[table]) for fs, p in files]
    masks = latest.survivors(table, keys)
    if drop_after and table == T.METRICS:
        masks = [_drop(k, m, drop_after) for k, m in zip(keys, masks)]
    schema = latest.unified([_read_schema(fs, p) for fs, p in files]).with_metadata(metadata or {})
    buf = pa.BufferOutputStream()  # compressed: ~10 bytes a row, against ~100 for the rows in memory
    with pq.ParquetWriter(buf, schema) as writer:
        for (fs, p), m in zip(files, masks):
            done = 0
            for batch in _reading(fs, p, lambda: pq.ParquetFile(p, filesystem=fs).iter_batches(ROW_GROUP)):
                rows = latest.take(pa.Table.from_batches([batch]), None if m is None else m[done:done + len(batch)])
                writer.write_table(latest.conform(rows, schema), row_group_size=ROW_GROUP)
                done += len(batch)
    S.write_bytes(buf.getvalue(), out)


def _drop(keys: pa.Table, mask: np.ndarray | None, drop_after: dict[str, int]) -> np.ndarray:
    trial = np.asarray(keys["trial_id"].to_pylist(), dtype=object)
    epoch = keys["epoch"].cast(pa.int64()).to_numpy()
    keep = np.ones(len(keys), bool) if mask is None else mask.copy()
    for tid, last in drop_after.items():
        keep &= ~((trial == tid) & (epoch > last))
    return keep


# ------------------------------------------------------------------ writing
def write_part(root: str, table: str, data: pa.Table, part: Part) -> None:
    _write(data, S.join(part_dir(root, table), part.name))


def merge_levels(root: str, table: str, stack: list[Part]) -> list[Part]:
    """While FANOUT consecutive parts share a level, merge the oldest such run into one part
    of the next level.

    Each row is rewritten once per level, log_FANOUT(flushes) times in all, and a
    table keeps few parts per level: bytes stay O(rows) and a reader of a live
    sweep opens a few dozen files, not one per flush. Oldest run first: flushes
    that landed while a background merge ran still find their level.
    """
    while (start := _full_run(stack)) is not None:
        group = stack[start:start + FANOUT]
        pfs, pdir = S.resolve_fs(part_dir(root, table))
        new = Part(group[0].level + 1, group[0].first, group[-1].last)
        merge_files(table, [(pfs, f"{pdir}/{q.name}") for q in group], S.join(part_dir(root, table), new.name))
        _delete(root, table, group)
        stack = [*stack[:start], new, *stack[start + FANOUT:]]
    return stack


def _full_run(stack: list[Part]) -> int | None:
    run = 0
    for i, q in enumerate(stack):
        run = run + 1 if i and q.level == stack[i - 1].level else 1
        if run == FANOUT:
            return i - FANOUT + 1
    return None


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
            done[table] = parts  # all in the compacted file already: a killed compaction's leftovers
            continue
        last = max([through, *(q.last for q in parts)])
        _listing_again(lambda: merge_files(table, _sources(root, table, snapshot(root, table)), S.join(root, table),
                                           {THROUGH: str(last).encode()}, drop_after if dropping else None))
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
    pq.write_table(data, buf, row_group_size=ROW_GROUP)
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
    if S.is_uri(root):
        return
    for folder in [part_dir(root, t) for t in T.REQUIRED] + [S.join(root, "parts")]:
        S.remove_stale_temps(folder)  # parts have unique names: no later write of one sweeps its temp
        try:
            os.rmdir(folder)
        except OSError:
            pass  # absent, or not empty (a temp in flight)
