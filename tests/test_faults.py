"""Faults injected into real processes: SIGKILLed trials, drivers and writers.

Each test kills something at a moment a seed picks (RAYLAB_FAULT_SEED=N replays
one; the failure message names it) and then checks that no result was lost,
doubled or half-written.
"""
import errno
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from conftest import (IN_CI, ROOT, child_env, fault_seed, held, job_file, raylab, ray_cluster, require_packages,
                      start_raylab)
from raylab.errors import LockError
from raylab.results import METRICS, TRIALS, read_table
from raylab.declare.study import load_job
from raylab.train.loop import train
from raylab.results.lock import lock_folder as _lock

# Every test here starts processes and kills them: slow, and bounded generously for a loaded CI box.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
CURVES = ["train_loss", "train_acc", "val_loss", "val_acc"]


def write_job(tmp_path, name, lrs, *, images, epochs, augment=False) -> Path:
    """A job file of one study: one 1-thread trial per lr on synthetic data, seed 0."""
    return job_file(tmp_path, f"""
        from raylab import Study, grid
        STUDY = Study({name!r}, grid(lr={lrs!r}),
                      dict(data="synthetic:{images}", data_root={str(tmp_path / 'data')!r}, epochs={epochs},
                           threads=1, batch_size=50, augment={augment}), seeds=1)
    """, f"{name}.py")


def with_points(points: Path) -> dict:
    """The env of a driver whose trials hold at the fault points named in `points`."""
    return child_env(RAYLAB_FAULT_POINTS=str(points))


def reference_curves(job_path) -> dict[str, pd.DataFrame]:
    """Each trial trained once, start to end, in this process: what a sweep must reproduce."""
    return {t.trial_id: pd.DataFrame(train(t.config).history).set_index("epoch")[CURVES]
            for t in load_job(str(job_path)).trials()}


def assert_complete_and_equal(root: Path, reference: dict, epochs: int, why: str) -> pd.DataFrame:
    metrics, trials = read_table(str(root), METRICS), read_table(str(root), TRIALS)
    assert set(trials["status"]) == {"completed"} and len(trials) == len(reference), why
    assert not metrics.duplicated(["trial_id", "epoch"]).any(), why
    for trial_id, want in reference.items():
        got = metrics[metrics.trial_id == trial_id].set_index("epoch").sort_index()[CURVES]
        assert list(got.index) == list(range(epochs + 1)), why
        pd.testing.assert_frame_equal(got, want, rtol=1e-5, atol=1e-6, check_dtype=False, obj=why)
    return trials


# ------------------------------------------------------------------ trial processes
PHASES = ("train", "eval", "report")  # raylab.train.faults.fault_point: mid-epoch, before evaluation, before the checkpoint


@pytest.mark.ray
def test_trials_killed_at_seeded_points_finish_with_identical_metrics(tmp_path):
    """Each of 3 trials is SIGKILLed once, at a phase and epoch the seed picks; the trial
    waits at that point until the kill (raylab.train.faults.fault_point), so a seed replays exactly."""
    epochs = 6
    path = write_job(tmp_path, "victims", [0.05, 0.02, 0.01], images=1500, epochs=epochs, augment=True)
    seed = fault_seed()
    rng = random.Random(seed)
    trial_ids = [t.trial_id for t in load_job(str(path)).trials()]
    plan = {tid: (phase, rng.randint(1, epochs - 1)) for tid, phase in zip(trial_ids, rng.sample(PHASES, 3))}
    points = tmp_path / "points"
    points.mkdir()
    for tid, (phase, epoch) in plan.items():
        (points / f"{tid}.{phase}.{epoch}").touch()
    why = f"RAYLAB_FAULT_SEED={seed}, kill points {plan}"
    root = tmp_path / "res" / "victims"
    driver = start_raylab("run", path, "--storage", tmp_path / "res", "--num-cpus", "3", "--max-failures", "2",
                   "--quiet", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                   env=with_points(points))
    killed = {}
    try:
        deadline = time.time() + 600
        while len(killed) < 3 and driver.poll() is None and time.time() < deadline:
            for hit in held(points):
                name, pid = hit.name.split(".hit.")
                if name not in killed:
                    victim = psutil.Process(int(pid))
                    assert victim in psutil.Process(driver.pid).children(recursive=True), why
                    victim.send_signal(signal.SIGKILL)
                    killed[name] = int(pid)
            time.sleep(0.1)
        _, err = driver.communicate(timeout=600)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    assert driver.returncode == 0, f"{why}: {err[-2000:]}"
    # Every planned point was reached, once, and killed there: nothing left unhit.
    assert sorted(killed) == sorted(f"{tid}.{phase}.{epoch}" for tid, (phase, epoch) in plan.items()), why
    assert not [p.name for p in points.iterdir() if ".hit." not in p.name], why

    trials = assert_complete_and_equal(root, reference_curves(path), epochs, why)
    assert trials.set_index("trial_id").loc[trial_ids, "restarts"].tolist() == [1, 1, 1], why


