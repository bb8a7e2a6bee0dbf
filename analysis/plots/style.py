"""Colours, axis labels and small figure helpers shared by every plot."""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure




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
