"""Lab 2: Swish (x * sigmoid(x)) instead of ReLU, "with BN and a learning rate of 0.1" as the
course report trained it (0.7258), on augmented data; ReLU at the same settings beside it."""
from raylab import Claim, Study, grid

STUDY = Study(
    "lab2_swish",
    base=dict(model="simplenn", epochs=30, lr=0.1, augment=True, pad="mean", batchnorm=True),
    variants=grid(activation=["relu", "swish"]),
    reported={"swish": 0.7258}, reported_epochs=30,
    pairs=[("relu", "swish")],
    claims=[Claim("Swish beats ReLU (BN, lr 0.1)", "greater", "swish", "relu", reported="0.7258")],
)

if __name__ == "__main__":
    from raylab.cli import run_job
    raise SystemExit(run_job(STUDY))
