"""raylab: CIFAR-10 CNN studies as Ray Tune sweeps of one torch training function.

Kept import-light on purpose: `raylab.results` and the `analysis` package are
used in notebooks without torch or Ray, so nothing heavy is imported here.
"""
__version__ = "0.1.0"
__all__ = ["Claim", "Study", "TrialConfig", "choice", "combine", "grid", "loguniform", "model", "randint",
           "register_data", "uniform", "variant"]


def __getattr__(name: str):
    # Job files write `from raylab import Study, grid, variant`; resolve lazily.
    if name in ("Study", "grid", "variant", "combine"):
        from raylab.declare import study
        return getattr(study, name)
    if name == "Claim":
        from raylab.declare.claim import Claim
        return Claim
    if name in ("loguniform", "uniform", "choice", "randint"):  # search-space distributions
        from raylab.declare import space
        return getattr(space, name)
    if name == "register_data":  # a data set built in Python: data="arrays:NAME"
        from raylab.data.arrays import register_data
        return register_data
    if name == "model":  # @raylab.model("mynet"): a job file's own network
        from raylab.declare.registry import model
        return model
    if name == "TrialConfig":
        from raylab.declare.config import TrialConfig
        return TrialConfig
    raise AttributeError(name)
