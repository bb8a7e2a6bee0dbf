"""Comparison plots from the tidy tables of a study; every function returns a Figure.

Each function takes DataFrames (metrics / trials / weights as `analysis.load`
gives them), maps columns to roles (x = epoch or a swept config field, colour
= variant, line = mean over seeds, band = min-max over seeds), states its
error band in the title, accepts an optional `ax` (one-panel plots) or `fig`
(grids), and never touches global matplotlib state: figures are
`matplotlib.figure.Figure` objects, not pyplot figures. `save(fig, stem)`
checks that nothing is cut off or covered (`check_fits`), then writes
stem.png and stem.svg.

    palette  colours (one per config through a report), labels, variant order
    layout   figure frames, legends outside the axes, wrapped titles, check_fits, save
    curves   learning_curves, sweep_curves, pairwise
    sweeps   sweep_scatter
    weights  weight_histograms, near_zero_fraction

Legends and tables list variants in one order (`analysis.order`): by swept
value, as numbers. Diverged trials are a red x; trials that ended at chance
accuracy ("did not learn", `analysis.outcome`) a dark ring.
"""
from .curves import band_text, epoch0_off_scale, learning_curves, pairwise, sweep_curves
from .layout import FigureError, check_fits, save
from .palette import (AXIS_LABELS, DID_NOT_LEARN_COLOR, DIVERGED_COLOR, DIVERGED_MARKER, LOG_FIELDS,
                      METRIC_NAMES, PALETTE, config_colors, study_colors, variant_colors)
from .sweeps import sweep_scatter
from .weights import near_zero_fraction, weight_histograms

__all__ = ["learning_curves", "sweep_curves", "pairwise", "sweep_scatter", "weight_histograms",
           "near_zero_fraction", "band_text", "epoch0_off_scale", "save", "check_fits",
           "FigureError", "variant_colors", "config_colors", "study_colors", "PALETTE",
           "DIVERGED_COLOR", "DIVERGED_MARKER", "DID_NOT_LEARN_COLOR", "AXIS_LABELS",
           "METRIC_NAMES", "LOG_FIELDS"]
