"""Learning curves, sweep curves and pairwise comparisons: metric against epoch."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..load import diverged_trials
from ..summary import difference
from .style import (DIVERGED_COLOR, DIVERGED_MARKER, AXIS_LABELS, METRIC_NAMES, _keys, _study_name,
                    _colors, _select, _legend, _new_fig, _one_ax)


# ------------------------------------------------------------------ curves
def _curve_stats(metrics: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per (key, epoch): mean, min, max and count of the finite values of `metric` over seeds."""
    df = metrics.assign(_key=_keys(metrics), _v=metrics[metric].astype(float))
    df = df[np.isfinite(df["_v"])]
    return (df.groupby(["_key", "epoch"])["_v"].agg(["mean", "min", "max", "count"])
            .reset_index().sort_values(["_key", "epoch"]))


def _band_text(metrics: pd.DataFrame) -> str:
    seeds = metrics.assign(_key=_keys(metrics)).groupby("_key")["trial_id"].nunique()
    if seeds.empty:
        return "no data"
    n = sorted(set(seeds))
    if n == [1]:
        return "one seed per variant: no band"
    count = f"{n[0]} seeds" if len(n) == 1 else f"{n[0]}-{n[-1]} seeds (n per variant in legend)"
    return f"line: mean, band: min-max over {count}"


