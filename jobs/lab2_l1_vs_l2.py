"""Lab 2: L1 vs L2 regularisation; compare final weight histograms (weights.parquet)."""
from raylab import Claim, Study, variant

STUDY = Study(
    "lab2_l1_vs_l2",
    base=dict(model="simplenn", epochs=30, lr=0.01),
    variants=[variant("l2", weight_decay=1e-4, l1=0.0),
              variant("l1", weight_decay=0.0, l1=1e-5),
              variant("none", weight_decay=0.0, l1=0.0)],
    pairs=[("l2", "l1")],
    claims=[Claim("L1 (1e-5) leaves more weights near 0 than L2 (1e-4): fraction |w| < 1e-3", "greater",
                  "l1", "l2", metric="near_zero", reported="more weights near 0")],
)

if __name__ == "__main__":
    from raylab.cli import run_job
    raise SystemExit(run_job(STUDY))
