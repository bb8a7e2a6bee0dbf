"""A study on S3: moto's standalone S3 server on a free local port, configured
only by the standard AWS environment variables (as for MinIO or Ceph), a real
sweep on local Ray writing there, `raylab status`/`report` reading it back,
and the lease that keeps a second driver off an S3 study."""
import json
import os
import socket
import subprocess
import sys
import time

import pytest
from results_scale import start_s3  # bench/, on sys.path in conftest

from conftest import raylab
from raylab.results import lock as study_lock
from raylab.declare.config import SweepOptions
from raylab.errors import LockError
from raylab.results import TRIALS, read_table
from raylab.declare.study import Study, grid
from raylab.results.lock import LEASE, StorageLease, read_lease
from raylab.sweep.driver import run_study


BUCKET = "raylab-test"


@pytest.fixture(scope="module")
def s3_env():
    """bench/results_scale.py's moto server (free 127.0.0.1 port, bucket made), here as env vars."""
    proc, env = start_s3(BUCKET)
    # RAY_ADDRESS=local: a local Ray of our own, never the latest `ray start` cluster on this machine
    # (ray.init's default), which on a shared machine may be someone else's.
    env = {**env, "RAY_ADDRESS": "local"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield env
    finally:
        proc.kill()
        proc.wait()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_second_driver_is_refused_while_the_lease_is_fresh(s3_env):
    root = f"s3://{BUCKET}/lease/one"
    first = StorageLease(root)
    try:
        holder = read_lease(f"{root}/{LEASE}")
        assert holder["pid"] == os.getpid() and holder["token"] == first.token
        with pytest.raises(LockError, match=rf"another raylab driver \(host .*, pid {os.getpid()}"):
            StorageLease(root)
    finally:
        first.close()
    assert read_lease(f"{root}/{LEASE}") is None      # given back on close
    StorageLease(root).close()                         # and free again


def _plant(root: str, **record) -> None:
    from raylab.results.storage import write_bytes
    write_bytes(json.dumps({"token": "other", **record}).encode(), f"{root}/{LEASE}")


def test_lease_of_a_dead_or_silent_driver_is_taken_over(s3_env):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    root = f"s3://{BUCKET}/lease/two"
    # A driver killed on this host: taken over at once, its beat still fresh.
    _plant(root, host=socket.gethostname(), pid=dead.pid, beat=time.time())
    StorageLease(root).close()
    # A driver on another host that stopped beating STALE_S ago: taken over.
    _plant(root, host="elsewhere", pid=1, beat=time.time() - study_lock.STALE_S - 5)
    StorageLease(root).close()
    # The same driver still beating: refused.
    _plant(root, host="elsewhere", pid=1, beat=time.time())
    with pytest.raises(LockError, match="host elsewhere, pid 1"):
        StorageLease(root)


@pytest.mark.slow
def test_sweep_on_s3_is_read_back_and_guarded(s3_env, tmp_path):
    storage = f"s3://{BUCKET}/sweeps"
    study = Study("s3sweep", grid(lr=[0.1, 0.05]),
                  dict(data="synthetic:200", data_root=str(tmp_path / "data"), epochs=2, threads=1, batch_size=50))
    import ray
    try:
        run_study(study, SweepOptions(storage=storage, num_cpus=2, verbose=0))
    finally:
        ray.shutdown()  # the next test file may start a Ray of its own in this process
    trials = read_table(f"{storage}/s3sweep", TRIALS)
    assert sorted(trials["status"]) == ["completed", "completed"]
    assert read_lease(f"{storage}/s3sweep/{LEASE}") is None   # the driver gave its lease back

    status = raylab("status", f"{storage}/s3sweep")
    assert status.returncode == 0 and "2 completed;" in status.stdout, status.stdout + status.stderr
    out = tmp_path / "report"
    rep = raylab("report", f"{storage}/s3sweep", "--out", str(out))
    assert rep.returncode == 0, rep.stderr
    assert "lr=0.05" in (out / "report.md").read_text()

    # A second driver on a study whose lease is held elsewhere: one line, exit 2, nothing written.
    _plant(f"{storage}/busy", host="head-node", pid=4242, beat=time.time())
    job = tmp_path / "busy.py"
    job.write_text("from raylab import Study, grid\n"
                   "STUDY = Study('busy', grid(lr=[0.1]), dict(data='synthetic:100', epochs=1))\n")
    p = raylab("run", str(job), "--storage", storage, "--num-cpus", "1", "--quiet",
             "--data-root", str(tmp_path / "data"))
    assert p.returncode == 2, p.stdout + p.stderr
    assert "host head-node, pid 4242" in p.stderr and "Traceback" not in p.stderr
    from raylab.results import exists
    assert not exists(f"{storage}/busy/study.json")