# ------------------------------------------------------------------ drivers
@pytest.mark.ray
def test_driver_killed_again_and_again_then_resumed(tmp_path):
    """SIGKILL the driver and the local Ray it started, three times, each after some progress."""
    epochs = 8
    path = write_job(tmp_path, "again", [0.05, 0.02, 0.01], images=2500, epochs=epochs, augment=True)
    root = tmp_path / "res" / "again"
    seed = fault_seed()
    rng, rows_seen = random.Random(seed), []
    command = ["run", path, "--storage", tmp_path / "res"]
    # The last driver must die mid-sweep however fast this machine trains: each trial holds
    # before training its last epoch (a fault point), so the sweep cannot end under it.
    points = tmp_path / "points"
    points.mkdir()
    env = with_points(points)
    for round_ in range(3):
        if round_ == 2:
            for t in load_job(str(path)).trials():
                (points / f"{t.trial_id}.train.{epochs}").touch()
        driver = start_raylab(*command, "--num-cpus", "2", "--quiet", env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            rows = wait_for_more_rows(root, since=rows_seen[-1] if rows_seen else 0, driver=driver,
                                      points=points)
            assert driver.poll() is None, "the sweep ended before it could be killed"
            if round_ == 0:  # far from the end: later drivers may be past their lock, finishing up
                with pytest.raises(LockError, match=r"another raylab process \(pid \d+\) is running"):
                    _lock(str(root))  # what `raylab run` and `resume` meet while this driver lives
            time.sleep(rng.uniform(0.0, 2.0))
        finally:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
        rows_seen.append(rows)
        command = ["resume", root]
    why = f"RAYLAB_FAULT_SEED={seed}, rows on disk at each kill: {rows_seen}"
    assert rows_seen[-1] < 3 * (epochs + 1), why  # the last kill really interrupted it

    proc = start_raylab("resume", root, "--num-cpus", "2", "--quiet", stdout=subprocess.PIPE,
                 stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=400)
    assert proc.returncode == 0, f"{why}: {err[-2000:]}"
    assert "Traceback" not in err, err[-3000:]  # a resume is routine: no alarming noise
    assert_complete_and_equal(root, reference_curves(path), epochs, why)
    assert "best val acc" in out
    status = raylab("status", root)
    assert status.returncode == 0 and f"3 completed; {3 * (epochs + 1)} epoch rows" in status.stdout


def wait_for_more_rows(root: Path, since: int, driver, timeout: float = 240, points: Path | None = None) -> int:
    """Rows on disk once two more than `since` are, or once a trial holds at a fault point in `points`."""
    deadline = time.time() + timeout
    while time.time() < deadline and driver.poll() is None:
        rows = len(read_table(str(root), METRICS, required=False))  # compacted file and parts
        if rows >= since + 2 or (points is not None and held(points)):
            return rows
        time.sleep(0.3)
    pytest.fail(f"the sweep made no progress in {timeout} s past {since} rows (driver exit {driver.poll()})")


def wait_until_held(points: Path, driver, timeout: float) -> bool:
    """Whether a trial holds at a fault point in `points` before the driver ends or `timeout` s pass."""
    deadline = time.time() + timeout
    while not held(points) and driver.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    return bool(held(points))


@pytest.mark.ray
def test_two_drivers_started_at_once_on_one_folder(tmp_path):
    path = write_job(tmp_path, "twice", [0.05, 0.01], images=300, epochs=3)
    both = [start_raylab("run", path, "--storage", tmp_path / "res", "--num-cpus", "1", "--quiet",
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    ends = [(p.communicate(timeout=400), p.returncode) for p in both]
    codes = sorted(code for _, code in ends)
    assert codes == [0, 2], ends
    (_, err), _ = next(e for e in ends if e[1] == 2)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "another raylab process" in lines[0] or "already holds a sweep" in lines[0], lines[0]
    metrics = read_table(str(tmp_path / "res" / "twice"), METRICS)
    assert len(metrics) == 2 * 4 and not metrics.duplicated(["trial_id", "epoch"]).any()


@pytest.mark.ray
def test_second_driver_meets_the_live_drivers_lock(tmp_path):
    """The first driver's trial waits at a fault point, so the driver is surely mid-sweep:
    `resume` meets its lock (the pid branch) and `run` the sweep it holds."""
    path = write_job(tmp_path, "held", [0.05], images=300, epochs=2)
    (tid,) = [t.trial_id for t in load_job(str(path)).trials()]
    points = tmp_path / "points"
    points.mkdir()
    (points / f"{tid}.eval.1").touch()
    root = tmp_path / "res" / "held"
    first = start_raylab("run", path, "--storage", tmp_path / "res", "--num-cpus", "1", "--quiet",
                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                  env=with_points(points))
    try:
        assert wait_until_held(points, first, 300), \
            f"the trial never reached its fault point (driver exit {first.poll()})"
        for args, words in ((["resume", root], f"another raylab process (pid {first.pid}) is running a sweep"),
                            (["run", path, "--storage", tmp_path / "res"], "already holds a sweep")):
            second = raylab(*args, "--num-cpus", "1")
            lines = second.stderr.strip().splitlines()
            assert second.returncode == 2 and len(lines) == 1, second.stderr[-2000:]
            assert words in lines[0], lines[0]
        psutil.Process(int(held(points)[0].name.split(".hit.")[1])).send_signal(signal.SIGKILL)  # let it go on
        _, err = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert first.returncode == 0, err[-2000:]
    metrics = read_table(str(root), METRICS)
    assert len(metrics) == 3 and not metrics.duplicated(["trial_id", "epoch"]).any()


# ------------------------------------------------------------------ writers
WRITER = """
import sys, torch, pandas as pd
from pathlib import Path
from raylab.results import write_table
from raylab.train.checkpoints import CHECKPOINT_VERSION, save_checkpoint
folder, version = Path(sys.argv[1]), int(sys.argv[2])
while True:  # until killed: every write is a new, self-consistent version
    version += 1
    write_table(pd.DataFrame({"version": [version] * 200_000, "i": range(200_000)}), str(folder / "t.parquet"))
    save_checkpoint({"version": CHECKPOINT_VERSION, "epoch": version, "w": torch.full((400_000,), float(version))},
                    folder / "c.pt")
    print(version, flush=True)
"""


def test_writers_killed_mid_write_leave_the_previous_version(tmp_path):
    from raylab.train.checkpoints import load_checkpoint

    seed = fault_seed()
    rng, version = random.Random(seed), 0
    for round_ in range(4):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(version)], cwd=ROOT,
                                  stdout=subprocess.PIPE, text=True)
        first = writer.stdout.readline()  # imports done, one version written
        assert first, f"writer died: round {round_}"
        time.sleep(rng.uniform(0.0, 1.0))
        writer.kill()
        writer.wait()
        why = f"RAYLAB_FAULT_SEED={seed}, round {round_}"
        table = pd.read_parquet(tmp_path / "t.parquet")
        assert len(table) == 200_000 and table["version"].nunique() == 1, why
        ckpt = load_checkpoint(tmp_path / "c.pt")
        assert bool((ckpt["w"] == float(ckpt["epoch"])).all()), why
        # Table and checkpoint are written in turn: the checkpoint is the table's version or one behind.
        assert ckpt["epoch"] in (table["version"][0], table["version"][0] - 1), why
        assert table["version"][0] > version, why
        version = int(table["version"][0])
    leftovers = [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name and p.name.startswith("t.parquet")]
    assert len(leftovers) <= 1, leftovers  # killed writers' temp files are swept by the next writer


def test_full_disk_mid_run_keeps_what_was_written(tmp_path):
    """A file-size limit makes the next checkpoint write fail the way a full disk does."""
    out = tmp_path / "run"
    args = ["train", "--data", "synthetic:300", "--data-root", tmp_path / "data", "--batch-size", "50",
            "--threads", "1", "--out", out, "--quiet"]
    done = raylab(*args, "--epochs", "2")
    assert done.returncode == 0, done.stderr
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def small_files():
        import resource
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG from write() instead of dying
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))

    full = raylab(*args, "--epochs", "4", "--resume", preexec_fn=small_files)
    assert full.returncode == 2, full.stderr
    lines = full.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in full.stderr, full.stderr
    assert "cannot write" in lines[0] and "File too large" in lines[0] and ".pt" in lines[0], lines[0]
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before  # nothing half-written, nothing lost

    again = raylab(*args, "--epochs", "4", "--resume")
    assert again.returncode == 0, again.stderr
    assert read_table(str(out), METRICS)["epoch"].tolist() == [0, 1, 2, 3, 4]


