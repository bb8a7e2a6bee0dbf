"""Lab 2: learning-rate sweep of SimpleNN; lr=1 diverges, which the sweep records."""
from raylab import Study, grid

STUDY = Study(
    "lab2_lr_sweep",
    base=dict(model="simplenn", epochs=30),
    variants=grid(lr=[1.0, 0.1, 0.05, 0.01, 0.005, 0.001]),
)

if __name__ == "__main__":
    from raylab.cli import run_job
    raise SystemExit(run_job(STUDY))
