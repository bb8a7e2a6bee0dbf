"""Lab 2, Lab 2 reading: L2 (weight decay) sweep on the augment + BN pipeline (mean-colour padding)."""
from raylab import Claim, Study, grid

STUDY = Study(
    "lab2_l2_sweep_pipeline",
    base=dict(model="simplenn", epochs=30, lr=0.01, augment=True, pad="mean", batchnorm=True),
    variants=grid(weight_decay=[1e-2, 1e-3, 1e-4, 1e-5, 0.0]),
    claims=[Claim("L2 1e-5 is best (Lab 2 pipeline)", "best", "wd=1e-05", reported="1e-5 best"),
            Claim("no L2 is slightly worse than 1e-5 (Lab 2 pipeline)", "greater", "wd=1e-05", "wd=0",
                  reported="slightly worse")],
)

if __name__ == "__main__":
    from raylab.cli import run_job
    raise SystemExit(run_job(STUDY))
