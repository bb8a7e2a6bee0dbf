"""Append-only results (raylab/results/parts.py): writers and compactions killed with a real
SIGKILL at random moments, replayed epochs, old folders, a local S3 server.

Reports come from bench/results_scale.py's synthetic sweep and go through the real
ParquetCallback and StudyWriter into real Parquet files; readers are the real
`read_table`, `analysis.load_study` and pyarrow datasets.
"""
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

import results_scale as B  # bench/, on sys.path in conftest
from analysis import load_study
from conftest import ROOT, child_env, raylab, start_raylab
from raylab.results import parts as P
from raylab import results as R
from raylab.results import storage as S
from raylab.results.writer import SMALL_ROWS
from raylab.sweep.callback import ParquetCallback

SWEEP = dict(n=40, epochs=6, concurrent=6, layers=3, bins=8, replay_every=4)  # ~300 reports
FLUSH_EVERY = 3

WRITER = """
import os, sys
sys.path.insert(0, "bench")
import results_scale as B
from raylab.sweep.callback import ParquetCallback
from raylab.results import StudyWriter
root, start, log, sweep, flush_every = sys.argv[1], int(sys.argv[2]), sys.argv[3], eval(sys.argv[4]), int(sys.argv[5])
cb = ParquetCallback(root, flush_seconds=float("inf"))
cb.writer = StudyWriter(root, small_rows=0)  # the parts layout from the first flush
def durable(i):
    with open(log, "a") as fh:
        fh.write(f"{i}\\n"); fh.flush(); os.fsync(fh.fileno())
B.feed(cb, B.reports(**sweep), flush_every, start=start, on_flush=durable)
cb.get_state()
cb.on_experiment_end(trials=[])
durable(10**9)
"""


def metric_history(sweep: dict) -> list[tuple[int, tuple[str, int], float]]:
    """(report position, (trial_id, epoch), val_acc) for every metrics row a sweep reports."""
    out = []
    for pos, (trial, result) in enumerate(B.reports(**sweep)):
        tid = trial.config["spec"]["meta"]["trial_id"]
        for row in [*(result.get("history") or []), result]:
            out.append((pos, (tid, int(row["epoch"])), row["val_acc"]))
    return out


def assert_consistent(root: str, history: list, durable: int, why: str) -> pd.DataFrame:
    """No duplicate key; every row reported up to `durable` is there, with its latest value
    or one reported after it; trials and metrics agree (one committed flush at a time)."""
    metrics, trials = R.read_table(root, R.METRICS), R.read_table(root, R.TRIALS)
    weights = R.read_table(root, R.WEIGHTS, required=False)
    assert not metrics.duplicated(["trial_id", "epoch"]).any(), why
    assert not trials["trial_id"].duplicated().any(), why
    got = {(t, int(e)): v for t, e, v in metrics[["trial_id", "epoch", "val_acc"]].itertuples(index=False)}
    last_pos = {key: pos for pos, key, _ in history if pos <= durable}
    for key, pos in last_pos.items():
        allowed = {v for p, k, v in history if k == key and p >= pos}
        assert key in got and got[key] in allowed, f"{why}: {key} lost or stale ({got.get(key)})"
    assert set(got) <= {k for _, k, _ in history}, why
    assert set(metrics["trial_id"]) == set(trials["trial_id"]), why
    done = trials[trials["status"] == "completed"]
    assert set(done["trial_id"]) <= set(weights["trial_id"]), why
    last = metrics.groupby("trial_id")["epoch"].max()
    assert (trials.set_index("trial_id")["epochs_run"].astype(int) == last.reindex(trials["trial_id"])).all(), why
    return metrics


def _durable_count(log: Path) -> int:
    return len(log.read_text().split()) if log.exists() else 0


def final_values(history: list) -> dict:
    return {key: v for _, key, v in history}  # the last report of each key wins


