"""The whole course report in one sweep: Lab 1, Lab 2 and Lab 3 studies side by side.
Each row keeps its own study name, so `raylab report` splits them again."""
import importlib.util
from pathlib import Path

from raylab import combine

HERE = Path(__file__).resolve().parent
PARTS = ["lab1_simplenn", "lab2_augment", "lab2_batchnorm", "lab2_swish", "lab2_lr_sweep",
         "lab2_lr_sweep_pipeline", "lab2_l2_sweep", "lab2_l2_sweep_pipeline", "lab2_l1_vs_l2",
         "lab2_l1_strength", "lab2_vflip", "lab2_depthwise", "lab3_resnet20"]


def _study(name):
    spec = importlib.util.spec_from_file_location(f"raylab_jobs_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.STUDY


STUDY = combine("assignment", [_study(name) for name in PARTS])

if __name__ == "__main__":
    from raylab.cli import run_job
    raise SystemExit(run_job(STUDY))
