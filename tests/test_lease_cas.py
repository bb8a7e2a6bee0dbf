"""The S3 lease as a compare-and-swap (raylab/results/lock.py, raylab/results/conditional.py),
raced for real: driver processes on moto's S3 server (tests/serial_s3.py: one request at a
time, so its preconditions are atomic as S3's are), each released at one instant.

- the store is checked first with direct PUTs: If-None-Match and If-Match are honoured;
- 8 processes take the lease of one study at once: exactly one holds it, 7 are refused;
- a stale lease raced by 4 processes: exactly one takes it over;
- a holder whose lease was taken over stops renewing it and leaves it alone on close;
- 8 `raylab run` drivers on one s3:// study: one runs it, the rest are refused, and no
  Parquet file under the study holds a key twice.
"""
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, child_env, job_file, ray_cluster, start_raylab

BUCKET = "raylab-cas"
ENV = {"AWS_ACCESS_KEY_ID": "cas", "AWS_SECRET_ACCESS_KEY": "cas", "AWS_DEFAULT_REGION": "us-east-1",
       "AWS_EC2_METADATA_DISABLED": "true"}

# A driver taking the lease: ready once imported and the store checked, then it waits for
# the `go` file, takes the lease or is refused, writes what happened, and holds a won lease
# until the `release` file appears (so every refusal meets a live holder).
RACER = """
import json, os, sys, time
from pathlib import Path
from raylab.errors import LockError
from raylab.results.conditional import conditional_object
from raylab.results.lock import LEASE, StorageLease
root, folder, name = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
assert conditional_object(root + "/" + LEASE) is not None, "the store was not found to honour preconditions"
(folder / f"ready-{name}").touch()
while not (folder / "go").exists():
    time.sleep(0.002)
try:
    lease = StorageLease(root)
except LockError as exc:
    (folder / f"result-{name}").write_text(json.dumps({"won": False, "message": str(exc)}))
    sys.exit(2)
(folder / f"result-{name}").write_text(json.dumps({"won": True, "pid": os.getpid(), "token": lease.token}))
while not (folder / "release").exists():
    time.sleep(0.05)
lease.close()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cas_s3():
    """tests/serial_s3.py on a free port with BUCKET made; its endpoint in os.environ meanwhile."""
    import boto3

    port = _free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "serial_s3.py"), str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {**ENV, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        client = boto3.client("s3")
        for _ in range(300):
            try:
                client.create_bucket(Bucket=BUCKET)
                break
            except Exception:
                if proc.poll() is not None:
                    raise RuntimeError("tests/serial_s3.py exited") from None
                time.sleep(0.2)
        yield client
    finally:
        proc.kill()
        proc.wait()
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def _honoured(client) -> str | None:
    """Why this server cannot test a compare-and-swap lease (a direct PUT shows it), or None."""
    from botocore.exceptions import ClientError

    key = f"probe/{time.time_ns()}"
    first = client.put_object(Bucket=BUCKET, Key=key, Body=b"1", IfNoneMatch="*")
    for kw, header in (({"IfNoneMatch": "*"}, "If-None-Match: *"), ({"IfMatch": '"0000"'}, "If-Match")):
        try:
            client.put_object(Bucket=BUCKET, Key=key, Body=b"2", **kw)
            return f"moto {_moto_version()} ignores {header} on PutObject: a second conditional PUT succeeded"
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "PreconditionFailed":
                raise
    client.put_object(Bucket=BUCKET, Key=key, Body=b"3", IfMatch=first["ETag"])
    return None


def _moto_version() -> str:
    from importlib.metadata import version
    return version("moto")


@pytest.fixture
def honoured(cas_s3):
    reason = _honoured(cas_s3)
    if reason:
        pytest.skip(reason)
    return cas_s3


def _race(root: str, n: int, folder: Path) -> list[dict]:
    """n racer processes released at one instant; their results, after the winner let go."""
    folder.mkdir()
    procs = [subprocess.Popen([sys.executable, "-c", RACER, root, str(folder), str(i)], env=child_env(),
                              stderr=subprocess.PIPE, text=True) for i in range(n)]
    try:
        _wait(lambda: len(list(folder.glob("ready-*"))) == n, procs, "every racer ready")
        (folder / "go").touch()
        _wait(lambda: len(list(folder.glob("result-*"))) == n, procs, "every racer's result")
        results = [json.loads((folder / f"result-{i}").read_text()) for i in range(n)]
    finally:
        (folder / "release").touch()
        codes = [p.wait(timeout=60) for p in procs]
    assert sorted(codes) == [0] + [2] * (n - 1), [p.stderr.read()[-2000:] for p in procs]
    return results


def _wait(done, procs, what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        dead = [p for p in procs if p.poll() not in (None, 0, 2)]
        assert not dead and time.monotonic() < deadline, (what, [p.stderr.read()[-2000:] for p in dead])
        time.sleep(0.05)


def test_eight_drivers_at_once_exactly_one_holds_the_lease(honoured, tmp_path):
    from raylab.results.lock import LEASE, read_lease

    root = f"s3://{BUCKET}/race/eight"
    results = _race(root, 8, tmp_path / "race")
    won = [r for r in results if r["won"]]
    assert len(won) == 1, results
    refused = [r["message"] for r in results if not r["won"]]
    assert all(f"pid {won[0]['pid']}" in m and "another raylab driver" in m for m in refused), refused
    assert read_lease(f"{root}/{LEASE}") is None  # the winner gave it back with If-Match on its ETag


def test_a_stale_lease_is_taken_over_by_exactly_one_of_four(honoured, tmp_path):
    from raylab.results import lock
    from raylab.results.storage import write_bytes

    root = f"s3://{BUCKET}/race/stale"
    stale = {"host": "gone-host", "pid": 1, "token": "stale", "beat": time.time() - lock.STALE_S - 5}
    write_bytes(json.dumps(stale).encode(), f"{root}/{lock.LEASE}")
    results = _race(root, 4, tmp_path / "race")
    won = [r for r in results if r["won"]]
    assert len(won) == 1, results
    assert all(f"pid {won[0]['pid']}" in r["message"] for r in results if not r["won"]), results


def test_a_taker_slow_between_its_read_and_its_replace_cannot_steal(honoured, monkeypatch):
    """What plain writes could not stop: driver A reads a stale lease and stalls; B takes the lease
    over meanwhile; A's replace, made on the version it read, must fail, and A is refused."""
    import threading

    from raylab.errors import LockError
    from raylab.results import lock
    from raylab.results.conditional import ConditionalObject
    from raylab.results.storage import write_bytes

    root = f"s3://{BUCKET}/race/slow"
    stale = {"host": "gone-host", "pid": 1, "token": "stale", "beat": time.time() - lock.STALE_S - 5}
    write_bytes(json.dumps(stale).encode(), f"{root}/{lock.LEASE}")
    replace, read_it, go_on, outcome = ConditionalObject.replace, threading.Event(), threading.Event(), {}

    def stalled(self, body, etag):
        if threading.current_thread().name == "slow-taker":
            read_it.set()
            go_on.wait(60)  # A stalls here, holding the stale version's ETag
        return replace(self, body, etag)

    def slow_taker():
        try:
            outcome["lease"] = lock.StorageLease(root)
        except LockError as exc:
            outcome["refused"] = str(exc)

    monkeypatch.setattr(ConditionalObject, "replace", stalled)
    a = threading.Thread(target=slow_taker, name="slow-taker")
    a.start()
    assert read_it.wait(60)
    b = lock.StorageLease(root)  # B takes the stale lease over while A stalls
    go_on.set()
    a.join(60)
    try:
        assert "refused" in outcome and "another raylab driver" in outcome["refused"], outcome
        assert lock.read_lease(f"{root}/{lock.LEASE}")["token"] == b.token
    finally:
        b.close()


