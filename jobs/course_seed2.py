"""Seed 2 of the non-augmented Lab 1/Lab 2 configs, whose seeds 0 and 1 are in
docs/results/assignment (the padding does not touch them), so each comparison has 3 seeds."""
import importlib.util
from pathlib import Path

from raylab import combine

HERE = Path(__file__).resolve().parent
PARTS = ["lab1_simplenn", "lab2_lr_sweep", "lab2_l2_sweep", "lab2_l1_vs_l2"]


def _study(name):
    spec = importlib.util.spec_from_file_location(f"raylab_jobs_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.STUDY.with_options(seeds=[2])


STUDY = combine("course_seed2", [_study(name) for name in PARTS])

if __name__ == "__main__":
    from raylab.cli import run_job
    raise SystemExit(run_job(STUDY))
