"""Claims: declared in job files, carried in study.json, judged by analysis.claims from Parquet.

The statistics are checked on constructed results whose answer is known: a
clear difference, no difference, too few seeds.
"""
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from analysis import claims as C
from analysis.load import load_study
from analysis.report import write_report
from raylab import results as R
from raylab.declare.claim import Claim, ClaimError
from raylab.declare.config import TrialConfig
from raylab.declare.study import Study, combine, variant
from raylab.declare.study import select

from conftest import ROOT, assert_one_line_error, job_file, raylab

BASE = dict(model="simplenn", epochs=5, data="synthetic")


def toy(claims=(), name="toy", base=None, **extra):
    return Study(name, base=base or BASE, claims=list(claims), variants=[
        variant("a", lr=0.1), variant("b", lr=0.01), variant("c", lr=0.05),
        variant("aug", augment=True, pad="mean")], **extra)


def write(folder: Path, study: Study, values: dict, *, metric="best_val_acc", name=None, drop=()) -> Path:
    """A study folder with one completed trial per value: values = {variant: [per seed]}.
    `drop`: config columns left out, as in results written before those fields existed."""
    name = name or study.name
    path = folder / name
    w = R.StudyWriter(str(path))
    overrides = {v.name: v.overrides for v in study.variants}
    for var, per_seed in values.items():
        for seed, x in enumerate(per_seed):
            cfg = TrialConfig.from_dict({**study.base, **overrides[var], "seed": seed}).to_dict()
            cols = {k: v for k, v in R.config_columns(cfg).items() if k not in drop}
            tid = f"{var}_s{seed}"
            key = {"study": name, "trial_id": tid, "variant": var, "seed": seed}
            acc = x if metric == "best_val_acc" else 0.6
            for e in (0, 1):
                w.add_epoch({**key, "epoch": e, "train_loss": 1.0, "train_acc": acc + (x if metric == "overfit_gap"
                             else 0.05), "val_loss": 1.0, "val_acc": acc, "lr": cfg["lr"], "epoch_seconds": 1.0,
                             "images_per_second": 1.0, **cols})
            w.set_trial({**key, "status": "completed", "epochs_run": 1, "best_val_acc": acc, "best_epoch": 1,
                         "final_val_acc": acc, "n_params": 100, "macs": x if metric == "macs" else 1000,
                         "wall_seconds": 1.0, "restarts": 0, "error": None, **cols})
    w.flush()
    (path / "study.json").write_text(json.dumps(study.describe()))
    return path


def verdict(tmp_path, claim, values, **kw):
    st = toy([claim])
    return C.check(st.claims[0], [load_study(write(tmp_path, st, values, **kw))])


# ------------------------------------------------------------------ statistics
@pytest.mark.parametrize("df, q", [(1, 12.7062), (2, 4.3027), (4, 2.7764), (10, 2.2281), (30, 2.0423),
                                   (math.inf, 1.9600)])
def test_t_quantile_matches_the_tables(df, q):
    assert C.t_quantile(0.975, df) == pytest.approx(q, abs=1e-3)
    assert C.t_cdf(q, df) == pytest.approx(0.975, abs=1e-4)


def test_welch_interval_by_hand():
    a, b = [0.70, 0.72, 0.74], [0.60, 0.61, 0.65]
    d, lo, hi = C.welch(a, b)
    va, vb = np.var(a, ddof=1) / 3, np.var(b, ddof=1) / 3
    df = (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 2)
    half = C.t_quantile(0.975, df) * math.sqrt(va + vb)
    assert d == pytest.approx(0.10) and (lo, hi) == pytest.approx((0.10 - half, 0.10 + half))
    assert 2 < df < 4                          # fractional Welch-Satterthwaite df, not n_a + n_b - 2
    with pytest.raises(ValueError, match="at least 2"):
        C.welch([0.7], b)


# ------------------------------------------------------------------ verdicts on known answers
def test_clear_difference_is_reproduced_and_its_reverse_contradicted(tmp_path):
    values = {"a": [0.70, 0.71, 0.72], "b": [0.60, 0.61, 0.62]}
    v = verdict(tmp_path / "1", Claim("a beats b", "greater", "a", "b", reported="0.7"), values)
    assert v.verdict == "reproduced" and v.n == 3 and v.lo > 0 and v.diff == pytest.approx(0.10)
    assert v.needed_text() == ""
    w = verdict(tmp_path / "2", Claim("b beats a", "greater", "b", "a"), values)
    assert w.verdict == "contradicted" and w.hi < 0


