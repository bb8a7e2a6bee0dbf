"""Logs people already watch, next to the Parquet tables: TensorBoard event files per trial.

`tensorboard --logdir results/<study>/` finds one run per trial under
tune/<trial name>/, with train/val loss and accuracy, lr and images/s by
epoch, and a searched trial's sampled values as hparams. This is Ray Tune's
own TensorBoardX logger; the only change is the step, which is the epoch
rather than Tune's iteration count (that starts over when a trial restarts
from its checkpoint, which would fold a resumed curve back onto itself).
"""
from __future__ import annotations

from ray.tune.logger import TBXLoggerCallback

SKIP = ("history", "weights", "final", "restarts")  # lists of dicts and bookkeeping, not curves


class EpochTensorBoard(TBXLoggerCallback):
    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        if "epoch" not in result:
            return
        scalars = {k: v for k, v in result.items() if k not in SKIP}
        # Epoch 0 (the untrained net) is step 0: Tune uses training_iteration as the step.
        super().log_trial_result(iteration, trial, {**scalars, "timesteps_total": None,
                                                    "training_iteration": int(result["epoch"])})