def test_a_lease_taken_over_is_neither_renewed_nor_deleted_by_its_old_holder(honoured, capsys, monkeypatch):
    from raylab.results import lock
    from raylab.results.conditional import conditional_object

    monkeypatch.setattr(lock, "HEARTBEAT_S", 0.2)
    root = f"s3://{BUCKET}/race/lost"
    held = lock.StorageLease(root)
    other = conditional_object(f"{root}/{lock.LEASE}")
    body, etag = other.read()
    taken = json.dumps({**json.loads(body), "token": "newer", "pid": 4242, "beat": time.time()}).encode()
    other.replace(taken, etag)  # as another driver replaces a lease it found stale
    deadline, err = time.monotonic() + 30, ""
    while "another driver took over the lease" not in err and time.monotonic() < deadline:
        time.sleep(0.1)
        err += capsys.readouterr().err  # the holder's next beat meets the new version: refused, and said
    assert "another driver took over the lease" in err
    time.sleep(0.5)  # beats that would overwrite it, were it still beating
    held.close()  # If-Match on its own ETag: the new holder's lease stays
    assert lock.read_lease(f"{root}/{lock.LEASE}")["token"] == "newer"


def test_stores_without_preconditions_keep_the_read_back_protocol():
    from raylab.results.conditional import conditional_object

    assert conditional_object("gs://bucket/study/.lease.json") is None
    assert conditional_object("file:///tmp/study/.lease.json") is None


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_eight_raylab_runs_on_one_s3_study_one_runs_it(honoured, tmp_path):
    """8 `raylab run` processes started together on one Ray cluster and one s3:// study."""
    import pandas as pd
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    from raylab.results import METRICS, TRIALS, read_table, resolve_fs

    job = job_file(tmp_path, """
        from raylab import Study, grid
        STUDY = Study('race', grid(lr=[0.1, 0.05]), dict(data='synthetic:200', epochs=2, threads=1, batch_size=50))
    """)
    storage = f"s3://{BUCKET}/runs"
    with ray_cluster({"num_cpus": 2}) as cluster:  # its processes see the S3 server's env
        args = ["run", job, "--storage", storage, "--data-root", tmp_path / "data", "--quiet"]
        procs = [start_raylab(*args, env=child_env(RAY_ADDRESS=cluster.address), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(8)]
        outs = [(p.wait(timeout=900), *p.communicate()) for p in procs]
    ran = [o for o in outs if o[0] == 0]
    refused = [o for o in outs if o[0] == 2]
    assert len(ran) == 1 and len(refused) == 7, [(c, e[-1500:]) for c, _, e in outs]
    assert "raylab: doctor: 1 node(s) run this raylab" in ran[0][1]  # checked the cluster before its trials
    for _, _, err in refused:
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and ("another raylab driver" in lines[0] or "already holds a sweep" in lines[0]), err
    root = f"{storage}/race"
    trials = read_table(root, TRIALS)
    assert sorted(trials["status"]) == ["completed", "completed"] and (trials["restarts"] == 0).all()
    fs, path = resolve_fs(root)
    files = [i.path for i in fs.get_file_info(pafs.FileSelector(path, recursive=True))
             if i.path.endswith(".parquet") and "/tune/" not in i.path]
    keys = {METRICS: ["trial_id", "epoch"], TRIALS: ["trial_id"]}
    for table, key in keys.items():  # every row as written, before any reader keeps the latest per key
        rows = [pq.read_table(f, filesystem=fs, columns=key).to_pandas() for f in files
                if f.rsplit("/", 1)[-1] == table or f"/parts/{table.removesuffix('.parquet')}/" in f]
        written = pd.concat(rows)
        assert not written.duplicated(key).any(), written[written.duplicated(key, keep=False)]
    assert len(read_table(root, METRICS)) == 2 * 3  # epochs 0..2 of two trials, once each
