"""A claim of the course report, declared next to the study that tests it.

    STUDY = Study("lab2_swish", ..., variants=grid(activation=["relu", "swish"]),
                  claims=[Claim("Swish beats ReLU (BN, lr 0.1)", "greater", "swish", "relu",
                                reported="0.7258")])

`analysis.claims` reads the claims from study.json and gives each a verdict
from the Parquet tables: reproduced, contradicted, or inconclusive at n seeds.
Torch-free, like `raylab.results`: analysis and notebooks import it.

Kinds (diff = metric of `a` minus metric of `b`, mean over seeds):
    greater      a > b: reproduced when the 95% CI of diff is above 0, contradicted below 0
    not_greater  a does not beat b: reproduced when the CI is below `margin`
                 (any gain smaller than that), contradicted when above 0
    best         a beats every other variant of `among` (default: all of the study's)
    below        a's mean is under `value` (e.g. "lr 1 does not converge": val acc < 0.2)
    at_least     a's mean reaches `value` (e.g. ResNet-20's 0.924), less `margin`
    ratio        mean(a) / mean(b) is `value` within a factor of 1 +- `margin` (deterministic metrics: macs)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from raylab.errors import UserError

CLAIM_KINDS = ("greater", "not_greater", "best", "below", "at_least", "ratio")
# trials columns, or a per-trial number analysis.claims derives from the tables
CLAIM_METRICS = ("best_val_acc", "final_val_acc", "overfit_gap", "near_zero", "macs", "n_params")


class ClaimError(UserError):
    """A claim that cannot be checked as declared; the message names the claim and the fix."""


@dataclass(frozen=True)
class Claim:
    text: str                       # the course report's statement, as a reader would quote it
    kind: str                       # one of CLAIM_KINDS
    a: str                          # the variant the claim is about (this study's)
    b: str = ""                     # the variant it is compared with (greater, not_greater, ratio)
    reported: str = ""              # the report's number or words, shown as given
    metric: str = "best_val_acc"    # one of CLAIM_METRICS; overfit_gap = train acc - val acc at the last epoch
    value: float | None = None      # below / at_least: the threshold; ratio: the expected ratio
    margin: float = 0.0             # not_greater: a gain smaller than this is "no help"; ratio: relative tolerance
    among: tuple[str, ...] = ()     # best: the variants a must beat (default: every other variant)
    study: str = field(default="", compare=False)  # set by the Study that declares it
    # set by the Study: variant -> its full config less run fields (epochs kept); analysis takes every
    # row with that config as a sample, whichever folder or study wrote it
    configs: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        where = f"claim '{self.text}'"
        if self.kind not in CLAIM_KINDS:
            raise ClaimError(f"{where}: kind '{self.kind}' is not one of: {', '.join(CLAIM_KINDS)}")
        if self.metric not in CLAIM_METRICS:
            raise ClaimError(f"{where}: metric '{self.metric}' is not one of: {', '.join(CLAIM_METRICS)}")
        if self.kind in ("greater", "not_greater", "ratio") and not self.b:
            raise ClaimError(f"{where}: kind '{self.kind}' compares two variants: give b=")
        if self.kind in ("below", "at_least", "ratio") and self.value is None:
            raise ClaimError(f"{where}: kind '{self.kind}' needs value= (the threshold or ratio)")
        if self.margin < 0:
            raise ClaimError(f"{where}: margin must be >= 0, got {self.margin}")

    def variants(self) -> list[str]:
        """Every variant name the claim reads, `a` first."""
        return list(dict.fromkeys([self.a, *([self.b] if self.b else []), *self.among]))

    def to_dict(self) -> dict:
        out = asdict(self)
        out["among"] = list(self.among)
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "Claim":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        known["among"] = tuple(known.get("among") or ())
        return cls(**known)
