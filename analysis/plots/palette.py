"""Colours, labels and the order of variants: what every figure of a report agrees on.

One config keeps one colour through a whole report: `config_colors(studies)`
gives each distinct config (all config fields but the seed and where it ran)
one palette colour, so the Lab 1 baseline is the same blue in lab1, as
lab2_augment's baseline and as lr=0.01 of the lr sweep. Within one study no
two configs share a colour up to 20 configs (the palette's size; a combined
folder drawn whole holds ~25, and then colours repeat).
Red with an "x" marker is kept for diverged trials and never used for a variant.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from raylab.declare.config import RUNTIME_FIELDS

from ..load import StudyResults, config_fields
from ..order import natural_key, sort_labels, variant_order

# tab10, the light tab20 shades, then four dark tab20b shades, without red (divergence) and
# the greys (mean lines, chance level and the "did not learn" ring are grey): 20 colours, so
# the 18 distinct configs of docs/results (assignment + ResNet-20) each get their own.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2",
           "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#c5b0d5", "#c49c94",
           "#f7b6d2", "#dbdb8d", "#9edae5", "#393b79", "#637939", "#8c6d31", "#7b4173")
DIVERGED_COLOR, DIVERGED_MARKER = "#d62728", "x"
DID_NOT_LEARN_COLOR, DID_NOT_LEARN_MARKER = "0.25", "o"   # a dark ring around the point

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


# ------------------------------------------------------------------ colours
def variant_colors(variants: Iterable[str]) -> dict[str, str]:
    """A colour per variant name, in natural order ("lr=0.001" < "lr=0.1") -> PALETTE, cycled past 20."""
    names = sorted({str(v) for v in variants}, key=natural_key)
    return {v: PALETTE[i % len(PALETTE)] for i, v in enumerate(names)}


def config_colors(studies: Sequence[StudyResults]) -> list[dict[str, str]]:
    """Per study (same order), variant -> colour, the same colour wherever the same config runs.

    Configs are coloured in report order (study by study, variants in
    `variant_order`), each taking the least used palette colour not yet
    taken within its study.
    """
    keys = [{v: _config_key(s, v) for v in variant_order(_frame(s))} for s in studies]
    color_of: dict[Any, str] = {}
    uses: Counter[str] = Counter()
    for per_study in keys:
        taken = {color_of[k] for k in per_study.values() if k in color_of}
        for key in per_study.values():
            if key in color_of:
                continue
            free = [c for c in PALETTE if c not in taken] or list(PALETTE)
            color_of[key] = min(free, key=lambda c: (uses[c], PALETTE.index(c)))
            uses[color_of[key]] += 1
            taken.add(color_of[key])
    return [{v: color_of[k] for v, k in per_study.items()} for per_study in keys]


def study_colors(study: StudyResults) -> dict[str, str]:
    """variant -> colour for one study alone (`config_colors([study])[0]`)."""
    return config_colors([study])[0]


def _frame(study: StudyResults) -> pd.DataFrame:
    """Rows carrying each variant's config: trials, plus variants only seen in metrics (running)."""
    t, m = study.trials, study.metrics
    extra = m[~m["variant"].isin(set(t["variant"]))] if len(m) else m
    return pd.concat([t, extra], ignore_index=True) if len(extra) else t


def _config_key(study: StudyResults, variant: str) -> tuple:
    df = _frame(study)
    row = df[df["variant"] == variant].iloc[0]
    cols = sorted(c for c in config_fields(df) if c not in RUNTIME_FIELDS and c != "seed")
    return tuple((c, _freeze(row[c])) for c in cols)


def _freeze(v: Any) -> Any:
    if isinstance(v, (list, tuple, np.ndarray)):
        return tuple(_freeze(x) for x in v)
    if isinstance(v, float) and np.isnan(v):
        return None
    return v.item() if hasattr(v, "item") else v


# ------------------------------------------------------------------ labels and order
def keys(df: pd.DataFrame) -> pd.Series:
    """The label a row plots under: its variant, or study/variant when several studies are mixed."""
    if df.empty:
        return pd.Series([], dtype=object, index=df.index)
    if "study" in df.columns and df["study"].nunique() > 1:
        return df["study"].astype(str) + "/" + df["variant"].astype(str)
    return df["variant"].astype(str)


def ordered_keys(df: pd.DataFrame) -> list[str]:
    """The labels of `df` in the study's variant order (numbers sorted as numbers)."""
    if df.empty:
        return []
    return sort_labels(keys(df), variant_order(df))


def colors_for(labels: Iterable[str], colors: Mapping[str, str] | None) -> dict[str, str]:
    """`colors` where it names a label (or its variant after "study/"), else a stable default."""
    labels = list(labels)
    out = variant_colors(labels)
    for label in labels:
        variant = label.split("/", 1)[-1]
        if colors and label in colors:
            out[label] = colors[label]
        elif colors and variant in colors:
            out[label] = colors[variant]
    return out


def study_name(*frames: pd.DataFrame | None, given: str | None = None) -> str:
    if given:
        return given
    names: set[str] = set()
    for df in frames:
        if df is not None and "study" in df.columns:
            names |= set(df["study"].dropna().astype(str))
    return " + ".join(sorted(names)) or "study"


def select(df: pd.DataFrame, variants: str | Sequence[str] | None) -> pd.DataFrame:
    if variants is None:
        return df
    wanted = [variants] if isinstance(variants, str) else list(variants)
    labels = keys(df)
    missing = [v for v in wanted if v not in set(labels) and v not in set(df["variant"])]
    if missing:
        raise ValueError(f"variant(s) {missing} not in the data; have {sorted(set(labels))}")
    return df[labels.isin(wanted) | df["variant"].isin(wanted)]


def counted(names: pd.Series) -> str:
    """"lr=1 ×2, lr=0.5" from a Series label -> number of trials."""
    return ", ".join(f"{k} ×{n}" if n > 1 else str(k) for k, n in names.items())
