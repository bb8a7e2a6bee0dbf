"""Search spaces: Tune distributions in a Study, the search algorithm, and sampled trials' names.

    STUDY = Study("lr_wd_search", num_samples=24,
                  base=dict(epochs=15, lr=loguniform(1e-3, 0.3), weight_decay=loguniform(1e-6, 1e-2)))

A config value may be a distribution (`loguniform`, `uniform`, `choice`,
`randint`, or the same written as text, `--set lr='loguniform(1e-3, 0.3)'`).
Every variant-seed pair of such a study is sampled `num_samples` times, by
random search or Optuna's TPE (`--search optuna`). A sampled trial's variant
is its sampled values, `lr=0.0123+wd=3.1e-05`; its trial id adds the seed and
Tune's sample number, `..._s0_n3`, which Tune keeps across a resume
(raylab/sweep/spec.py).
This module is plain data and imports no Ray; the Tune side (distributions as
Tune domains, the search algorithm, trial names) is raylab/sweep/searcher.py.

The sampled values travel under the Tune config key `sampled`, apart from the
fixed `spec`, so a search algorithm (or PBT) sees only what it may change;
raylab/sweep/spec.py merges them back into the one config a trial trains with.
"""
from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass
from typing import Any

from raylab.errors import ConfigError

KINDS = ("loguniform", "uniform", "choice", "randint")
_WRITTEN = re.compile(r"^\s*([A-Za-z_]\w*)\s*\((.*)\)\s*$", re.S)


@dataclass(frozen=True)
class Dist:
    """One Tune distribution, kept as plain data so job files need no Ray import."""
    kind: str
    args: tuple

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"unknown distribution '{self.kind}': use {', '.join(KINDS)}")
        if self.kind == "choice":
            if len(self.args) == 0:
                raise ConfigError("choice() needs at least one value, e.g. choice([64, 128])")
            return
        if len(self.args) != 2 or not all(isinstance(a, (int, float)) and not isinstance(a, bool)
                                          and math.isfinite(a) for a in self.args):
            raise ConfigError(f"{self.kind} takes two numbers (low, high), got {self}")
        low, high = self.args
        if not low < high:
            raise ConfigError(f"{self}: low must be below high")
        if self.kind == "loguniform" and low <= 0:
            raise ConfigError(f"{self}: loguniform needs low > 0")
        if self.kind == "randint" and not (float(low).is_integer() and float(high).is_integer()):
            raise ConfigError(f"{self}: randint takes integers")

    def __str__(self) -> str:
        return f"{self.kind}({', '.join(map(repr, self.args))})"

    __repr__ = __str__

    def corners(self) -> list:
        """Values that bound what this can draw: each is checked against the config field."""
        if self.kind == "choice":
            return list(self.args)
        low, high = self.args
        return [int(low), int(high) - 1] if self.kind == "randint" else [low, high]

    @property
    def log_scale(self) -> bool:
        return self.kind == "loguniform"


def loguniform(low: float, high: float) -> Dist:
    """Uniform in log space: lr, weight decay."""
    return Dist("loguniform", (low, high))


def uniform(low: float, high: float) -> Dist:
    return Dist("uniform", (low, high))


def choice(values) -> Dist:
    return Dist("choice", tuple(values))


def randint(low: int, high: int) -> Dist:
    """An integer in [low, high): high is excluded, as in Tune and numpy."""
    return Dist("randint", (low, high))


def as_dist(key: str, value: Any) -> Dist | None:
    """A distribution given as an object or as text like 'loguniform(1e-4, 0.1)'; else None."""
    if isinstance(value, Dist):
        return value
    if _is_tune_domain(value):
        raise ConfigError(f"{key}: give raylab's {', '.join(KINDS)} (from raylab import loguniform), "
                          f"not a Tune object ({type(value).__name__})")
    if not isinstance(value, str):
        return None
    match = _WRITTEN.match(value)
    if not match:
        return None
    kind, body = match.groups()
    if kind not in KINDS:
        raise ConfigError(f"{key}: unknown distribution '{kind}': use {', '.join(KINDS)}, "
                          "e.g. lr=loguniform(1e-4, 0.1)")
    try:
        args = ast.literal_eval(f"({body},)") if body.strip() else ()
    except (ValueError, SyntaxError):
        raise ConfigError(f"{key}: cannot read the arguments of {value!r}: numbers or quoted strings") from None
    if kind == "choice" and len(args) == 1 and isinstance(args[0], (list, tuple)):
        args = tuple(args[0])
    return Dist(kind, tuple(args))


def _is_tune_domain(value: Any) -> bool:
    import sys
    sample = sys.modules.get("ray.tune.search.sample")  # only if Ray is loaded already
    return sample is not None and isinstance(value, sample.Domain)


def split(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Dist]]:
    """Fixed config values and the distributions among them (field -> Dist)."""
    fixed, space = {}, {}
    for key, value in values.items():
        dist = as_dist(key, value)
        if dist is None:
            fixed[key] = value
        else:
            space[key.replace("-", "_")] = dist
    return fixed, space


def check_space(config: dict[str, Any], space: dict[str, Dist]) -> None:
    """Each searched field exists and each bound of its distribution is a valid value there,
    so a typo or an impossible range fails before Ray starts, not in trial 17."""
    from raylab.declare.config import TrialConfig

    for key, dist in space.items():
        for value in dist.corners():
            try:
                TrialConfig.from_dict({**config, key: value})
            except ConfigError as exc:
                raise ConfigError(f"search over {key} = {dist}: {exc}") from None
