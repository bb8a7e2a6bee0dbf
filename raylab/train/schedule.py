"""Learning-rate schedules as one pure function of the epoch.

Because the rate depends only on (config, epoch), the "scheduler state" in a
checkpoint is the epoch number itself: a resumed run cannot drift from the
uninterrupted one.
"""
from __future__ import annotations

import math

from raylab.declare.config import TrialConfig


def lr_at(cfg: TrialConfig, epoch: int) -> float:
    """Learning rate used during `epoch` (1-based), as torch's StepLR/MultiStepLR
    stepped once per epoch would give: step 10 / gamma 0.9 means epochs 1-10 at
    lr, 11-20 at 0.9 lr, ... Warm-up ramps linearly from lr/10 over the first
    `warmup_epochs` epochs and the schedule starts after it."""
    done = epoch - 1  # epochs completed before this one
    warm = cfg.warmup_epochs
    if done < warm:
        return cfg.lr * (0.1 + 0.9 * done / warm)
    done -= warm
    if cfg.schedule == "step":
        return cfg.lr * cfg.gamma ** (done // cfg.step_size)
    if cfg.schedule == "multistep":
        return cfg.lr * cfg.gamma ** sum(m - warm <= done for m in cfg.milestones)
    if cfg.schedule == "cosine":
        span = max(cfg.epochs - warm, 1)
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * done / span))
    return cfg.lr
