"""What the tests share: the CLI runner, the env of the processes they start, data builders,
a local Ray per module, a simulated cluster, and the guard for system tools.

Tiers (markers registered in pyproject.toml; docs/tests.md): a test that starts Ray or runs
`raylab run/resume` is `ray`; long ones (real CIFAR-10, kills, many trials) also `slow`;
Ray's launcher in namespaces is `launcher`, headless Chromium `browser`. The rest is the
fast tier, `make test-fast`.
"""
import io
import os
import random
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_CIFAR = ROOT.parent / "shared" / "data" / "cifar10-jpg.tar.gz"
SYSTEM_DEPS = ROOT / "scripts" / "system_deps.sh"
# Under CI a missing tool fails the test that needs it; elsewhere that test skips.
IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")
sys.path.insert(0, str(ROOT / "bench"))  # results_scale: its S3 server and synthetic sweep
os.environ.setdefault("MPLBACKEND", "Agg")
# Tests start their own Ray, also in the processes they spawn: never join an instance that
# `ray start` left on this machine (ray.init() without an address would, as on a cluster head).
os.environ.setdefault("RAY_ADDRESS", "local")


# ------------------------------------------------------------------ the CLI
def child_env(**extra: str) -> dict:
    """The environment of every process a test starts: this one's as it is now (fixtures may
    have set S3 or fault-point variables), unbuffered, Ray's log lines not folded, and this
    checkout importable for `python -c` snippets that import bench/ or raylab."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_DEDUP_LOGS": "0", "PYTHONPATH": path, **extra}


def raylab_cmd(*args) -> list[str]:
    """The console script of the venv that runs the tests."""
    return [sys.executable, "-m", "raylab", *map(str, args)]


def raylab(*args, timeout: float = 300, cwd: Path = ROOT, env: dict | None = None,
           **run) -> subprocess.CompletedProcess:
    """`raylab ARGS` as a user runs it: a real process, its exit status and output."""
    return subprocess.run(raylab_cmd(*args), capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env=env or child_env(), **run)


def start_raylab(*args, env: dict | None = None, **popen) -> subprocess.Popen:
    """`raylab ARGS` left running, in a session of its own: os.killpg(p.pid, SIGKILL) ends it
    and the local Ray it started, nothing else."""
    return subprocess.Popen(raylab_cmd(*args), cwd=ROOT, env=env or child_env(), start_new_session=True, **popen)


def raylab_in_process(*args) -> subprocess.CompletedProcess:
    """`raylab.cli.main(ARGS)` in this process, as a CompletedProcess: no import or Ray start
    per call, and a sweep uses the Ray that is already up (the `local_ray` fixture)."""
    from raylab.cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(map(str, args)))
    return subprocess.CompletedProcess(["raylab", *map(str, args)], code, out.getvalue(), err.getvalue())


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> str:
    """Exit status 2, one line on stderr holding every needle, no traceback; returns the line."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def job_file(folder: Path, body: str, name: str = "job.py") -> Path:
    """A job file written from (indented) source text."""
    path = Path(folder) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(body))
    return path


# ------------------------------------------------------------------ faults
def fault_seed() -> int:
    """RAYLAB_FAULT_SEED replays a fault test's failure; unset, each run draws a new seed (named on failure)."""
    return int(os.environ.get("RAYLAB_FAULT_SEED") or random.randrange(10**6))


def held(points: Path) -> list[Path]:
    """The hit files of processes holding at a fault point in `points` (raylab.train.faults.fault_point):
    <point>.hit.<pid>."""
    return list(points.glob("*.hit.*"))


# ------------------------------------------------------------------ data
def image_tree(root: Path, classes=("ant", "cat", "dog"), train: int = 4, test: int = 2, size=(8, 8),
               sizes=None) -> dict:
    """A folder source: <split>/<class>/NN.png, random RGB pixels (seed 0), image k of each class
    sized sizes[k % len(sizes)] (default: all `size`); returns {split: [HWC uint8 arrays]} in
    the order a loader reads them (class, then name)."""
    import numpy as np
    from PIL import Image

    rng, arrays = np.random.default_rng(0), {"train": [], "test": []}
    for split, per in (("train", train), ("test", test)):
        for c in classes:
            (root / split / c).mkdir(parents=True, exist_ok=True)
            for k in range(per):
                h, w = (sizes or (size,))[k % len(sizes or (size,))]
                a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                Image.fromarray(a).save(root / split / c / f"{k:02d}.png")
                arrays[split].append(a)
    return arrays


def tar_of(tree: Path, dest: Path, extra: dict | None = None, *, arcname: str = ".") -> Path:
    """The tree under `arcname` (gzip when dest ends in gz), then `extra` {name: bytes} members last."""
    with tarfile.open(dest, "w:gz" if dest.name.endswith("gz") else "w") as tf:
        tf.add(tree, arcname=arcname)
        for name, blob in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tf.addfile(info, io.BytesIO(blob))
    return dest


def zip_of(tree: Path, dest: Path, extra: dict | None = None) -> Path:
    """The tree's files (deflated), then `extra` members last: a pre-check must not read the tree first."""
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(tree.rglob("*")):
            zf.write(p, p.relative_to(tree).as_posix())
        for name, blob in (extra or {}).items():
            zf.writestr(name, blob)
    return dest


@pytest.fixture(scope="session")
def shared_cifar():
    if not SHARED_CIFAR.exists():
        pytest.skip(f"real CIFAR-10 copy not found at {SHARED_CIFAR}")
    return SHARED_CIFAR


@pytest.fixture(scope="session")
def real_cifar(shared_cifar, tmp_path_factory):
    """The real copy decoded in this run into a fresh cache, once per session (~10-14 s on
    the 2-core VM): a cache kept across runs would hide a JPEG decoding regression."""
    from raylab.data.sources import load_dataset

    return load_dataset(f"folder:{shared_cifar}", tmp_path_factory.mktemp("cifar-cache"))


# ------------------------------------------------------------------ Ray
@pytest.fixture(scope="module")
def local_ray():
    """One local Ray (2 CPUs) for the tests of a module: each test's sweep finds it up and
    its workers warm, instead of starting Ray and torch in fresh processes."""
    import ray

    # "local": never join a Ray that `ray start` left on this machine
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@contextmanager
def ray_cluster(head: dict, *workers: dict):
    """A simulated cluster of real Ray processes (ray.cluster_utils.Cluster) with this process
    as its driver: a head and worker nodes, given as Cluster.add_node arguments."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args=head)
    try:
        for node in workers:
            cluster.add_node(**node)
        ray.init(address=cluster.address, log_to_driver=False)
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()


# ------------------------------------------------------------------ system tools
def require_packages(*packages: str) -> None:
    """Skip the test (fail it under CI) unless the Debian packages' tools are here, with the
    line scripts/system_deps.sh gives: what is missing and how to install it."""
    proc = subprocess.run(["/bin/bash", str(SYSTEM_DEPS), "--check", *packages], capture_output=True, text=True)
    if proc.returncode:
        line = (proc.stdout + proc.stderr).strip()
        if IN_CI:
            pytest.fail(line, pytrace=False)
        pytest.skip(line)
