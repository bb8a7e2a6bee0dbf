"""Final-weight histograms of several variants overlaid, with the fraction of weights near zero."""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from raylab.results import NEAR_ZERO

from . import layout
from .palette import colors_for, keys, ordered_keys, select, study_name


def _cdf(edges: np.ndarray, left: np.ndarray, right: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Number of weights below each of `edges`, counts spread uniformly within their bins."""
    width = np.where(right > left, right - left, 1e-300)
    frac = np.clip((edges[:, None] - left[None, :]) / width[None, :], 0.0, 1.0)
    return frac @ count


def near_zero_fraction(weights: pd.DataFrame, threshold: float = NEAR_ZERO) -> float:
    """Fraction of the weights in `weights` (histogram rows) with |w| < threshold, from the bins."""
    left, right, count = (weights[c].to_numpy(float) for c in ("bin_left", "bin_right", "count"))
    total = count.sum()
    if total <= 0:
        return math.nan
    lo, hi = _cdf(np.array([-threshold, threshold]), left, right, count)
    return float((hi - lo) / total)


def weight_histograms(weights: pd.DataFrame, variants: Sequence[str] | None = None, *,
                      layer: str | Sequence[str] | None = None, near_zero: float = NEAR_ZERO,
                      bins: int = 120, logy: bool | str = "auto", study: str | None = None,
                      colors: Mapping[str, str] | None = None, ax: Axes | None = None) -> Figure:
    """Overlaid histograms of the final weights of two or more variants (e.g. L1 vs L2).

    All seeds and layers (or the given `layer`s) of a variant are pooled and
    re-binned onto one common grid; y is the fraction of that variant's weights
    per bin, on a log scale when it spans more than two decades (`logy="auto"`).
    The legend (outside the axes) gives each variant's fraction of weights with
    |w| < `near_zero`, computed from the stored bins (uniform within a bin).
    """
    colors = colors_for(keys(weights), colors)
    df = select(weights, variants)
    if layer is not None:
        layers = [layer] if isinstance(layer, str) else list(layer)
        df = df[df["layer"].isin(layers)]
    df = df[df["count"].astype(float) > 0]
    df = df.assign(_key=keys(df))
    fig, ax, owned = layout.one_axes(ax, (7.0, 4.2))
    if df.empty:
        ax.text(0.5, 0.5, "no weight histograms", transform=ax.transAxes, ha="center")
        return fig
    lo, hi = df["bin_left"].astype(float).min(), df["bin_right"].astype(float).max()
    edges = np.linspace(lo, hi, bins + 1)
    peak_lo, peak_hi = math.inf, 0.0
    order = ordered_keys(df)
    for key in order:
        g = df[df["_key"] == key]
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
    layout.legend(fig, ax, owned, *ax.get_legend_handles_labels())
    where = "all layers" if layer is None else f"layer {', '.join(layers)}"
    seeds = df.groupby("_key")["trial_id"].nunique()
    n = sorted(set(seeds))
    pooled = f"{n[0]}" if len(n) == 1 else f"{n[0]}-{n[-1]}"
    what = " vs ".join(order) if len(order) <= 3 else f"{len(order)} variants"
    title = (f"{study_name(df, given=study)}: final weights, {what} ({where}, pooled over "
             f"{pooled} seed(s) per variant, re-binned to {bins} bins)")
    ax.set_title(layout.wrap(title, fig.get_figwidth(), 11), fontsize=11)
    return fig
