"""Whether a trial learned: a run that ends at chance accuracy gets its own mark.

A trial can finish without diverging (finite losses, status "completed") and
still have learned nothing: CIFAR-10 at lr=1 stays at val acc 0.100 with the
loss flat at ln 10 = 2.30 (docs/results, lab2_lr_sweep, both seeds). The
report calls such a trial "did not learn", in its table and its figures.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .load import diverged_trials

# CIFAR-10 has 10 balanced classes: guessing (or one constant class) scores 0.1.
CHANCE_ACC = 0.1
# "At chance": final val acc below chance + 0.05. Guessing on a 5,000-image
# validation split has a std of sqrt(0.1 * 0.9 / 5000) = 0.004, so 0.05 is far
# outside noise, and far below any run that learned (>= 0.48 after 30 epochs in
# docs/results; 0.3 after one epoch of SimpleNN).
CHANCE_MARGIN = 0.05
DID_NOT_LEARN = "did not learn"


def did_not_learn(trials: pd.DataFrame) -> pd.Series:
    """Per trials row: finished (completed or stopped) with its final val acc at chance."""
    status = trials["status"].astype(str)
    final = trials["final_val_acc"].astype(float)
    return status.isin(["completed", "stopped"]) & np.isfinite(final) & (final < CHANCE_ACC + CHANCE_MARGIN)


def did_not_learn_trials(metrics: pd.DataFrame, trials: pd.DataFrame | None = None) -> set[str]:
    """Trial ids that ended at chance: from `trials` when given, else from each trial's last epoch.

    Diverged trials are not counted here (they have their own mark), nor running ones.
    """
    if trials is not None and len(trials):
        return set(trials.loc[did_not_learn(trials), "trial_id"])
    if metrics is None or metrics.empty:
        return set()
    last = metrics.sort_values("epoch").groupby("trial_id").tail(1)
    at_chance = last["val_acc"].astype(float) < CHANCE_ACC + CHANCE_MARGIN
    return set(last.loc[at_chance & (last["epoch"] > 0), "trial_id"]) - diverged_trials(metrics)
