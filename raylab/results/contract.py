"""The contract's three tables: file names, columns, and rows as Arrow tables.

The lowest layer of the results code: raylab/results/parts.py (the append-only layout)
and raylab/results/rows.py (config columns, reader, writer; it re-exports all of
this) both build on it. Imports neither torch nor Ray.
"""
from __future__ import annotations

import itertools

import pyarrow as pa

METRICS, TRIALS, WEIGHTS = "metrics.parquet", "trials.parquet", "weights.parquet"
STUDY_JSON = "study.json"  # beside them: the study's declaration, run options and provenance
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
# Where a trial ran (raylab/train/placement.py): written with its first report, absent in
# folders from before they were recorded, so no reader requires them.
PLACEMENT_COLUMNS = ["node", "device_kind", "device_name", "code_hash"]
WEIGHT_COLUMNS = KEY_COLUMNS + ["layer", "bin_left", "bin_right", "count"]
REQUIRED = {METRICS: METRIC_COLUMNS, TRIALS: TRIAL_COLUMNS, WEIGHTS: WEIGHT_COLUMNS}
_TEXT = {"study", "trial_id", "variant", "status", "error", "layer"}  # the contract's text columns


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
