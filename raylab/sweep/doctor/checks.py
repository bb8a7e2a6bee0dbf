"""What `raylab doctor` finds wrong, one Problem per finding, each naming its node and its fix.

Pure functions of the facts the nodes sent (raylab/sweep/doctor/facts.py) and
of the driver's own: nothing here talks to Ray, storage or a GPU.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from raylab.sweep.doctor.step_memory import gib

CODE_FIX = "`ray up` again, or rsync the code to it (cluster.yaml's file_mounts) and reinstall"
PACKAGE_FIX = "install the driver's versions there (`ray up` reruns cluster.yaml's setup_commands)"


@dataclass(frozen=True)
class Problem:
    node: str   # the node's address, or "the driver" / "the cluster" for what no node causes
    what: str
    fix: str

    def line(self) -> str:
        where = self.node if self.node.startswith("the ") else f"node {self.node}"
        return f"{where} {self.what}: {self.fix}"


def version_problems(node: str, env: dict, driver: dict) -> list[Problem]:
    """The node's Python, raylab code and packages against the driver's."""
    out = []
    if (env["raylab"], env["code_hash"]) != (driver["raylab"], driver["code_hash"]):
        out.append(Problem(node, f"runs raylab {env['raylab']} (code {env['code_hash']}) but the driver runs "
                                 f"{driver['raylab']} (code {driver['code_hash']})", CODE_FIX))
    if _minor(env["python"]) != _minor(driver["python"]):
        out.append(Problem(node, f"runs Python {env['python']} but the driver runs {driver['python']}",
                           "use one Python minor version on every node (the image, or setup_commands)"))
    for name, want in driver["packages"].items():
        have = env["packages"].get(name)
        if _public(have) != _public(want):
            out.append(Problem(node, f"has {name} {have or 'not installed'} but the driver has "
                                     f"{want or 'none'}", PACKAGE_FIX))
    return out


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def _public(version: str | None) -> str | None:
    """2.14.1+cu124 and 2.14.1+cpu are one release: a CPU head may drive CUDA workers."""
    return version.split("+")[0] if version else version


def storage_problems(node: str, storage: str, result: dict) -> list[Problem]:
    if result.get("error"):
        return [Problem(node, f"cannot write, read back and delete an object under {storage} ({result['error']})",
                        "give it write access there (credentials, bucket policy, mount options), "
                        "or choose another --storage")]
    if not result.get("sees_driver"):
        return [Problem(node, f"does not see what the driver writes under {storage}",
                        "use storage every node shares (s3://..., gs://... or a shared mount)")]
    return []


def unanswered(node: str, error: str) -> Problem:
    if "raylab" in error and ("ModuleNotFoundError" in error or "No module named" in error):
        return Problem(node, f"cannot import raylab ({error})", "install raylab there (`ray up` again)")
    return Problem(node, f"did not answer ({error})", "check it with `ray status` and its logs in /tmp/ray")


def no_cuda(node: str, gpus: float) -> Problem:
    return Problem(node, f"offers {gpus:g} GPU(s) to Ray but torch finds no CUDA device there, so trials "
                         "given a GPU share would train on its CPU",
                   "install the NVIDIA driver and a CUDA build of torch there, or pass --set device=cpu")


def trials_at_once(node_resources: dict, trial: dict) -> int:
    """How many trials of this shape one node holds at once (0: none fits)."""
    counts = [math.floor(node_resources.get(k, 0) / trial[k] + 1e-9) for k in ("CPU", "GPU") if trial.get(k, 0) > 0]
    return min(counts) if counts else 0


def cpu_memory_problem(node: str, label: str, need: int, available: int | None, at_once: int) -> Problem | None:
    """A CPU trial's step against its node's available memory shared by the trials it holds at once."""
    if available is None or at_once < 1 or need * at_once <= available:
        return None
    return Problem(node, f"has {gib(available)} of memory available for {at_once} trial(s) at once "
                         f"({gib(available / at_once)} each), but one step of {label} needs about {gib(need)}",
                   "lower --batch-size, raise --cpus-per-trial so fewer trials share the node, "
                   "or add nodes with more memory")


def gpu_memory_problem(node: str, label: str, share: float, measured: dict) -> Problem | None:
    """A GPU trial's measured step against its share of the GPU (and what is free on it now)."""
    budget = min(share, 1.0) * measured["total"]
    name = measured.get("name", "GPU")
    if measured.get("oom"):
        return Problem(node, f"ran out of GPU memory in one step of {label} on its {name} "
                             f"({gib(measured['free'])} free of {gib(measured['total'])})",
                       "lower --batch-size, or free the GPU of other processes")
    if measured["peak"] <= budget:
        return None
    fit = next((f"{k:g}" for k in (0.125, 0.25, 0.5, 1.0) if measured["peak"] <= k * measured["total"]), None)
    return Problem(node, f"gives a {share:g} share of its {gib(measured['total'])} {name} ({gib(budget)}) "
                         f"but one step of {label} peaked at {gib(measured['peak'])}",
                   f"raise --gpus-per-trial to {fit} or lower --batch-size" if fit else
                   "lower --batch-size, or split each batch over whole GPUs with --workers N")
