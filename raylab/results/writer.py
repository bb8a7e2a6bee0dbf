"""StudyWriter: a sweep's or a `raylab train` run's rows -> one study folder, flush by flush."""
from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from raylab.results import parts
from raylab.results.contract import (METRIC_COLUMNS, METRICS, REQUIRED, TRIAL_COLUMNS, TRIALS, WEIGHT_COLUMNS,
                                     WEIGHTS, arrow_table)
from raylab.results.reader import read_table
from raylab.results.storage import join, resolve_fs


SMALL_ROWS = 20_000  # up to this many rows on disk, every flush also compacts (~50 ms here)
_MERGER = ThreadPoolExecutor(1, thread_name_prefix="raylab-merge")  # merges of parts, off the flush path


@dataclass
class StudyWriter:
    """Writes one study folder: each flush appends only the rows added since the last
    one, as one Parquet part per table (raylab/results/parts.py), so its cost does not grow
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
