"""Population Based Training of lr for SimpleNN-BN: 8 trials start at random lrs; every 2 epochs
the worst quarter copy the best quarter's weights and perturb its lr (x0.8 / x1.2 or a fresh draw).
metrics.parquet records each epoch's lr (`lr`, `base_lr`), so the schedule PBT found can be read back."""
from raylab import Study, loguniform

STUDY = Study(
    "pbt_lr",
    base=dict(model="simplenn", batchnorm=True, augment=True, epochs=20, lr=loguniform(1e-3, 0.5)),
    num_samples=8, scheduler="pbt",
)

if __name__ == "__main__":
    from raylab.cli import run_job
    raise SystemExit(run_job(STUDY))
