"""Where results came from (raylab/results/provenance.py, raylab/train/placement.py): study.json's
`provenance` and the trials' placement columns, written by `raylab train` and `raylab run`, read
back by `raylab status` and `raylab report`; a folder written before them still reads; and the
warning when compared variants ran on different code (one trained from an edited raylab copy).
"""
import json
import shutil
import subprocess

import pandas as pd
import pyarrow.parquet as pq
import pytest

from conftest import ROOT, child_env, job_file, raylab
from raylab.results import PLACEMENT_COLUMNS, TRIALS, read_table
from raylab.results.provenance import code_hash, content_hash, git_state, mixed

FAST = ["--data", "synthetic:200", "--epochs", "1", "--batch-size", "50", "--threads", "1", "--quiet"]


def _ok(*args, **kw) -> str:
    """`raylab ARGS`'s output, once it succeeded."""
    p = raylab(*args, timeout=600, **kw)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout


# ------------------------------------------------------------------ hashes
def test_content_hash_is_the_data_not_its_container():
    from raylab.data.sources import load_dataset

    ds = load_dataset("synthetic:200")
    arrays = {k: getattr(ds, k).numpy() for k in ("train_x", "train_y", "test_x", "test_y")}
    import numpy as np
    assert content_hash(vars(ds)) == content_hash({**arrays, "classes": np.array(ds.classes)})
    arrays["train_x"] = arrays["train_x"].copy()
    arrays["train_x"][0, 0, 0, 0] ^= 1  # one bit of one pixel
    assert content_hash({**arrays, "classes": ds.classes}) != content_hash(vars(ds))


def test_code_hash_follows_the_files_on_disk(tmp_path):
    copy = tmp_path / "raylab"
    shutil.copytree(ROOT / "raylab", copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert code_hash(copy) == code_hash(ROOT / "raylab") == code_hash()
    (copy / "__pycache__").mkdir(exist_ok=True)
    (copy / "__pycache__" / "x.py").write_text("# bytecode folders are not the code")
    assert code_hash(copy) == code_hash()
    with open(copy / "errors.py", "a") as fh:
        fh.write("\n")
    assert code_hash(copy) != code_hash()


def test_git_state_names_the_checkouts_commit():
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    state = git_state()
    assert state["commit"] == head and isinstance(state["dirty"], bool)


def test_mixed_names_what_differs_between_variants():
    same = pd.DataFrame({"study": "s", "variant": ["a", "b"], "code_hash": ["x", "x"], "device_kind": ["cpu", "cpu"]})
    assert mixed(same) == []
    assert mixed(same.drop(columns=["code_hash", "device_kind"])) == []  # an old folder: nothing to compare
    other = same.assign(device_kind=["cpu", "cuda"])
    [line] = mixed(other)
    assert "different device kinds (`a` on cpu, `b` on cuda)" in line


# ------------------------------------------------------------------ raylab train
@pytest.mark.slow  # eight CLI processes that import torch: ~90 s on the loaded 2-core dev VM
def test_train_records_provenance_status_and_report_show_it_old_folders_still_read(tmp_path):
    out = tmp_path / "single"
    _ok("train", "--out", out, "--lr", "0.05", *FAST)
    # A second variant trained by an edited copy of raylab: a different code tree, for real.
    copy = tmp_path / "edited"
    shutil.copytree(ROOT / "raylab", copy / "raylab", ignore=shutil.ignore_patterns("__pycache__"))
    with open(copy / "raylab" / "train" / "loop.py", "a") as fh:
        fh.write("# edited\n")
    _ok("train", "--out", out, "--lr", "0.1", *FAST, env=child_env(PYTHONPATH=str(copy)), cwd=tmp_path)

    meta = json.loads((out / "study.json").read_text())
    prov = meta["provenance"]
    assert prov["code_hash"] == code_hash() and prov["packages"]["torch"] and prov["host"]
    from raylab.data.sources import load_dataset
    assert prov["data"] == [{"source": "synthetic:200", "content_hash": content_hash(vars(load_dataset("synthetic:200")))}]
    trials = read_table(str(out), TRIALS).set_index("base_lr")
    assert set(PLACEMENT_COLUMNS) <= set(trials.columns)
    assert (trials["device_kind"] == "cpu").all() and trials["device_name"].str.len().gt(0).all()
    assert trials.loc[0.05, "code_hash"] == code_hash() != trials.loc[0.1, "code_hash"]

    status = _ok("status", out)
    assert "provenance:" in status and f"driver: raylab 0.1.0 (code {code_hash()}" in status
    assert "trials ran on: " in status and "warning: the variants ran on different raylab code" in status
    _ok("report", out, "--out", tmp_path / "report")
    report = (tmp_path / "report" / "report.md").read_text()
    assert "Provenance:" in report and "- data: synthetic:200 (content " in report
    assert "**Not like for like**: the variants ran on different raylab code" in report

    # The same folder as a raylab from before provenance wrote it: no placement columns, no study.json.
    old = tmp_path / "old"
    shutil.copytree(out, old)
    (old / "study.json").unlink()
    table = pq.read_table(old / TRIALS)
    pq.write_table(table.drop_columns(PLACEMENT_COLUMNS), old / TRIALS)
    status = _ok("status", old)
    assert "2 completed" in status and "not recorded" in status and "warning" not in status
    _ok("report", old, "--out", tmp_path / "old-report")
    assert "not recorded" in (tmp_path / "old-report" / "report.md").read_text()


# ------------------------------------------------------------------ raylab run
@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_run_records_provenance_and_where_each_trial_ran(tmp_path):
    job = job_file(tmp_path, """
        from raylab import Study, grid
        STUDY = Study('prov', grid(lr=[0.1, 0.05]), dict(data='synthetic:200', epochs=1, threads=1, batch_size=50))
    """)
    _ok("run", job, "--storage", tmp_path / "res", "--data-root", tmp_path / "data", "--num-cpus", "2", "--quiet")
    folder = tmp_path / "res" / "prov"
    prov = json.loads((folder / "study.json").read_text())["provenance"]
    from raylab.data.sources import load_dataset
    assert prov["data"][0]["content_hash"] == content_hash(vars(load_dataset("synthetic:200")))
    assert prov["code_hash"] == code_hash() and prov["raylab"] == "0.1.0"
    trials = read_table(str(folder), TRIALS)
    import ray._private.services as services
    assert (trials["node"] == services.get_node_ip_address()).all()  # the local Ray's one node
    assert (trials["device_kind"] == "cpu").all() and (trials["code_hash"] == code_hash()).all()
    status = _ok("status", folder)
    assert f"{trials['node'][0]} cpu " in status and ": 2 trials" in status and "warning" not in status
    _ok("report", folder, "--out", tmp_path / "report")
    assert "- trials ran on: " in (tmp_path / "report" / "report.md").read_text()
