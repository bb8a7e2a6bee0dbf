"""The contract's three tables: file names, columns, and rows as Arrow tables.

The one home of every column list: the writers (raylab/results/), the sweep's
progress table, `raylab train`'s epoch line and `analysis` all read them here.
Imports neither torch nor Ray.
"""
from __future__ import annotations

import itertools

import pyarrow as pa

METRICS, TRIALS, WEIGHTS = "metrics.parquet", "trials.parquet", "weights.parquet"
STUDY_JSON = "study.json"  # beside them: the study's declaration, run options and provenance
KEY_COLUMNS = ["study", "trial_id", "variant", "seed"]
# What train() measures per epoch, in row order (airbench's logging_columns_list): each column,
# its heading in progress output (Tune's table, `raylab train`'s line; "" = not shown) and its
# format there. train_images: images trained on that epoch, summed over DDP ranks (the whole
# split once; 0 for epoch 0, which only evaluates). lr is NaN at epoch 0.
EPOCH_LOG = (
    ("epoch", "epoch", ">3"),
    ("train_loss", "train loss", ".4f"),
    ("train_acc", "train acc", ".4f"),
    ("val_loss", "val loss", ".4f"),
    ("val_acc", "val acc", ".4f"),
    ("lr", "lr", ".4g"),
    ("epoch_seconds", "", ""),
    ("images_per_second", "img/s", ",.0f"),
    ("train_images", "", ""),
)
EPOCH_COLUMNS = [name for name, _, _ in EPOCH_LOG]
PROGRESS_COLUMNS = {name: heading for name, heading, _ in EPOCH_LOG if heading}  # column -> heading
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
TEXT_COLUMNS = {"study", "trial_id", "variant", "status", "error", "layer"}  # the contract's text columns
# Every other contract column but the key columns is a number (a float in analysis: NaN for missing).
NUMERIC = {table: [c for c in columns if c not in KEY_COLUMNS and c not in TEXT_COLUMNS]
           for table, columns in REQUIRED.items()}
# weights.parquet histograms have bin edges at +-NEAR_ZERO, so the fraction of weights with
# |w| < NEAR_ZERO (counted as pruned when L1 and L2 are compared) is exact from the rows.
NEAR_ZERO = 1e-3


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
            column = column.cast(pa.string() if name in TEXT_COLUMNS else pa.float64())
        columns[name] = column
    return pa.table(columns)


def format_epoch(row: dict) -> str:
    """One epoch's metrics as a line, the columns PROGRESS_COLUMNS names (`raylab train` prints it)."""
    return "  ".join(f"{heading} {row[name]:{fmt}}" for name, heading, fmt in EPOCH_LOG if heading)
