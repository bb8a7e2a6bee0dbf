"""Plots and a table for continuous searches (a study whose study.json has a `space`).

A searched study's variants are its samples, one point each, so the grid
plots (one line per variant) say little; these do:

    accuracy_vs_params(trials, space)   best val acc against each sampled field (log x over decades)
    param_scatter(trials, space)        the first two sampled fields, coloured by best val acc
    best_so_far(trials)                 best val acc among the first k samples, k = 1..n
    top_k(trials, space, k)             the k best samples as a markdown table

`space` is study.json's: {field: {"kind": "loguniform", "args": [low, high]}}.
Figures are matplotlib Figure objects, never pyplot's, as in analysis/plots/.
"""
from __future__ import annotations

import math
import re

import pandas as pd
from matplotlib.figure import Figure

from raylab.results import config_column

from .plots.layout import handles_of, legend, new_figure, suptitle

SAMPLE = re.compile(r"_n(\d+)$")  # Tune's sample number at the end of a sampled trial's id


def log_axis(field: str, space: dict, values: pd.Series) -> bool:
    """Log x for a loguniform field, or any positive range spanning two decades or more."""
    if space.get(field, {}).get("kind") == "loguniform":
        return True
    v = pd.to_numeric(values, errors="coerce").dropna()
    return len(v) > 1 and (v > 0).all() and math.log10(v.max() / v.min()) >= 2


def _numeric(space: dict) -> list[str]:
    return [f for f, d in space.items() if d.get("kind") != "choice"]


def _finished(trials: pd.DataFrame) -> pd.DataFrame:
    return trials[pd.to_numeric(trials["best_val_acc"], errors="coerce").notna()]


def accuracy_vs_params(trials: pd.DataFrame, space: dict, study: str = "") -> Figure:
    fields = list(space)
    t = _finished(trials)
    fig = new_figure(4.2 * len(fields), 3.6)
    axes = fig.subplots(1, len(fields), squeeze=False)[0]
    for ax, field in zip(axes, fields):
        x = t[config_column(field)]
        if space[field].get("kind") == "choice":
            x = x.astype(str)
        ax.scatter(x, t["best_val_acc"], s=22, alpha=0.8, label="best")
        ax.scatter(x, t["final_val_acc"], s=12, marker="x", alpha=0.6, label="final")
        if log_axis(field, space, x):
            ax.set_xscale("log")
        ax.set_xlabel(field)
        ax.set_ylabel("val acc")
        ax.grid(alpha=0.3)
    # Below the figure (plots/layout.py): a legend inside would cover points.
    legend(fig, axes[0], True, *handles_of([axes[0]]))
    suptitle(fig, f"{study}: validation accuracy against each sampled field ({len(t)} trials)")
    return fig


def param_scatter(trials: pd.DataFrame, space: dict, study: str = "") -> Figure | None:
    fields = _numeric(space)
    if len(fields) < 2:
        return None
    a, b = fields[:2]
    t = _finished(trials)
    fig = new_figure(5.4, 4.2)
    ax = fig.subplots()
    points = ax.scatter(t[config_column(a)], t[config_column(b)], c=t["best_val_acc"], cmap="viridis", s=40)
    fig.colorbar(points, ax=ax, label="best val acc")
    best = t.loc[t["best_val_acc"].idxmax()] if len(t) else None
    if best is not None:
        ax.scatter([best[config_column(a)]], [best[config_column(b)]], s=160, facecolors="none",
                   edgecolors="red", label="best")
        legend(fig, ax, True, *handles_of([ax]))
    for field, set_scale in ((a, ax.set_xscale), (b, ax.set_yscale)):
        if log_axis(field, space, t[config_column(field)]):
            set_scale("log")
    ax.set_xlabel(a)
    ax.set_ylabel(b)
    suptitle(fig, f"{study}: {a} x {b}, colour = best val acc")
    return fig


def sample_order(trials: pd.DataFrame) -> pd.DataFrame:
    """Trials in the order they were sampled (Tune's number), unnumbered ones last by id."""
    number = trials["trial_id"].map(lambda s: int(m.group(1)) if (m := SAMPLE.search(str(s))) else 10**9)
    return trials.assign(_n=number).sort_values(["_n", "trial_id"]).drop(columns="_n")


def best_so_far(trials: pd.DataFrame, study: str = "") -> Figure:
    t = sample_order(_finished(trials))
    k = range(1, len(t) + 1)
    fig = new_figure(5.4, 3.6)
    ax = fig.subplots()
    ax.plot(k, t["best_val_acc"].to_numpy(), "o", alpha=0.5, label="this trial")
    ax.step(k, t["best_val_acc"].cummax().to_numpy(), where="post", label="best so far")
    ax.set_xlabel("trials sampled")
    ax.set_ylabel("best val acc")
    ax.grid(alpha=0.3)
    legend(fig, ax, True, *handles_of([ax]))
    suptitle(fig, f"{study}: best validation accuracy so far")
    return fig


def top_k(trials: pd.DataFrame, space: dict, k: int = 5) -> str:
    t = _finished(trials).sort_values("best_val_acc", ascending=False).head(k)
    cols = [config_column(f) for f in space]
    lines = ["| rank | trial | " + " | ".join(space) + " | best val acc | best epoch | status |",
             "|---:|---|" + "---:|" * len(space) + "---:|---:|---|"]
    for i, row in enumerate(t.to_dict("records"), 1):
        values = " | ".join(f"{row[c]:.3g}" if isinstance(row[c], float) else str(row[c]) for c in cols)
        lines.append(f"| {i} | {row['trial_id']} | {values} | {row['best_val_acc']:.4f} | "
                     f"{int(row['best_epoch']) if row['best_epoch'] == row['best_epoch'] else '-'} | {row['status']} |")
    return "\n".join(lines)