def test_no_difference_is_inconclusive_with_the_seeds_it_would_take(tmp_path):
    v = verdict(tmp_path, Claim("a beats b", "greater", "a", "b"),
                {"a": [0.650, 0.660, 0.670, 0.655], "b": [0.652, 0.668, 0.660, 0.650]})
    assert v.verdict == "inconclusive at 4 seeds" and v.lo < 0 < v.hi
    assert v.seeds_needed is None or v.seeds_needed > 50   # a difference of ~0.001 under a spread of ~0.008


def test_too_few_seeds_is_inconclusive_and_says_so(tmp_path):
    v = verdict(tmp_path, Claim("a beats b", "greater", "a", "b"), {"a": [0.90], "b": [0.10]})
    assert v.verdict == "inconclusive at 1 seeds" and v.needed_text() == "not estimable"
    assert "n=1" in v.ours


def test_seeds_needed_is_enough_when_the_spread_stays(tmp_path):
    """3 seeds of a 0.01 gain under a 0.01 spread do not call it; the predicted number of seeds,
    with the same means and spreads, does."""
    def seeds(mean, sd, n):  # n values with exactly this sample mean and std
        z = np.linspace(-1, 1, n)
        return list(mean + sd * z / z.std(ddof=1))

    claim = Claim("a beats b", "greater", "a", "b")
    v = verdict(tmp_path / "3", claim, {"a": seeds(0.66, 0.01, 3), "b": seeds(0.65, 0.01, 3)})
    assert v.verdict == "inconclusive at 3 seeds" and 3 < v.seeds_needed < 40
    n = v.seeds_needed
    w = verdict(tmp_path / "n", claim, {"a": seeds(0.66, 0.01, n), "b": seeds(0.65, 0.01, n)})
    assert w.verdict == "reproduced"
    x = verdict(tmp_path / "n-1", claim, {"a": seeds(0.66, 0.01, n - 1), "b": seeds(0.65, 0.01, n - 1)})
    assert x.verdict.startswith("inconclusive")


def test_best_of_a_sweep(tmp_path):
    values = {"a": [0.70, 0.71, 0.72], "b": [0.60, 0.61, 0.62], "c": [0.64, 0.65, 0.66], "aug": [0.5, 0.5, 0.51]}
    v = verdict(tmp_path / "1", Claim("a is best", "best", "a", among=("b", "c", "aug")), values)
    assert v.verdict == "reproduced" and "best: a" in v.ours and "a - c" in v.ours  # c is the runner-up
    w = verdict(tmp_path / "2", Claim("c is best", "best", "c", among=("a", "b")), values)
    assert w.verdict == "contradicted" and "best: a" in w.ours


def test_not_greater_threshold_and_ratio(tmp_path):
    same = {"a": [0.650, 0.652, 0.648], "b": [0.651, 0.650, 0.649]}
    assert verdict(tmp_path / "1", Claim("a does not help", "not_greater", "a", "b", margin=0.005),
                   same).verdict == "reproduced"
    assert verdict(tmp_path / "2", Claim("a does not help", "not_greater", "a", "b", margin=0.005),
                   {"a": [0.70, 0.71, 0.72], "b": [0.60, 0.61, 0.62]}).verdict == "contradicted"
    stuck = verdict(tmp_path / "3", Claim("a does not converge", "below", "a", value=0.2), {"a": [0.1, 0.1, 0.1]})
    assert stuck.verdict == "reproduced" and (stuck.lo, stuck.hi) == pytest.approx((0.1, 0.1))
    assert verdict(tmp_path / "4", Claim("a reaches 0.9", "at_least", "a", value=0.9, margin=0.01),
                   {"a": [0.70, 0.71, 0.72]}).verdict == "contradicted"
    macs = {"a": [9000.0, 9000.0], "b": [1000.0, 1000.0]}
    assert verdict(tmp_path / "5", Claim("9x", "ratio", "a", "b", metric="macs", value=9, margin=0.1), macs,
                   metric="macs").verdict == "reproduced"
    assert verdict(tmp_path / "6", Claim("4x", "ratio", "a", "b", metric="macs", value=4, margin=0.1), macs,
                   metric="macs").verdict == "contradicted"


def test_overfit_gap_is_train_minus_val_at_the_last_epoch(tmp_path):
    v = verdict(tmp_path, Claim("b overfits more", "greater", "b", "a", metric="overfit_gap"),
                {"a": [0.01, 0.02, 0.015], "b": [0.20, 0.22, 0.21]}, metric="overfit_gap")
    assert v.verdict == "reproduced" and v.diff == pytest.approx(0.195)


