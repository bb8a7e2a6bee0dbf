"""Comparison plots from the tidy tables of a study; every function returns a Figure.

Each function takes DataFrames (metrics / trials / weights as `analysis.load`
gives them), maps columns to roles (x = epoch or a swept config field, colour
= variant, line = mean over seeds, band = min-max over seeds), states its
error band in the title or legend, accepts an optional `ax` (one-panel plots)
or `fig` (grids), and never touches global matplotlib state: figures are
`matplotlib.figure.Figure` objects, not pyplot figures, so nothing is
registered with pyplot and no rcParams change. `save(fig, stem)` writes
stem.png and stem.svg.

Colours: `variant_colors` maps sorted variant names to a fixed palette, so a
variant has the same colour in every figure of a study as long as the same
frame (or the same `colors` dict) is passed. Red with an "x" marker is kept
for diverged trials and never used for a variant.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator, NullLocator
from matplotlib.transforms import offset_copy

from raylab.results import config_column

from .load import diverged_trials, swept_fields
from .summary import difference

# tab10 without its red, then the light tab20 shades: red is reserved for divergence.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#c5b0d5", "#c49c94",
           "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5")
DIVERGED_COLOR, DIVERGED_MARKER = "#d62728", "x"

AXIS_LABELS = {
    "epoch": "epoch",
    "train_loss": "cross-entropy loss (nats)", "val_loss": "cross-entropy loss (nats)",
    "train_acc": "accuracy (fraction)", "val_acc": "accuracy (fraction)",
    "best_val_acc": "validation accuracy (fraction)", "final_val_acc": "validation accuracy (fraction)",
    "lr": "learning rate", "base_lr": "learning rate",
    "epoch_seconds": "time per epoch (s)", "images_per_second": "throughput (images/s)",
    "weight_decay": "L2 weight decay coefficient", "l1": "L1 penalty coefficient",
    "batch_size": "batch size (images)", "momentum": "momentum",
}
METRIC_NAMES = {
    "train_loss": "training loss", "val_loss": "validation loss",
    "train_acc": "training accuracy", "val_acc": "validation accuracy",
    "lr": "learning rate", "epoch_seconds": "time per epoch",
    "images_per_second": "throughput",
}
LOG_FIELDS = frozenset({"lr", "base_lr", "weight_decay", "l1"})


# ------------------------------------------------------------------ colours, labels
def variant_colors(variants: Iterable[str]) -> dict[str, str]:
    """Stable colour per variant: sorted unique names -> PALETTE (cycled past 18)."""
    names = sorted({str(v) for v in variants})
    return {v: PALETTE[i % len(PALETTE)] for i, v in enumerate(names)}


def _keys(df: pd.DataFrame) -> pd.Series:
    """The label a row plots under: its variant, or study/variant when several studies are mixed."""
    if df.empty:
        return pd.Series([], dtype=object, index=df.index)
    if "study" in df.columns and df["study"].nunique() > 1:
        return df["study"].astype(str) + "/" + df["variant"].astype(str)
    return df["variant"].astype(str)


def _study_name(*frames: pd.DataFrame | None, given: str | None = None) -> str:
    if given:
        return given
    names: set[str] = set()
    for df in frames:
        if df is not None and "study" in df.columns:
            names |= set(df["study"].dropna().astype(str))
    return " + ".join(sorted(names)) or "study"


def _colors(keys: Iterable[str], colors: Mapping[str, str] | None) -> dict[str, str]:
    base = variant_colors(keys)
    if colors:
        base.update({k: c for k, c in colors.items() if k in base})
    return base


def _select(df: pd.DataFrame, variants: str | Sequence[str] | None) -> pd.DataFrame:
    if variants is None:
        return df
    wanted = [variants] if isinstance(variants, str) else list(variants)
    keys = _keys(df)
    missing = [v for v in wanted if v not in set(keys) and v not in set(df["variant"])]
    if missing:
        raise ValueError(f"variant(s) {missing} not in the data; have {sorted(set(keys))}")
    return df[keys.isin(wanted) | df["variant"].isin(wanted)]


def _legend(ax: Axes, **kwargs) -> None:
    """A legend when something is labelled (an empty study draws empty axes, silently)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**{"fontsize": "small", "loc": "best", **kwargs})


def _new_fig(fig: Figure | None, size: tuple[float, float]) -> Figure:
    return fig if fig is not None else Figure(figsize=size, layout="constrained")


