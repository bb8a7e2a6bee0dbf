"""Faults injected into real processes: SIGKILLed trials, drivers and writers.

Each test kills something at a random moment (the seed is in the failure
message) and then checks that no result was lost, doubled or half-written.
"""
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from raylab.results import METRICS, TRIALS, read_table
from raylab.sweep_cli import load_job
from raylab.train import train

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_DEDUP_LOGS": "0"}
CURVES = ["train_loss", "train_acc", "val_loss", "val_acc"]


def write_job(tmp_path, name, body):
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(body))
    return path


def start(*args, **popen):
    return subprocess.Popen([sys.executable, "-m", "raylab", *map(str, args)], cwd=ROOT, env=ENV,
                            start_new_session=True, **popen)


def progress(root: Path) -> dict[str, tuple[int, int]]:
    """trial name -> (last epoch reported, pid of the process that reported it), from Tune's logs."""
    found = {}
    for log in (root / "tune").glob("*/result.json"):
        try:
            last = json.loads(log.read_text().strip().splitlines()[-1])
            found[log.parent.name] = (int(last["epoch"]), int(last["pid"]))
        except (IndexError, ValueError, KeyError):  # not written yet, or mid-line
            pass
    return found


def in_trial(driver: subprocess.Popen, pid: int) -> psutil.Process | None:
    """The process `pid` if it is one of this driver's Tune trials, busy in a trial right now.

    Only descendants of this driver: other Ray instances on the machine are not ours to kill."""
    try:
        p = psutil.Process(pid)
        ours = any(a.pid == driver.pid for a in p.parents())
        return p if ours and any("ray::ImplicitFunc.train" in part for part in p.cmdline()) else None
    except psutil.Error:
        return None


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
def test_trials_killed_at_random_points_finish_with_identical_metrics(tmp_path):
    epochs = 5
    path = write_job(tmp_path, "victims", f"""
        from raylab import Study, grid
        STUDY = Study("victims", grid(lr=[0.05, 0.02, 0.01]),
                      dict(data="synthetic:1500", data_root={str(tmp_path / 'data')!r}, epochs={epochs},
                           threads=1, batch_size=50, augment=True), seeds=1)
    """)
    seed = random.randrange(10**6)
    rng, kills = random.Random(seed), {}
    root = tmp_path / "res" / "victims"
    driver = start("run", path, "--storage", tmp_path / "res", "--num-cpus", "3", "--max-failures", "8",
                   "--quiet", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 300
        while len(kills) < 3 and driver.poll() is None and time.time() < deadline:
            time.sleep(0.2)
            # A trial with a checkpoint and epochs to go, not hit yet: kill it a random
            # moment later, which lands mid-epoch, mid-evaluation or mid-checkpoint.
            ready = [(name, pid) for name, (epoch, pid) in progress(root).items()
                     if 1 <= epoch <= epochs - 2 and name not in kills]
            if ready:
                name, pid = rng.choice(ready)
                time.sleep(rng.uniform(0.0, 1.5))
                victim = in_trial(driver, pid)
                if victim is not None:
                    victim.send_signal(signal.SIGKILL)
                    kills[name] = pid
        _, err = driver.communicate(timeout=400)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    why = f"kill seed {seed}, {len(kills)} kills"
    assert driver.returncode == 0, f"{why}: {err[-2000:]}"
    assert len(kills) >= 2, why

    trials = assert_complete_and_equal(root, reference_curves(path), epochs, why)
    # Each kill hit a different trial that had a checkpoint: one restart each.
    assert trials["restarts"].sum() == len(kills), why