def test_writer_killed_at_random_moments_leaves_a_consistent_study(tmp_path):
    root, log = str(tmp_path / "study"), tmp_path / "durable.log"
    history = metric_history(SWEEP)
    seed = random.randrange(10**6)
    rng = random.Random(seed)
    durable, kills = -1, 0
    for round_ in range(6):
        # A restarted driver replays a little of what was already written, as Tune's
        # resume does from the trials' checkpoints.
        start = max(0, durable + 1 - rng.randrange(0, 8))
        writer = subprocess.Popen([sys.executable, "-c", WRITER, root, str(start), str(log), repr(SWEEP),
                                   str(FLUSH_EVERY)], cwd=ROOT, env=child_env(), stderr=subprocess.PIPE, text=True)
        # Kill after a seeded number of new durable flushes, not after a time: on a quiet
        # machine a timed kill can come after the writer has finished (or, loaded, before
        # it has written anything). Mid-flush kills still land: the next flush is under way.
        seen, wanted = _durable_count(log), rng.randint(2, 20)
        deadline = time.time() + 120
        while time.time() < deadline and writer.poll() is None and _durable_count(log) < seen + wanted:
            if Path(root, "parts").exists():  # a reader during the writes: whole, unique rows
                m = R.read_table(root, R.METRICS, required=False)
                assert not m.duplicated(["trial_id", "epoch"]).any(), f"seed {seed}"
            time.sleep(0.05)
        if round_ < 5 and writer.poll() is None:
            writer.send_signal(signal.SIGKILL)
            kills += 1
        _, err = writer.communicate(timeout=300)
        assert writer.returncode in (0, -signal.SIGKILL), err[-2000:]
        durable = max([durable, *map(int, log.read_text().split())]) if log.exists() else durable
        if writer.returncode == 0:
            break
        if durable >= 0:
            assert_consistent(root, history, durable, f"seed {seed}, round {round_}")
    else:
        pytest.fail(f"seed {seed}: the writer never finished")
    assert kills >= 2, f"seed {seed}: the writer finished before it could be killed twice"
    metrics = assert_consistent(root, history, len(history), f"seed {seed}, end")
    got = {(t, int(e)): v for t, e, v in metrics[["trial_id", "epoch", "val_acc"]].itertuples(index=False)}
    assert got == final_values(history), f"seed {seed}"
    left = sorted(str(p.relative_to(root)) for p in Path(root).rglob("*") if p.is_file())
    assert sorted(os.listdir(root)) == sorted(R.REQUIRED), f"seed {seed}: not compacted: {left}"


def test_restarted_trials_replayed_epochs_replace_the_old_ones(tmp_path):
    sweep = dict(SWEEP, n=12, replay_every=3)
    for small_rows, name in ((0, "parts"), (SMALL_ROWS, "small")):
        root = str(tmp_path / name)
        cb = ParquetCallback(root, flush_seconds=float("inf"))
        cb.writer = R.StudyWriter(root, small_rows=small_rows)
        B.feed(cb, B.reports(**sweep), flush_every=2)
        cb.get_state()
        if name == "parts":
            assert P.list_parts(root, R.METRICS), "the parts layout was not used"
        metrics = R.read_table(root, R.METRICS).set_index(["trial_id", "epoch"])["val_acc"]
        replayed = f"scale_t{0:05d}"  # trial 0 crashed after epoch 3 and replayed 3.. as attempt 1
        assert metrics[(replayed, 3)] == B.val_acc(0, 3, 1) != B.val_acc(0, 3, 0)
        assert metrics[(replayed, 2)] == B.val_acc(0, 2, 0)
        assert metrics[("scale_t00001", 3)] == B.val_acc(1, 3, 0)
        assert len(metrics) == sweep["n"] * (sweep["epochs"] + 1)
        trials = R.read_table(root, R.TRIALS).set_index("trial_id")
        assert trials.loc[replayed, "restarts"] == 1 and trials.loc[replayed, "status"] == "completed"
        assert trials.loc[replayed, "final_val_acc"] == B.val_acc(0, sweep["epochs"], 1)


