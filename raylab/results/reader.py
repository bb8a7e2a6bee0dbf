"""Read and write one contract table of a study folder, whole.

Files are written to a temporary name and renamed, so a reader sees the old
file or the new one, never half of one. Imports neither torch nor Ray: the
`analysis` package and notebooks use it with pandas alone.
"""
from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from raylab.errors import ResultsError
from raylab.results import parts
from raylab.results.contract import REQUIRED
from raylab.results.storage import join, write_bytes


def write_table(df: pd.DataFrame, path: str) -> None:
    """Write `df` as Parquet to `path`, atomically (see write_bytes)."""
    buf = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), buf)
    write_bytes(buf.getvalue(), path)


def read_table(study_dir: str, name: str, *, required: bool = True) -> pd.DataFrame:
    """Read one contract table of a study folder, checking its columns: the compacted
    file and the parts flushed since, one row per key (raylab/results/parts.py)."""
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
