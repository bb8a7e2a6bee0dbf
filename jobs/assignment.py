"""The whole course report in one sweep: Lab 1, Lab 2 and Lab 3 studies side by side.
Each row keeps its own study name, so `raylab report` splits them again."""
from raylab import combine
from raylab.declare.job_files import sibling_study

PARTS = ["lab1_simplenn", "lab2_augment", "lab2_batchnorm", "lab2_swish", "lab2_lr_sweep",
         "lab2_lr_sweep_pipeline", "lab2_l2_sweep", "lab2_l2_sweep_pipeline", "lab2_l1_vs_l2",
         "lab2_l1_strength", "lab2_vflip", "lab2_depthwise", "lab3_resnet20"]

# Found next to this file, or in ./jobs, or in the checkout raylab is installed
# from: `ray submit` uploads this one file alone.
STUDY = combine("assignment", [sibling_study(name, __file__) for name in PARTS])

if __name__ == "__main__":
    from raylab.cli import run_job
    raise SystemExit(run_job(STUDY))
