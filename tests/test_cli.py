"""The `raylab` command line as a user runs it: real processes, real files."""
import subprocess
import sys

import pytest

from conftest import ROOT, assert_one_line_error, child_env, job_file, raylab, raylab_in_process
from raylab.results import METRICS, TRIALS, read_table

pytestmark = pytest.mark.timeout(900)  # processes that start Ray on a loaded 2-core box


# ------------------------------------------------------------------ train
def test_train_writes_the_three_tables_and_resumes(tmp_path):
    out = tmp_path / "run"
    args = ["train", "--data", "synthetic:300", "--data-root", tmp_path / "data", "--epochs", "2",
            "--batch-size", "50", "--lr", "0.05", "--threads", "1", "--out", out, "--quiet"]
    proc = raylab(*args)
    assert proc.returncode == 0, proc.stderr
    assert "epoch   1" in proc.stdout and "best val acc" in proc.stdout
    metrics = read_table(str(out), METRICS)
    assert metrics["epoch"].tolist() == [0, 1, 2]
    assert metrics["variant"].iloc[0] == "batch_size=50+lr=0.05" and metrics["base_lr"].iloc[0] == 0.05
    assert (out / "weights.parquet").exists()

    again = raylab(*args)  # the same trial again would overwrite it: refused
    assert_one_line_error(again, "already holds trial", "--resume")

    longer = [a if a != "2" else "3" for a in args] + ["--resume"]
    proc = raylab(*longer)
    assert proc.returncode == 0, proc.stderr
    metrics = read_table(str(out), METRICS)
    assert metrics["epoch"].tolist() == [0, 1, 2, 3]
    assert read_table(str(out), TRIALS)["restarts"].tolist() == [1]


@pytest.mark.parametrize("args, needles", [
    (["train", "--out", "x", "--lr", "-1"], ["lr must be > 0"]),
    (["train", "--out", "x", "--epochs", "0"], ["epochs must be >= 1"]),
    (["train", "--out", "x", "--model", "vgg"], ["model 'vgg'", "simplenn"]),
    (["train", "--out", "x", "--activation", "sigmoidish"], ["activation"]),
    (["train", "--out", "x", "--lr", "fast"], ["'lr' must be float"]),
    (["train", "--out", "x", "--data", "imagenet"], ["data 'imagenet'"]),
    (["train", "--out", "x", "--lerning-rate", "0.1"], ["unrecognized arguments"]),
    (["train"], ["--out"]),
    (["fly"], ["invalid choice"]),
    (["run", "jobs/nope.py"], ["job file jobs/nope.py not found"]),
    (["report", "/nonexistent/study"], []),
    (["status", "/nonexistent/study"], ["not found"]),
    (["resume", "/nonexistent/study"], ["no sweep to resume"]),
])
def test_user_errors_are_one_line_exit_2(args, needles, tmp_path):
    assert_one_line_error(raylab(*args, cwd=ROOT), *needles)


def test_debug_shows_the_traceback():
    proc = raylab("--debug", "train", "--out", "x", "--lr", "-1")
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_models_lists_shapes_and_counts():
    proc = raylab("models", "simplenn")
    assert proc.returncode == 0
    conv1 = next(line for line in proc.stdout.splitlines() if line.startswith("conv1.weight"))
    assert conv1.split()[1:] == ["8x3x5x5", "600"]
    assert "params 82,030" in proc.stdout and "MACs/image 716,328" in proc.stdout


# ---------------------------------------------------------------- studies
def test_list_names_every_study():
    proc = raylab("list", "jobs")
    assert proc.returncode == 0, proc.stderr
    for name in ("quickstart", "lab1_simplenn", "lab2_lr_sweep", "lab2_l2_sweep", "lab2_l1_vs_l2",
                 "lab2_batchnorm", "lab2_swish", "lab2_augment", "lab3_resnet20", "assignment"):
        assert name in proc.stdout
    lr_line = next(line for line in proc.stdout.splitlines() if line.startswith("lab2_lr_sweep"))
    assert lr_line.split()[1] == "6"
    lines = proc.stdout.splitlines()  # a name longer than the others still leaves the columns aligned
    assert len({line.index(" jobs/") for line in lines[1:]} | {lines[0].index("  file") + 1}) == 1


@pytest.mark.parametrize("body, needles", [
    ("", ["defines no study"]),
    ("x = (", ["line 1"]),
    ("from raylab import Study\nSTUDY = Study('s', varaints=[])\n", ["line 2", "TypeError", "varaints"]),
    ("from raylab import Study, variant\nSTUDY = Study('s', [variant(lerning_rate=0.1)])\n",
     ["variant 'lerning_rate=0.1'", "unknown config field 'lerning_rate'"]),
])
def test_bad_job_files(tmp_path, body, needles):
    assert_one_line_error(raylab("run", job_file(tmp_path, body), "--storage", tmp_path / "res"), *needles)


@pytest.mark.ray
def test_impossible_resources_and_unreachable_cluster(tmp_path):
    body = """
        from raylab import Study, grid
        STUDY = Study("r", grid(lr=[0.1]), dict(data="synthetic:200"))
    """
    path = job_file(tmp_path, body)
    proc = raylab("run", path, "--storage", tmp_path / "res", "--gpus-per-trial", "1", "--num-cpus", "1")
    assert_one_line_error(proc, "needs 1 GPU", "--gpus-per-trial")
    proc = raylab("run", path, "--storage", tmp_path / "res", "--address", "127.0.0.1:9", timeout=180)
    assert_one_line_error(proc, "cannot reach a Ray cluster at --address 127.0.0.1:9")
    assert not (tmp_path / "res" / "r" / "metrics.parquet").exists()


