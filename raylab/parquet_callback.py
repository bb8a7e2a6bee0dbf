"""Alias kept for study folders written before raylab/sweep/: their tune/tuner.pkl
names `raylab.parquet_callback.ParquetCallback`, which `raylab resume` must still find."""
from raylab.sweep.callback import ParquetCallback  # noqa: F401
