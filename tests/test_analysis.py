"""analysis: loading, summaries, plots, report and notebook on small generated studies.

Studies are written through raylab.results.StudyWriter (the real Parquet
contract), with known numbers so means and stds can be checked by hand.
No torch, no Ray; the whole file runs in well under a minute on 2 CPUs.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # tests only: the library never picks a backend

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from conftest import ROOT  # noqa: E402

from analysis import load_studies, load_study, rank, summarize, to_markdown  # noqa: E402
from analysis import plots  # noqa: E402
from analysis.load import StudyError  # noqa: E402
from analysis.report import main, write_report  # noqa: E402
from analysis.variant_stats import difference, fmt_pm  # noqa: E402
from raylab import results as R  # noqa: E402

# The course report's numbers as job files put them in study.json (Study(reported=..., reported_epochs=30)).
LAB1_REPORTED = [{"study": "lab1_simplenn", "variant": "baseline", "value": 0.6606, "epochs": 30},
                 {"study": "lab1_simplenn", "variant": "step-decay", "value": 0.6576, "epochs": 30}]
BASE = {"model": "simplenn", "batchnorm": False, "activation": "relu", "data": "synthetic",
        "augment": False, "epochs": 5, "batch_size": 128, "optimizer": "sgd", "lr": 0.01,
        "momentum": 0.9, "weight_decay": 1e-4, "l1": 0.0, "schedule": "none",
        "mean": (0.5, 0.5, 0.5), "milestones": (), "seed": 0}


# ------------------------------------------------------------------ generator
def write_study(folder: Path, name: str, spec: dict, *, seeds=(0, 1), epochs: int = 5,
                meta: dict | None = None, weights: bool = True, running: tuple = (),
                study: str | None = None) -> Path:
    """Write a study folder. spec: variant -> {"config": {...}, "best": [per seed],
    "final": [per seed] (default = best), "diverge": bool, "wscale": float}.

    val_acc rises linearly from 0.1 to `best` at the last epoch (or the one before
    when final != best, then drops to `final`). A diverging trial reaches `best`
    at epoch 1, then its losses are inf / nan and it stops after epoch 2.
    `running` names (variant, seed) pairs still running: their trials row is what a sweep's
    writer stores mid-run (status running, best / final val acc so far).
    `study`: the `study` column when it is not the folder's name; the writer reads
    the folder back first, so calls with several values make a combined folder.
    """
    path = folder / name
    name = study or name
    w = R.StudyWriter(str(path))
    for variant, v in spec.items():
        for i, seed in enumerate(seeds):
            tid = f"{name}_{variant}_{seed}".replace("=", "").replace("+", "")
            cfg = R.config_columns({**BASE, **v.get("config", {}), "seed": seed})
            best, final = v["best"][i], v.get("final", v["best"])[i]
            diverge = v.get("diverge", False)
            last = 2 if diverge else epochs
            peak = 1 if diverge else (epochs if final == best else epochs - 1)
            for e in range(last + 1):
                acc = 0.1 + (best - 0.1) * min(e, peak) / peak
                if e == epochs and not diverge:
                    acc = final
                loss = 2.3 - 2.0 * (acc - 0.1)
                if diverge and e == last:
                    acc, loss = 0.1, math.inf
                w.add_epoch({"study": name, "trial_id": tid, "variant": variant, "seed": seed,
                             "epoch": e, "train_loss": loss if e else math.nan,
                             "train_acc": acc + 0.05, "val_loss": loss if not (diverge and e == last)
                             else math.nan, "val_acc": acc, "lr": cfg["base_lr"],
                             "epoch_seconds": 1.0, "images_per_second": 1000.0, **cfg})
            if (variant, seed) in running:
                w.set_trial({"study": name, "trial_id": tid, "variant": variant, "seed": seed,
                             "status": "running", "epochs_run": last, "best_val_acc": best,
                             "best_epoch": peak, "final_val_acc": acc, **cfg})
                continue
            w.set_trial({"study": name, "trial_id": tid, "variant": variant, "seed": seed,
                         "status": "diverged" if diverge else "completed", "epochs_run": last,
                         "best_val_acc": best, "best_epoch": peak,
                         "final_val_acc": math.nan if diverge else final, "n_params": 1000,
                         "macs": 10000, "wall_seconds": 5.0, "restarts": 0, "error": None, **cfg})
            if weights:
                scale = v.get("wscale", 0.1)
                edges = np.linspace(-0.5, 0.5, 21)
                counts = np.round(1000 * np.exp(-(0.5 * (edges[:-1] + edges[1:]) / scale) ** 2))
                w.set_weights(tid, [
                    {"study": name, "trial_id": tid, "variant": variant, "seed": seed,
                     "layer": layer, "bin_left": lo, "bin_right": hi, "count": float(c)}
                    for layer in ("conv1.weight", "fc.weight")
                    for lo, hi, c in zip(edges[:-1], edges[1:], counts)])
    w.flush()
    if meta is not None:
        (path / "study.json").write_text(json.dumps(meta))
    return path


LR_SPEC = {  # a learning-rate sweep with a clear winner and one diverged variant
    "lr=1": {"config": {"lr": 1.0}, "best": [0.25, 0.2], "diverge": True},
    "lr=0.1": {"config": {"lr": 0.1}, "best": [0.70, 0.72], "final": [0.69, 0.72]},
    "lr=0.01": {"config": {"lr": 0.01}, "best": [0.60, 0.64]},
}
L2_SPEC = {  # an L2 sweep whose top two are within one std, with a 0
    "wd=0": {"config": {"weight_decay": 0.0}, "best": [0.60, 0.70], "wscale": 0.2},
    "wd=1e-4": {"config": {"weight_decay": 1e-4}, "best": [0.64, 0.68], "wscale": 0.1},
    "wd=1e-3": {"config": {"weight_decay": 1e-3}, "best": [0.50, 0.52], "wscale": 0.02},
}


@pytest.fixture(scope="module")
def studies(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("results")
    return {
        "lr": write_study(root, "lr_sweep", LR_SPEC),
        "l2": write_study(root, "l2_sweep", L2_SPEC,
                          meta={"name": "l2_sweep", "swept": ["weight_decay"],
                                "variants": ["wd=0", "wd=1e-4", "wd=1e-3"], "seeds": [0, 1]}),
        "lab1": write_study(root, "lab1_simplenn", {
            "baseline": {"best": [0.66, 0.67]},
            "step-decay": {"config": {"schedule": "step"}, "best": [0.65, 0.66]}},
            meta={"reported": LAB1_REPORTED}),
        "root": root,
    }


# ------------------------------------------------------------------ import hygiene
def test_importing_analysis_leaves_torch_and_ray_out():
    code = ("import sys, analysis, analysis.load, analysis.variant_stats, analysis.plots, analysis.report\n"
            "bad = [m for m in ('torch', 'ray') if m in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


# ------------------------------------------------------------------ load
def test_load_study_reads_contract_and_infers_sweep(studies):
    s = load_study(studies["lr"])
    assert s.name == "lr_sweep" and s.meta == {}
    assert s.variants == ["lr=0.01", "lr=0.1", "lr=1"]
    assert s.swept == ["lr"]  # inferred: base_lr is the only config column that varies
    assert len(s.trials) == 6 and set(s.trials["status"]) == {"completed", "diverged"}
    assert len(s.metrics) == 4 * 6 + 2 * 3  # (5 epochs + epoch 0) per trial, diverged stop at 2
    assert not s.metrics.duplicated(["trial_id", "epoch"]).any()
    assert s.weights["layer"].nunique() == 2
    uri = load_study("file://" + str(studies["lr"]))  # pyarrow filesystem URI
    assert len(uri.trials) == 6


def test_load_uses_study_json_and_several_studies(studies):
    s = load_study(studies["l2"])
    assert s.swept == ["weight_decay"] and s.variants == ["wd=0", "wd=1e-4", "wd=1e-3"]
    both = load_studies([studies["lr"], studies["l2"]])
    assert both.studies == ["l2_sweep", "lr_sweep"] and len(both.trials) == 12
    table = summarize(both)
    assert list(table.groupby("study").size()) == [3, 3]


def test_load_partial_results_of_a_running_sweep(tmp_path):
    spec = {"a": {"best": [0.5, 0.6]}, "b": {"config": {"lr": 0.1}, "best": [0.7, 0.7]}}
    path = write_study(tmp_path, "live", spec, weights=False, running=(("b", 1),))
    (path / R.WEIGHTS).unlink()
    s = load_study(path)
    assert s.running and s.weights.empty
    live = s.trials[s.trials["status"] == "running"].iloc[0]
    assert live["variant"] == "b" and live["best_val_acc"] == pytest.approx(0.7)
    assert live["epochs_run"] == 5 and live["base_lr"] == pytest.approx(0.1)
    table = summarize(s)
    assert table.set_index("variant").loc["b", "running"] == 1
    assert "Partial results: 1 trial(s) still running" in rank(table).note
    assert "1 running" in to_markdown(table)


def test_load_errors_are_one_line(tmp_path, studies):
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.txt").write_text("x")
    bad = tmp_path / "bad"
    R.write_table(pd.DataFrame({"study": ["x"], "epoch": [0]}), str(bad / R.METRICS))
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / R.TRIALS).write_bytes(b"not parquet at all")
    cases = {
        tmp_path / "nope": "no such folder",
        tmp_path / "empty": "not a raylab study folder",
        tmp_path / "file.txt": "is a file",
        bad: "lacks contract columns",
        junk: "not a readable Parquet file",
        studies["root"]: "it holds study folders",  # a results root, not one study
    }
    for path, words in cases.items():
        with pytest.raises(StudyError) as exc:
            load_study(path)
        assert words in str(exc.value) and "\n" not in str(exc.value), str(exc.value)
    assert issubclass(StudyError, R.ResultsError)


# ------------------------------------------------------------------ summary
def test_summary_matches_hand_computed_values(studies):
    table = summarize(load_study(studies["lr"])).set_index("variant")
    assert list(table.index) == ["lr=0.01", "lr=0.1", "lr=1"]  # sorted by the swept value
    r = table.loc["lr=0.1"]
    assert r["n_seeds"] == 2 and r["lr"] == pytest.approx(0.1)
    assert r["best_val_acc_mean"] == pytest.approx(0.71)
    assert r["best_val_acc_std"] == pytest.approx(math.sqrt(2 * 0.01 ** 2))  # ddof=1
    assert r["final_val_acc_mean"] == pytest.approx(0.705)
    assert r["final_val_acc_std"] == pytest.approx(math.sqrt(2 * 0.015 ** 2))
    assert r["best_epoch_mean"] == pytest.approx(4.5)  # seed 0 peaks at 4, seed 1 at 5
    d = table.loc["lr=1"]
    assert d["diverged"] == 2 and d["best_val_acc_mean"] == pytest.approx(0.225)
    assert math.isnan(d["final_val_acc_mean"])
    one = summarize(load_study(studies["lr"]).trials.query("seed == 0"))
    assert one["best_val_acc_std"].isna().all() and (one["n_seeds"] == 1).all()


def test_ranking_and_the_within_one_std_note(studies):
    lr = rank(summarize(load_study(studies["lr"])))
    assert lr.order == ["lr=0.1", "lr=0.01", "lr=1"] and lr.safe
    assert "not safe" not in lr.note
    l2 = rank(summarize(load_study(studies["l2"])))
    assert l2.order[:2] == ["wd=1e-4", "wd=0"] and not l2.safe  # 0.66 ± 0.028 vs 0.65 ± 0.071
    assert "not safe to call: top two within 1 std" in l2.note
    single = rank(summarize(load_study(studies["lr"]).trials.query("seed == 0")))
    assert not single.safe and "not safe to call" in single.note


def test_markdown_table_and_formatting(studies):
    md = to_markdown(summarize(load_study(studies["lr"])))
    lines = md.strip().splitlines()
    assert lines[0].startswith("| variant | lr | seeds | best val acc | final val acc")
    assert len(lines) == 2 + 3
    assert "| lr=0.1 | 0.1 | 2 | 0.710 ± 0.014 | 0.705 ± 0.021 | 4.5 | learned |" in md
    assert "| lr=1 | 1 | 2 | 0.225 ± 0.035 | – | 1.0 | 2 diverged |" in md
    assert lines[1] == "|---|---:|---:|---:|---:|---:|---|"  # numbers right, text left
    assert fmt_pm(0.7123, 0.0041) == "0.712 ± 0.004"
    assert fmt_pm(0.7, float("nan"), 1) == "0.700 (n=1)"
    assert fmt_pm(float("nan"), float("nan")) == "–"
    d = difference(load_study(studies["lr"]).trials, "lr=0.01", "lr=0.1")
    assert d["mean"] == pytest.approx(0.09)
    assert d["std"] == pytest.approx(math.sqrt(0.01 ** 2 * 2 + 0.02 ** 2 * 2))


# ------------------------------------------------------------------ plots
def _labels(fig_or_ax):
    """Legend texts: the figure's shared legend, or the legend of a caller's axes."""
    legend = fig_or_ax.legends[0] if getattr(fig_or_ax, "legends", None) else fig_or_ax.get_legend()
    return [t.get_text() for t in legend.get_texts()]


def test_learning_curves_grid(studies):
    s = load_study(studies["lr"])
    fig = plots.learning_curves(s.metrics, trials=s.trials)
    axes = fig.axes
    assert len(axes) == 4
    for ax in axes:
        # one mean line per variant + one line of red x markers for the diverged trials
        assert len(ax.lines) == 3 + 1
        assert len(ax.collections) == 3  # a min-max band per variant (2 seeds each)
        assert ax.get_xlabel() in ("", "epoch")
    assert [ax.get_ylabel() for ax in axes] == ["cross-entropy loss (nats)"] * 2 + ["accuracy (fraction)"] * 2
    assert axes[3].get_xlabel() == "epoch"
    labels = _labels(fig)  # one legend below the grid, outside every axes
    assert labels == ["lr=0.01", "lr=0.1", "lr=1", "diverged: lr=1 ×2"]  # numeric order
    assert all(ax.get_legend() is None for ax in axes)
    assert "band: min-max over 2 seeds" in fig._suptitle.get_text()
    assert "lr_sweep" in fig._suptitle.get_text()
    one = plots.learning_curves(s.metrics, "lr=0.1", trials=s.trials)
    assert len(one.axes[0].lines) == 1 and "lr=0.1" in one._suptitle.get_text()


def test_an_untrained_batchnorm_loss_at_epoch_0_is_kept_off_scale(tmp_path):
    path = write_study(tmp_path, "resnet", {"resnet20": {"best": [0.78]}}, seeds=(0,), weights=False)
    metrics = R.read_table(str(path), R.METRICS)
    metrics.loc[metrics["epoch"] == 0, ["train_loss", "val_loss"]] = 15.9  # what eval-mode BN at init gives
    fig = plots.learning_curves(metrics)
    for ax in fig.axes[:2]:  # the loss panels: the title says where epoch 0 went
        assert 0 < ax.get_ylim()[0] and ax.get_ylim()[1] < 15.9
        assert ax.get_title().endswith("(epoch 0, untrained: 15.9, off scale)")
    assert all("epoch 0" not in ax.get_title() for ax in fig.axes[2:])
    plain = R.read_table(str(path), R.METRICS)  # a loss that starts near ln 10: all on scale
    tame = plots.learning_curves(plain)
    assert "epoch 0" not in tame.axes[0].get_title()
    assert tame.axes[0].get_ylim()[1] >= plain["train_loss"].max()
    assert "one seed per variant: no band" in fig.get_suptitle()


def test_colours_are_stable_across_figures(studies):
    s = load_study(studies["lr"])
    colors = plots.variant_colors(s.variants)
    fig1 = plots.learning_curves(s.metrics, trials=s.trials)
    fig2 = plots.sweep_curves(s.metrics, trials=s.trials)
    fig3 = plots.pairwise(s.trials, s.metrics, "lr=0.01", "lr=0.1")
    for fig in (fig1, fig2, fig3):
        for line in fig.axes[0].lines:
            variant = line.get_label().split(" (n=")[0]
            if variant in colors:
                assert matplotlib.colors.same_color(line.get_color(), colors[variant])
    assert plots.DIVERGED_COLOR not in colors.values()


def test_sweep_curves_and_scatter_log_x_and_diverged(studies):
    s = load_study(studies["lr"])
    fig = plots.sweep_curves(s.metrics, "val_acc", trials=s.trials)
    ax = fig.axes[0]
    assert len(ax.lines) == 4 and ax.get_ylabel() == "accuracy (fraction)"
    fig = plots.sweep_scatter(s.trials, "lr")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_xlabel().startswith("learning rate")
    labels = _labels(fig)
    assert "diverged: lr=1 ×2" in labels and "best val acc (one trial)" in labels
    # scatter: best + final of the 4 finished trials, and the red x of the 2 diverged (best only)
    offsets = [len(c.get_offsets()) for c in ax.collections]
    assert offsets == [4, 4, 2]


def test_sweep_scatter_places_the_zero_of_an_l2_sweep(studies):
    s = load_study(studies["l2"])
    ax = plots.sweep_scatter(s.trials).axes[0]  # field from the trials: weight_decay
    assert ax.get_xscale() == "log"
    ticks = dict(zip([t.get_text() for t in ax.get_xticklabels()], ax.get_xticks()))
    assert set(ticks) == {"0", "0.0001", "0.001"}
    assert ticks["0"] == pytest.approx(1e-5)  # one sweep step (x10) left of 1e-4
    assert len([ln for ln in ax.lines if ln.get_gid() == "axis-break"]) == 2
    assert "0 left of the break" in ax.get_xlabel()


def test_pairwise_annotates_the_difference(studies):
    s = load_study(studies["lr"])
    fig = plots.pairwise(s.trials, s.metrics, "lr=0.01", "lr=0.1")
    assert len(fig.axes) == 2
    assert {ln.get_label() for ln in fig.axes[0].lines} == {"lr=0.01 (n=2)", "lr=0.1 (n=2)"}
    text = fig.legends[0].get_title().get_text().replace("\n", " ")
    assert "Δ best val acc (lr=0.1 − lr=0.01) = +0.090 ± 0.032" in text
    assert "lr=0.01 vs lr=0.1" in fig._suptitle.get_text()


def test_weight_histograms_overlay_with_near_zero_fraction(studies):
    s = load_study(studies["l2"])
    fig = plots.weight_histograms(s.weights, ["wd=0", "wd=1e-3"])
    ax = fig.axes[0]
    labels = _labels(fig)
    assert len(labels) == 2 and all("of weights with |w| < 0.001" in t for t in labels)
    assert ax.get_yscale() == "log"  # wd=1e-3 is narrow: its bins span many decades
    assert ax.get_xlabel() == "weight value" and "wd=0 vs wd=1e-3" in ax.get_title()
    # the bin [-0.025, 0.025) holds c of N weights: |w| < 1e-3 is 2e-3/0.05 of that bin
    hist = pd.DataFrame({"bin_left": [-0.075, -0.025, 0.025], "bin_right": [-0.025, 0.025, 0.075],
                         "count": [10.0, 20.0, 10.0]})
    assert plots.near_zero_fraction(hist) == pytest.approx(20 * (0.002 / 0.05) / 40)


def test_plots_leave_global_state_alone_and_save_png_svg(studies, tmp_path):
    s = load_study(studies["l2"])
    before = dict(matplotlib.rcParams)
    figs = [plots.learning_curves(s.metrics), plots.sweep_curves(s.metrics),
            plots.sweep_scatter(s.trials, "weight_decay"), plots.weight_histograms(s.weights),
            plots.pairwise(s.trials, s.metrics, "wd=0", "wd=1e-4")]
    assert dict(matplotlib.rcParams) == before and plt.get_fignums() == []
    fig, ax = plt.subplots()  # an ax of the caller's own is used, not replaced
    assert plots.sweep_curves(s.metrics, ax=ax) is fig
    plt.close(fig)
    paths = plots.save(figs[0], tmp_path / "figs" / "curves")
    assert [p.name for p in paths] == ["curves.png", "curves.svg"]
    assert all(p.stat().st_size > 1000 for p in paths)


# ------------------------------------------------------------------ report
def test_write_report_md_and_html(studies, tmp_path):
    out = tmp_path / "report"
    md = write_report([str(studies["lab1"]), str(studies["lr"]), str(studies["l2"])], str(out), "html")
    text = md.read_text()
    assert md == out / "report.md" and (out / "report.html").exists()
    assert "## lab1_simplenn" in text and "## lr_sweep" in text and "## l2_sweep" in text
    assert "| report | best − report |" in text and "| 0.6606 |" in text and "| 0.6576 |" in text
    assert "| baseline | none | 2 | 0.665 ± 0.007 | 0.665 ± 0.007 | 5.0 | 0.6606 | +0.004 | learned |" in text
    summary = _section(text, "## Summary")  # one headline per study, linked to its section
    assert "- [lr_sweep](#lr_sweep): best `lr=0.1`, 0.710 ± 0.014; leads `lr=0.01`" in summary
    assert "`lr=1` diverged." in summary and summary.count("\n- ") == 3
    assert "not safe to call: top two within 1 std" in text  # the L2 sweep
    # 5 generated epochs against the course's 30: labelled, and only where a report value is shown
    assert "**Short run**: these trials trained 5 epochs; the course report's value comes after 30" \
        in _section(text, "## lab1_simplenn")
    assert text.count("**Short run**") == 1
    images = [line.split("](")[1].rstrip(")") for line in text.splitlines() if line.startswith("![")]
    assert len(images) >= 8 and all((out / name).exists() for name in images)
    assert "lr_sweep_sweep_lr.png" in images and "l2_sweep_weights.png" in images
    html = (out / "report.html").read_text()
    assert html.count("<table>") == 3 and "<img src=\"lab1_simplenn_learning_curves.png\"" in html


def _section(text: str, heading: str) -> str:
    start = text.index(heading + "\n")
    end = text.find("\n#", start + len(heading))
    return text[start:] if end < 0 else text[start:end]


def test_combined_folder_splits_into_one_section_per_study(tmp_path):
    # One folder, two `study` values, as raylab.declare.study.combine writes it: lab1's baseline
    # is the same run as the sweep's lr=0.01, so its rows appear under both studies.
    base = {"best": [0.66, 0.67]}
    write_study(tmp_path, "combo", {"lr=0.1": {"config": {"lr": 0.1}, "best": [0.70, 0.72]},
                                    "lr=0.01": base}, study="lr_sweep", weights=False)
    path = write_study(tmp_path, "combo", {
        "baseline": base,
        "step-decay": {"config": {"schedule": "step"}, "best": [0.65, 0.66], "wscale": 0.05}},
        study="lab1_simplenn",
        meta={"name": "combo", "swept": ["lr", "schedule"], "seeds": [0, 1],
              "variants": ["lr=0.1", "lr=0.01", "baseline", "step-decay"], "reported": LAB1_REPORTED})
    whole = load_study(path)
    assert whole.name == "combo" and whole.studies == ["lab1_simplenn", "lr_sweep"]
    parts = whole.split()
    assert [p.name for p in parts] == ["lab1_simplenn", "lr_sweep"]  # sorted: study.json names none
    lab1, lr = parts
    assert lab1.variants == ["baseline", "step-decay"] and lab1.swept == ["schedule"]
    assert lr.variants == ["lr=0.01", "lr=0.1"] and lr.swept == ["lr"]
    assert len(lab1.trials) == len(lr.trials) == 4 and set(lab1.weights["study"]) == {"lab1_simplenn"}
    assert lab1.meta["combined"] == "combo" and lab1.path == whole.path
    assert load_study(path).split()[0].trials.equals(lab1.trials)  # split leaves the parent alone
    single = load_study(write_study(tmp_path, "single", {"a": base}, weights=False))
    assert [p is single for p in single.split()] == [True]  # one study value: unchanged

    out = tmp_path / "report"
    text = write_report([str(path)], str(out)).read_text()
    assert text.count("\n## ") == 2 and "## Summary" in text and "## combo" in text  # then per study
    assert text.index("### lab1_simplenn") < text.index("### lr_sweep")
    assert "`lab1_simplenn/baseline` = `lr_sweep/lr=0.01`" in text
    s1, s2 = _section(text, "### lab1_simplenn"), _section(text, "### lr_sweep")
    assert "Swept: schedule." in s1 and "Swept: lr." in s2
    assert "| variant | schedule | seeds |" in s1 and "| variant | lr | seeds |" in s2
    assert "| baseline | none | 2 | 0.665 ± 0.007 |" in s1 and "| 0.6606 |" in s1  # course report
    assert "lr=0.1" not in s1 and "| baseline |" not in s2
    # same numbers, and the course report's value of the shared run, said to be borrowed
    assert "| lr=0.01 | 0.01 | 2 | 0.665 ± 0.007 | 0.665 ± 0.007 | 5.0 | 0.6606 | +0.004 | learned |" in s2
    assert "| lr=0.1 | 0.1 | 2 | 0.710 ± 0.014 | 0.710 ± 0.014 | 5.0 | – | – | learned |" in s2
    assert "`lr=0.01` is the same runs as `lab1_simplenn/baseline`" in s2
    # a pair that is the whole study is already in the learning curves: its difference is text
    assert "lab1_simplenn_pair_" not in s1 and "lab1_simplenn_weights.png" in s1
    assert "`step-decay` − `baseline` = -0.010 ± 0.010" in s1
    assert "lr_sweep_sweep_lr.png" in s2 and "lr_sweep_learning_curves.png" in s2
    images = [line.split("](")[1].rstrip(")") for line in text.splitlines() if line.startswith("![")]
    assert all((out / name).exists() for name in images) and not any(
        name.startswith("combo_") for name in images)

    # study.json naming its studies (as load_studies' meta does) sets the section order
    meta = json.loads((path / "study.json").read_text())
    meta["studies"] = [{"name": "lr_sweep", "variants": ["lr=0.1", "lr=0.01"]}, "lab1_simplenn"]
    (path / "study.json").write_text(json.dumps(meta))
    parts = load_study(path).split()
    assert [p.name for p in parts] == ["lr_sweep", "lab1_simplenn"]
    assert parts[0].variants == ["lr=0.1", "lr=0.01"] and parts[0].swept == ["lr"]


def test_cli_main_default_out_and_errors(studies, tmp_path, capsys):
    assert main([str(studies["lab1"])]) == 0
    assert (studies["lab1"] / "report" / "report.md").exists()
    capsys.readouterr()
    (tmp_path / "empty").mkdir()
    bad = tmp_path / "bad"
    R.write_table(pd.DataFrame({"study": ["x"], "trial_id": ["t"]}), str(bad / R.TRIALS))
    for folder in (tmp_path / "empty", bad, tmp_path / "missing"):
        assert main([str(folder), "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("raylab report: error:") and "Traceback" not in err


def test_cli_as_a_process_exits_2_with_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = subprocess.run([sys.executable, "-m", "analysis", str(tmp_path / "empty")], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr


# ------------------------------------------------------------------ notebook
def test_notebook_runs_headless(studies, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    monkeypatch.setenv("RAYLAB_RESULTS", str(studies["lr"]))
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(ROOT / "notebooks" / "explore_results.ipynb", as_version=4)
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = " ".join(o.get("data", {}).get("text/markdown", "") for o in outputs)
    assert "0.710 ± 0.014" in text
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 2


# ---------------------------------------------------------------- docs/results, docs/course.md's table
DOCS_SUMMARY = """
import json, sys
from analysis.load import load_study
out = {}
for folder in ("docs/results/assignment", "docs/results/lab3_resnet20"):
    trials = load_study(folder).trials
    for (study, variant), g in trials.groupby(["study", "variant"]):
        out[f"{study}/{variant}"] = [g["best_val_acc"].mean(), g["best_val_acc"].std()]
