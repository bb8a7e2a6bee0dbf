"""Search spaces (raylab.declare.space): distributions in a Study, random and Optuna searches on a
real local Ray and synthetic data, names and config columns of sampled trials, resume after
a driver kill, and bad input as one line with exit 2."""
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import assert_one_line_error, job_file, raylab, raylab_in_process, start_raylab
from raylab.declare.config import ConfigError
from raylab.results import METRICS, TRIALS, read_table
from raylab.declare.space import as_dist, choice, loguniform, randint, uniform
from raylab.declare.study import Study, sampled_name

pytestmark = pytest.mark.timeout(900)  # sweeps on a loaded 2-core box
NAME = re.compile(r"^lr=[0-9.e-]+\+wd=[0-9.e-]+_s0_n\d+$")


def job(tmp_path, name, samples, epochs=2, extra="") -> Path:
    return job_file(tmp_path, f"""
        from raylab import Study, loguniform
        STUDY = Study({name!r}, num_samples={samples},
                      base=dict(data="synthetic:300", data_root={str(tmp_path / 'data')!r}, epochs={epochs},
                                threads=1, batch_size=50, lr=loguniform(1e-3, 0.2),
                                weight_decay=loguniform(1e-6, 1e-2){extra}))
    """, f"{name}.py")


# ------------------------------------------------------------------ no Ray
def test_distributions_from_objects_and_text():
    assert as_dist("lr", "loguniform(1e-4, 0.1)") == loguniform(1e-4, 0.1)
    assert as_dist("batch_size", "choice([64, 128])") == choice([64, 128])
    assert as_dist("activation", "choice('relu', 'swish')") == choice(["relu", "swish"])
    assert as_dist("data", "folder:/x") is None and as_dist("lr", 0.1) is None
    with pytest.raises(ConfigError, match="unknown distribution 'logunifrom'"):
        as_dist("lr", "logunifrom(1e-4, 0.1)")
    with pytest.raises(ConfigError, match="low must be below high"):
        uniform(0.5, 0.1)
    with pytest.raises(ConfigError, match="loguniform needs low > 0"):
        loguniform(0, 1)


def test_searched_study_validates_every_field_and_bound():
    base = dict(data="synthetic:100", epochs=1)
    study = Study("s", base={**base, "lr": loguniform(1e-3, 0.1), "batch_size": randint(16, 65)}, num_samples=4)
    assert set(study.space()) == {"lr", "batch_size"}
    assert study.swept() == ["batch_size", "lr"]
    assert len(study.trials()) == 1  # one variant-seed pair, sampled 4 times
    assert study.describe()["space"]["lr"] == {"kind": "loguniform", "args": [1e-3, 0.1]}
    with pytest.raises(ConfigError, match="unknown config field 'lrr'"):
        Study("s", base={**base, "lrr": loguniform(1e-3, 0.1)}).trials()
    with pytest.raises(ConfigError, match="search over momentum = uniform.*momentum must be below 1"):
        Study("s", base={**base, "momentum": uniform(0.5, 1.5)}).trials()
    with pytest.raises(ConfigError, match="num_samples"):
        Study("s", base=base, num_samples=0)


def test_sampled_names_are_short_and_readable():
    assert sampled_name("baseline", {"lr": 0.012345, "weight_decay": 3.1e-05}) == "lr=0.0123+wd=3.1e-05"
    assert sampled_name("bn", {"activation": "swish"}) == "bn+swish"


@pytest.mark.parametrize("args, expect", [
    (["--set", "lr=logunifrom(1e-4,0.1)"], "unknown distribution 'logunifrom'"),
    (["--set", "lrr=loguniform(1e-4,0.1)"], "unknown config field 'lrr'"),
    (["--set", "momentum=uniform(0.5,2)"], "momentum must be below 1"),
    (["--search", "optuna", "--seeds", "2"], "--search optuna samples one variant and one seed"),
    (["--num-samples", "0"], "--num-samples must be >= 1"),
])
def test_bad_search_input_is_one_line_exit_2(tmp_path, args, expect):
    path = job(tmp_path, "bad", 2)
    proc = raylab("run", path, "--storage", tmp_path / "res", "--num-cpus", "1", *args)
    assert_one_line_error(proc, expect)
    assert not (tmp_path / "res").exists()  # refused before anything was written