FULL_PARQUET = """
import resource, signal, sys
import numpy as np, pandas as pd
from raylab.cli import main_guard
from raylab.results import write_table
path, rows = sys.argv[1], int(sys.argv[2])
table = pd.DataFrame({"version": [2] * rows, "x": np.random.default_rng(0).random(rows)})  # ~16 B/row, incompressible
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG from write(), as a full disk gives ENOSPC
resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))
sys.exit(main_guard(lambda: write_table(table, path)))
"""


def test_full_disk_during_a_parquet_write_keeps_the_previous_file(tmp_path):
    """The Parquet writer (metrics/trials/weights) meets a full disk: one line, exit 2, the
    previous file byte-identical and no temporary file left."""
    from raylab.results import write_table

    path = tmp_path / "metrics.parquet"
    write_table(pd.DataFrame({"version": [1] * 1000, "x": 0.5}), str(path))
    before = path.read_bytes()
    full = subprocess.run([sys.executable, "-c", FULL_PARQUET, str(path), "200000"], cwd=ROOT, env=child_env(),
                          capture_output=True, text=True, timeout=120)
    lines = full.stderr.strip().splitlines()
    assert full.returncode == 2 and len(lines) == 1, full.stderr[-2000:]
    assert "cannot write" in lines[0] and "metrics.parquet" in lines[0] and "File too large" in lines[0], lines[0]
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.parquet"]
    ok = subprocess.run([sys.executable, "-c", FULL_PARQUET.replace("1_000_000, 1_000_000", "-1, -1"), str(path),
                         "200000"], cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr  # the control: without the limit the same write succeeds
    assert pd.read_parquet(path)["version"].unique().tolist() == [2]


class ReadOnly:
    """Makes folders read-only, also for root (who ignores modes): chmod, else chattr +i."""

    def __init__(self) -> None:
        self.frozen: list[Path] = []

    def __call__(self, folder: Path) -> None:
        if os.geteuid() != 0:
            folder.chmod(0o555)
        else:
            require_packages("e2fsprogs")
            chattr = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True)
            if chattr.returncode:
                why = f"running as root and chattr +i failed ({chattr.stderr.strip()}): cannot make a read-only folder"
                if IN_CI:  # CI must prove this, not stay green without it
                    pytest.fail(why + "; CI needs CAP_LINUX_IMMUTABLE on an ext4/xfs/btrfs tmp")
                pytest.skip(why)
        self.frozen.append(folder)

    def thaw(self, folder: Path) -> None:
        if os.geteuid() != 0:
            folder.chmod(0o755)
        else:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        self.frozen.remove(folder)


