"""Alias kept for study folders written before raylab/sweep/: their tune/tuner.pkl
names `raylab.tune.raylab_trial`, which `raylab resume` must still find."""
from raylab.sweep.trainable import raylab_trial  # noqa: F401