# ------------------------------------------------------------------ real Ray
@pytest.mark.ray
def test_random_search_on_a_grid_names_and_records_each_sample(local_ray, tmp_path):
    path = job_file(tmp_path, f"""
        from raylab import Study, grid, loguniform
        STUDY = Study("mixed", grid(batchnorm=[False, True]), num_samples=2,
                      base=dict(data="synthetic:300", data_root={str(tmp_path / 'data')!r}, epochs=1,
                                threads=1, batch_size=50, lr=loguniform(1e-3, 0.2)))
    """, "mixed.py")
    proc = raylab_in_process("run", path, "--storage", tmp_path / "res", "--quiet", "--log", "mlflow")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 variants x 1 seeds x 2 samples = 4 trials" in proc.stdout
    trials = read_table(str(tmp_path / "res" / "mixed"), TRIALS)
    assert len(trials) == 4 and set(trials["status"]) == {"completed"}
    assert trials["trial_id"].is_unique
    for row in trials.to_dict("records"):
        # The name carries the sampled value; the config column holds it exactly.
        lr = float(re.search(r"lr=([0-9.e-]+)", row["variant"]).group(1))
        assert abs(lr - row["base_lr"]) <= 5e-3 * row["base_lr"] and 1e-3 <= row["base_lr"] <= 0.2
        assert row["variant"].startswith("bn+") == bool(row["batchnorm"])
    assert trials["base_lr"].nunique() == 4
    # TensorBoard: one event file per trial, in the trial's folder, val_acc by epoch.
    for trial_id in trials["trial_id"]:
        events = list((tmp_path / "res" / "mixed" / "tune" / trial_id).glob("events.out.tfevents.*"))
        assert len(events) == 1, trial_id
        scalars = tensorboard_scalars(events[0])
        assert sorted(scalars["ray/tune/val_acc"]) == [0, 1]  # epochs 0 and 1
        assert 0.0 <= scalars["ray/tune/val_acc"][1] <= 1.0
    # MLflow (--log mlflow): one run per trial, its config as params, val_acc by epoch.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'res' / 'mixed' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("mixed").experiment_id])
    by_name = {r.info.run_name: r for r in runs}
    assert set(by_name) == set(trials["trial_id"])
    for row in trials.to_dict("records"):
        run = by_name[row["trial_id"]]
        assert float(run.data.params["lr"]) == pytest.approx(row["base_lr"])
        history = client.get_metric_history(run.info.run_id, "val_acc")
        assert sorted(m.step for m in history) == [0, 1] and run.info.status == "FINISHED"


def tensorboard_scalars(path: Path) -> dict[str, dict[int, float]]:
    """{tag: {step: value}} read from an event file (TFRecord framing: length, crc, data, crc)."""
    import struct

    from tensorboardX.proto import event_pb2

    out: dict[str, dict[int, float]] = {}
    data = path.read_bytes()
    pos = 0
    while pos < len(data):
        (length,) = struct.unpack("<Q", data[pos:pos + 8])
        event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
        pos += 12 + length + 4
        for value in event.summary.value:
            if value.HasField("simple_value"):
                out.setdefault(value.tag, {})[event.step] = value.simple_value
    return out


