"""Lab 2: BatchNorm after each conv at lr 0.01 (course report: 0.7144), and BN vs no BN at lr 0.1.
All variants train on augmented data (mean-colour padding), as the report's BN runs did."""
from raylab import Claim, Study, variant

STUDY = Study(
    "lab2_batchnorm",
    base=dict(model="simplenn", epochs=30, lr=0.01, augment=True, pad="mean"),
    variants=[variant("baseline"), variant("bn", batchnorm=True),
              variant("lr=0.1", lr=0.1), variant("bn+lr=0.1", batchnorm=True, lr=0.1)],
    reported={"bn": 0.7144}, reported_epochs=30,
    pairs=[("lr=0.1", "bn+lr=0.1"), ("baseline", "bn")],
    claims=[Claim("BN improves a little", "greater", "bn", "baseline", reported="0.7144 vs 0.7122"),
            Claim("BN makes lr 0.1 trainable", "greater", "bn+lr=0.1", "lr=0.1", reported="trains with BN")],
)

if __name__ == "__main__":
    from raylab.cli import run_job
    raise SystemExit(run_job(STUDY))
