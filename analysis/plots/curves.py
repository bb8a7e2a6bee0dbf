"""Metrics against epoch: the learning-curve grid, all variants on one axes, and a pair side by side.

Line: mean over seeds; band: min-max over seeds (said in the title, or "no
band" with one seed). A diverged trial gets a red x at its last finite value;
a trial that ended at chance accuracy (`analysis.outcome`) a dark ring at its
last epoch, and the accuracy panels then draw the chance level.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..load import diverged_trials
from ..outcome import CHANCE_ACC, DID_NOT_LEARN, did_not_learn_trials
from ..variant_stats import difference
from . import layout
from .palette import (AXIS_LABELS, DID_NOT_LEARN_COLOR, DID_NOT_LEARN_MARKER, DIVERGED_COLOR,
                      DIVERGED_MARKER, METRIC_NAMES, colors_for, counted, keys, ordered_keys,
                      select, study_name)

GRID = [("train_loss", 0, 0), ("val_loss", 0, 1), ("train_acc", 1, 0), ("val_acc", 1, 1)]


def band_text(metrics: pd.DataFrame) -> str:
    """What the band of a curve figure means for these metrics ("no band" with one seed)."""
    seeds = metrics.assign(_key=keys(metrics)).groupby("_key")["trial_id"].nunique()
    if seeds.empty:
        return "no data"
    n = sorted(set(seeds))
    if n == [1]:
        return "one seed per variant: no band"
    count = f"{n[0]} seeds" if len(n) == 1 else f"{n[0]}-{n[-1]} seeds (n per variant in legend)"
    return f"line: mean, band: min-max over {count}"


def epoch0_off_scale(metrics: pd.DataFrame, metric: str) -> float | None:
    """The epoch-0 value left off a loss axis, or None when epoch 0 is on scale.

    An untrained net with BatchNorm evaluates with its initial running
    statistics, so its epoch-0 loss can be ten times anything after it
    (ResNet-20: 15.9 nats, docs/results) and would flatten every trained epoch.
    """
    if not metric.endswith("loss") or metrics.empty:
        return None
    values = metrics[metric].replace([np.inf, -np.inf], np.nan)
    first = values[metrics["epoch"] == 0].dropna()
    later = values[metrics["epoch"] >= 1].dropna()
    if first.empty or later.empty or first.max() <= 2 * later.max():
        return None
    return float(first.max())


def draw_curves(ax: Axes, metrics: pd.DataFrame, metric: str, colors: Mapping[str, str], *,
                diverged: set[str], flat: set[str], label_n: bool) -> None:
    """Mean line and min-max band per variant, then the marks of diverged and unlearned trials."""
    df = metrics.assign(_key=keys(metrics), _v=metrics[metric].astype(float))
    seeds = df.groupby("_key")["trial_id"].nunique()
    stats = (df[np.isfinite(df["_v"])].groupby(["_key", "epoch"])["_v"]
             .agg(["mean", "min", "max"]).reset_index())
    for key in ordered_keys(metrics):
        g = stats[stats["_key"] == key].sort_values("epoch")
        label = f"{key} (n={seeds[key]})" if label_n else key
        ax.plot(g["epoch"], g["mean"], color=colors[key], lw=1.8, label=label)
        if seeds[key] > 1:
            ax.fill_between(g["epoch"], g["min"], g["max"], color=colors[key], alpha=0.2, lw=0)
    _mark(ax, df, diverged, "diverged: ", dict(marker=DIVERGED_MARKER, color=DIVERGED_COLOR,
                                                ms=9, mew=2))
    _mark(ax, df, flat, f"{DID_NOT_LEARN} (ended at chance): ",
          dict(marker=DID_NOT_LEARN_MARKER, mfc="none", mec=DID_NOT_LEARN_COLOR, ms=11, mew=1.5))
    if flat and metric.endswith("acc"):
        ax.axhline(CHANCE_ACC, color="0.5", ls=":", lw=1, label=f"chance ({CHANCE_ACC:g}, 10 classes)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    off = epoch0_off_scale(metrics, metric)
    if off is not None:
        later = df.loc[df["epoch"] >= 1, "_v"]
        later = later[np.isfinite(later)]
        pad = 0.08 * (later.max() - later.min()) or 0.1
        ax.set_ylim(later.min() - pad, later.max() + pad)
    elif metric.endswith("loss") and len(stats):
        lo, hi = stats["min"].min(), stats["max"].max()
        if lo > 0 and hi / lo > 30:  # a diverging run would squash the others on a linear axis
            ax.set_yscale("log")


def _mark(ax: Axes, df: pd.DataFrame, trial_ids: set[str], what: str, style: dict) -> None:
    """One marker per trial in `trial_ids` at its last finite value, labelled with their variants."""
    rows = df[df["trial_id"].isin(trial_ids) & np.isfinite(df["_v"])]
    last = rows.sort_values("epoch").groupby("trial_id").tail(1)
    if last.empty:
        return
    names = last.groupby("_key")["trial_id"].nunique()
    ax.plot(last["epoch"], last["_v"], ls="none", zorder=5, label=what + counted(names), **style)


def _title(metric: str, metrics: pd.DataFrame) -> str:
    off = epoch0_off_scale(metrics, metric)
    name = METRIC_NAMES.get(metric, metric)
    return name if off is None else f"{name}\n(epoch 0, untrained: {off:.1f}, off scale)"


def _what(variant: str | Sequence[str] | None) -> str:
    if variant is None:
        return "all variants"
    return variant if isinstance(variant, str) else ", ".join(variant)


def learning_curves(metrics: pd.DataFrame, variant: str | Sequence[str] | None = None, *,
                    trials: pd.DataFrame | None = None, study: str | None = None,
                    colors: Mapping[str, str] | None = None, fig: Figure | None = None) -> Figure:
    """2x2 grid (loss / accuracy x train / validation) against epoch, one colour per variant.

    `variant`: one name, several, or None for all. One shared legend below the grid.
    """
    df = select(metrics, variant)
    colors = colors_for(keys(metrics), colors)
    diverged = diverged_trials(df, trials)
    flat = did_not_learn_trials(df, trials) - diverged
    owned = fig is None
    fig = fig if fig is not None else layout.new_figure(10.5, 7.0)
    axes = fig.subplots(2, 2, sharex=True)
    multi_n = df.assign(_k=keys(df)).groupby("_k")["trial_id"].nunique().nunique() > 1
    for metric, r, c in GRID:
        ax = axes[r, c]
        draw_curves(ax, df, metric, colors, diverged=diverged, flat=flat, label_n=multi_n)
        ax.set_title(_title(metric, df), fontsize=10.5)
        ax.set_ylabel(AXIS_LABELS[metric])
        ax.grid(True, alpha=0.3)
        if r == 1:
            ax.set_xlabel(AXIS_LABELS["epoch"])
    handles, labels = layout.handles_of(axes.ravel())
    layout.legend(fig, axes[1, 1], owned, handles, labels)
    layout.suptitle(fig, f"{study_name(df, given=study)}: learning curves, {_what(variant)} "
                         f"({band_text(df)})")
    return fig


def sweep_curves(metrics: pd.DataFrame, metric: str = "val_acc", *,
                 trials: pd.DataFrame | None = None, study: str | None = None,
                 colors: Mapping[str, str] | None = None, ax: Axes | None = None) -> Figure:
    """All variants' `metric` against epoch on one axes (mean line, min-max band over seeds)."""
    colors = colors_for(keys(metrics), colors)
    fig, ax, owned = layout.one_axes(ax, (7.0, 4.2))
    diverged = diverged_trials(metrics, trials)
    draw_curves(ax, metrics, metric, colors, diverged=diverged,
                flat=did_not_learn_trials(metrics, trials) - diverged, label_n=True)
    ax.set_xlabel(AXIS_LABELS["epoch"])
    ax.set_ylabel(AXIS_LABELS.get(metric, metric))
    ax.grid(True, alpha=0.3)
    layout.legend(fig, ax, owned, *ax.get_legend_handles_labels())
    title = (f"{study_name(metrics, given=study)}: {METRIC_NAMES.get(metric, metric)}, "
             f"all variants ({band_text(metrics)})")
    ax.set_title(layout.wrap(title, fig.get_figwidth(), 11), fontsize=11)
    return fig