@pytest.mark.ray
def test_optuna_search_resumes_after_driver_kill_without_duplicates(tmp_path):
    """6 Optuna samples, one at a time; SIGKILL the driver after two finish, then resume."""
    samples, epochs = 6, 3
    path = job(tmp_path, "opt", samples, epochs=epochs)
    root = tmp_path / "res" / "opt"
    driver = start_raylab("run", path, "--storage", tmp_path / "res", "--search", "optuna", "--max-concurrent", "1",
                          "--num-cpus", "2", "--quiet", stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 400
        done = 0
        while done < 2 and driver.poll() is None and time.time() < deadline:
            time.sleep(0.5)
            try:
                done = int((pd.read_parquet(root / TRIALS)["status"] == "completed").sum())
            except (OSError, ValueError, KeyError):
                pass
        assert driver.poll() is None, f"the sweep ended before it could be killed: {driver.stderr.read()[-2000:]}"
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
    before = read_table(str(root), TRIALS)
    assert 2 <= len(before) < samples

    proc = raylab("resume", root, "--num-cpus", "2", "--quiet", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials, metrics = read_table(str(root), TRIALS), read_table(str(root), METRICS)
    assert len(trials) == samples and set(trials["status"]) == {"completed"}, trials[["trial_id", "status"]]
    assert all(NAME.match(t) for t in trials["trial_id"]), list(trials["trial_id"])
    assert sorted(int(t.rsplit("_n", 1)[1]) for t in trials["trial_id"]) == list(range(1, samples + 1))
    assert not metrics.duplicated(["trial_id", "epoch"]).any()
    assert len(metrics) == samples * (epochs + 1)
    # Trials finished before the kill kept their sampled values and rows.
    kept = before[before.status == "completed"].set_index("trial_id")
    assert (trials.set_index("trial_id").loc[kept.index, "base_lr"] == kept["base_lr"]).all()
    # Tune made one folder per sample: nothing was sampled twice.
    assert len([p for p in (root / "tune").iterdir() if p.is_dir() and NAME.match(p.name)]) == samples

    # `raylab report` picks the search figures and the top-k table for a searched study.
    proc = raylab("report", root, "--out", tmp_path / "report")
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = (tmp_path / "report" / "report.md").read_text()
    for stem in ("search_params", "search_pair", "search_best_so_far"):
        assert (tmp_path / "report" / f"opt_{stem}.png").stat().st_size > 5000, stem
    best = trials.sort_values("best_val_acc", ascending=False).iloc[0]
    assert f"| 1 | {best['trial_id']} |" in report and "Top trials of the search" in report


def test_random_search_draws_the_same_samples_for_the_same_seed():
    """Seeded like Optuna's TPE: a rerun of a study (another machine, a fresh results folder)
    trains the same sampled configs, so the two runs compare."""
    from ray import tune

    from raylab.sweep.searcher import search_alg, to_tune

    space = {"lr": loguniform(1e-4, 0.1), "weight_decay": loguniform(1e-6, 1e-2)}
    tune.register_trainable("raylab_test_noop", lambda config: None)

    def draw(seed: int) -> list[dict]:
        gen = search_alg("random", space, 1, seed=seed)
        gen.add_configurations({"x": {"run": "raylab_test_noop", "num_samples": 4,
                                      "config": {"sampled": {k: to_tune(d) for k, d in space.items()}}}})
        trials = iter(gen.next_trial, None)
        return [t.config["sampled"] for t in trials]

    first = draw(0)
    assert len(first) == 4 and len({c["lr"] for c in first}) == 4
    assert draw(0) == first and draw(1) != first


@pytest.mark.ray
def test_pbt_clones_and_perturbs_lr_recorded_per_epoch(local_ray, tmp_path):
    """4 trials, lr perturbed every 2 epochs: some trial's lr changes mid-run, and each epoch's
    row carries the lr it trained with."""
    epochs = 6
    path = job(tmp_path, "pbt", 4, epochs=epochs)
    proc = raylab_in_process("run", path, "--storage", tmp_path / "res", "--scheduler", "pbt", "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    root = tmp_path / "res" / "pbt"
    trials, metrics = read_table(str(root), TRIALS), read_table(str(root), METRICS)
    assert len(trials) == 4 and set(trials["status"]) == {"completed"}
    assert not metrics.duplicated(["trial_id", "epoch"]).any()
    assert (metrics.groupby("trial_id")["epoch"].max() == epochs).all()
    trained = metrics[metrics.epoch > 0]
    assert ((trained["lr"] - trained["base_lr"]).abs() <= 1e-9 * trained["base_lr"]).all()  # schedule none
    changed = trained.groupby("trial_id")["base_lr"].nunique()
    assert (changed > 1).any(), trained[["trial_id", "epoch", "base_lr"]].to_string()
    # The variant keeps the values first drawn: a stable name while lr moves under it.
    for row in trials.to_dict("records"):
        first = trained[trained.trial_id == row["trial_id"]].sort_values("epoch").iloc[0]
        assert row["variant"] == sampled_name("baseline", {"lr": first["base_lr"],
                                                           "weight_decay": first["weight_decay"]})


def test_search_plot_axes_follow_the_distribution():
    from analysis.search_plots import best_so_far, log_axis, sample_order, top_k

    space = {"lr": {"kind": "loguniform", "args": [1e-4, 0.1]},
             "momentum": {"kind": "uniform", "args": [0.5, 0.99]},
             "batch_size": {"kind": "choice", "args": [32, 64]}}
    trials = pd.DataFrame({"trial_id": ["a_s0_n3", "b_s0_n1", "c_s0_n2"], "base_lr": [1e-4, 1e-2, 0.1],
                           "momentum": [0.5, 0.9, 0.6], "batch_size": [32, 64, 32], "weight_decay": [1e-6, 1e-3, 1e-4],
                           "best_val_acc": [0.3, 0.5, 0.4], "final_val_acc": [0.3, 0.4, 0.4],
                           "best_epoch": [2, 3, 1], "status": ["completed"] * 3})
    assert log_axis("lr", space, trials["base_lr"]) and not log_axis("momentum", space, trials["momentum"])
    assert log_axis("weight_decay", {}, trials["weight_decay"])  # spans three decades
    assert list(sample_order(trials)["trial_id"]) == ["b_s0_n1", "c_s0_n2", "a_s0_n3"]
    ax = best_so_far(trials).axes[0]
    assert list(ax.lines[0].get_ydata()) == [0.5, 0.4, 0.3]  # each trial, in sampling order
    assert list(ax.lines[1].get_ydata()) == [0.5, 0.5, 0.5]  # n1 was the best from the start
    table = top_k(trials, space, k=2).splitlines()
    assert table[2].startswith("| 1 | b_s0_n1 | 0.01 | 0.9 | 64 | 0.5000 | 3 |") and len(table) == 4
