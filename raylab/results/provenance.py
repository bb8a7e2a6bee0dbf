"""Where a result came from: the code, the packages, the host and the data's content.

Recorded:
    environment()          this process: raylab's version and code hash, git commit, packages, host
    code_hash()            a hash of the raylab package's source files as they are on disk
    content_hash(arrays)   a data set's identity: a hash of its decoded arrays
    record(data)           study.json's `provenance`: environment() and each data source's hash
Described (`raylab status`, `raylab report`):
    section(meta, trials)  the driver's code and packages, the data's hash, the trials' nodes
    mixed(trials)          a warning per way compared variants' trials differ: code, device kind

study.json records `environment()` of the driver under `provenance`, with
`content_hash` of each data source; `raylab doctor` compares every node's
`environment()` with the driver's; each trial's row carries its own
placement (PLACEMENT_COLUMNS, raylab/train/placement.py). Versions are read
from package metadata, so nothing here imports torch or Ray; a folder
written before any of this was recorded reads as before, with less to say.
"""
from __future__ import annotations

import hashlib
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from raylab.results.contract import PLACEMENT_COLUMNS, STUDY_JSON, TRIALS
from raylab.results.storage import exists, join, read_json

PACKAGES = ("torch", "torchvision", "ray", "pyarrow", "numpy")  # what a trial's numbers depend on
PACKAGE = Path(__file__).resolve().parents[1]  # the raylab package this module belongs to
HASH_CHARS = 12  # hex digits shown and stored: 48 bits, no collision among a project's versions
NOT_RECORDED = "not recorded (written by a raylab that did not record where its results came from)"


def record(data: Iterable[tuple[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """study.json's `provenance`: this process's environment() and, per (source, arrays) of
    `data`, the source string and its content_hash."""
    return {**environment(), "data": [{"source": source, "content_hash": content_hash(arrays)}
                                      for source, arrays in data]}


def environment() -> dict[str, Any]:
    """This process's raylab, packages and host, as study.json and `raylab doctor` record them."""
    version = sys.modules["raylab"].__version__  # imported before any of its modules, this one included
    return {"raylab": version, "code_hash": code_hash(), "git": git_state(),
            "python": platform.python_version(), "packages": package_versions(),
            "host": socket.gethostname(), "platform": platform.platform(terse=True), "cpu": cpu_name()}


def package_versions() -> dict[str, str | None]:
    """Installed versions (None: not installed), from metadata: no package is imported."""
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def code_hash(package: Path | None = None) -> str:
    """sha256 over raylab's .py files (relative path and bytes, in path order), as on disk now:
    an edited file on one node changes that node's hash, imported or not."""
    root = package or PACKAGE
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()[:HASH_CHARS]


def git_state(package: Path | None = None) -> dict[str, Any] | None:
    """{commit, dirty} when raylab runs from a git checkout (an editable install), else None.
    dirty: a tracked file differs from the commit."""
    package = package or PACKAGE
    root = package.parent
    try:
        # Tracked there: a venv inside some other checkout is inside a git tree, but not in it.
        if not _git(root, "ls-files", "--", f"{package.name}/__init__.py"):
            return None
        commit = _git(root, "rev-parse", "HEAD")
        changed = _git(root, "status", "--porcelain", "--untracked-files=no", "--", ".")
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": bool(changed)}


def _git(root: Path, *args: str) -> str:
    p = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
    if p.returncode:
        raise subprocess.SubprocessError(p.stderr.strip())
    return p.stdout.strip()


def cpu_name() -> str:
    """The CPU's model name (Linux /proc/cpuinfo; elsewhere what `platform` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def content_hash(arrays: Mapping[str, Any]) -> str:
    """A data set's identity: sha256 over its arrays (name, dtype, shape, bytes) in name order;
    text values (a source string) are left out. The same images and labels hash alike from
    any format they were read from, as numpy arrays, CPU tensors or a list of class names.
    0.4 s for 184 MB (CIFAR-10's size) on the loaded 2-core dev VM, one run."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        if isinstance(arrays[name], str):
            continue
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update("\0".join(map(str, a.tolist())).encode() if a.dtype.kind in "OU" else a.data)
    return h.hexdigest()[:HASH_CHARS]


# ------------------------------------------------------------------ described
def status_lines(study_dir: str) -> list[str]:
    """`raylab status`'s block: the section, then the warnings; a study.json that cannot be read
    counts as none (status reports progress, and says so)."""
    from raylab.results.reader import read_table

    trials = read_table(study_dir, TRIALS, required=False)
    try:
        meta = read_json(join(study_dir, STUDY_JSON)) if exists(join(study_dir, STUDY_JSON)) else {}
    except (OSError, ValueError):
        meta = {}
    return ["provenance:", *(f"  {line}" for line in section(meta if isinstance(meta, dict) else {}, trials)),
            *(f"  warning: {w}" for w in mixed(trials))]


def section(meta: dict[str, Any], trials: pd.DataFrame) -> list[str]:
    """Lines of text, without markup; an old folder gets one line saying nothing was recorded."""
    lines = []
    prov = meta.get("provenance") if isinstance(meta.get("provenance"), dict) else None
    if prov:
        git = prov.get("git") or {}
        commit = f", git {str(git.get('commit'))[:10]}{' (dirty)' if git.get('dirty') else ''}" if git else ""
        packages = ", ".join(f"{k} {v}" for k, v in (prov.get("packages") or {}).items() if v)
        lines.append(f"driver: raylab {prov.get('raylab')} (code {prov.get('code_hash')}{commit}), "
                     f"Python {prov.get('python')}, {packages}, host {prov.get('host')}")
        for d in prov.get("data") or []:
            lines.append(f"data: {d.get('source')} (content {d.get('content_hash')})")
    where = placements(trials)
    if where:
        lines.append("trials ran on: " + " | ".join(where))
    return lines or [NOT_RECORDED]


def placements(trials: pd.DataFrame) -> list[str]:
    """'10.0.0.7 cuda NVIDIA A10G (code 3f2a91c0d1e4): 4 trials', one per distinct placement."""
    if trials.empty or not set(PLACEMENT_COLUMNS) <= set(trials.columns):
        return []
    known = trials.dropna(subset=["node"])
    groups = known.groupby(PLACEMENT_COLUMNS, sort=True, dropna=False).size()
    return [f"{node} {kind} {name} (code {code}): {n} trial{'s' if n != 1 else ''}"
            for (node, kind, name, code), n in groups.items()]


def mixed(trials: pd.DataFrame) -> list[str]:
    """Why a comparison of these trials' variants is not like for like, one sentence each."""
    out = []
    for column, what, why in (
            ("code_hash", "different raylab code", "their differences mix code changes with the variants' own"),
            ("device_kind", "different device kinds", "numerics and speed differ between CPU and GPU")):
        if column not in trials.columns:
            continue
        known = trials.dropna(subset=[column])
        several = known["study"].nunique() > 1  # folders compared together: the same variant name may repeat
        name = known["study"].astype(str) + "/" + known["variant"].astype(str) if several else known["variant"]
        per_variant = known.groupby(name)[column].agg(lambda s: "+".join(sorted(set(map(str, s)))))
        if per_variant.nunique() > 1 or per_variant.str.contains("+", regex=False).any():
            shown = ", ".join(f"`{v}` on {values}" for v, values in per_variant.items())
            out.append(f"the variants ran on {what} ({shown}): {why}")
    return out
