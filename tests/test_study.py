"""Studies: variant names, grids, seeds, combined sweeps, selection; and every job file."""
import pytest

from conftest import ROOT

from raylab.declare.config import ConfigError
from raylab.declare.study import Study, combine, grid, variant, variant_name
from raylab.declare.study import load_job, select

JOBS = sorted((ROOT / "jobs").glob("*.py"))


def test_variant_names_read_well():
    assert variant_name({"lr": 0.05}) == "lr=0.05"
    assert variant_name({"batchnorm": True, "lr": 0.1}) == "bn+lr=0.1"
    assert variant_name({"batchnorm": False, "lr": 0.1}) == "lr=0.1"
    assert variant_name({"weight_decay": 1e-5}) == "wd=1e-05"
    assert variant_name({"activation": "swish"}) == "swish"
    assert variant_name({"epochs": 3, "data": "synthetic"}) == "baseline"  # run options are not the variant


def test_grid_is_the_product_in_order():
    names = [v.name for v in grid(batchnorm=[False, True], lr=[0.1, 0.01])]
    assert names == ["lr=0.1", "lr=0.01", "bn+lr=0.1", "bn+lr=0.01"]


def test_trials_are_variants_times_seeds_with_stable_ids():
    study = Study("s", grid(lr=[0.1, 0.01]), dict(epochs=3), seeds=3)
    trials = study.trials()
    assert len(trials) == 6
    assert [t.trial_id for t in trials[:3]] == ["lr_0.1_s0", "lr_0.1_s1", "lr_0.1_s2"]
    assert {t.config.seed for t in trials} == {0, 1, 2}
    assert [t.trial_id for t in study.trials()] == [t.trial_id for t in trials]


def test_run_options_beat_variants_and_base():
    study = Study("s", [variant("long", epochs=200)], dict(epochs=30)).with_options(epochs=2, seeds=2)
    assert [t.config.epochs for t in study.trials()] == [2, 2]


def test_bad_studies_are_refused_with_the_variant_named():
    with pytest.raises(ConfigError, match="variant 'lr=-1'.*lr must be > 0"):
        Study("s", grid(lr=[-1.0])).trials()
    with pytest.raises(ConfigError, match="variant names repeat"):
        Study("s", [variant("a", lr=0.1), variant("a", lr=0.2)])
    with pytest.raises(ConfigError, match="study name"):
        Study("no spaces", [variant()])


def test_combined_study_trains_each_config_once_under_every_name():
    lab1 = Study("lab1", [variant("baseline"), variant("decay", schedule="step")], dict(lr=0.01))
    sweep = Study("sweep", grid(lr=[0.1, 0.01]))
    both = combine("all", [lab1, sweep])
    trials = both.trials()
    assert len(trials) == 3  # sweep's lr=0.01 is lab1's baseline
    shared = next(t for t in trials if t.shared_with)
    assert [m["study"] for m in shared.metas()] == ["lab1", "sweep"]
    assert [m["trial_id"] for m in shared.metas()] == ["lab1.baseline_s0", "sweep.lr_0.01_s0"]
    described = both.describe()
    assert [s["name"] for s in described["studies"]] == ["lab1", "sweep"]
    assert described["studies"][1]["swept"] == ["lr"]


def test_only_and_skip_select_variants():
    study = load_job("jobs/assignment.py")
    kept = select(study, [], ["lab3_*"])
    assert all(v.study != "lab3_resnet20" for v in kept.variants)
    assert [v.name for v in select(study, ["lab2_lr_sweep/*"], []).variants] == \
        ["lr=1", "lr=0.1", "lr=0.05", "lr=0.01", "lr=0.005", "lr=0.001"]
    with pytest.raises(ConfigError, match="left no variant"):
        select(study, ["nothing*"], [])


@pytest.mark.parametrize("path", JOBS, ids=[p.stem for p in JOBS])
def test_every_job_file_declares_a_valid_study(path):
    study = load_job(str(path))
    assert study.name == path.stem
    assert study.trials()  # every trial's config validates
    assert path.read_text().count("\n") < 40  # job files stay short declarations
