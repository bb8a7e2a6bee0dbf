"""Lab 2: L2 (weight decay) sweep of SimpleNN."""
from raylab import Study, grid

STUDY = Study(
    "lab2_l2_sweep",
    base=dict(model="simplenn", epochs=30, lr=0.01),
    variants=grid(weight_decay=[1e-2, 1e-3, 1e-4, 1e-5, 0.0]),
)

if __name__ == "__main__":
    from raylab.cli import run_job
    raise SystemExit(run_job(STUDY))
