"""Alias kept for study folders written before raylab/sweep/: their tune/tuner.pkl
names `raylab.tune.raylab_trial` and `raylab.tune._trial_name`, which `raylab resume`
must still find."""
from raylab.sweep.driver import raylab_trial, trial_name as _trial_name  # noqa: F401
