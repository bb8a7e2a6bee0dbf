"""Lab 2: random crop (padding 4) + horizontal flip. Course report: 0.7122."""
from raylab import Study, variant

STUDY = Study(
    "lab2_augment",
    base=dict(model="simplenn", epochs=30, lr=0.01),
    variants=[variant("baseline"), variant("augment", augment=True)],
)

if __name__ == "__main__":
    from raylab.cli import run_job
    raise SystemExit(run_job(STUDY))
