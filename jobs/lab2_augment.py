"""Lab 2: random crop (padding 4) + horizontal flip. Course report: 0.7122.
pad="mean": the report's transform normalises before RandomCrop, so it pads with the mean colour."""
from raylab import Claim, Study, variant

STUDY = Study(
    "lab2_augment",
    base=dict(model="simplenn", epochs=30, lr=0.01),
    variants=[variant("baseline"), variant("augment", augment=True, pad="mean")],
    reported={"augment": 0.7122}, reported_epochs=30,
    pairs=[("baseline", "augment")],
    claims=[Claim("augmentation improves val acc", "greater", "augment", "baseline", reported="0.7122 vs 0.6606"),
            Claim("augmentation reduces overfitting (train - val acc at epoch 30)", "greater", "baseline", "augment",
                  metric="overfit_gap", reported="less overfitting")],
)

if __name__ == "__main__":
    from raylab.cli import run_job
    raise SystemExit(run_job(STUDY))