def _draw_curves(ax: Axes, metrics: pd.DataFrame, metric: str, colors: Mapping[str, str],
                 diverged: set[str], label_n: bool) -> None:
    stats = _curve_stats(metrics, metric)
    seeds = metrics.assign(_key=_keys(metrics)).groupby("_key")["trial_id"].nunique()
    for key, g in stats.groupby("_key", sort=True):
        label = f"{key} (n={seeds[key]})" if label_n else key
        ax.plot(g["epoch"], g["mean"], color=colors[key], lw=1.8, label=label)
        if seeds[key] > 1:
            ax.fill_between(g["epoch"], g["min"], g["max"], color=colors[key], alpha=0.2, lw=0)
    # Diverged trials: a red x at the last finite value before the loss blew up.
    df = metrics[metrics["trial_id"].isin(diverged)]
    xs, ys = [], []
    for _, g in df.groupby("trial_id"):
        v = g[metric].astype(float)
        ok = g[np.isfinite(v)]
        if len(ok):
            xs.append(ok["epoch"].iloc[-1])
            ys.append(float(ok[metric].iloc[-1]))
    if xs:
        ax.plot(xs, ys, ls="none", marker=DIVERGED_MARKER, color=DIVERGED_COLOR, ms=9, mew=2,
                label=_diverged_label(metrics, diverged), zorder=5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    if metric.endswith("loss") and len(stats):
        lo, hi = stats["min"].min(), stats["max"].max()
        if lo > 0 and hi / lo > 30:  # a diverging run would squash the others on a linear axis
            ax.set_yscale("log")


def _diverged_label(metrics: pd.DataFrame, diverged: set[str]) -> str:
    df = metrics[metrics["trial_id"].isin(diverged)]
    per = df.assign(_key=_keys(df)).groupby("_key")["trial_id"].nunique()
    names = ", ".join(f"{k} ×{n}" if n > 1 else str(k) for k, n in per.items())
    return f"diverged: {names}"


def learning_curves(metrics: pd.DataFrame, variant: str | Sequence[str] | None = None, *,
                    trials: pd.DataFrame | None = None, study: str | None = None,
                    colors: Mapping[str, str] | None = None, fig: Figure | None = None) -> Figure:
    """2x2 grid (loss / accuracy x train / validation) against epoch, one colour per variant.

    Line: mean over seeds; band: min-max over seeds (said in the title).
    `variant`: one name, several, or None for all. Diverged trials (status in
    `trials`, or a non-finite loss) get a red x at their last finite value.
    """
    colors = _colors(_keys(metrics), colors)
    df = _select(metrics, variant)
    diverged = diverged_trials(df, trials)
    fig = _new_fig(fig, (10.5, 7.5))
    axes = fig.subplots(2, 2, sharex=True)
    multi_n = df.assign(_k=_keys(df)).groupby("_k")["trial_id"].nunique().nunique() > 1
    for (r, c), metric in zip([(0, 0), (0, 1), (1, 0), (1, 1)],
                              ["train_loss", "val_loss", "train_acc", "val_acc"]):
        ax = axes[r, c]
        _draw_curves(ax, df, metric, colors, diverged, label_n=multi_n)
        if metric.endswith("_loss"):
            _keep_epoch0_off_scale(ax, df, metric)
        ax.set_title(METRIC_NAMES[metric])
        ax.set_ylabel(AXIS_LABELS[metric])
        ax.grid(True, alpha=0.3)
        if r == 1:
            ax.set_xlabel(AXIS_LABELS["epoch"])
    _legend(axes[1, 1])
    what = (variant if isinstance(variant, str)
            else ", ".join(variant) if variant is not None else "all variants")
    fig.suptitle(f"{_study_name(df, given=study)}: learning curves, {what}\n({_band_text(df)})")
    return fig


def _keep_epoch0_off_scale(ax: Axes, df: pd.DataFrame, metric: str) -> None:
    """An untrained net with BatchNorm evaluates with its initial running statistics,
    so its epoch-0 loss can be ten times anything after it and flatten every trained
    epoch into one line: scale the axis to the trained epochs and say where epoch 0 went."""
    values = df[metric].replace([np.inf, -np.inf], np.nan)
    first, later = values[df["epoch"] == 0].dropna(), values[df["epoch"] >= 1].dropna()
    if first.empty or later.empty or first.max() <= 2 * later.max():
        return
    ax.set_ylim(min(ax.get_ylim()[0], later.min()), later.max() * 1.15)
    ax.text(0.98, 0.97, f"epoch 0 off scale: {first.max():.3g}", transform=ax.transAxes,
            ha="right", va="top", fontsize=8, color="0.3")


def sweep_curves(metrics: pd.DataFrame, metric: str = "val_acc", *,
                 trials: pd.DataFrame | None = None, study: str | None = None,
                 colors: Mapping[str, str] | None = None, ax: Axes | None = None) -> Figure:
    """All variants' `metric` against epoch on one axes (mean line, min-max band over seeds)."""
    colors = _colors(_keys(metrics), colors)
    fig, ax = _one_ax(ax, (8, 5))
    _draw_curves(ax, metrics, metric, colors, diverged_trials(metrics, trials), label_n=True)
    ax.set_xlabel(AXIS_LABELS["epoch"])
    ax.set_ylabel(AXIS_LABELS.get(metric, metric))
    ax.grid(True, alpha=0.3)
    _legend(ax)
    ax.set_title(f"{_study_name(metrics, given=study)}: {METRIC_NAMES.get(metric, metric)}, "
                 f"all variants\n({_band_text(metrics)})")
    return fig


# ------------------------------------------------------------------ pairwise
def pairwise(trials: pd.DataFrame, metrics: pd.DataFrame, a: str, b: str, *,
             panels: Sequence[str] = ("val_acc", "train_loss"), study: str | None = None,
             colors: Mapping[str, str] | None = None, fig: Figure | None = None) -> Figure:
    """Variant `a` against `b` (e.g. "lr=0.1" vs "bn+lr=0.1"): curves of both, one panel per metric.

    The first panel's legend is headed by the difference in best val acc, b − a,
    as difference of means ± sqrt(std_a² + std_b²) over seeds.
    """
    colors = _colors(_keys(metrics), colors)
    df = _select(metrics, [a, b])
    diverged = diverged_trials(df, trials)
    fig = _new_fig(fig, (5.2 * len(panels), 4.6))
    axes = np.atleast_1d(fig.subplots(1, len(panels), sharex=True))
    d = difference(trials, a, b)
    spread = (f"± {d['std']:.3f}" if np.isfinite(d["std"]) else "(no std: a side has 1 seed)")
    text = (f"Δ best val acc ({b} − {a})\n= {d['mean']:+.3f} {spread}\n"
            f"mean diff ± √(sa²+sb²), n = {d['n_a']} vs {d['n_b']} seeds")
    for i, (ax, metric) in enumerate(zip(axes, panels)):
        _draw_curves(ax, df, metric, colors, diverged, label_n=True)
        ax.set_title(METRIC_NAMES.get(metric, metric))
        ax.set_xlabel(AXIS_LABELS["epoch"])
        ax.set_ylabel(AXIS_LABELS.get(metric, metric))
        ax.grid(True, alpha=0.3)
        if i == 0:  # the difference heads the first legend, placed where it hides no curve
            ax.legend(title=text, title_fontsize="small", fontsize="small", loc="best",
                      framealpha=0.9, alignment="left")
        else:
            _legend(ax)
    fig.suptitle(f"{_study_name(df, given=study)}: {a} vs {b}\n({_band_text(df)})")
    return fig
