"""The course report read closely (issue 12): every study whose config is new since the 2-seed
reproduction in docs/results/assignment (mean-colour padding, Swish at lr 0.1, the Lab 2-pipeline
sweeps, vflip, L1 strengths, depthwise), most important first: with --max-concurrent 1 Tune runs
trials in this order. Variants whose configs the earlier run already has are left out with --skip
(see scripts/fidelity_runs.sh); jobs/course_seed2.py tops those up with a third seed."""
import importlib.util
from pathlib import Path

from raylab import combine

HERE = Path(__file__).resolve().parent
PARTS = ["lab2_swish", "lab2_lr_sweep_pipeline", "lab2_batchnorm", "lab2_augment",
         "lab2_l2_sweep_pipeline", "lab2_vflip", "lab2_l1_strength", "lab2_depthwise"]


def _study(name):
    spec = importlib.util.spec_from_file_location(f"raylab_jobs_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.STUDY.with_options(seeds=3)


STUDY = combine("course_fidelity", [_study(name) for name in PARTS])

if __name__ == "__main__":
    from raylab.cli import run_job
    raise SystemExit(run_job(STUDY))
