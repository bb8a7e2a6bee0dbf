"""Optuna's TPE over lr x weight decay for SimpleNN-BN, with ASHA stopping weak trials early:
24 samples of 15 epochs. Each trial is named by its sampled values (lr=0.0123+wd=3.1e-05_s0_n7);
`raylab report results/search_lr_wd` plots accuracy against both and lists the top trials."""
from raylab import Study, loguniform

STUDY = Study(
    "search_lr_wd",
    base=dict(model="simplenn", batchnorm=True, augment=True, epochs=15,
              lr=loguniform(1e-3, 0.5), weight_decay=loguniform(1e-6, 1e-2)),
    num_samples=24, search="optuna", scheduler="asha",
)

if __name__ == "__main__":
    from raylab.cli import run_job
    raise SystemExit(run_job(STUDY))