# ---------------------------------------------------------------- sweeps as a user runs them
@pytest.mark.slow
@pytest.mark.ray
def test_a_trial_that_exhausts_max_failures_is_failed_and_the_run_exits_1(tmp_path):
    """--max-failures 0: the injected fault ends the trial `failed` with its error; the other
    trial completes; `raylab run` says so and exits 1. --set, --max-concurrent and
    --cpus-per-trial reach the trials and the recorded options."""
    path = job_file(tmp_path, f"""
        from raylab import Study, variant
        STUDY = Study("f", [variant("clean"), variant("crash", fail_at_epoch=1)],
                      dict(data="synthetic:200", data_root={str(tmp_path / 'd')!r}, epochs=2, threads=1,
                           batch_size=50))
    """)
    proc = raylab("run", path, "--storage", tmp_path / "res", "--num-cpus", "2", "--max-failures", "0",
                  "--set", "weight_decay=0.003", "--max-concurrent", "1", "--cpus-per-trial", "1", "--quiet",
                  timeout=600)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "1 trial(s) failed" in proc.stdout and "raylab resume" in proc.stdout, proc.stdout
    root = str(tmp_path / "res" / "f")
    trials = read_table(root, TRIALS).set_index("variant")
    assert trials.loc["crash", "status"] == "failed" and "injected fault" in trials.loc["crash", "error"]
    assert trials.loc["clean", "status"] == "completed" and trials.loc["clean", "epochs_run"] == 2
    assert (trials["weight_decay"] == 0.003).all()  # --set
    metrics = read_table(root, METRICS)
    assert metrics[metrics.variant == "clean"]["epoch"].tolist() == [0, 1, 2]
    import json
    options = json.loads((tmp_path / "res" / "f" / "study.json").read_text())["options"]
    assert options["max_concurrent"] == 1 and options["cpus_per_trial"] == 1 and options["max_failures"] == 0
    status = raylab("status", root)
    assert status.returncode == 0 and "1 failed" in status.stdout, status.stdout


@pytest.mark.slow
@pytest.mark.ray
def test_a_job_file_runs_as_a_script(tmp_path):
    """`python jobs/quickstart.py` with run flags: the real job file, end to end."""
    proc = subprocess.run([sys.executable, "jobs/quickstart.py", "--storage", str(tmp_path / "res"),
                           "--data", "synthetic:200", "--data-root", str(tmp_path / "d"), "--epochs", "1",
                           "--set", "threads=1", "--set", "batch_size=50", "--num-cpus", "2",
                           "--scheduler", "fifo", "--quiet"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT, env=child_env())
    assert proc.returncode == 0, proc.stderr[-2000:]
    trials = read_table(str(tmp_path / "res" / "quickstart"), TRIALS)
    assert sorted(trials["base_lr"]) == [0.01, 0.05, 0.1] and set(trials["status"]) == {"completed"}
    assert "lr=0.05" in proc.stdout and "best val acc" in proc.stdout


def test_every_trial_config_field_is_a_train_flag():
    """docs/studies.md: every TrialConfig field is a flag; one added to the dataclass appears by itself.
    The hidden test hooks (fail_at_epoch) are the exception: no flag, by design."""
    import argparse

    from raylab.cli import build_parser
    from raylab.declare.config import HIDDEN_FIELDS, config_fields

    parser = build_parser()
    train = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["train"]
    flags = {opt for a in train._actions for opt in a.option_strings}
    for name in config_fields():
        assert (("--" + name.replace("_", "-") in flags) != (name in HIDDEN_FIELDS)), name
    help_text = train.format_help()
    assert "default: 0.01" in help_text and "default: 128" in help_text  # the course report's lr, batch


def test_report_as_html_from_the_command_line(tmp_path):
    proc = raylab_in_process("report", ROOT / "docs/results/assignment", "--out", tmp_path, "--format", "html")
    assert proc.returncode == 0, proc.stderr
    html = (tmp_path / "report.html").read_text()
    assert html.lstrip().lower().startswith("<!doctype html") and "<table" in html and "lab2_lr_sweep" in html
    assert (tmp_path / "report.md").exists()


@pytest.mark.slow
@pytest.mark.ray
def test_a_sweep_trial_refuses_a_checkpoint_of_another_model(tmp_path):
    """A checkpoint left at a trial's path by another run (here SimpleNN without BN, for a
    trial with BN) is refused by that trial with one line, and the file stays as it was."""
    import hashlib
    import shutil

    data = ["--data", "synthetic:200", "--data-root", tmp_path / "d", "--batch-size", "50", "--threads", "1"]
    assert raylab_in_process("train", "--out", tmp_path / "other", "--epochs", "1", "--quiet", *data).returncode == 0
    foreign = tmp_path / "res" / "g" / "checkpoints" / "bn_s0.pt"  # the trial id of g/bn, seed 0
    foreign.parent.mkdir(parents=True)
    shutil.copy(next((tmp_path / "other" / "checkpoints").glob("*.pt")), foreign)
    digest = hashlib.sha256(foreign.read_bytes()).hexdigest()
    path = job_file(tmp_path, f"""
        from raylab import Study, variant
        STUDY = Study("g", [variant("bn", batchnorm=True)],
                      dict(data="synthetic:200", data_root={str(tmp_path / 'd')!r}, epochs=1, threads=1,
                           batch_size=50))
    """)
    proc = raylab("run", path, "--storage", tmp_path / "res", "--num-cpus", "1", "--max-failures", "0", "--quiet",
                  timeout=600)
    assert proc.returncode == 1, proc.stderr[-2000:]
    (error,) = read_table(str(tmp_path / "res" / "g"), TRIALS)["error"]
    assert "\n" not in error and "checkpoint was made with batchnorm=False" in error, error
    assert hashlib.sha256(foreign.read_bytes()).hexdigest() == digest
