"""Studies as Ray Tune sweeps on a real local Ray (2 CPUs) and synthetic data."""
import pandas as pd
import pytest

from conftest import image_tree
from raylab.train.checkpoints import checkpoint_path, load_checkpoint
from raylab.declare.config import SweepOptions
from raylab.results import METRICS, TRIALS, WEIGHTS, read_table
from raylab.declare.study import Study, grid, variant
from raylab.sweep.driver import run_study

pytestmark = [pytest.mark.ray, pytest.mark.timeout(900)]  # real local Ray on a loaded 2-core box
EPOCHS = 2


def small(name, variants, seeds=1, **base):
    return Study(name, variants, {**dict(data="synthetic:400", epochs=EPOCHS, threads=1, batch_size=64), **base},
                 seeds=seeds)


def test_sweep_writes_the_contract(local_ray, tmp_path):
    study = small("sweep", grid(lr=[0.05, 0.01]), seeds=2, data_root=str(tmp_path / "data"))
    run_study(study, SweepOptions(storage=str(tmp_path), verbose=0))
    root = str(tmp_path / "sweep")
    metrics, trials = read_table(root, METRICS), read_table(root, TRIALS)
    weights = read_table(root, WEIGHTS)

    assert len(trials) == 4 and set(trials["status"]) == {"completed"}
    assert len(metrics) == 4 * (EPOCHS + 1)
    assert not metrics.duplicated(["trial_id", "epoch"]).any()
    assert sorted(metrics["epoch"].unique()) == list(range(EPOCHS + 1))
    assert set(metrics["variant"]) == {"lr=0.05", "lr=0.01"}
    for col in ("model", "base_lr", "weight_decay", "batchnorm", "augment", "schedule"):
        assert col in metrics.columns and col in trials.columns
    assert sorted(trials["base_lr"].unique()) == [0.01, 0.05]
    assert set(weights["trial_id"]) == set(trials["trial_id"])
    assert (trials["restarts"] == 0).all()
    # best_val_acc in trials agrees with the per-epoch rows
    best = metrics.groupby("trial_id")["val_acc"].max()
    assert (trials.set_index("trial_id")["best_val_acc"] - best).abs().max() < 1e-12


def test_crashed_trial_resumes_from_checkpoint(local_ray, tmp_path):
    study = small("crash", [variant("clean"), variant("crash", fail_at_epoch=1)],
                  data_root=str(tmp_path / "data"), epochs=3, augment=True)
    run_study(study, SweepOptions(storage=str(tmp_path), verbose=0, max_failures=1))
    root = str(tmp_path / "crash")
    metrics, trials = read_table(root, METRICS), read_table(root, TRIALS).set_index("variant")

    assert set(trials["status"]) == {"completed"}
    assert trials.loc["crash", "restarts"] == 1 and trials.loc["clean", "restarts"] == 0
    assert not metrics.duplicated(["trial_id", "epoch"]).any()
    clean = metrics[metrics.variant == "clean"].set_index("epoch")
    crash = metrics[metrics.variant == "crash"].set_index("epoch")
    assert list(crash.index) == [0, 1, 2, 3]
    cols = ["train_loss", "train_acc", "val_loss", "val_acc"]
    pd.testing.assert_frame_equal(clean[cols], crash[cols], rtol=1e-6)


def test_diverged_trial_does_not_fail_the_sweep(local_ray, tmp_path):
    study = small("diverge", grid(lr=[50.0, 0.05]), data_root=str(tmp_path / "data"), epochs=4)
    run_study(study, SweepOptions(storage=str(tmp_path), verbose=0))
    trials = read_table(str(tmp_path / "diverge"), TRIALS).set_index("variant")
    assert trials.loc["lr=50", "status"] == "diverged"
    assert trials.loc["lr=0.05", "status"] == "completed"


