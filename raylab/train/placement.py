"""Where a trial trains: its node, device kind and name, and the raylab code it runs.

    placement("auto") -> {"node": "10.0.0.7", "device_kind": "cuda",
                          "device_name": "NVIDIA A10G", "code_hash": "3f2a91c0d1e4"}

Written into the trial's row of trials.parquet (PLACEMENT_COLUMNS of the
contract) by a sweep's trials and by `raylab train`, so a report can say
where its numbers came from and warn when compared variants differ.
"""
from __future__ import annotations

import socket
import sys

from raylab.results.provenance import code_hash, cpu_name


def placement(device: str) -> dict[str, str]:
    """This process's placement for a config whose `device` field is `device` (auto | cpu | cuda)."""
    import torch

    # The device rule of raylab/train/loop.py: auto takes CUDA when it is visible.
    cuda = device != "cpu" and torch.cuda.is_available()
    name = torch.cuda.get_device_name(torch.cuda.current_device()) if cuda else cpu_name()
    return {"node": node_address(), "device_kind": "cuda" if cuda else "cpu", "device_name": name,
            "code_hash": code_hash()}


def node_address() -> str:
    """The Ray node's IP inside a Ray worker (how `ray status` and `raylab doctor` name nodes),
    else the host name (`raylab train`)."""
    ray = sys.modules.get("ray")  # a trial imported it; `raylab train` never does
    if ray is not None and ray.is_initialized():
        return ray.util.get_node_ip_address()
    return socket.gethostname()
