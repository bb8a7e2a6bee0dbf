"""Normalisation statistics: a data set's per-channel mean and std, published or computed.

cifar10, folder: and synthetic keep the config's (the course's CIFAR-10 values,
raylab/declare/config.py); the other data sets (raylab/data/readers.py, arrays:NAME)
get their published statistics, or their training split's, unless the config names its own.
"""
from __future__ import annotations

import dataclasses

from raylab.declare.config import is_dataset_source

PUBLISHED = {  # per-channel mean/std on [0, 1] pixels, as the literature normalises these sets
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}  # MNIST's published (0.1307, 0.3081) are of unpadded 28x28 digits: ours are computed
_STATS: dict[str, tuple] = {}


def with_stats(cfg, data):
    """The config with the data set's normalisation when the config kept the CIFAR-10 default
    and the source is one of raylab/data/readers.py's or arrays:NAME."""
    default = {f.name: f.default for f in dataclasses.fields(cfg)}  # TrialConfig's: CIFAR-10's mean/std
    if not is_dataset_source(data.source) or (tuple(cfg.mean), tuple(cfg.std)) != (default["mean"], default["std"]):
        return cfg
    if data.source in PUBLISHED:
        mean, std = PUBLISHED[data.source]
    else:
        if data.source not in _STATS:
            _STATS[data.source] = channel_stats(data.train_x)
        mean, std = _STATS[data.source]
    return dataclasses.replace(cfg, mean=mean, std=std)


def channel_stats(x_uint8, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std on [0, 1] pixels of (N, C, H, W) uint8, in chunks: a float64
    copy of CIFAR-size data at once would take 1.2 GB."""
    import torch

    total = torch.zeros(x_uint8.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for i in range(0, len(x_uint8), chunk):
        part = x_uint8[i:i + chunk].double() / 255.0
        total += part.sum(dim=(0, 2, 3))
        squares += (part * part).sum(dim=(0, 2, 3))
    n = x_uint8.numel() / x_uint8.shape[1]
    mean = total / n
    std = (squares / n - mean * mean).clamp_min(1e-6).sqrt()
    return tuple(round(v, 4) for v in mean.tolist()), tuple(round(max(v, 1e-3), 4) for v in std.tolist())