@pytest.fixture
def read_only():
    folders = ReadOnly()
    yield folders
    for folder in list(folders.frozen):
        folders.thaw(folder)


@pytest.mark.ray
def test_read_only_storage_is_refused_before_anything_runs(tmp_path, read_only):
    path = write_job(tmp_path, "ro", [0.05], images=200, epochs=1)
    done = raylab("run", path, "--storage", tmp_path / "res", "--num-cpus", "1", "--quiet")
    assert done.returncode == 0, done.stderr
    study = tmp_path / "res" / "ro"
    before = {p: p.read_bytes() for p in study.rglob("*") if p.is_file()}

    read_only(study)
    attempts = [["resume", study, "--num-cpus", "1"],
                ["train", "--data", "synthetic:200", "--out", study, "--epochs", "1"]]
    read_only(tmp_path / "res")
    attempts.append(["run", path, "--storage", tmp_path / "res" / "elsewhere", "--num-cpus", "1"])
    for args in attempts:
        proc = raylab(*args)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, (args, proc.stderr[-2000:])
        assert "cannot write" in lines[0] and "--storage" in lines[0], lines[0]
    assert {p: p.read_bytes() for p in study.rglob("*") if p.is_file()} == before


@pytest.mark.ray
def test_storage_turning_read_only_mid_sweep_stops_cleanly_and_resumes(tmp_path, read_only):
    epochs = 8
    path = write_job(tmp_path, "frozen", [0.05, 0.02, 0.01], images=1500, epochs=epochs, augment=True)
    err = sweep_meeting_a_storage_fault(path, tmp_path / "res", lambda: read_only(tmp_path / "res" / "frozen"))
    line = one_line(err)
    assert "cannot write" in line and ".parquet" in line and "--storage" in line, line
    read_only.thaw(tmp_path / "res" / "frozen")
    resumes_to_the_end(tmp_path / "res" / "frozen", path, epochs, "storage frozen mid-sweep")


