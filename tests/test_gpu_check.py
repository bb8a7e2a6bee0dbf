"""bench/gpu_check.py stays runnable: its --smoke form (CPU, tiny sizes) runs every step
and writes the JSON a GPU run would. Speed is never asserted: smoke numbers are no measurement."""
import json
import subprocess
import sys

import pytest

from conftest import ROOT

STEPS = ["env", "data", "gpu_tests", "throughput", "sharing", "resnet20"]


def gpu_check(tmp_path, *args):
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--smoke", "--out", str(out),
                           "--cache", str(tmp_path / "cache"), *args],
                          capture_output=True, text=True, timeout=2400, cwd=ROOT)
    return proc, out


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    proc, out = gpu_check(tmp_path_factory.mktemp("smoke"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed = json.loads(proc.stdout)
    assert printed == json.loads(out.read_text())  # the file holds what was printed
    return printed


def test_every_step_runs_in_order(smoke):
    assert list(smoke["steps"]) == STEPS
    bad = {k: v.get("error") for k, v in smoke["steps"].items() if v["status"] != "ok"}
    assert not bad, bad
    env = smoke["steps"]["env"]
    assert env["torch"] and "cuda_available" in env and env["python"]
    assert all(v["cpu_seconds"] > 0 for v in smoke["steps"].values())


def test_gpu_tests_ran_through_pytest_on_the_cpu(smoke):
    tests = smoke["steps"]["gpu_tests"]
    names = {t["name"] for t in tests["tests"]}
    assert {"test_resume_on_cuda_equals_the_uninterrupted_run", "test_compiled_training_matches_eager",
            "test_checkpoint_written_on_gpu_resumes_on_cpu"} <= names
    assert tests["passed"] == len(tests["tests"]) and tests["failed"] == 0


def test_throughput_compares_trainer_with_the_bare_loop(smoke):
    step = smoke["steps"]["throughput"]
    for model in ("simplenn", "resnet20"):
        for case in ("bare/bf16/eager", "trainer/bf16/eager", "bare/fp32/eager"):
            assert step["cases"][f"{model}/{case}"]["images_per_second"] > 0
        assert step["ratios"][f"{model}/trainer_over_bare/bf16/eager"] > 0
        assert step["ratios"][f"{model}/bf16_over_fp32/bare/eager"] > 0


def test_sharing_runs_trials_side_by_side_and_picks_a_share(smoke):
    step = smoke["steps"]["sharing"]
    assert set(step["runs"]) == {"1", "2"}
    two = step["runs"]["2"]
    assert two["trials"] == 2 and len(two["final_val_acc"]) == 2
    assert two["aggregate_images_per_second"] > 0 and two["per_trial_images_per_second"] > 0
    rec = step["recommendation"]
    assert rec["trials_per_gpu"] in (1, 2) and rec["gpu_share"] == 1 / rec["trials_per_gpu"]


def test_resnet20_reports_a_labelled_schedule_and_its_projection(smoke):
    step = smoke["steps"]["resnet20"]
    assert "compressed" in step["schedule"]
    assert step["epochs_run"] == step["planned_epochs"] >= 1 or step["stopped_early"]
    assert [r["epoch"] for r in step["history"]] == list(range(step["epochs_run"] + 1))
    assert step["projected_200_epoch_minutes"] > 0 and 0 <= step["best_val_acc"] <= 1


def test_a_failing_step_is_recorded_and_the_rest_go_on(tmp_path):
    proc, out = gpu_check(tmp_path, "--steps", "throughput,resnet20", "--inject-failure", "throughput")
    assert proc.returncode == 0, proc.stderr[-3000:]
    steps = json.loads(out.read_text())["steps"]
    assert steps["throughput"]["status"] == "error" and "injected failure" in steps["throughput"]["error"]
    assert steps["resnet20"]["status"] == "ok"
    assert "no throughput figure" in steps["resnet20"]["estimate_basis"]


@pytest.mark.parametrize("args, words", [
    (["--data", "folder:/nonexistent/cifar.tar.gz"], "make gpu-data"),
    (["--steps", "env,warp"], "unknown step"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, words):
    proc, out = gpu_check(tmp_path, *args)
    assert proc.returncode == 2 and words in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not out.exists()
