"""Quickstart: a tiny learning-rate sweep of SimpleNN, minutes on a laptop CPU."""
from raylab import Study, grid

STUDY = Study(
    "quickstart",
    base=dict(model="simplenn", epochs=3),
    variants=grid(lr=[0.1, 0.05, 0.01]),
    description="3 learning rates x 3 epochs of SimpleNN",
)

if __name__ == "__main__":
    from raylab.cli import run_job
    raise SystemExit(run_job(STUDY))
