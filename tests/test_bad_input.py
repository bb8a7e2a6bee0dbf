"""The bad-input corpus (tests/bad_inputs.json): every case is one line on stderr
naming the problem, exit status 2, no traceback, and no file under the case's
temporary root appears, changes or goes.

The cases call the CLI's `main(argv)` in this process (a process start costs
~3.5 s of imports each); `test_refusal_as_a_real_process` runs a few of them
as `python -m raylab` to keep the real entry point honest."""
import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from conftest import ROOT, image_tree, raylab, raylab_in_process

CASES = json.loads((ROOT / "tests" / "bad_inputs.json").read_text())


def simplenn_run(tmp):
    proc = raylab_in_process("train", "--out", tmp / "run", "--data", "synthetic:200", "--data-root", tmp / "d",
                             "--epochs", "1", "--batch-size", "50", "--threads", "1", "--quiet")
    assert proc.returncode == 0, proc.stderr


def setup(kind, tmp):
    if kind.startswith("job:"):
        (tmp / "job.py").write_text(kind[4:])
    elif kind == "empty_tree":
        (tmp / "tree" / "train").mkdir(parents=True)
        (tmp / "tree" / "test").mkdir(parents=True)
    elif kind == "mixed_sizes":
        image_tree(tmp / "tree", ("cat", "dog"), train=2, test=2, sizes=((32, 32), (28, 28)))
    elif kind == "corrupt_image":
        image_tree(tmp / "tree", ("cat", "dog"), train=1, test=1, size=(32, 32))
        (tmp / "tree" / "train" / "cat" / "00.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    elif kind == "empty_archive":
        with tarfile.open(tmp / "empty.tar.gz", "w:gz"):
            pass
    elif kind == "evil_archive":
        with tarfile.open(tmp / "evil.tar", "w") as tar:
            data = io.BytesIO()
            Image.new("RGB", (32, 32)).save(data, format="PNG")
            info = tarfile.TarInfo("train/cat/../../../escape.png")
            info.size = len(data.getvalue())
            tar.addfile(info, io.BytesIO(data.getvalue()))
    elif kind == "simplenn_run":
        simplenn_run(tmp)
    elif kind == "foreign_checkpoint":
        simplenn_run(tmp)
        from raylab.declare.config import TrialConfig
        from raylab.declare.study import Trial, variant_name
        overrides = {"model": "resnet20", "batch_size": 50}
        tid = Trial("run", variant_name(overrides), 0, TrialConfig.from_dict(overrides)).trial_id
        ckpts = tmp / "run" / "checkpoints"
        shutil.copy(next(ckpts.glob("*.pt")), ckpts / f"{tid}.pt")
    elif kind == "corrupt_checkpoint":
        simplenn_run(tmp)
        for ckpt in (tmp / "run" / "checkpoints").glob("*.pt"):
            ckpt.write_bytes(ckpt.read_bytes()[:100])
    elif kind == "older_layout_sweep":  # tuner.pkl names raylab.tune, a module of the layout before subpackages
        (tmp / "old" / "tune").mkdir(parents=True)
        (tmp / "old" / "study.json").write_text('{"name": "old", "options": {}, "data_sources": []}')
        (tmp / "old" / "tune" / "tuner.pkl").write_bytes(b"craylab.tune\n_trial_name\n.")
    elif kind == "plain_folder":
        (tmp / "plain").mkdir()
        (tmp / "plain" / "notes.txt").write_text("not a study")
    elif kind == "bad_parquet":
        (tmp / "badstudy").mkdir()
        pd.DataFrame({"trial_id": ["a"], "accuracy": [0.5]}).to_parquet(tmp / "badstudy" / "trials.parquet")
    elif kind == "garbage_parquet":
        (tmp / "badstudy").mkdir()
        (tmp / "badstudy" / "trials.parquet").write_bytes(b"PAR1 but truncated")
    else:
        raise AssertionError(f"unknown setup {kind}")


EMPTY = hashlib.sha256(b"").hexdigest()


def snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under root: relative path -> content hash (folders: "dir")."""
    return {str(p.relative_to(root)): "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))}


def assert_nothing_written(root: Path, before: dict) -> None:
    """Only exception: the data cache's empty lock file (and its folders). Decoders of one
    source on a node flock it; it is never deleted, because unlinking a lock file that
    another process waits on lets two decoders in at once."""
    after = snapshot(root)
    lock_only = {k: v for k, v in after.items() if k not in before
                 and ((k.endswith(".lock") and v == EMPTY and "/cache/" in f"/{k}")
                      or (v == "dir" and any(o.startswith(k + "/") and o.endswith(".lock") for o in after)))}
    assert {k: v for k, v in after.items() if k not in lock_only} == before


def case_args(case, tmp_path):
    return [a.replace("{tmp}", str(tmp_path)).replace("{out}", str(tmp_path / "out")) for a in case["args"]]


def test_the_corpus_is_big_enough():
    assert len(CASES) >= 30
    assert len({c["name"] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_bad_input_is_one_line_and_exit_2(case, tmp_path, monkeypatch):
    import ray

    if case.get("needs_no_gpu"):
        import torch
        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU")
    root = tmp_path / "case"  # pytest's own files stay outside what is compared
    root.mkdir()
    if "setup" in case:
        setup(case["setup"], root)
    monkeypatch.chdir(root)  # a stray relative write lands where it is seen
    before = snapshot(root)

    try:
        proc = raylab_in_process(*case_args(case, root))
    finally:
        started_ray = ray.is_initialized()
        ray.shutdown()  # so that one case's Ray cannot hide another's
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr[-1500:]
    assert len(lines) == 1, proc.stderr
    assert case["expect"].replace("{tmp}", str(root)) in lines[0], lines[0]
    assert_nothing_written(root, before)
    assert not started_ray  # refused before any Ray was started


@pytest.mark.parametrize("name", ["unknown command", "corrupt checkpoint", "parquet file that is not parquet"])
def test_refusal_as_a_real_process(name, tmp_path):
    case = next(c for c in CASES if c["name"] == name)
    if "setup" in case:
        setup(case["setup"], tmp_path)
    before = snapshot(tmp_path)
    proc = raylab(*case_args(case, tmp_path), cwd=tmp_path, timeout=240)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-1500:]
    assert len(lines) == 1 and case["expect"].replace("{tmp}", str(tmp_path)) in lines[0], proc.stderr
    assert_nothing_written(tmp_path, before)
