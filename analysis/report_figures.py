"""Which figures a study's report section shows, drawn and saved, with captions that match them.

Per study: the learning-curve grid (every metric, every variant, one shared
legend), the sweep scatter when one config field is swept, a pair figure for
each named pair (`pairs`) that is a strict subset of the study's variants (a
study of exactly that pair already shows both in the grid), and the weight
histograms. Captions are computed from the data drawn: the band the figure
really has, why an epoch-0 loss is off scale, which trials did not learn.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping, Sequence

from raylab.results import config_column

from . import plots
from .load import StudyResults, diverged_trials
from .outcome import CHANCE_ACC, did_not_learn_trials


def slug(name: str) -> str:
    """A file-name-safe form of a study or variant name."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", name).strip("_") or "study"


def figure_pairs(variants: Sequence[str], pairs: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The pairs of `pairs` present in `variants`, less a pair that is the whole study."""
    have = set(variants)
    return [(a, b) for a, b in pairs if a in have and b in have and have != {a, b}]


def study_figures(study: StudyResults, out: Path, colors: Mapping[str, str],
                  pairs: Sequence[tuple[str, str]], prefix: str | None = None) -> list[tuple[str, str]]:
    """Draw and save the study's figures into `out` as PREFIX_*.png (default prefix: the study's
    name); returns (file name, caption) pairs."""
    name, made = prefix or slug(study.name), []
    variants, m, t, w = study.variants, study.metrics, study.trials, study.weights

    def keep(fig, stem: str, caption: str) -> None:
        plots.save(fig, out / f"{name}_{stem}", formats=("png",))
        made.append((f"{name}_{stem}.png", caption))

    if m.empty:
        return made
    keep(plots.learning_curves(m, trials=t, study=study.name, colors=colors), "learning_curves",
         "Learning curves of every variant: loss and accuracy, training and validation "
         f"({plots.band_text(m)}).{_marks_note(m, t)}{_epoch0_note(m)}")
    space = study.meta.get("space")
    if space:  # a continuous search: each sample is a variant; plot against the sampled values instead
        from . import search_plots as sp
        keep(sp.accuracy_vs_params(t, space, study.name), "search_params",
             "Best (dot) and final (x) validation accuracy against each sampled field.")
        pair = sp.param_scatter(t, space, study.name)
        if pair is not None:
            keep(pair, "search_pair", "The first two sampled fields, coloured by best validation accuracy.")
        keep(sp.best_so_far(t, study.name), "search_best_so_far",
             "Best validation accuracy among the first k trials sampled.")
        return made
    swept = [f for f in study.swept if config_column(f) in t.columns]
    # One swept field: a sweep. Several (e.g. "bn+lr=0.1" vs "lr=0.01") would put
    # different variants at one x, so named-variant studies get the curves only.
    if len(variants) > 1 and len(swept) == 1:
        keep(plots.sweep_scatter(t, swept[0], study=study.name, colors=colors), f"sweep_{swept[0]}",
             f"Best (filled) and final (hollow) validation accuracy of every trial against "
             f"{swept[0]}; lines: mean over seeds.{_marks_note(m, t)}")
    for a, b in figure_pairs(variants, pairs):
        keep(plots.pairwise(t, m, a, b, study=study.name, colors=colors),
             f"pair_{slug(a)}_vs_{slug(b)}",
             f"{a} against {b} alone, with the difference in best validation accuracy "
             f"({plots.band_text(m[m['variant'].isin([a, b])])}).")
    if len(w) and w["variant"].nunique() >= 2:
        keep(plots.weight_histograms(w, study=study.name, colors=colors), "weights",
             "Final weights of every variant, all layers and seeds pooled; the legend gives the "
             "fraction of weights with |w| < 0.001.")
    return made


def _marks_note(metrics, trials) -> str:
    diverged = diverged_trials(metrics, trials)
    flat = did_not_learn_trials(metrics, trials) - diverged
    notes = []
    if diverged:
        notes.append("A red x marks the last finite value of a trial that diverged.")
    if flat:
        notes.append(f"A dark ring marks a trial that did not learn: it ended at chance accuracy "
                     f"({CHANCE_ACC:g} for 10 classes, dotted line).")
    return "".join(" " + n for n in notes)


def _epoch0_note(metrics) -> str:
    off = [v for v in (plots.epoch0_off_scale(metrics, k) for k in ("train_loss", "val_loss"))
           if v is not None]
    if not off:
        return ""
    return (f" The loss axes start at epoch 1: at epoch 0, before any training, the network "
            f"evaluates with BatchNorm's initial running statistics and its loss is {max(off):.1f} "
            f"nats, which would flatten every trained epoch; the panel titles give that value.")
