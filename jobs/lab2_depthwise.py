"""Lab 2 true/false "3x3 depthwise convolutions cut MACs about 9x": SimpleNN against its
depthwise-separable variant (simplenn_dw), the Lab 1 settings; MACs per image from trials.parquet."""
from raylab import Claim, Study, variant

STUDY = Study(
    "lab2_depthwise",
    base=dict(model="simplenn", epochs=30, lr=0.01),
    variants=[variant("conv"), variant("depthwise", model="simplenn_dw")],
    claims=[Claim("depthwise-separable convs cut MACs about 9x (whole SimpleNN)", "ratio", "conv", "depthwise",
                  metric="macs", value=9.0, margin=0.25, reported="about 9x")],
)

if __name__ == "__main__":
    from raylab.cli import run_job
    raise SystemExit(run_job(STUDY))
