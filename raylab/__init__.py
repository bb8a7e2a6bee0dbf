"""raylab: CIFAR-10 CNN studies as Ray Tune sweeps of one torch training function.

Kept import-light on purpose: `raylab.results` and the `analysis` package are
used in notebooks without torch or Ray, so nothing heavy is imported here.
"""
__version__ = "0.1.0"


def __getattr__(name: str):
    # Job files write `from raylab import Study, grid, variant`; resolve lazily.
    if name in ("Study", "grid", "variant", "combine"):
        from raylab import study
        return getattr(study, name)
    if name == "Claim":
        from raylab.claim import Claim
        return Claim
    if name == "TrialConfig":
        from raylab.config import TrialConfig
        return TrialConfig
    raise AttributeError(name)