def _one_ax(ax: Axes | None, size: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    fig = _new_fig(None, size)
    return fig, fig.add_subplot()


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


# ------------------------------------------------------------------ sweep scatter
def _positions(values: pd.Series, log: bool) -> tuple[dict, list[float], list[str], float | None]:
    """x position per swept value, tick positions and labels, and where to draw an axis break.

    On a log axis a 0 (e.g. "no weight decay") goes one sweep step left of the
    smallest positive value (a decade if there is only one), labelled "0", with
    a break mark between it and the positive values.
    """
    uniq = sorted(set(values.dropna()))
    pos = [v for v in uniq if v > 0]
    mapping = {v: float(v) for v in pos}
    brk = None
    if 0 in uniq:
        step = pos[1] / pos[0] if len(pos) > 1 else 10.0
        step = max(step, 10.0 ** 0.5)
        zero = pos[0] / step if pos else 1.0
        mapping[0] = zero
        brk = math.sqrt(zero * pos[0]) if pos else None
    ticks = [mapping[v] for v in uniq]
    labels = ["0" if v == 0 else f"{v:g}" for v in uniq]
    return mapping, ticks, labels, brk


def sweep_scatter(trials: pd.DataFrame, field: str | None = None, *, study: str | None = None,
                  colors: Mapping[str, str] | None = None, ax: Axes | None = None) -> Figure:
    """Final and best val acc of every trial against the swept config `field`.

    Points: one per trial (filled circle = best, hollow square = final), coloured
    by variant; grey lines: mean over seeds. Log x for lr, weight_decay and l1
    (a 0 is placed left of the smallest positive value and labelled "0").
    Diverged trials: red x, named in the legend. Failed trials have no result
    and are counted in the title. `field` defaults to the first swept field.
    """
    if field is None:
        swept = swept_fields(trials)
        if not swept:
            raise ValueError("no swept field: the variants do not differ in any config column")
        field = swept[0]
    col = config_column(field)
    if col not in trials.columns:
        raise ValueError(f"trials have no column {col!r} for field {field!r}")
    colors = _colors(_keys(trials), colors)
    fig, ax = _one_ax(ax, (8, 5))
    status = trials["status"].astype(str)
    failed = int(status.eq("failed").sum())
    df = trials[status.ne("failed")].assign(_key=lambda d: _keys(d))
    raw = df[col]
    numeric = pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw)
    if numeric:
        vals = raw.astype(float)
        log = (field in LOG_FIELDS or col in LOG_FIELDS) and (vals >= 0).all() and (vals > 0).any()
        if log:
            mapping, ticks, labels, brk = _positions(vals, log=True)
            x = vals.map(mapping)
            ax.set_xscale("log")
        else:
            x, brk = vals, None
            ticks, labels = sorted(set(vals.dropna())), None
    else:  # categorical: booleans, activations, model names
        cats = sorted(set(raw.astype(str)))
        x = raw.astype(str).map({c: i for i, c in enumerate(cats)}).astype(float)
        ticks, labels, brk = list(range(len(cats))), cats, None
        ax.set_xlim(-0.5, len(cats) - 0.5)
    df = df.assign(_x=x.values)
    div = df["status"].astype(str).eq("diverged")
    # best a few points left of the value, final a few right, so both stay visible
    shift = {m: offset_copy(ax.transData, fig=fig, x=dx, units="points")
             for m, dx in (("best_val_acc", -4), ("final_val_acc", 4))}
    for metric, marker, fill in (("best_val_acc", "o", True), ("final_val_acc", "s", False)):
        ok = df[~div & np.isfinite(df[metric].astype(float))]
        ax.scatter(ok["_x"], ok[metric], s=40, marker=marker, zorder=3, transform=shift[metric],
                   c=[colors[k] for k in ok["_key"]] if fill else "none",
                   edgecolors=[colors[k] for k in ok["_key"]], linewidths=1.5)
        means = (df[np.isfinite(df[metric].astype(float))].groupby("_x")[metric].mean().sort_index())
        ax.plot(means.index, means.values, color="0.35", lw=1.2, zorder=2,
                ls="-" if metric == "best_val_acc" else "--")
    handles = [
        Line2D([], [], ls="none", marker="o", color="0.2", label="best val acc (one trial)"),
        Line2D([], [], ls="none", marker="s", mfc="none", color="0.2", label="final val acc (one trial)"),
        Line2D([], [], color="0.35", lw=1.2, label="best: mean over seeds"),
        Line2D([], [], color="0.35", lw=1.2, ls="--", label="final: mean over seeds"),
    ]
    if div.any():
        d = df[div]
        for metric in ("best_val_acc", "final_val_acc"):
            ok = d[np.isfinite(d[metric].astype(float))]
            ax.scatter(ok["_x"], ok[metric], marker=DIVERGED_MARKER, color=DIVERGED_COLOR,
                       s=70, linewidths=2, zorder=4, transform=shift[metric])
        per = d.groupby("_key").size()
        names = ", ".join(f"{k} ×{n}" if n > 1 else str(k) for k, n in per.items())
        handles.append(Line2D([], [], ls="none", marker=DIVERGED_MARKER, color=DIVERGED_COLOR,
                              ms=9, mew=2, label=f"diverged: {names}"))
    # The shifted markers do not count towards the data limits by themselves.
    pts = pd.concat([df[["_x", m]].set_axis(["x", "y"], axis=1) for m in ("best_val_acc", "final_val_acc")])
    pts = pts[np.isfinite(pts["y"].astype(float)) & np.isfinite(pts["x"].astype(float))]
    if len(pts):
        ax.update_datalim(pts.to_numpy(float))
        ax.autoscale_view()
    ax.set_xticks(ticks)
    if labels is not None:
        ax.set_xticklabels(labels)
    ax.xaxis.set_minor_locator(NullLocator())
    if brk is not None:  # "//" on the x axis between the 0 and the positive values
        for dx in (0.93, 1.0):
            ax.plot([brk * dx / 1.08, brk * dx * 1.08], [-0.025, 0.025], color="k", lw=1,
                    transform=ax.get_xaxis_transform(), clip_on=False, gid="axis-break")
    ax.set_xlabel(AXIS_LABELS.get(field, field) + (" (log scale; 0 left of the break)" if brk else
                                                   " (log scale)" if ax.get_xscale() == "log" else ""))
    ax.set_ylabel("validation accuracy (fraction)")
    ax.grid(True, alpha=0.3)
    ax.legend(handles=handles, fontsize="small", loc="best")
    extra = f"; {failed} failed trial(s) not shown" if failed else ""
    ax.set_title(f"{_study_name(trials, given=study)}: val acc vs {field} "
                 f"(points: seeds, lines: mean){extra}")
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