def test_running_trials_rows_hold_best_and_final_so_far_and_the_end_marks_stopped(tmp_path):
    root = str(tmp_path / "live")
    sweep = dict(SWEEP, n=3, replay_every=0)
    cb = ParquetCallback(root, flush_seconds=float("inf"))
    cb.setup()
    stream = [(t, r) for t, r in B.reports(**sweep) if r["epoch"] <= 3]  # stopped early, as ASHA does
    B.feed(cb, stream, flush_every=1)
    s = load_study(root)
    assert set(s.trials["status"]) == {"running"} and (s.trials["epochs_run"] == 3).all()
    assert (s.trials["best_val_acc"] == s.trials["final_val_acc"]).all()  # val acc rises every epoch
    assert s.trials.set_index("trial_id").loc["scale_t00002", "best_val_acc"] == B.val_acc(2, 3, 0)
    for trial, _ in stream:
        trial.status = "TERMINATED"
    cb.on_experiment_end(trials=[t for t, _ in stream[:3]])
    s = load_study(root)
    assert set(s.trials["status"]) == {"stopped"} and s.trials["best_epoch"].tolist() == [3, 3, 3]


def parts_study(root: str, n: int = 150) -> dict[str, pd.DataFrame]:
    cb = ParquetCallback(root, flush_seconds=float("inf"))
    cb.writer = R.StudyWriter(root, small_rows=0)
    B.feed(cb, B.reports(n=n, epochs=10, concurrent=8, layers=10, bins=64, replay_every=5), flush_every=8)
    cb.get_state()
    return {t: R.read_table(root, t) for t in R.REQUIRED}


def assert_same_tables(root: str, want: dict, why: str) -> None:
    for table, df in want.items():
        pd.testing.assert_frame_equal(R.read_table(root, table), df, check_dtype=False, obj=f"{why}: {table}")


