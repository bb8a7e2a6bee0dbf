"""What one node says about itself: the body of the task `raylab doctor` pins to every node.

    node_facts(probe, hardware=True) -> {"env": {...}, "cpus": 16, "memory_available": ...,
                                         "gpus": [{"name", "free", "total"}], "cuda": "12.4",
                                         "driver": "550.54", "storage": {"sees_driver", "error"}}

`env` is raylab/results/provenance.environment() of the node's own Python:
its raylab version and code hash, packages, host. `probe` names the folder
under the storage prefix where the driver left a token: the node reads it
(does it see the storage the driver writes?), then writes, reads back and
deletes an object of its own there. `hardware=False` (what `raylab run` asks
before a sweep) leaves out the GPU part, so torch is never imported.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from raylab.results.provenance import environment
from raylab.results.storage import delete_file, join, read_bytes, write_bytes

DRIVER_TOKEN = "driver"  # the driver's object in a probe folder


@dataclass(frozen=True)
class Probe:
    """Where the storage round trip happens, and what the driver wrote there."""
    folder: str   # <storage>/.raylab-doctor/<run id>
    token: bytes  # the bytes of <folder>/driver


def node_facts(probe: Probe | None, hardware: bool = True) -> dict:
    facts = {"env": environment(), "cpus": os.cpu_count(), "memory_available": memory_available()}
    if hardware:
        facts.update(gpu_facts())
    if probe is not None:
        facts["storage"] = round_trip(probe)
    return facts


def memory_available() -> int | None:
    """Bytes the kernel could give new processes now (MemAvailable), None off Linux."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def gpu_facts() -> dict:
    """The node's CUDA devices as torch sees them (name, free and total bytes), the CUDA version
    torch was built with, and the driver's version (nvidia-smi), or None where there is none."""
    import torch

    gpus = []
    for i in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(i)
        gpus.append({"name": torch.cuda.get_device_name(i), "free": free, "total": total})
    return {"gpus": gpus, "cuda": torch.version.cuda, "driver": driver_version()}


def driver_version() -> str | None:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    return out[0] if out else None


def round_trip(probe: Probe) -> dict:
    """{"sees_driver": whether the driver's token reads back here, "error": None or why this
    node cannot write, read back and delete an object of its own under the probe folder}."""
    out: dict = {"sees_driver": False, "error": None}
    try:
        out["sees_driver"] = read_bytes(join(probe.folder, DRIVER_TOKEN)) == probe.token
    except (OSError, ValueError):
        pass  # not there: this node sees other storage (a local path on another machine)
    mine, token = join(probe.folder, f"node-{uuid.uuid4().hex}"), uuid.uuid4().bytes
    try:
        write_bytes(token, mine)
        if read_bytes(mine) != token:
            out["error"] = "an object read back differs from what was written"
        delete_file(mine)
    except (OSError, ValueError) as exc:  # write_bytes raises StorageError (a ValueError) with the reason
        out["error"] = " ".join(str(getattr(exc, "reason", None) or exc).split())[:300]
    return out
