"""Figure frames, legends that never cover data, titles that fit, and the check that says so.

Every legend of a figure made here sits outside the axes: below a figure
this module created (a shared panel for all its axes, as many columns as fit
the width, the figure grown by the rows it needs), or right of an axes a
caller passed in. Titles are wrapped to the figure's width. `check_fits`
proves it on the drawn figure: the tight bounding box (every title, label,
tick label and legend) lies inside the figure, x tick labels do not overlap,
and no legend overlaps an axes;
`save` runs it before writing, so a report never ships a cut title or a
legend over the data.
"""
from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Sequence

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.legend import Legend

LEGEND_PT = 8.5          # "small" at matplotlib's default 10 pt
CHAR_EM = 0.56           # mean width of a DejaVu Sans character, in ems (measured on our labels)
ROW_IN = 0.2             # height of one legend row at LEGEND_PT, with matplotlib's spacing
HANDLE_PT = 36           # marker + gap + column spacing of one legend entry


class FigureError(ValueError):
    """A figure whose title or legend would be cut off or drawn over its data."""


def new_figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def one_axes(ax: Axes | None, size: tuple[float, float]) -> tuple[Figure, Axes, bool]:
    """(figure, axes, owned): a new constrained figure unless the caller gave an axes."""
    if ax is not None:
        return ax.figure, ax, False
    fig = new_figure(*size)
    return fig, fig.add_subplot(), True


def wrap(text: str, width_in: float, fontsize: float = 12.0) -> str:
    """`text` broken into lines that fit `width_in` inches at `fontsize` points."""
    chars = max(20, int(width_in * 72 / (CHAR_EM * fontsize)) - 2)
    return "\n".join(textwrap.fill(line, chars) for line in text.splitlines())


def suptitle(fig: Figure, text: str) -> None:
    fig.suptitle(wrap(text, fig.get_figwidth(), 12.0), fontsize=12.0)


def legend(fig: Figure, ax: Axes, owned: bool, handles: list, labels: list[str],
           title: str | None = None) -> Legend | None:
    """A legend outside the data: below the figure when `owned`, else right of `ax`.

    Below, it takes as many columns as the longest label allows and grows the
    figure by its rows, so the axes keep their size at any number of variants.
    """
    if not handles:
        return None
    kw = dict(fontsize=LEGEND_PT, title=title, title_fontsize=LEGEND_PT, alignment="left",
              frameon=False)
    if not owned:
        return ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                         borderaxespad=0.0, **kw)
    # Up to 8 labels, or labels that fit two to a row, stay whole (wrapped only past the
    # figure's width). Otherwise columns are as wide as 90% of the labels need (at least a
    # third of the figure) and a longer label (a very long variant name) is wrapped to that
    # width: not cut, and not forcing one column for all.
    fit = int((fig.get_figwidth() * 72 * 0.9 - HANDLE_PT) / (CHAR_EM * LEGEND_PT))
    lengths = sorted(len(label) for label in labels)
    p90 = lengths[int(0.9 * (len(lengths) - 1))]
    width = fit if lengths[-1] <= fit // 2 or len(labels) <= 8 else min(fit, max(p90, fit // 3))
    labels = [textwrap.fill(label, width) if len(label) > width else label for label in labels]
    longest = max(len(line) for label in labels for line in label.splitlines())
    col_pt = longest * CHAR_EM * LEGEND_PT + HANDLE_PT
    ncols = max(1, min(len(labels), int(fig.get_figwidth() * 72 * 0.95 // col_pt)))
    # matplotlib fills a legend column by column, the first columns one entry longer
    size, extra = divmod(len(labels), ncols)
    starts = [k * size + min(k, extra) for k in range(ncols + 1)]
    per_col = [sum(label.count("\n") + 1 for label in labels[a:b]) for a, b in zip(starts, starts[1:])]
    rows = max(per_col) + (title.count("\n") + 1 if title else 0)
    fig.set_figheight(fig.get_figheight() + rows * ROW_IN + 0.15)
    return fig.legend(handles, labels, loc="outside lower center", ncols=ncols, **kw)


def handles_of(axes: Sequence[Axes]) -> tuple[list, list[str]]:
    """The labelled artists of several axes, each label once, in drawing order."""
    seen: dict[str, object] = {}
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, h)
    return list(seen.values()), list(seen)


# ------------------------------------------------------------------ the check
def check_fits(fig: Figure, tolerance_px: float = 1.0) -> None:
    """Raise FigureError when the drawn figure's content leaves the figure or a legend covers an axes.

    Uses the figure's tight bounding box (what `bbox_inches="tight"` would
    crop to): inside the figure means nothing is cut off. Legends are then
    checked against every axes' data area.
    """
    fig.draw_without_rendering()
    box, w, h = fig.get_tightbbox(), fig.get_figwidth(), fig.get_figheight()
    tol = tolerance_px / fig.dpi
    name = _name(fig)
    if box.x0 < -tol or box.y0 < -tol or box.x1 > w + tol or box.y1 > h + tol:
        raise FigureError(f"figure {name!r}: content spans x {box.x0:.2f}..{box.x1:.2f}, "
                          f"y {box.y0:.2f}..{box.y1:.2f} in but the figure is {w:.2f} x {h:.2f} in: "
                          "a title, label or legend is cut off")
    for ax in fig.axes:  # x tick labels drawn over each other are as unreadable as cut ones
        boxes = sorted((t.get_window_extent() for t in ax.get_xticklabels()
                        if t.get_visible() and t.get_text()), key=lambda b: b.x0)
        for left, right in zip(boxes, boxes[1:]):
            if right.x0 < left.x1 - tolerance_px:
                raise FigureError(f"figure {name!r}: x tick labels overlap on the axes "
                                  f"{ax.get_title() or ax.get_ylabel()!r}")
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    for lg in legends:
        extent = lg.get_window_extent()
        for ax in fig.axes:
            overlap = extent.intersection(extent, ax.bbox)
            if overlap is not None and overlap.width > tolerance_px and overlap.height > tolerance_px:
                raise FigureError(f"figure {name!r}: a legend covers part of the axes "
                                  f"{ax.get_title() or ax.get_ylabel()!r}")


def _name(fig: Figure) -> str:
    if fig.get_suptitle():
        return fig.get_suptitle().splitlines()[0]
    return next((ax.get_title().splitlines()[0] for ax in fig.axes if ax.get_title()), "untitled")


def save(fig: Figure, path_stem: str | os.PathLike, dpi: int = 150,
         formats: Sequence[str] = ("png", "svg")) -> list[Path]:
    """Check the figure fits (`check_fits`), then write `path_stem`.png / .svg; returns the paths."""
    check_fits(fig)
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for ext in formats:
        path = stem.with_name(stem.name + "." + ext)
        fig.savefig(path, dpi=dpi, format=ext)
        out.append(path)
    return out
