"""Lab 2 true/false "L1 gives sparser weights": L1 at 1e-5, 1e-4, 1e-3 (no L2) against L2 1e-4,
on the Lab 1 SimpleNN; sparsity = fraction of weights with |w| < 1e-3 (exact: the histograms have edges there)."""
from raylab import Claim, Study, variant

STUDY = Study(
    "lab2_l1_strength",
    base=dict(model="simplenn", epochs=30, lr=0.01, weight_decay=0.0),
    variants=[variant("l2", weight_decay=1e-4), variant("l1=1e-05", l1=1e-5),
              variant("l1=0.0001", l1=1e-4), variant("l1=0.001", l1=1e-3)],
    claims=[Claim("L1 gives sparser weights than L2 (L1 1e-4 vs L2 1e-4)", "greater", "l1=0.0001", "l2",
                  metric="near_zero", reported="true"),
            Claim("L1 gives sparser weights than L2 (L1 1e-3 vs L2 1e-4)", "greater", "l1=0.001", "l2",
                  metric="near_zero", reported="true")],
)

if __name__ == "__main__":
    from raylab.cli import run_job
    raise SystemExit(run_job(STUDY))