@pytest.fixture
def small_disk(tmp_path):
    """A 64 MiB tmpfs of its own, mounted for this test (root only): a disk a test can fill."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(disk)], capture_output=True,
                           text=True)
    if mount.returncode:
        why = f"cannot mount a tmpfs to fill ({mount.stderr.strip()})"
        if IN_CI:
            pytest.fail(why + "; CI runs as root with CAP_SYS_ADMIN")
        pytest.skip(why)
    yield disk
    subprocess.run(["umount", "--lazy", str(disk)], check=True)


def fill(disk: Path) -> Path:
    """Zeros into a file until `disk` has no byte left; delete the file to free the space."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as fh:
        for chunk in (1 << 20, 4096, 1):
            try:
                while True:
                    fh.write(bytes(chunk))
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    return filler


@pytest.mark.ray
def test_storage_filling_up_mid_sweep_stops_cleanly_and_resumes(tmp_path, small_disk):
    """The whole study folder on a disk that fills up: trials' checkpoints and the driver's
    Parquet writes both meet ENOSPC; the sweep still ends in raylab's one line."""
    epochs = 8
    path = write_job(tmp_path, "full", [0.05, 0.02, 0.01], images=1500, epochs=epochs, augment=True)
    filler = []
    err = sweep_meeting_a_storage_fault(path, small_disk, lambda: filler.append(fill(small_disk)))
    line = one_line(err)
    assert "cannot write" in line and "No space left on device" in line and "--storage" in line, line
    filler[0].unlink()
    resumes_to_the_end(small_disk / "full", path, epochs, "disk full mid-sweep")


def sweep_meeting_a_storage_fault(path: Path, storage: Path, fault) -> str:
    """`raylab run` of the job at `path`, with `fault()` done to its storage mid-sweep; its stderr.

    The first trial holds at a fault point (epoch 4) while the fault is made, then goes on:
    its next checkpoint and its next rows surely meet the fault, however fast this machine
    trains and whichever of Tune's events (a result, a trial's end, Tune's own state save)
    writes next. Rows written before the fault are on disk first."""
    points = storage.parent / "points"
    points.mkdir()
    (points / f"{load_job(str(path)).trials()[0].trial_id}.train.4").touch()
    root = storage / load_job(str(path)).name
    driver = start_raylab("run", path, "--storage", storage, "--num-cpus", "2", "--quiet",
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=with_points(points))
    try:
        wait_for_more_rows(root, since=0, driver=driver)  # rows written before the fault
        assert wait_until_held(points, driver, 300), \
            f"the trial never reached its fault point (driver exit {driver.poll()})"
        fault()
        for hit in held(points):
            hit.unlink()  # let the held trial go on into the fault
        _, err = driver.communicate(timeout=300)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
    assert driver.returncode == 2, err[-3000:]
    return err