# ------------------------------------------------------------------ which rows count
def test_samples_come_from_every_folder_with_the_declared_config(tmp_path):
    st = toy([Claim("a beats b", "greater", "a", "b")])
    c = st.claims[0]
    first = write(tmp_path / "old", st, {"a": [0.70, 0.71], "b": [0.60, 0.61]})
    # a later run: seed 2 of both, under another study name (an identical config is the same experiment)
    other = toy(name="seed2")
    later = write(tmp_path / "new", other, {"a": [0.70, 0.71, 0.72], "b": [0.6, 0.6, 0.62]})
    studies = [load_study(first), load_study(later)]
    a = C.samples(c, "a", studies)
    assert list(a.index) == [0, 1, 2] and a.tolist() == pytest.approx([0.70, 0.71, 0.72])  # first folder wins s0, s1
    # a row with another config does not count
    changed = toy(name="changed", base={**BASE, "momentum": 0.5})
    assert C.samples(c, "a", [load_study(write(tmp_path / "x", changed, {"a": [0.9, 0.9, 0.9]}))]).empty


def test_results_older_than_pad_count_as_zero_padding(tmp_path):
    st = Study("p", base={**BASE, "augment": True},
               variants=[variant("zero"), variant("mean", pad="mean")],
               claims=[Claim("mean beats zero", "greater", "mean", "zero")])
    old = load_study(write(tmp_path, st, {"zero": [0.6, 0.61]}, drop=("pad", "vflip")))
    assert "pad" not in old.trials.columns
    c = st.claims[0]
    assert len(C.samples(c, "zero", [old])) == 2 and C.samples(c, "mean", [old]).empty
    v = C.check(c, [old])
    assert v.verdict == "not run" and "mean" in v.ours


def test_pad_is_not_part_of_an_unaugmented_config():
    st = toy([Claim("a beats aug", "greater", "a", "aug")])
    cfg = st.claims[0].configs
    assert "pad" not in cfg["a"] and cfg["aug"]["pad"] == "mean" and cfg["a"]["epochs"] == 5
    assert "seed" not in cfg["a"] and "data" not in cfg["a"]


# ------------------------------------------------------------------ declaration errors
def test_a_claim_naming_a_missing_variant_is_a_one_line_error():
    with pytest.raises(ClaimError) as err:
        toy([Claim("d beats a", "greater", "d", "a")])
    msg = str(err.value)
    assert "\n" not in msg and "'d'" in msg and "toy" in msg and "'a'" in msg
    with pytest.raises(ClaimError, match="kind 'bigger' is not one of"):
        Claim("x", "bigger", "a", "b")
    with pytest.raises(ClaimError, match="give b="):
        Claim("x", "greater", "a")


def test_report_with_a_claim_on_an_undeclared_variant_exits_2_with_one_line(tmp_path):
    st = toy([Claim("a beats b", "greater", "a", "b")])
    folder = write(tmp_path, st, {"a": [0.7, 0.71], "b": [0.6, 0.61]})
    meta = json.loads((folder / "study.json").read_text())
    meta["claims"][0]["b"] = "zz"  # a hand-edited study.json naming a variant it has no config for
    (folder / "study.json").write_text(json.dumps(meta))
    assert_one_line_error(raylab("report", folder, "--out", tmp_path / "rep"), "'zz'", "a beats b")


def test_skip_keeps_claims_and_combine_carries_them():
    st = toy([Claim("a beats b", "greater", "a", "b"), Claim("a is best", "best", "a")], reported={"a": 0.7})
    assert st.claims[1].among == ("b", "c", "aug")
    kept = select(st, [], ["toy/b"])
    assert [v.name for v in kept.variants] == ["a", "c", "aug"]
    assert kept.claims == st.claims and kept.claims[0].configs["b"]["lr"] == 0.01  # declared, not run here
    both = combine("both", [st, Study("other", variants=[variant("x")])])
    d = both.describe()
    assert [c["study"] for c in d["claims"]] == ["toy", "toy"]
    assert d["reported"] == [{"study": "toy", "variant": "a", "value": 0.7, "epochs": None,
                              "config": st.variant_config("toy", "a")}]


# ------------------------------------------------------------------ the report
def test_report_opens_with_the_claims_table(tmp_path):
    st = toy([Claim("a beats b", "greater", "a", "b", reported="0.72 vs 0.60"),
              Claim("c beats a", "greater", "c", "a")], reported={"a": 0.72}, pairs=[("b", "a")])
    folder = write(tmp_path, st, {"a": [0.70, 0.71, 0.72], "b": [0.60, 0.61, 0.62], "c": [0.65, 0.64, 0.66]})
    md = write_report([str(folder)], str(tmp_path / "out")).read_text()
    headings = [line for line in md.splitlines() if line.startswith("## ")]
    assert headings[:2] == ["## The course report's claims", "## Summary"]
    rows = [line for line in md.splitlines() if line.startswith("| a beats b") or line.startswith("| c beats a")]
    assert "| 0.72 vs 0.60 |" in rows[0] and "| 3 | reproduced |" in rows[0]
    assert "| 3 | contradicted |" in rows[1]
    assert "| 0.7200 | -0.010 |" in md                       # the `report` column, from study.json
    assert (tmp_path / "out" / "toy_pair_b_vs_a.png").exists()  # the pair, from study.json


