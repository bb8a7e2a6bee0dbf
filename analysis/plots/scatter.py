"""Best and final accuracy against the swept config value."""
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
from .style import (DIVERGED_COLOR, DIVERGED_MARKER, AXIS_LABELS, LOG_FIELDS, _keys, _study_name,
                    _colors, _one_ax)


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