def test_compaction_is_idempotent_and_safe_to_kill(tmp_path):
    root = str(tmp_path / "big")
    want = parts_study(root)
    assert Path(root, "parts").exists() and not Path(root, R.METRICS).exists()
    seed = random.randrange(10**6)
    rng = random.Random(seed)
    for attempt in range(4):
        proc = start_raylab("compact", root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(rng.uniform(1.0, 4.0))  # after the imports, somewhere in the rewrite
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=120)
        assert proc.returncode in (0, -signal.SIGKILL)
        assert_same_tables(root, want, f"seed {seed}, compaction {attempt} ended {proc.returncode}")
    proc = raylab("compact", root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(os.listdir(root)) == sorted(R.REQUIRED), f"seed {seed}: {os.listdir(root)}"
    assert_same_tables(root, want, f"seed {seed}, compacted")
    before = {name: Path(root, name).read_bytes() for name in R.REQUIRED}
    again = raylab("compact", root)
    assert again.returncode == 0 and "already compact" in again.stdout
    assert {name: Path(root, name).read_bytes() for name in R.REQUIRED} == before  # untouched


def test_parts_are_read_by_plain_pyarrow_datasets(tmp_path):
    root = str(tmp_path / "plain")
    want = parts_study(root, n=40)
    ds = pads.dataset(P.part_dir(root, R.METRICS), format="parquet")  # what DuckDB/Spark also glob
    rows = ds.to_table(columns=["trial_id", "epoch"]).to_pandas()
    assert set(map(tuple, rows.values)) == set(map(tuple, want[R.METRICS][["trial_id", "epoch"]].values))
    names = sorted(f.rsplit("/", 1)[1] for f in ds.files)
    assert names == [q.name for q in sorted(P.list_parts(root, R.METRICS), key=lambda q: q.name)]


def test_old_study_folders_load_resume_and_compact(tmp_path):
    old = tmp_path / "assignment"
    shutil.copytree(ROOT / "docs" / "results" / "assignment", old)
    original = {t: pd.read_parquet(old / t) for t in R.REQUIRED}
    s = load_study(old)
    assert len(s.trials) == 48 and len(s.metrics) == 1488 and len(s.split()) == 7
    # resume into it: one old trial's last epoch reported again, with a new value
    cb = ParquetCallback(str(old), flush_seconds=float("inf"))
    cb.writer = R.StudyWriter(str(old), small_rows=0)
    row = original[R.METRICS].iloc[-1].to_dict()
    cb.writer.add_epoch({**row, "val_acc": 0.999})
    cb.writer.set_trial({"trial_id": row["trial_id"], "status": "running"})
    cb.get_state()
    assert P.list_parts(str(old), R.METRICS), "a mixed folder: old files + parts"
    mixed = load_study(old)
    assert len(mixed.metrics) == 1488 and not mixed.metrics.duplicated(["trial_id", "epoch"]).any()
    got = mixed.metrics.set_index(["trial_id", "epoch"])
    assert got.loc[(row["trial_id"], row["epoch"]), "val_acc"] == 0.999
    assert mixed.trials.set_index("trial_id").loc[row["trial_id"], "status"] == "running"
    assert mixed.trials.set_index("trial_id").loc[row["trial_id"], "best_val_acc"] == pytest.approx(
        original[R.TRIALS].set_index("trial_id").loc[row["trial_id"], "best_val_acc"])  # the rest of its row kept
    cb.on_experiment_end(trials=[])
    assert sorted(p.name for p in old.iterdir()) == sorted([*R.REQUIRED, "study.json"])
    compacted = pd.read_parquet(old / R.METRICS)
    untouched = compacted["trial_id"] != row["trial_id"]
    pd.testing.assert_frame_equal(compacted[untouched].reset_index(drop=True),
                                  original[R.METRICS][original[R.METRICS]["trial_id"] != row["trial_id"]]
                                  .reset_index(drop=True), check_dtype=False)
    pd.testing.assert_frame_equal(pd.read_parquet(old / R.WEIGHTS), original[R.WEIGHTS], check_dtype=False)


def test_compact_command_refuses_what_it_must_not_touch(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = raylab("compact", tmp_path / "empty", timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "no raylab results" in proc.stderr
    root = tmp_path / "busy"
    parts_study(str(root), n=10)
    import fcntl
    with open(root / ".lock", "a+") as lock:  # what a running driver holds (raylab.results.storage.lock_folder)
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        proc = raylab("compact", root, timeout=120)
    assert proc.returncode == 2 and "a sweep is running" in proc.stderr and proc.stderr.count("\n") == 1
    assert P.list_parts(str(root), R.METRICS)  # nothing rewritten


# ------------------------------------------------------------------ object store
@pytest.fixture
def s3(monkeypatch):
    """moto's standalone S3 server on a free 127.0.0.1 port, pyarrow pointed at it."""
    pytest.importorskip("moto.server")
    proc, env = B.start_s3("raylab")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    yield env  # set in os.environ too: child_env() passes it on
    proc.kill()
    proc.wait()


def test_parts_compaction_and_load_on_s3(s3, tmp_path):
    import pyarrow.fs as pafs

    root = "s3://raylab/results/scale"
    want = parts_study(root, n=30)
    fs, path = R.resolve_fs(root)
    keys = [i.path for i in fs.get_file_info(pafs.FileSelector(path, recursive=True)) if i.type == pafs.FileType.File]
    assert keys and all("/parts/" in k for k in keys), keys
    partial = load_study(root)
    assert len(partial.metrics) == 30 * 11 and not partial.metrics.duplicated(["trial_id", "epoch"]).any()
    from raylab.results.lock import StorageLease
    driver = StorageLease(root)  # what a running driver holds on an object store
    try:
        busy = raylab("compact", root)
    finally:
        driver.close()
    assert busy.returncode == 2 and "a sweep is running in s3://raylab/results/scale" in busy.stderr, busy.stderr
    assert P.list_parts(root, R.METRICS), "the refused compaction touched the parts"
    proc = raylab("compact", root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    keys = sorted(i.base_name for i in fs.get_file_info(pafs.FileSelector(path, recursive=True))
                  if i.type == pafs.FileType.File)
    assert keys == sorted(R.REQUIRED), keys
    assert_same_tables(root, want, "s3 compacted")
    s = load_study(root)
    pd.testing.assert_frame_equal(s.metrics, partial.metrics, check_dtype=False)



def streamed_merges_keep_every_row(root: str, monkeypatch) -> None:
    """Merges and the compaction of more than IN_MEMORY_ROWS rows stream a row group at a
    time and leave the file unsorted; every reader still gets the same sorted rows."""
    want = parts_study(root, n=30)
    monkeypatch.setattr(P, "IN_MEMORY_ROWS", 500)
    monkeypatch.setattr(P, "ROW_GROUP", 256)  # 30 x 640 weight rows: many groups, batches and masks
    monkeypatch.setattr(P, "FANOUT", 3)  # weights parts come only from flushes where trials end
    again = root + "_again"
    cb = ParquetCallback(again, flush_seconds=float("inf"))
    cb.writer = R.StudyWriter(again, small_rows=0)
    B.feed(cb, B.reports(n=30, epochs=10, concurrent=8, layers=10, bins=64, replay_every=5), flush_every=8)
    cb.get_state()
    cb.writer.wait_for_merges()  # they run on a thread of their own
    assert any(q.level > 0 for q in P.list_parts(again, R.WEIGHTS)), "no merge ran"
    assert_same_tables(again, want, "streamed merges")
    P.compact(again)
    fs, path = S.resolve_fs(S.join(again, R.WEIGHTS))
    assert pq.ParquetFile(path, filesystem=fs).metadata.num_row_groups > 2  # streamed, not held whole
    assert not P.list_parts(again, R.WEIGHTS)
    assert_same_tables(again, want, "streamed compaction")


def test_a_flush_does_not_wait_for_a_merge_and_a_failed_merge_is_reported(tmp_path, monkeypatch):
    from raylab.errors import StorageError

    root = str(tmp_path / "bg")
    merge, release, started = P.merge_levels, threading.Event(), threading.Event()

    def slow_merge(*args):
        started.set()
        assert release.wait(60), "never released"
        return merge(*args)

    monkeypatch.setattr(P, "merge_levels", slow_merge)
    writer = R.StudyWriter(root, small_rows=0)
    for epoch in range(3):  # the first flush starts a merge that blocks; the others return regardless
        writer.add_epoch({"study": "s", "trial_id": "t", "variant": "v", "seed": 0, "epoch": epoch})
        writer.set_trial({"study": "s", "trial_id": "t", "variant": "v", "seed": 0, "status": "running"})
        writer.flush()
    assert started.is_set() and len(P.list_parts(root, R.METRICS)) == 3
    release.set()
    writer.wait_for_merges()

    def broken(root, table, stack):
        raise StorageError(root, OSError(30, "Read-only file system"))

    monkeypatch.setattr(P, "merge_levels", broken)
    writer.add_epoch({"study": "s", "trial_id": "t", "variant": "v", "seed": 0, "epoch": 3})
    writer.flush()  # its merge fails on the merge thread ...
    with pytest.raises(StorageError, match="Read-only file system"):
        writer.wait_for_merges()  # ... and the driver hears of it (the next flush would raise it too)
    assert len(R.read_table(root, R.METRICS)) == 4  # every flushed row is still there


def test_an_empty_first_compaction_does_not_turn_epochs_into_floats(tmp_path):
    """A sweep's first flush often holds only trial rows: it compacts to the contract's empty
    metrics file, whose epoch column is typed float. Later rows keep their integer epochs."""
    root = str(tmp_path / "first")
    writer = R.StudyWriter(root)
    writer.set_trial({"study": "s", "trial_id": "t", "variant": "v", "seed": 0, "status": "running"})
    writer.flush()
    assert len(R.read_table(root, R.METRICS)) == 0
    for epoch in range(3):
        writer.add_epoch({"study": "s", "trial_id": "t", "variant": "v", "seed": 0, "epoch": epoch})
        writer.flush()
    writer.close()
    assert pq.read_schema(Path(root, R.METRICS)).field("epoch").type == "int64"
    assert R.read_table(root, R.METRICS)["epoch"].tolist() == [0, 1, 2]


def test_streamed_merges_and_compaction_locally(tmp_path, monkeypatch):
    streamed_merges_keep_every_row(str(tmp_path / "big"), monkeypatch)


def test_streamed_merges_and_compaction_on_s3(s3, monkeypatch):
    streamed_merges_keep_every_row("s3://raylab/results/streamed", monkeypatch)

@pytest.mark.slow
def test_results_scale_bench_quick_runs(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "results_scale.py"), "--quick", "--no-s3",
                           "--root", str(tmp_path)], cwd=ROOT, env=child_env(), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert [r["trials"] for r in out["local"]] == [20, 200] and out["local"][1]["bytes_written"] > 0
