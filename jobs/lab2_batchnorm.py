"""Lab 2: BatchNorm after each conv at lr 0.01 (course report: 0.7144), and BN vs no BN at lr 0.1.
All variants train on augmented data, as the report's BN runs did."""
from raylab import Study, variant

STUDY = Study(
    "lab2_batchnorm",
    base=dict(model="simplenn", epochs=30, lr=0.01, augment=True),
    variants=[variant("baseline"), variant("bn", batchnorm=True),
              variant("lr=0.1", lr=0.1), variant("bn+lr=0.1", batchnorm=True, lr=0.1)],
)

if __name__ == "__main__":
    from raylab.cli import run_job
    raise SystemExit(run_job(STUDY))
