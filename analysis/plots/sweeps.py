"""Best and final validation accuracy of every trial against the swept config value."""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import NullLocator
from matplotlib.transforms import offset_copy

from raylab.results import config_column

from ..load import swept_fields
from ..order import value_key
from ..outcome import CHANCE_ACC, DID_NOT_LEARN, did_not_learn
from . import layout
from .palette import (AXIS_LABELS, DID_NOT_LEARN_COLOR, DID_NOT_LEARN_MARKER, DIVERGED_COLOR,
                      DIVERGED_MARKER, LOG_FIELDS, colors_for, counted, keys, study_name)

_SERIES = (("best_val_acc", "o", True, -4), ("final_val_acc", "s", False, 4))  # marker, filled, shift pt


def _positions(values: pd.Series) -> tuple[dict, list[float], list[str], float | None]:
    """x position per swept value on a log axis, tick positions and labels, and the axis break.

    A 0 (e.g. "no weight decay") goes one sweep step left of the smallest
    positive value (a decade if there is only one), labelled "0", with a break
    mark between it and the positive values.
    """
    uniq = sorted(set(values.dropna()))
    pos = [v for v in uniq if v > 0]
    mapping = {v: float(v) for v in pos}
    brk = None
    if 0 in uniq:
        step = max(pos[1] / pos[0] if len(pos) > 1 else 10.0, 10.0 ** 0.5)
        zero = pos[0] / step if pos else 1.0
        mapping[0] = zero
        brk = math.sqrt(zero * pos[0]) if pos else None
    return mapping, [mapping[v] for v in uniq], ["0" if v == 0 else f"{v:g}" for v in uniq], brk


def _x(ax: Axes, field: str, col: str, raw: pd.Series) -> tuple[pd.Series, list, list | None, float | None]:
    """x of each trial, ticks, tick labels and break: log for rates, numbers, else categories."""
    if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
        vals = raw.astype(float)
        if (field in LOG_FIELDS or col in LOG_FIELDS) and (vals >= 0).all() and (vals > 0).any():
            mapping, ticks, labels, brk = _positions(vals)
            ax.set_xscale("log")
            return vals.map(mapping), ticks, labels, brk
        return vals, sorted(set(vals.dropna())), None, None
    # categorical (booleans, activations, model names), sorted as the table sorts them
    cats = sorted(set(raw), key=value_key)
    ax.set_xlim(-0.5, len(cats) - 0.5)
    return raw.map({c: i for i, c in enumerate(cats)}).astype(float), list(range(len(cats))), \
        [str(c) for c in cats], None


