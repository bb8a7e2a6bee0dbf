"""Lab 2: Swish (x * sigmoid(x)) instead of ReLU, with BN and augmentation. Report: 0.7258."""
from raylab import Study, grid

STUDY = Study(
    "lab2_swish",
    base=dict(model="simplenn", epochs=30, lr=0.01, augment=True, batchnorm=True),
    variants=grid(activation=["relu", "swish"]),
)

if __name__ == "__main__":
    from raylab.cli import run_job
    raise SystemExit(run_job(STUDY))
