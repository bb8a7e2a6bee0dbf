"""The bad-input corpus (tests/bad_inputs.json): every case is one line on stderr
naming the problem, exit status 2, no traceback, and nothing already written changes."""
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CASES = json.loads((ROOT / "tests" / "bad_inputs.json").read_text())
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def raylab(*args, timeout=240):
    return subprocess.run([sys.executable, "-m", "raylab", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=ENV)


def png(path, size=(32, 32), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, color=128 if mode == "L" else (200, 30, 30)).save(path)


def tree(root, sizes=((32, 32),)):
    for split in ("train", "test"):
        for cls in ("cat", "dog"):
            for i, size in enumerate(sizes):
                png(root / split / cls / f"{i}.png", size)


def simplenn_run(tmp):
    proc = raylab("train", "--out", str(tmp / "run"), "--data", "synthetic:200", "--data-root", str(tmp / "d"),
                  "--epochs", "1", "--batch-size", "50", "--threads", "1", "--quiet")
    assert proc.returncode == 0, proc.stderr


def setup(kind, tmp):
    if kind.startswith("job:"):
        (tmp / "job.py").write_text(kind[4:])
    elif kind == "empty_tree":
        (tmp / "tree" / "train").mkdir(parents=True)
        (tmp / "tree" / "test").mkdir(parents=True)
    elif kind == "mixed_sizes":
        tree(tmp / "tree", sizes=((32, 32), (28, 28)))
    elif kind == "corrupt_image":
        tree(tmp / "tree")
        (tmp / "tree" / "train" / "cat" / "0.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
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
        from raylab.config import TrialConfig
        from raylab.study import Trial, variant_name
        overrides = {"model": "resnet20", "batch_size": 50}
        tid = Trial("run", variant_name(overrides), 0, TrialConfig.from_dict(overrides)).trial_id
        ckpts = tmp / "run" / "checkpoints"
        shutil.copy(next(ckpts.glob("*.pt")), ckpts / f"{tid}.pt")
    elif kind == "corrupt_checkpoint":
        simplenn_run(tmp)
        for ckpt in (tmp / "run" / "checkpoints").glob("*.pt"):
            ckpt.write_bytes(ckpt.read_bytes()[:100])
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


def snapshot(folder):
    if not folder.exists():
        return None
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_corpus_is_big_enough():
    assert len(CASES) >= 30
    assert len({c["name"] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_bad_input_is_one_line_and_exit_2(case, tmp_path):
    if case.get("needs_no_gpu"):
        import torch
        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU")
    if "setup" in case:
        setup(case["setup"], tmp_path)
    kept = tmp_path / case["keeps"] if "keeps" in case else None
    before = snapshot(kept) if kept else None
    args = [a.replace("{tmp}", str(tmp_path)).replace("{out}", str(tmp_path / "out")) for a in case["args"]]

    proc = raylab(*args)

    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr[-1500:]
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1, proc.stderr
    assert case["expect"] in lines[0], lines[0]
    assert not (tmp_path / "out").exists()  # a refused `train` writes nothing
    if kept:
        assert snapshot(kept) == before  # and what was there is untouched