assert not {"torch", "ray"} & set(sys.modules), "analysis pulled in torch or ray"
print(json.dumps(out))
"""
# Table row -> the (study/variant, with its std?) whose numbers it shows, in order.
TABLE_ROWS = {
    "Lab 1 baseline": [("lab1_simplenn/baseline", True)],
    "Lab 1 step decay": [("lab1_simplenn/step-decay", True)],
    "augmentation": [("lab2_augment/augment", True)],
    "BatchNorm": [("lab2_batchnorm/bn", True)],
    "Swish (with BN)": [("lab2_swish/swish", True), ("lab2_swish/relu", True)],
    "BN vs no BN at lr 0.1": [("lab2_batchnorm/bn+lr=0.1", True), ("lab2_batchnorm/lr=0.1", True)],
    "lr 1 /": [(f"lab2_lr_sweep/lr={v}", False) for v in ("1", "0.1", "0.05", "0.01", "0.005", "0.001")],
    "L2 1e-2": [(f"lab2_l2_sweep/wd={v}", False) for v in ("0.01", "0.001", "0.0001", "1e-05", "0")],
    "L1 1e-5 vs L2": [(f"lab2_l1_vs_l2/{v}", False) for v in ("l1", "l2", "none")],
    "ResNet-20": [("lab3_resnet20/resnet20", False)],
}


def test_docs_results_reproduce_the_course_docs_table():
    """The committed Parquet tables, read by `analysis` alone (no torch, no Ray), give every
    number of the 2-seed table in docs/course.md."""
    import re

    proc = subprocess.run([sys.executable, "-c", DOCS_SUMMARY], capture_output=True, text=True, timeout=120,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout)
    course = (ROOT / "docs" / "course.md").read_text()
    table = course[course.index("| study | reproduced |"):].split("\n\n")[0].splitlines()[2:]
    assert len(table) == len(TABLE_ROWS), table
    for line in table:
        label, cell = [c.strip() for c in line.strip("|").split("|")]
        (key,) = [k for k in TABLE_ROWS if label.startswith(k)]
        shown = re.findall(r"\d\.\d{3}", re.sub(r"\([^)]*\)", "", cell))  # the course's values are in brackets
        want = []
        for name, with_std in TABLE_ROWS[key]:
            mean, std = got[name]
            want += [f"{mean:.3f}"] + ([f"{std:.3f}"] if with_std else [])
        assert shown == want, (label, cell)