def test_a_study_name_in_two_folders_keeps_its_figures_and_links_apart(tmp_path):
    st = toy(reported={"a": 0.72})
    first = write(tmp_path / "run1", st, {"a": [0.70, 0.71], "b": [0.60, 0.61]})
    again = write(tmp_path / "run2", st, {"a": [0.50, 0.52], "b": [0.40, 0.41]})
    md = write_report([str(first), str(again)], str(tmp_path / "out")).read_text()
    figures = re.findall(r"\]\(([^)]+\.png)\)", md)
    assert len(figures) == len(set(figures)) and all((tmp_path / "out" / f).exists() for f in figures)
    assert {"toy_learning_curves.png", "toy_toy_learning_curves.png"} <= set(figures)
    summary = md.split("## Summary")[1].split("\n## ")[0]
    assert "[toy](#toy)" in summary and "[toy (toy)](#toy-1)" in summary  # GitHub's anchor of the 2nd "## toy"


def test_analysis_imports_neither_torch_nor_ray():
    code = ("import sys, analysis.claims, analysis.report; "
            "bad = [m for m in ('torch', 'ray') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)


# ------------------------------------------------------------------ a user's path, end to end
JOB = '''
from raylab import Claim, Study, variant
STUDY = Study("claimed", base=dict(model="simplenn", epochs=1, augment=True, pad="mean"),
              variants=[variant("fast", lr=0.05), variant("slow", lr=0.0001)],
              reported={"fast": 0.5}, reported_epochs=1,
              claims=[Claim("lr 0.05 beats lr 1e-4 after one epoch", "greater", "fast", "slow", reported="yes")])
'''


@pytest.mark.ray
@pytest.mark.timeout(900)
def test_job_file_claims_reach_the_report_through_a_real_sweep(tmp_path):
    job = job_file(tmp_path, JOB, "claimed.py")
    # RAY_ADDRESS=local (conftest): without it ray.init() joins any cluster that `ray start` left here
    run = raylab("run", job, "--storage", tmp_path / "res", "--seeds", "2", "--data", "synthetic:400",
                 "--data-root", tmp_path / "data", "--num-cpus", "2", "--quiet", timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    meta = json.loads((tmp_path / "res" / "claimed" / "study.json").read_text())
    assert meta["claims"][0]["configs"]["fast"]["pad"] == "mean"
    rep = raylab("report", tmp_path / "res" / "claimed", "--out", tmp_path / "rep", timeout=600)
    assert rep.returncode == 0, rep.stderr
    md = (tmp_path / "rep" / "report.md").read_text()
    row = next(line for line in md.splitlines() if line.startswith("| lr 0.05 beats lr 1e-4"))
    assert "| yes |" in row and "| 2 |" in row and ("reproduced" in row or "inconclusive at 2 seeds" in row)
    assert md.index("## The course report's claims") < md.index("## claimed")


def test_every_job_file_declares_resolvable_claims():
    from raylab.declare.study import load_job

    course = {}
    for path in sorted((ROOT / "jobs").glob("*.py")):
        study = load_job(str(path))
        for c in study.claims:
            assert set(c.configs) == set(c.variants()), (path.name, c.text)
            course[(c.study, c.text)] = c
    assert len(course) >= 19                                     # the claims issue 12 lists
    for c in course.values():                                    # the course's augmented runs pad like the report
        for cfg in c.configs.values():
            assert cfg["epochs"] in (30, 200) and (not cfg["augment"] or cfg["pad"] == "mean"), c.text
    swish = course[("lab2_swish", "Swish beats ReLU (BN, lr 0.1)")].configs
    assert swish["swish"]["lr"] == swish["relu"]["lr"] == 0.1 and swish["relu"]["batchnorm"]


def test_readme_verdicts_are_the_claims_table_of_the_report():
    """README's "Course verdicts" repeat the claims table that opens docs/results/report.md,
    copied by scripts/readme_verdicts.py (fidelity_collect.sh runs it): no verdict is typed."""
    import runpy

    render = runpy.run_path(str(ROOT / "scripts" / "readme_verdicts.py"))["render"]
    readme = (ROOT / "README.md").read_text()
    assert render(readme, (ROOT / "docs" / "results" / "report.md").read_text()) == readme