@pytest.mark.slow
def test_ddp_trial_with_two_gloo_workers(local_ray, tmp_path):
    """Learnable data and a learning rate that leaves chance behind, so that curves which
    agree with one worker's to 1e-4 mean something; and Ray itself says two workers ran."""
    from ray._private.state import actors

    def train_workers() -> int:
        return sum("RayTrainWorker" in a.get("ActorClassName", "") for a in actors().values())

    base = dict(data="synthetic:600", data_root=str(tmp_path / "data"), epochs=2, batch_size=64, lr=0.05)
    single = small("one", [variant("w1")], **base)
    run_study(single, SweepOptions(storage=str(tmp_path), verbose=0))
    workers_before = train_workers()
    ddp = small("ddp", [variant("w2")], **base)
    run_study(ddp, SweepOptions(storage=str(tmp_path), verbose=0, workers=2, cpus_per_trial=0.5))
    one = read_table(str(tmp_path / "one"), METRICS).set_index("epoch")
    two = read_table(str(tmp_path / "ddp"), METRICS).set_index("epoch")
    trials = read_table(str(tmp_path / "ddp"), TRIALS)
    assert trials["status"].tolist() == ["completed"]
    assert list(two.index) == [0, 1, 2]
    assert train_workers() - workers_before == 2  # Ray Train's worker actors of this trial
    # Rank 0 kept the trial's checkpoint file (raylab/train/checkpoints.py), at the last epoch.
    assert load_checkpoint(checkpoint_path(str(tmp_path / "ddp"), trials["trial_id"].item()))["epoch"] == 2
    assert one.loc[2, "val_acc"] > 0.3 and one.loc[2, "train_loss"] < 2.0  # learnt: chance is 0.1 and 2.30
    # Each epoch sees the whole training set once across the two workers, and the two
    # half-batches' averaged gradient is the whole batch's: the same curves, up to float
    # summation order (measured: 1.1e-5 relative in val_loss after 2 epochs; chance-level
    # curves of a broken run differ by > 0.1).
    assert (two.loc[1:, "train_images"] == 600).all()
    cols = ["train_loss", "train_acc", "val_loss", "val_acc"]
    pd.testing.assert_frame_equal(two[cols], one[cols], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_asha_stops_weak_trials_and_records_them(local_ray, tmp_path):
    study = small("asha", grid(lr=[0.05, 0.02, 0.01, 0.001, 0.0003, 0.0001]),
                  data_root=str(tmp_path / "data"), epochs=6)
    run_study(study, SweepOptions(storage=str(tmp_path), verbose=0, scheduler="asha"))
    root = str(tmp_path / "asha")
    trials, metrics = read_table(root, TRIALS), read_table(root, METRICS)
    assert set(trials["status"]) <= {"completed", "stopped"}
    stopped = trials[trials["status"] == "stopped"]
    assert len(stopped) >= 1
    runs = metrics.groupby("trial_id")["epoch"].max()
    assert (runs[stopped["trial_id"]] < 6).all()
    assert stopped["best_val_acc"].notna().all()
    assert not metrics.duplicated(["trial_id", "epoch"]).any()


def test_storage_given_as_a_filesystem_uri(local_ray, tmp_path):
    """The code path of s3:// and gs:// storage, on a file:// URI."""
    study = small("uri", grid(lr=[0.02]), data_root=str(tmp_path / "data"), epochs=1)
    run_study(study, SweepOptions(storage=f"file://{tmp_path}/store", verbose=0))
    root = f"file://{tmp_path}/store/uri"
    assert read_table(root, TRIALS)["status"].tolist() == ["completed"]
    assert len(read_table(root, METRICS)) == 2
    assert (tmp_path / "store" / "uri" / "study.json").exists()


def test_combined_sweep_trains_a_shared_config_once_under_both_studies(local_ray, tmp_path):
    """Through Tune: lab's baseline is sweep's lr=0.02; it trains once and its rows appear
    under both studies, with the same numbers."""
    from raylab.declare.study import combine

    base = dict(data="synthetic:200", data_root=str(tmp_path / "data"), epochs=1, threads=1, batch_size=50)
    lab = Study("lab", [variant("baseline")], {**base, "lr": 0.02})
    sweep = Study("sweep", grid(lr=[0.05, 0.02]), base)
    result = run_study(combine("both", [lab, sweep]), SweepOptions(storage=str(tmp_path), verbose=0))
    assert len(result) == 2  # Tune ran 2 trials for 3 (study, variant) pairs
    root = str(tmp_path / "both")
    trials, metrics = read_table(root, TRIALS), read_table(root, METRICS)
    assert sorted(trials["trial_id"]) == ["lab.baseline_s0", "sweep.lr_0.02_s0", "sweep.lr_0.05_s0"]
    assert set(trials["status"]) == {"completed"} and len(metrics) == 3 * 2
    shared = metrics[metrics.trial_id.isin(["lab.baseline_s0", "sweep.lr_0.02_s0"])]
    by_study = {s: g.set_index("epoch")[["train_loss", "val_acc"]] for s, g in shared.groupby("study")}
    pd.testing.assert_frame_equal(by_study["lab"], by_study["sweep"])


def test_trials_map_the_drivers_object_store_copy_of_the_data(local_ray, tmp_path, monkeypatch):
    """The driver decodes once and puts the arrays in the object store; a trial that fell
    back to loading the source itself would find no data here: the source is gone by then."""
    import shutil

    tree = tmp_path / "tree"
    image_tree(tree, ("cat", "dog"), train=60, test=20, size=(32, 32))
    study = Study("store", grid(lr=[0.05, 0.02]), dict(data=f"folder:{tree}", data_root=str(tmp_path / "cache"),
                                                        epochs=1, threads=1, batch_size=40))
    real_put = __import__("ray").put

    def put_then_remove_source(value, *a, **k):
        ref = real_put(value, *a, **k)
        shutil.rmtree(tree, ignore_errors=True)  # and the driver's cache: nothing left to decode
        shutil.rmtree(tmp_path / "cache", ignore_errors=True)
        return ref

    monkeypatch.setattr("ray.put", put_then_remove_source)
    run_study(study, SweepOptions(storage=str(tmp_path), verbose=0))
    trials = read_table(str(tmp_path / "store"), TRIALS)
    assert set(trials["status"]) == {"completed"} and len(trials) == 2
    assert not tree.exists()
