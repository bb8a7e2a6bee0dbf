"""What a user writes: a study of variants and seeds, each trial's config, search spaces, models.

    config.py     TrialConfig (every knob of one trial, validated) and SweepOptions (how a sweep runs)
    registry.py   model names: the built-in ones and a job file's own (@raylab.model)
    space.py      search-space distributions (loguniform, choice ...), as plain data
    study.py      Study, grid, variant, combine, select, load_job
    job_files.py  a job file's sibling job files, wherever it runs (ray submit)

Imports neither torch nor Ray: `raylab list`, `--help` and every argument
error answer without them.
"""
from raylab.declare.config import SweepOptions, TrialConfig
from raylab.declare.registry import model
from raylab.declare.space import choice, loguniform, randint, uniform
from raylab.declare.study import Study, combine, grid, load_job, variant

__all__ = ["Study", "SweepOptions", "TrialConfig", "choice", "combine", "grid", "load_job", "loguniform",
           "model", "randint", "uniform", "variant"]
