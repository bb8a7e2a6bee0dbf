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

import os
from pathlib import Path
from typing import Sequence

from matplotlib.figure import Figure

from .curves import learning_curves, pairwise, sweep_curves
from .scatter import sweep_scatter
from .style import AXIS_LABELS, DIVERGED_COLOR, DIVERGED_MARKER, LOG_FIELDS, METRIC_NAMES, PALETTE, variant_colors
from .weights import near_zero_fraction, weight_histograms

__all__ = ["AXIS_LABELS", "DIVERGED_COLOR", "DIVERGED_MARKER", "LOG_FIELDS", "METRIC_NAMES", "PALETTE",
           "learning_curves", "near_zero_fraction", "pairwise", "save", "sweep_curves", "sweep_scatter",
           "variant_colors", "weight_histograms"]


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
