"""Lab 3: ResNet-20 (He et al. 2016, option A), lr 0.1 x0.1 every 50 epochs, 200 epochs,
weight decay 1e-4, augmentation. Course report: 0.924."""
from raylab import Claim, Study, variant

STUDY = Study(
    "lab3_resnet20",
    base=dict(model="resnet20", shortcut="A", epochs=200, lr=0.1, momentum=0.9, weight_decay=1e-4,
              schedule="step", step_size=50, gamma=0.1, augment=True, pad="mean"),
    variants=[variant("resnet20")],
    reported={"resnet20": 0.924}, reported_epochs=200,
    claims=[Claim("ResNet-20 reaches 0.924", "at_least", "resnet20", value=0.924, margin=0.01,
                  reported="0.924")],
)

if __name__ == "__main__":
    from raylab.cli import run_job
    raise SystemExit(run_job(STUDY))
