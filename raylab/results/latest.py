"""The last row per key across Parquet sources written oldest first, decided from the key
columns alone.

    metrics  (trial_id, epoch): the later row replaces the earlier one
    trials   trial_id:          the same
    weights  trial_id:          a histogram is whole: all rows of a trial come from the
                                latest source that holds that trial

A writer merging parts reads only these columns of every source to decide what
survives, then streams each source through its mask (raylab/results/parts.py): its memory
holds keys and one source, not the study. Keys become integer codes: no Python
object per row. This module imports neither torch nor Ray.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raylab.results import contract as T

KEYS = {T.METRICS: ["trial_id", "epoch"], T.TRIALS: ["trial_id"], T.WEIGHTS: ["trial_id"]}


def survivors(table: str, keys: list[pa.Table]) -> list[np.ndarray | None]:
    """Per source (oldest first, each a table of KEYS[table]), a mask of the rows that
    survive; None where all of them do (nothing to filter)."""
    sizes = [len(k) for k in keys]
    if not sum(sizes):
        return [None] * len(keys)
    trial = _codes(pa.chunked_array([c for k in keys for c in k["trial_id"].cast(pa.string()).chunks], pa.string()))
    bounds = np.cumsum([0, *sizes])
    if table == T.WEIGHTS:
        latest = np.full(int(trial.max()) + 1, -1)
        for i in range(len(keys)):  # sources in order: a later one takes its trials over
            latest[trial[bounds[i]:bounds[i + 1]]] = i
        keep = np.repeat(np.arange(len(keys)), sizes) == latest[trial]
    else:
        key = trial
        if table == T.METRICS:
            key = _with_epoch(trial, np.concatenate([k["epoch"].cast(pa.int64()).to_numpy() for k in keys]))
        _, first_from_end = np.unique(key[::-1], return_index=True)
        keep = np.zeros(len(key), bool)
        keep[len(key) - 1 - first_from_end] = True  # the last row of each key
    return [None if m.all() else m for m in np.split(keep, bounds[1:-1])]


def _with_epoch(trial: np.ndarray, epoch: np.ndarray) -> np.ndarray:
    """One integer per (trial, epoch), ordered as the pair."""
    return trial * (int(epoch.max()) + 1) + epoch


def _codes(values: pa.ChunkedArray) -> np.ndarray:
    return pc.dictionary_encode(values).combine_chunks().indices.to_numpy(zero_copy_only=False).astype(np.int64)


def take(data: pa.Table, mask: np.ndarray | None) -> pa.Table:
    return data if mask is None else data.filter(pa.array(mask))


def unified(schemas: list[pa.Schema]) -> pa.Schema:
    """One schema for sources written at different times (a column null in early parts,
    typed later; a config column added by a newer raylab), without file metadata."""
    return pa.unify_schemas([s.remove_metadata() for s in schemas], promote_options="permissive")


def conform(data: pa.Table, schema: pa.Schema) -> pa.Table:
    """`data` with `schema`'s columns, in its order (missing ones null) and types."""
    columns = [data[f.name].cast(f.type) if f.name in data.column_names else pa.nulls(len(data), f.type)
               for f in schema]
    return pa.Table.from_arrays(columns, schema=schema)


def sort(table: str, data: pa.Table) -> pa.Table:
    """Rows by key (a histogram keeps its bin order); as is when already sorted, the usual
    case for a compacted file, so a reader pays a scan, not a sort."""
    if len(data) < 2:
        return data
    encoded = pc.dictionary_encode(data["trial_id"].cast(pa.string())).combine_chunks()
    rank = np.empty(len(encoded.dictionary), np.int64)
    rank[pc.array_sort_indices(encoded.dictionary).to_numpy()] = np.arange(len(rank))
    key = rank[encoded.indices.to_numpy(zero_copy_only=False)]
    if table == T.METRICS:
        key = _with_epoch(key, data["epoch"].cast(pa.int64()).to_numpy())
    if (key[1:] >= key[:-1]).all():
        return data
    return data.take(pa.array(np.argsort(key, kind="stable")))


def resolve(table: str, sources: list[pa.Table]) -> pa.Table:
    """Sources held in memory (a reader's): the surviving rows, sorted by key."""
    sources = [s for s in sources if len(s)] or sources[:1]
    if len(sources) == 1:
        return sort(table, sources[0])
    masks = survivors(table, [s.select(KEYS[table]) for s in sources])
    schema = unified([s.schema for s in sources])
    return sort(table, pa.concat_tables([conform(take(s, m), schema) for s, m in zip(sources, masks)]))
