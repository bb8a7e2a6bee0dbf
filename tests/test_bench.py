"""The benchmarks stay runnable: their --quick forms finish and print the JSON docs/benchmarks.md quotes.
(Speed is reported by `make bench`, never asserted here.)"""
import json
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.timeout(900)]  # real training and a real Ray sweep


def bench(name, tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / name), "--quick", "--root", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def test_trainer_bench_reports_each_pipeline_and_the_ratios(tmp_path):
    out = bench("trainer.py", tmp_path)
    assert set(out["ratios"]) >= {"raylab_over_bare", "raylab_over_best_dataloader"}
    assert out["ratios"]["raylab_over_bare"]["plain"] > 0


def test_sweep_bench_reports_overheads(tmp_path):
    out = bench("sweep.py", tmp_path)
    text = json.dumps(out)
    assert "ray_init_seconds" in text or "ray_init" in text
    assert "back_to_back" in text
