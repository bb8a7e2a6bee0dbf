"""Lab 2 (c), Lab 2 reading: the learning-rate sweep on the pipeline the report had built by then
(augmentation with mean-colour padding + BatchNorm, ReLU). lab2_lr_sweep.py sweeps the Lab 1 SimpleNN."""
from raylab import Claim, Study, grid

STUDY = Study(
    "lab2_lr_sweep_pipeline",
    base=dict(model="simplenn", epochs=30, augment=True, pad="mean", batchnorm=True),
    variants=grid(lr=[1.0, 0.1, 0.05, 0.01, 0.005, 0.001]),
    claims=[Claim("lr 0.05 is best (Lab 2 pipeline: augment + BN)", "best", "lr=0.05", reported="0.05 best"),
            Claim("lr 1 does not converge (Lab 2 pipeline)", "below", "lr=1", value=0.2,
                  reported="does not converge")],
)

if __name__ == "__main__":
    from raylab.cli import run_job
    raise SystemExit(run_job(STUDY))
