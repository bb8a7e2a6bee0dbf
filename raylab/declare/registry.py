"""Models declared in a job file, next to the built-in ones:

    @raylab.model("mynet", gpu=0.5)      # gpu: its default share of a GPU (default: a whole one)
    def mynet(num_classes, in_channels, width: int = 32):
        return nn.Sequential(...)

    STUDY = Study("mine", base=dict(model="mynet", model_options=dict(width=64)))

The builder (a function or an nn.Module class) takes any of the standard
options (num_classes, in_channels, batchnorm, activation, shortcut) plus its
own, which a config gives as `model_options` and which are checked like every
config field: an unknown name, a wrong type or a missing value is a one-line
ConfigError before Ray starts.

Trials run in other processes and on other nodes, where the job file is not
importable: the sweep ships each user model *by value* (cloudpickle) in the
trial spec, which Tune also keeps for a resume, and installs it in the worker
before the config is read (raylab/sweep/user_models.py). This module imports neither
Ray nor torch: config.py checks model names and options against it.
"""
from __future__ import annotations

import difflib
import inspect
import json
import sys
from dataclasses import dataclass
from typing import Any, Callable

from raylab.errors import ConfigError

# The built-in models (models.py builds each; config.py validates names against these and USER),
# each with the share of a GPU one of its trials takes unless --gpus-per-trial says otherwise.
# SimpleNN runs ~4 to a GPU (it is input-bound, not FLOP-bound); a ResNet wants a whole GPU.
BUILTIN = {"simplenn": 0.25, "simplenn_dw": 0.25, "resnet20": 1.0, "resnet32": 1.0, "resnet44": 1.0,
           "resnet56": 1.0, "resnet110": 1.0}
STANDARD = ("num_classes", "in_channels", "batchnorm", "activation", "shortcut")


@dataclass(frozen=True)
class UserModel:
    name: str
    builder: Callable[..., Any]
    gpu: float = 1.0  # its trials' default share of a GPU: a whole one, unless the job file says less

    @property
    def parameters(self) -> dict[str, inspect.Parameter]:
        return dict(inspect.signature(self.builder).parameters)

    @property
    def options(self) -> dict[str, inspect.Parameter]:
        """The builder's own options: what a config's model_options may set."""
        return {n: p for n, p in self.parameters.items() if n not in STANDARD
                and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}

    def build(self, options: dict[str, Any], **standard: Any):
        params = self.parameters
        takes_all = any(p.kind == p.VAR_KEYWORD for p in params.values())
        kwargs = {k: v for k, v in standard.items() if takes_all or k in params}
        return self.builder(**kwargs, **options)


USER: dict[str, UserModel] = {}
BY_VALUE: set[str] = set()  # modules whose code pickles travel with (sweep/user_models.py registers them)


def model(name: str, *, gpu: float = 1.0):
    """Decorator: register a function or nn.Module class as model `name` for this run's trials;
    `gpu`: the share of a GPU each of its trials takes by default (0.25: four trials to a GPU)."""
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "_-" for c in name):
        raise ConfigError(f"model name {name!r} must be letters, digits, '_' or '-'")
    number = isinstance(gpu, (int, float)) and not isinstance(gpu, bool)
    if not (number and 0 < gpu < float("inf") and (gpu <= 1 or float(gpu).is_integer())):
        raise ConfigError(f"@raylab.model('{name}', gpu={gpu!r}): the GPU share must be a fraction in (0, 1] "
                          "or a whole number of GPUs")

    def register(builder):
        if name in BUILTIN:
            raise ConfigError(f"model '{name}' is built in: give yours another name")
        if not callable(builder):
            raise ConfigError(f"@raylab.model('{name}') decorates a function or nn.Module class")
        _by_value(builder)
        USER[name] = UserModel(name, builder, float(gpu))
        return builder

    return register


def _by_value(builder) -> None:
    """A builder from a module workers could not import (a job file's helper next to it):
    have cloudpickle carry its code. Job files themselves run as `__main__` or through
    runpy and are pickled by value anyway."""
    module = sys.modules.get(getattr(builder, "__module__", ""), None)
    if module is None or module.__name__ == "__main__":
        return
    origin = getattr(module, "__file__", "") or ""
    if "site-packages" in origin or module.__name__.split(".")[0] in ("raylab", "torch", "torchvision"):
        return
    BY_VALUE.add(module.__name__)


def gpu_share(name: str) -> float:
    """The share of a GPU a trial of model `name` takes by default."""
    return BUILTIN[name] if name in BUILTIN else USER[name].gpu if name in USER else 1.0


# ------------------------------------------------------------------ options
def parse_options(value: Any) -> str:
    """model_options as stored in a config: canonical JSON text (a readable Parquet column)."""
    if isinstance(value, str):
        try:
            value = json.loads(value or "{}")
        except json.JSONDecodeError:
            raise ConfigError(f"model_options must be a dict or JSON object, got {value!r}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"model_options must be a dict, e.g. dict(width=64), got {value!r}")
    return json.dumps(value, sort_keys=True)


def check_options(model_name: str, options_json: str) -> None:
    """Every option named is one the model takes, of the type its default or annotation says."""
    options = json.loads(options_json)
    user = USER.get(model_name)
    if user is None:
        if options:
            raise ConfigError(f"model '{model_name}' is built in and takes no model_options "
                              f"(got {', '.join(options)})")
        return
    known = user.options
    for key, value in options.items():
        if key not in known:
            close = difflib.get_close_matches(key, list(known), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"model '{model_name}' has no option '{key}'{hint}: it takes "
                              f"{', '.join(known) or 'none'}")
        _check_type(model_name, known[key], value)
    missing = [n for n, p in known.items() if p.default is p.empty and n not in options]
    if missing:
        raise ConfigError(f"model '{model_name}' needs model_options {', '.join(missing)}")


def _check_type(model_name: str, param: inspect.Parameter, value: Any) -> None:
    want = param.annotation if param.annotation is not param.empty else (
        type(param.default) if param.default not in (param.empty, None) else None)
    if isinstance(want, str):  # `from __future__ import annotations` in the job file
        want = {"int": int, "float": float, "bool": bool, "str": str}.get(want)
    if want not in (int, float, bool, str):
        return
    ok = (isinstance(value, want) and not (want is int and isinstance(value, bool))) or (
        want is float and isinstance(value, int) and not isinstance(value, bool))
    if not ok:
        raise ConfigError(f"model '{model_name}' option '{param.name}' must be {want.__name__}, got {value!r}")


def describe_options(user: UserModel) -> str:
    """`width: int = 32, depth: int = 2` for `raylab models`."""
    parts = []
    for n, p in user.options.items():
        kind = p.annotation if isinstance(p.annotation, str) else getattr(p.annotation, "__name__", "")
        parts.append(n + (f": {kind}" if p.annotation is not p.empty else "")
                     + (f" = {p.default!r}" if p.default is not p.empty else ""))
    return ", ".join(parts) or "none"


def check_logits(out, num_classes: int, model_name: str) -> None:
    """A model's output on a batch of one must be (1, num_classes) logits."""
    shape = tuple(getattr(out, "shape", ()))
    if shape != (1, num_classes):
        raise ConfigError(f"model '{model_name}' returned {type(out).__name__} of shape {shape} for one image; "
                          f"it must return logits of shape (batch, {num_classes})")
