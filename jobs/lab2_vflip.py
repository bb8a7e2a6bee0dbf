"""Lab 2 true/false "vertical flips hurt on CIFAR-10": the Lab 2 pipeline (augment + BN, lr 0.01)
with and without a random vertical flip (p = 0.5)."""
from raylab import Claim, Study, variant

STUDY = Study(
    "lab2_vflip",
    base=dict(model="simplenn", epochs=30, lr=0.01, augment=True, pad="mean", batchnorm=True),
    variants=[variant("augment"), variant("augment+vflip", vflip=True)],
    pairs=[("augment", "augment+vflip")],
    claims=[Claim("vertical flips hurt on CIFAR-10", "greater", "augment", "augment+vflip", reported="true")],
)

if __name__ == "__main__":
    from raylab.cli import run_job
    raise SystemExit(run_job(STUDY))