def one_line(err: str) -> str:
    """stderr's one line: nothing from Tune or Ray before or after it."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    return lines[0]


def resumes_to_the_end(root: Path, path: Path, epochs: int, why: str) -> None:
    """What was on disk is whole and readable; `raylab resume` then finishes every trial with
    the curves of an uninterrupted run."""
    written = read_table(str(root), METRICS)
    assert 0 < len(written) < 3 * (epochs + 1) and not written.duplicated(["trial_id", "epoch"]).any(), why
    proc = start_raylab("resume", root, "--num-cpus", "2", "--quiet", stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE, text=True)
    _, err = proc.communicate(timeout=400)
    assert proc.returncode == 0, err[-2000:]
    assert_complete_and_equal(root, reference_curves(path), epochs, why)


@pytest.mark.ray
def test_mlflow_keeps_one_run_per_trial_across_a_driver_kill(tmp_path):
    """`--log mlflow`, the driver SIGKILLed while a trial holds mid-sweep, then `raylab resume`:
    the resumed trials continue their MLflow runs, so each trial is still one run with every epoch."""
    from mlflow.tracking import MlflowClient

    epochs = 4
    path = write_job(tmp_path, "logged", [0.05, 0.01], images=600, epochs=epochs)
    trial_ids = [t.trial_id for t in load_job(str(path)).trials()]
    points = tmp_path / "points"
    points.mkdir()
    (points / f"{trial_ids[0]}.train.3").touch()  # it holds there until the kill: the driver dies mid-sweep
    root = tmp_path / "res" / "logged"
    driver = start_raylab("run", path, "--storage", tmp_path / "res", "--num-cpus", "2", "--quiet", "--log", "mlflow",
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env=with_points(points))
    try:
        assert wait_until_held(points, driver, 300), \
            f"the trial never held at its fault point (driver exit {driver.poll()})"
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()

    proc = start_raylab("resume", root, "--num-cpus", "2", "--quiet", stdout=subprocess.DEVNULL,
                 stderr=subprocess.PIPE, text=True)
    _, err = proc.communicate(timeout=400)
    assert proc.returncode == 0, err[-2000:]
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("logged").experiment_id])
    assert sorted(r.info.run_name for r in runs) == sorted(trial_ids)
    for run in runs:
        steps = {m.step for m in client.get_metric_history(run.info.run_id, "val_acc")}
        assert steps == set(range(epochs + 1)) and run.info.status == "FINISHED", run.info.run_name


# ------------------------------------------------------------------ nodes
@pytest.mark.ray
def test_trials_of_a_lost_worker_node_move_and_finish(tmp_path, monkeypatch):
    """Two worker nodes on a simulated cluster; one is killed mid-sweep."""
    import threading

    from raylab.declare.study import Study, grid
    from raylab.declare.config import SweepOptions
    from raylab.sweep.driver import run_study

    epochs = 4
    study = Study("lost", grid(lr=[0.05, 0.03, 0.02, 0.01]),
                  dict(data="synthetic:1000", data_root=str(tmp_path / "data"), epochs=epochs, threads=1,
                       batch_size=50, augment=True), seeds=1)
    # Each trial holds before reporting epoch 2 (a fault point), so the node is removed while
    # two trials surely run on it, however fast this machine trains; then all are let go.
    points = tmp_path / "points"
    points.mkdir()
    for t in study.trials():
        (points / f"{t.trial_id}.report.2").touch()
    monkeypatch.setenv("RAYLAB_FAULT_POINTS", str(points))  # before the nodes start: their workers inherit it
    root = tmp_path / "lost"
    removed = threading.Event()

    def remove_when_busy(cluster, doomed):
        deadline = time.time() + 240
        while time.time() < deadline:
            hits = held(points)
            if len(hits) == 4:  # four 1-CPU trials on two 2-CPU nodes: two on each
                cluster.remove_node(doomed, allow_graceful=False)
                removed.set()
                for hit in hits:
                    hit.unlink()  # the survivors go on; the moved trials pass their renamed points
                return
            time.sleep(0.2)
        for hit in held(points):
            hit.unlink()  # never all held: let the sweep end, and the assert below say so

    # Trials only fit on the workers: the head (where the driver and its data live) has no CPU.
    try:
        with ray_cluster({"num_cpus": 0}, {"num_cpus": 2}, {"num_cpus": 2}) as cluster:
            killer = threading.Thread(target=remove_when_busy, args=(cluster, next(iter(cluster.worker_nodes))))
            killer.start()
            try:
                run_study(study, SweepOptions(storage=str(tmp_path), verbose=0, max_failures=3, cpus_per_trial=1))
            finally:
                killer.join()
    finally:
        monkeypatch.delenv("RAYLAB_FAULT_POINTS")
    assert removed.is_set(), "the trials never all held at their fault points"
    reference = {t.trial_id: pd.DataFrame(train(t.config).history).set_index("epoch")[CURVES]
                 for t in study.trials()}
    trials = assert_complete_and_equal(root, reference, epochs, "node removed")
    assert trials["restarts"].sum() == 2  # the removed node's two trials started again elsewhere, once each
