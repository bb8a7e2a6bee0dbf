"""Lab 1: SimpleNN baseline (SGD lr 0.01, 30 epochs) and step decay every 10 epochs x0.9.
Course report: best val acc 0.6606 (baseline), 0.6576 (step decay)."""
from raylab import Study, variant

STUDY = Study(
    "lab1_simplenn",
    base=dict(model="simplenn", epochs=30, lr=0.01),
    variants=[variant("baseline"),
              variant("step-decay", schedule="step", step_size=10, gamma=0.9)],
)

if __name__ == "__main__":
    from raylab.cli import run_job
    raise SystemExit(run_job(STUDY))