def pairwise(trials: pd.DataFrame, metrics: pd.DataFrame, a: str, b: str, *,
             panels: Sequence[str] = ("val_acc", "train_loss"), study: str | None = None,
             colors: Mapping[str, str] | None = None, fig: Figure | None = None) -> Figure:
    """Variant `a` against `b` (e.g. "lr=0.1" vs "bn+lr=0.1"): curves of both, one panel per metric.

    The shared legend is headed by the difference in best val acc, b − a, as
    difference of means ± sqrt(std_a² + std_b²) over seeds.
    """
    colors = colors_for(keys(metrics), colors)
    df = select(metrics, [a, b])
    diverged = diverged_trials(df, trials)
    flat = did_not_learn_trials(df, trials) - diverged
    owned = fig is None
    fig = fig if fig is not None else layout.new_figure(4.6 * len(panels), 4.0)
    axes = np.atleast_1d(fig.subplots(1, len(panels), sharex=True))
    d = difference(trials, a, b)
    spread = f"± {d['std']:.3f}" if np.isfinite(d["std"]) else "(no std: a side has 1 seed)"
    text = (f"Δ best val acc ({b} − {a}) = {d['mean']:+.3f} {spread}; "
            f"mean diff ± √(sa²+sb²), n = {d['n_a']} vs {d['n_b']} seeds")
    for ax, metric in zip(axes, panels):
        draw_curves(ax, df, metric, colors, diverged=diverged, flat=flat, label_n=True)
        ax.set_title(_title(metric, df), fontsize=10.5)
        ax.set_xlabel(AXIS_LABELS["epoch"])
        ax.set_ylabel(AXIS_LABELS.get(metric, metric))
        ax.grid(True, alpha=0.3)
    handles, labels = layout.handles_of(axes)
    layout.legend(fig, axes[-1], owned, handles, labels,
                  title=layout.wrap(text, fig.get_figwidth(), layout.LEGEND_PT))
    layout.suptitle(fig, f"{study_name(df, given=study)}: {a} vs {b} ({band_text(df)})")
    return fig