# ------------------------------------------------------------------ weights
def _cdf(edges: np.ndarray, left: np.ndarray, right: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Number of weights below each of `edges`, counts spread uniformly within their bins."""
    width = np.where(right > left, right - left, 1e-300)
    frac = np.clip((edges[:, None] - left[None, :]) / width[None, :], 0.0, 1.0)
    return frac @ count


def near_zero_fraction(weights: pd.DataFrame, threshold: float = 1e-3) -> float:
    """Fraction of the weights in `weights` (histogram rows) with |w| < threshold, from the bins."""
    left, right, count = (weights[c].to_numpy(float) for c in ("bin_left", "bin_right", "count"))
    total = count.sum()
    if total <= 0:
        return math.nan
    lo, hi = _cdf(np.array([-threshold, threshold]), left, right, count)
    return float((hi - lo) / total)


def weight_histograms(weights: pd.DataFrame, variants: Sequence[str] | None = None, *,
                      layer: str | Sequence[str] | None = None, near_zero: float = 1e-3,
                      bins: int = 120, logy: bool | str = "auto", study: str | None = None,
                      colors: Mapping[str, str] | None = None, ax: Axes | None = None) -> Figure:
    """Overlaid histograms of the final weights of two or more variants (e.g. L1 vs L2).

    All seeds and layers (or the given `layer`s) of a variant are pooled and
    re-binned onto one common grid; y is the fraction of that variant's weights
    per bin, on a log scale when it spans more than two decades (`logy="auto"`).
    The legend gives each variant's fraction of weights with |w| < `near_zero`,
    computed from the stored bins (uniform within a bin).
    """
    colors = _colors(_keys(weights), colors)
    df = _select(weights, variants)
    if layer is not None:
        layers = [layer] if isinstance(layer, str) else list(layer)
        df = df[df["layer"].isin(layers)]
    df = df.assign(_key=_keys(df))
    df = df[df["count"].astype(float) > 0]
    fig, ax = _one_ax(ax, (8, 5))
    if df.empty:
        ax.text(0.5, 0.5, "no weight histograms", transform=ax.transAxes, ha="center")
        return fig
    lo, hi = df["bin_left"].astype(float).min(), df["bin_right"].astype(float).max()
    edges = np.linspace(lo, hi, bins + 1)
    peak_lo, peak_hi = math.inf, 0.0
    for key, g in df.groupby("_key", sort=True):
        left, right, count = (g[c].to_numpy(float) for c in ("bin_left", "bin_right", "count"))
        frac = np.diff(_cdf(edges, left, right, count)) / count.sum()
        nz = near_zero_fraction(g, near_zero)
        ax.stairs(frac, edges, color=colors[key], lw=1.6,
                  label=f"{key}: {nz:.1%} of weights with |w| < {near_zero:g}")
        ax.stairs(frac, edges, color=colors[key], alpha=0.12, fill=True)
        pos = frac[frac > 0]
        if len(pos):
            peak_lo, peak_hi = min(peak_lo, pos.min()), max(peak_hi, pos.max())
    if logy is True or (logy == "auto" and peak_hi > 0 and peak_hi / peak_lo > 100):
        ax.set_yscale("log")
    ax.set_xlabel("weight value")
    ax.set_ylabel("fraction of weights per bin")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small", loc="upper right")
    where = "all layers" if layer is None else f"layer {', '.join(layers)}"
    seeds = df.groupby("_key")["trial_id"].nunique()
    ax.set_title(f"{_study_name(df, given=study)}: final weights, {' vs '.join(seeds.index)}\n"
                 f"({where}, pooled over {'/'.join(str(n) for n in seeds)} seeds, "
                 f"re-binned to {bins} bins)")
    return fig


# ------------------------------------------------------------------ output
def save(fig: Figure, path_stem: str | os.PathLike, dpi: int = 150,
         formats: Sequence[str] = ("png", "svg")) -> list[Path]:
    """Write `path_stem`.png and `path_stem`.svg (folders created); returns the paths written."""
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for ext in formats:
        path = stem.with_name(stem.name + "." + ext)
        fig.savefig(path, dpi=dpi, format=ext)
        out.append(path)
    return out
