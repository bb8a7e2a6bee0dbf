"""The results layer: the Parquet contract of a study folder and everything that writes or reads it.

    contract.py    file names, column lists (the one home of each), an epoch's progress line, Arrow tables
    rows.py        an epoch's row, a trial's summary, config columns
    storage.py     a local path or a pyarrow URI (s3://...), atomic writes
    parts.py       append-only Parquet parts per flush, merged by level, compacted
    latest.py      which rows survive a merge: the latest per key
    reader.py      read_table / write_table: one table, parts and files alike
    writer.py      StudyWriter: rows -> parts, flush by flush
    lock.py        one driver per study: flock locally, a lease on object storage
    conditional.py compare-and-swap writes of one S3 object (If-None-Match / If-Match)
    provenance.py  where results came from: code hash, git, packages, host, data hash
    compaction.py  `raylab compact`
    status.py      `raylab status` and the per-variant table a sweep ends with

Imports neither torch nor Ray: `analysis` and notebooks read through it with
pandas alone. The names below are the face that analysis uses.
"""
from raylab.errors import ResultsError, StorageError
from raylab.results.contract import (EPOCH_COLUMNS, KEY_COLUMNS, METRIC_COLUMNS, METRICS, NEAR_ZERO, NUMERIC,
                                     PLACEMENT_COLUMNS, PROGRESS_COLUMNS, REQUIRED, STUDY_JSON, SUMMARY_COLUMNS,
                                     TRIAL_COLUMNS, TRIALS, WEIGHT_COLUMNS, WEIGHTS, format_epoch)
from raylab.results.reader import read_table, write_table
from raylab.results.rows import (best_and_final, config_column, config_columns, epoch_record, epoch_row,
                                 running_best, trial_record, weight_records)
from raylab.results.storage import exists, join, resolve_fs, write_bytes
from raylab.results.writer import StudyWriter

__all__ = ["EPOCH_COLUMNS", "KEY_COLUMNS", "METRIC_COLUMNS", "METRICS", "NEAR_ZERO", "NUMERIC", "PLACEMENT_COLUMNS",
           "PROGRESS_COLUMNS", "REQUIRED", "STUDY_JSON", "SUMMARY_COLUMNS", "TRIAL_COLUMNS", "TRIALS",
           "WEIGHT_COLUMNS", "WEIGHTS", "ResultsError", "StorageError", "StudyWriter", "best_and_final",
           "config_column", "config_columns", "epoch_record", "epoch_row", "exists", "format_epoch", "join",
           "read_table", "resolve_fs", "running_best", "trial_record", "weight_records", "write_bytes",
           "write_table"]
