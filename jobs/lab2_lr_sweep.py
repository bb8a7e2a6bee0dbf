"""Lab 2 (c), Lab 1 reading: learning-rate sweep of the plain Lab 1 SimpleNN (no augmentation, no BN).
lab2_lr_sweep_pipeline.py runs the other reading; the report says "0.05 best" without naming the model."""
from raylab import Claim, Study, grid

STUDY = Study(
    "lab2_lr_sweep",
    base=dict(model="simplenn", epochs=30),
    variants=grid(lr=[1.0, 0.1, 0.05, 0.01, 0.005, 0.001]),
    claims=[Claim("lr 0.05 is best (Lab 1 SimpleNN)", "best", "lr=0.05", reported="0.05 best"),
            Claim("lr 1 does not converge (Lab 1 SimpleNN)", "below", "lr=1", value=0.2,
                  reported="does not converge")],
)

if __name__ == "__main__":
    from raylab.cli import run_job
    raise SystemExit(run_job(STUDY))
