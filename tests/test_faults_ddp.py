"""A DDP trial (Ray Train, 2 gloo workers) SIGKILLed mid-run, at a point a seed picks.

DDP trials keep raylab's own checkpoint file, as every other trial does
(raylab/train/checkpoints.py: rank 0 writes it atomically after each epoch, every
rank reads it when the trial starts again). The killed trial must finish with
the metrics of the same sweep run without a kill, and count one restart.
"""
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from conftest import child_env, fault_seed, held, job_file, start_raylab
from raylab.results import METRICS, TRIALS, read_table

CURVES = ["train_loss", "train_acc", "val_loss", "val_acc"]
EPOCHS = 6


def job(tmp_path) -> Path:
    return job_file(tmp_path, f"""
        from raylab import Study, variant
        STUDY = Study("ddp", [variant("lr=0.05", lr=0.05)],
                      dict(data="synthetic:800", data_root={str(tmp_path / 'data')!r}, epochs={EPOCHS},
                           threads=1, batch_size=50, augment=True), seeds=1)
    """, "ddp.py")


def sweep(path: Path, storage: Path, env: dict | None = None) -> subprocess.Popen:
    return start_raylab("run", path, "--storage", storage, "--workers", "2", "--num-cpus", "3", "--max-failures", "3",
                        "--quiet", env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def train_workers(driver: subprocess.Popen) -> list[psutil.Process]:
    """This driver's Ray Train worker processes (only its descendants: other Ray
    instances on the machine are not ours to kill)."""
    out = []
    try:
        kids = psutil.Process(driver.pid).children(recursive=True)
    except psutil.Error:
        return out
    for p in kids:
        try:
            if any("RayTrainWorker" in part for part in p.cmdline()):
                out.append(p)
        except psutil.Error:
            pass
    return out


def finish(driver: subprocess.Popen, timeout: float) -> str:
    try:
        _, err = driver.communicate(timeout=timeout)
        return err
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()


def curves(root: Path) -> pd.DataFrame:
    metrics = read_table(str(root), METRICS)
    assert not metrics.duplicated(["trial_id", "epoch"]).any()
    return metrics.sort_values(["trial_id", "epoch"]).set_index(["trial_id", "epoch"])[CURVES]


@pytest.mark.slow
@pytest.mark.ray
def test_ddp_trial_killed_mid_run_resumes_from_its_checkpoint_file(tmp_path):
    path = job(tmp_path)
    clean = sweep(path, tmp_path / "clean")
    err = finish(clean, 600)
    assert clean.returncode == 0, err[-2000:]

    seed = fault_seed()
    rng = random.Random(seed)
    # Where the kill lands, the seed picks: mid-epoch or before evaluation, after a checkpoint
    # exists and with epochs left. The first worker there holds (raylab.train.faults.fault_point) until
    # killed, so the kill cannot miss the run however fast this machine trains.
    points = tmp_path / "points"
    points.mkdir()
    (points / f"any.{rng.choice(['train', 'eval'])}.{rng.randint(2, EPOCHS - 1)}").touch()
    why = f"RAYLAB_FAULT_SEED={seed}, kill point {next(points.iterdir()).name}"
    root = tmp_path / "res" / "ddp"
    driver = sweep(path, tmp_path / "res", env=child_env(RAYLAB_FAULT_POINTS=str(points)))
    killed = None
    try:
        deadline = time.time() + 400
        while killed is None and driver.poll() is None and time.time() < deadline:
            time.sleep(0.2)
            for hit in held(points):
                victim = psutil.Process(int(hit.name.rsplit(".", 1)[1]))
                assert victim in train_workers(driver), f"{why}: the held process is no Train worker of this driver"
                killed = victim
                killed.send_signal(signal.SIGKILL)
        err = finish(driver, 600)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    assert killed is not None, f"{why}: no Train worker reached the kill point"
    assert driver.returncode == 0, f"{why}: {err[-2000:]}"

    trials = read_table(str(root), TRIALS)
    assert list(trials["status"]) == ["completed"], why
    assert list(trials["restarts"]) == [1], why  # Tune retried the trial once, counted where it happened
    assert not (root / "ddp").exists() or not any((root / "ddp").rglob("checkpoint_*")), \
        "DDP trials keep raylab's checkpoint file, not Ray Train checkpoints"
    assert (root / "checkpoints" / f"{trials['trial_id'][0]}.pt").is_file()
    got, want = curves(root), curves(tmp_path / "clean" / "ddp")
    assert list(got.index.get_level_values("epoch")) == list(range(EPOCHS + 1)), why
    pd.testing.assert_frame_equal(got, want, rtol=1e-5, atol=1e-6, check_dtype=False, obj=why)
