"""Lab 3: ResNet-20 (He et al. 2016, option A), lr 0.1 x0.1 every 50 epochs, 200 epochs,
weight decay 1e-4, augmentation. Course report: 0.924."""
from raylab import Study, variant

STUDY = Study(
    "lab3_resnet20",
    base=dict(model="resnet20", shortcut="A", epochs=200, lr=0.1, momentum=0.9, weight_decay=1e-4,
              schedule="step", step_size=50, gamma=0.1, augment=True),
    variants=[variant("resnet20")],
)

if __name__ == "__main__":
    from raylab.cli import run_job
    raise SystemExit(run_job(STUDY))