def sweep_scatter(trials: pd.DataFrame, field: str | None = None, *, study: str | None = None,
                  colors: Mapping[str, str] | None = None, ax: Axes | None = None) -> Figure:
    """Final and best val acc of every trial against the swept config `field`.

    Points: one per trial (filled circle = best, hollow square = final), coloured
    by variant; grey lines: mean over seeds. Log x for lr, weight_decay and l1
    (a 0 is placed left of the smallest positive value and labelled "0").
    Diverged trials: red x; trials that ended at chance: a dark ring; both named
    in the legend. Failed trials have no result and are counted in the title.
    `field` defaults to the first swept field.
    """
    if field is None:
        swept = swept_fields(trials)
        if not swept:
            raise ValueError("no swept field: the variants do not differ in any config column")
        field = swept[0]
    col = config_column(field)
    if col not in trials.columns:
        raise ValueError(f"trials have no column {col!r} for field {field!r}")
    colors = colors_for(keys(trials), colors)
    fig, ax, owned = layout.one_axes(ax, (7.0, 4.2))
    status = trials["status"].astype(str)
    failed = int(status.eq("failed").sum())
    df = trials[status.ne("failed")].assign(_key=lambda d: keys(d))
    x, ticks, labels, brk = _x(ax, field, col, df[col])
    df = df.assign(_x=x.values, _flat=did_not_learn(df).values)
    div = df["status"].astype(str).eq("diverged")
    shift = {m: offset_copy(ax.transData, fig=fig, x=dx, units="points") for m, *_, dx in _SERIES}
    for metric, marker, fill, _ in _SERIES:
        ok = df[~div & np.isfinite(df[metric].astype(float))]
        edge = [colors[k] for k in ok["_key"]]
        ax.scatter(ok["_x"], ok[metric], s=40, marker=marker, zorder=3, transform=shift[metric],
                   c=edge if fill else "none", edgecolors=edge, linewidths=1.5)
        means = df[np.isfinite(df[metric].astype(float))].groupby("_x")[metric].mean().sort_index()
        ax.plot(means.index, means.values, color="0.35", lw=1.2, zorder=2,
                ls="-" if metric == "best_val_acc" else "--")
    handles = [
        Line2D([], [], ls="none", marker="o", color="0.2", label="best val acc (one trial)"),
        Line2D([], [], ls="none", marker="s", mfc="none", color="0.2", label="final val acc (one trial)"),
        Line2D([], [], color="0.35", lw=1.2, label="best: mean over seeds"),
        Line2D([], [], color="0.35", lw=1.2, ls="--", label="final: mean over seeds"),
    ]
    handles += _marks(ax, df[div], shift, dict(marker=DIVERGED_MARKER, color=DIVERGED_COLOR, s=70,
                                               linewidths=2), "diverged: ", ("best_val_acc",))
    flat = df[df["_flat"]]
    handles += _marks(ax, flat, shift, dict(marker=DID_NOT_LEARN_MARKER, facecolors="none", s=150,
                                            edgecolors=DID_NOT_LEARN_COLOR, linewidths=1.5),
                      f"{DID_NOT_LEARN} (ended at chance): ", ("best_val_acc", "final_val_acc"))
    if len(flat):
        ax.axhline(CHANCE_ACC, color="0.5", ls=":", lw=1)
        handles.append(Line2D([], [], color="0.5", ls=":", lw=1, label=f"chance ({CHANCE_ACC:g})"))
    _limits(ax, df)
    ax.set_xticks(ticks)
    ax.set_xticklabels(_thin(ticks, labels or [f"{t:g}" for t in ticks], ax.get_xscale() == "log",
                             fig.get_figwidth() * 72 * 0.8))
    ax.xaxis.set_minor_locator(NullLocator())
    if brk is not None:  # "//" on the x axis between the 0 and the positive values
        for dx in (0.93, 1.0):
            ax.plot([brk * dx / 1.08, brk * dx * 1.08], [-0.025, 0.025], color="k", lw=1,
                    transform=ax.get_xaxis_transform(), clip_on=False, gid="axis-break")
    ax.set_xlabel(AXIS_LABELS.get(field, field) + (" (log scale; 0 left of the break)" if brk else
                                                   " (log scale)" if ax.get_xscale() == "log" else ""))
    ax.set_ylabel("validation accuracy (fraction)")
    ax.grid(True, alpha=0.3)
    layout.legend(fig, ax, owned, handles, [h.get_label() for h in handles])
    extra = f"; {failed} failed trial(s) not shown" if failed else ""
    title = f"{study_name(trials, given=study)}: val acc vs {field} (points: seeds, lines: mean){extra}"
    ax.set_title(layout.wrap(title, fig.get_figwidth(), 11), fontsize=11)
    return fig


def _thin(ticks: list, labels: list[str], log: bool, width_pt: float) -> list[str]:
    """Tick labels with those that would overlap their left neighbour blanked (the last one kept).

    A 25-value sweep puts ticks closer than their labels are wide; every
    value keeps its tick, only the labels are thinned. 10 pt labels: ~5.6 pt a character.
    """
    if len(ticks) < 2:
        return list(labels)
    xs = [math.log10(t) if log else float(t) for t in ticks]
    lo, hi = min(xs), max(xs)
    pos = [(x - lo) / ((hi - lo) or 1.0) * width_pt for x in xs]
    order = sorted(range(len(xs)), key=lambda k: pos[k])

    def clash(a: int, b: int) -> bool:
        return abs(pos[a] - pos[b]) < (len(labels[a]) + len(labels[b])) / 2 * 5.6 + 6
    kept = [order[0]]
    for k in order[1:]:
        if not clash(kept[-1], k):
            kept.append(k)
    last = order[-1]
    if kept[-1] != last:
        while kept and clash(kept[-1], last):
            kept.pop()
        kept.append(last)
    return [label if k in kept else "" for k, label in enumerate(labels)]


def _marks(ax: Axes, d: pd.DataFrame, shift: dict, style: dict, what: str,
           metrics: tuple[str, ...]) -> list[Line2D]:
    """Mark the trials of `d` at their shifted points; one legend handle naming their variants."""
    if d.empty:
        return []
    for metric in metrics:
        ok = d[np.isfinite(d[metric].astype(float))]
        ax.scatter(ok["_x"], ok[metric], zorder=4, transform=shift[metric], **style)
    handle = Line2D([], [], ls="none", marker=style["marker"], ms=9 if style["marker"] == "x" else 11,
                    mew=style["linewidths"], mfc="none",
                    color=style.get("color", style.get("edgecolors")),
                    label=what + counted(d.groupby("_key").size()))
    return [handle]


def _limits(ax: Axes, df: pd.DataFrame) -> None:
    """The shifted markers do not count towards the data limits by themselves."""
    pts = pd.concat([df[["_x", m]].set_axis(["x", "y"], axis=1) for m, *_ in _SERIES])
    pts = pts[np.isfinite(pts["y"].astype(float)) & np.isfinite(pts["x"].astype(float))]
    if len(pts):
        ax.update_datalim(pts.to_numpy(float))
        ax.autoscale_view()
