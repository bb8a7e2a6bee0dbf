"""A sweep's data sets, decoded once by the driver and shared through the object store.

Every trial on a node then maps the same numpy arrays zero-copy instead of
decoding its own copy (bench/sweep.py: the 176 MB CIFAR-10 arrays stay one
copy with 4 trials on a node).
"""
from __future__ import annotations

import warnings

import numpy as np

from raylab.declare.config import TrialConfig


def data_key(cfg: TrialConfig | dict) -> str:
    d = cfg if isinstance(cfg, dict) else cfg.to_dict()
    return f"{d['data']}|{d['data_root']}"


def data_sources(cfgs: list[TrialConfig]) -> list[dict]:
    """The distinct data sets a sweep needs (usually one)."""
    out = {data_key(c): {"data": c.data, "data_root": c.data_root, "download": c.download} for c in cfgs}
    return list(out.values())


def put_shared_data(sources: list[dict]) -> dict:
    """Decode each data set once and put it in the object store as numpy arrays.
    Returns {data_key: ObjectRef}."""
    import ray

    from raylab.data.sources import load_dataset

    out = {}
    for src in sources:
        ds = load_dataset(src["data"], src["data_root"], download=src["download"])
        out[data_key(src)] = ray.put({"train_x": ds.train_x.numpy(), "train_y": ds.train_y.numpy(),
                                      "test_x": ds.test_x.numpy(), "test_y": ds.test_y.numpy(),
                                      "classes": np.array(ds.classes)})
    return out


def trial_dataset(cfg: TrialConfig, data_ref):
    """The node's shared copy from the object store; decoded from disk only without one."""
    from raylab.data.sources import Dataset, load_dataset

    if data_ref is None:
        return load_dataset(cfg.data, cfg.data_root, download=cfg.download)
    import ray
    import torch
    arrays = ray.get(data_ref)
    with warnings.catch_warnings():
        # Object-store arrays are read-only; training never writes to its inputs.
        warnings.simplefilter("ignore", UserWarning)
        tensors = {k: torch.from_numpy(v) for k, v in arrays.items() if k != "classes"}
    return Dataset(source=cfg.data, classes=[str(c) for c in arrays["classes"]], **tensors)
