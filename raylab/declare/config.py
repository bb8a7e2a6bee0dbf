"""TrialConfig: every knob of one trial, with the course report's defaults.

One frozen dataclass, one line per field with its unit. `TrialConfig.from_dict`
is the only way user input becomes a config: an unknown key, a wrong type or
an out-of-range value raises ConfigError naming the field, never an assert.
`SweepOptions` holds how a sweep runs (storage, cluster, resources per trial).
The choices of every field are listed here once; models.py builds from them.
Imports neither torch nor Ray, so the CLI answers `list` and `--help` fast.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import math
from dataclasses import dataclass, field, fields
from typing import Any, get_type_hints

from raylab.errors import ConfigError  # noqa: F401  (a kind of UserError; raised here, imported from here)
from raylab.declare.registry import BUILTIN, USER, check_options, parse_options  # model names, no torch

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)  # the report's normalisation
CIFAR_STD = (0.2023, 0.1994, 0.2010)

ACTIVATIONS = ("relu", "swish", "leaky_relu", "gelu", "tanh")
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("none", "step", "multistep", "cosine")
REGULARIZE = ("all", "weights")
DEVICES = ("auto", "cpu", "cuda")
SHORTCUTS = ("A", "B")
PADS = ("zero", "mean")
DATA_SETS = ("cifar100", "svhn", "mnist", "fashionmnist")  # torchvision's files, read by raylab/data/readers.py
SOURCES = f"cifar10, {', '.join(DATA_SETS)}, folder:PATH, arrays:NAME or synthetic[:N]"  # data's forms, for messages
SCHEDULERS = ("fifo", "asha", "pbt")  # how a sweep stops or clones trials (raylab/sweep/driver.py, pbt.py)
SEARCHES = ("random", "optuna")       # how a study's distributions are sampled (raylab/sweep/searcher.py)


def is_dataset_source(source: str) -> bool:
    """One of DATA_SETS, or arrays:NAME (raylab.register_data): the sources whose normalisation
    statistics are their own, not CIFAR-10's (raylab/data/stats.py)."""
    return source in DATA_SETS or (source.startswith("arrays:") and len(source) > len("arrays:"))


@dataclass(frozen=True)
class TrialConfig:
    # --- model
    model: str = "simplenn"            # registry name: simplenn, resnet20/32/44/56/110
    batchnorm: bool = False            # simplenn: BatchNorm after each conv
    activation: str = "relu"           # relu | swish | leaky_relu | gelu | tanh
    shortcut: str = "A"                # resnet: A = zero-padded identity, B = 1x1 projection
    model_options: str = "{}"          # a job file's own model (raylab.declare.registry): its options, as JSON
    # --- data
    data: str = "cifar10"              # one of SOURCES: cifar10 | folder:PATH | synthetic[:N] | ...
    data_root: str = "data"            # where cifar10 lives and decoded caches go
    download: bool = True              # cifar10: fetch through torchvision when missing
    val_holdout: int = 0               # images held out of train for validation; 0 = use the test split
    augment: bool = False              # random crop (padding 4) + horizontal flip, per image
    pad: str = "zero"                  # augment's padding: zero = black pixels (torchvision's usual recipe);
                                       # mean = normalise first, then pad with 0 = the mean colour (the course report)
    vflip: bool = False                # also flip vertically with p = 0.5 (with or without augment)
    mean: tuple[float, ...] = CIFAR_MEAN  # per-channel normalisation, on [0, 1] pixels
    std: tuple[float, ...] = CIFAR_STD
    # --- optimisation
    epochs: int = 30                   # full passes over the training split
    batch_size: int = 128              # images per step (per worker under DDP: global / workers)
    optimizer: str = "sgd"             # sgd | adam
    lr: float = 0.01                   # base learning rate
    momentum: float = 0.9              # sgd momentum (adam: beta1)
    nesterov: bool = False             # sgd only
    weight_decay: float = 1e-4         # L2, applied by the optimiser (coupled, as torch SGD)
    l1: float = 0.0                    # L1 penalty coefficient: loss += l1 * sum|w|
    regularize: str = "all"            # which parameters get L1/L2: all | weights (no biases, no BN)
    schedule: str = "none"             # none | step | multistep | cosine
    step_size: int = 10                # step: epochs between decays
    gamma: float = 0.1                 # step / multistep: lr multiplier at each decay
    milestones: tuple[int, ...] = ()   # multistep: epochs after which lr *= gamma
    warmup_epochs: int = 0             # linear warm-up from lr/10 over this many epochs
    # --- run
    seed: int = 0                      # model init, shuffling and augmentation
    device: str = "auto"               # auto (cuda when present) | cpu | cuda
    threads: int = 0                   # torch CPU threads; 0 = the CPUs this trial was given
    compile: bool = False              # torch.compile the model (CUDA only)
    eval_batch_size: int = 256         # images per evaluation step (1.6x faster than 1000 on 1 CPU thread)
    hist_bins: int = 64                # bins of the final weight histograms
    # Test hook, hidden: no flag, no Parquet column, not part of a variant's name.
    fail_at_epoch: int = field(default=0, metadata={"hidden": True})  # raise once after this epoch; 0 = never

    # ------------------------------------------------------------------ input
    @classmethod
    def from_dict(cls, values: dict[str, Any] | None = None, **overrides: Any) -> "TrialConfig":
        """Build a validated config; keys are field names (dashes allowed)."""
        merged = {**(values or {}), **overrides}
        known = {f.name for f in fields(cls)}
        hints = get_type_hints(cls)
        kwargs = {}
        for raw_key, value in merged.items():
            key = raw_key.replace("-", "_")
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise ConfigError(f"unknown config field '{raw_key}'{hint}")
            if key == "model_options":  # a dict in a job file, kept as canonical JSON text
                kwargs[key] = parse_options(value)
                continue
            kwargs[key] = _coerce(key, value, hints[key])
        cfg = cls(**kwargs)
        cfg.validate()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    # ------------------------------------------------------------- validation
    def validate(self) -> None:
        _choice("model", self.model, (*BUILTIN, *USER))
        check_options(self.model, self.model_options)
        _choice("activation", self.activation, ACTIVATIONS)
        _choice("shortcut", self.shortcut, SHORTCUTS)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("regularize", self.regularize, REGULARIZE)
        _choice("device", self.device, DEVICES)
        _choice("pad", self.pad, PADS)
        _at_least("epochs", self.epochs, 1)
        _at_least("batch_size", self.batch_size, 1)
        _at_least("eval_batch_size", self.eval_batch_size, 1)
        _at_least("step_size", self.step_size, 1)
        _at_least("hist_bins", self.hist_bins, 2)
        for name in ("val_holdout", "warmup_epochs", "threads", "seed", "fail_at_epoch"):
            _at_least(name, getattr(self, name), 0)
        _positive("lr", self.lr)
        for name in ("momentum", "weight_decay", "l1", "gamma"):
            _at_least(name, getattr(self, name), 0.0)
        if self.momentum >= 1:
            raise ConfigError(f"momentum must be below 1, got {self.momentum}")
        if len(self.mean) != len(self.std) or not self.mean:
            raise ConfigError("mean and std need one value per channel, and the same number")
        if any(s <= 0 for s in self.std):
            raise ConfigError(f"std values must be positive, got {list(self.std)}")
        if self.schedule == "multistep" and not self.milestones:
            raise ConfigError("schedule 'multistep' needs milestones, e.g. milestones=[100, 150]")
        if any(m < 1 for m in self.milestones) or list(self.milestones) != sorted(self.milestones):
            raise ConfigError(f"milestones must be increasing epochs >= 1, got {list(self.milestones)}")
        if not (self.data in ("cifar10", "synthetic") or self.data.startswith(("folder:", "synthetic:"))
                or is_dataset_source(self.data)):
            raise ConfigError(f"data '{self.data}' is not a source: use {SOURCES}")


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Accept what a CLI or a JSON file gives (strings, lists) but never a silent misread."""
    text = str(hint)
    try:
        if hint is bool or text == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
                return value.lower() in ("true", "1", "yes", "on")
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
            raise TypeError
        if hint is int or text == "int":
            if isinstance(value, bool):
                raise TypeError
            if isinstance(value, float) and not value.is_integer():
                raise TypeError
            return int(value)
        if hint is float or text == "float":
            if isinstance(value, bool):
                raise TypeError
            out = float(value)
            if not math.isfinite(out):
                raise TypeError
            return out
        if hint is str or text == "str":
            if not isinstance(value, str):
                raise TypeError
            return value
        if text.startswith("tuple[int"):
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(_coerce(key, v, int) for v in items if str(v).strip() != "")
        if text.startswith("tuple[float"):
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(_coerce(key, v, float) for v in items)
    except (TypeError, ValueError):
        pass
    else:
        return value
    kind = text.replace("typing.", "").replace("<class '", "").replace("'>", "")
    raise ConfigError(f"config field '{key}' must be {kind}, got {value!r}")


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} '{value}' is not one of: {', '.join(allowed)}")


def _at_least(name: str, value: float, low: float) -> None:
    if value < low:
        raise ConfigError(f"{name} must be >= {low}, got {value}")


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{name} must be > 0, got {value}")


def config_fields(hidden: bool = True) -> list[str]:
    """TrialConfig's field names; without the hidden test hooks when `hidden` is False."""
    return [f.name for f in fields(TrialConfig) if hidden or not f.metadata.get("hidden")]


HIDDEN_FIELDS = frozenset(set(config_fields()) - set(config_fields(hidden=False)))
# Where and how a trial runs, and how finely it records: never what it learns. analysis neither
# shows them as a swept field nor lets them change a config's colour.
RUNTIME_FIELDS = frozenset({"data_root", "download", "device", "threads", "compile", "eval_batch_size",
                            "hist_bins"}) | HIDDEN_FIELDS
# Those, and what a command line forces on every trial of a study (--data, --epochs, --seeds):
# never part of a variant's name.
RUN_FIELDS = RUNTIME_FIELDS | {"data", "epochs", "seed"}


@dataclass
class SweepOptions:
    """How a sweep runs, as opposed to what each trial is (TrialConfig)."""
    storage: str = "results"          # root folder or URI; the study goes to <storage>/<study>
    address: str | None = None        # None: local Ray; "auto" or HOST:PORT: an existing cluster
    gpus_per_trial: float | None = None   # None: chosen per model and machine
    cpus_per_trial: float | None = None
    workers: int = 1                  # >1: each trial is a DDP job of this many workers
    max_concurrent: int = 0           # 0: as many as resources allow
    scheduler: str = "fifo"           # one of SCHEDULERS: fifo | asha | pbt
    search: str = "random"            # one of SEARCHES: random | optuna
    max_failures: int = 2             # restarts of a crashed trial from its checkpoint
    num_cpus: int | None = None       # local Ray only: CPUs it may use
    wait_for_nodes: float = 600       # on a cluster: seconds to wait for the autoscaler to add a node
    verbose: int = 1                  # Tune's progress output: 0 silent, 1 table
    log: str = ""                     # "mlflow": also log to MLflow (raylab/sweep/logs.py); TensorBoard always
    mlflow_uri: str | None = None     # MLflow tracking URI (default: <study folder>/mlflow.db)

    def validate(self) -> "SweepOptions":
        for name, low in (("workers", 1), ("max_concurrent", 0), ("max_failures", 0), ("wait_for_nodes", 0)):
            if getattr(self, name) < low:
                raise ConfigError(f"--{name.replace('_', '-')} must be >= {low}")
        gpus = self.gpus_per_trial
        if gpus is not None:
            if not (0 <= gpus and math.isfinite(gpus)):
                raise ConfigError(f"--gpus-per-trial must be >= 0, got {gpus}")
            check_gpu_share(gpus)  # here, before Ray has started
        if self.cpus_per_trial is not None and not self.cpus_per_trial > 0:
            raise ConfigError(f"--cpus-per-trial must be > 0, got {self.cpus_per_trial}")
        return self


def check_gpu_share(gpu: float) -> None:
    """Ray places a share above 1 only as whole GPUs."""
    if gpu > 1 and gpu != int(gpu):
        raise ConfigError(f"--gpus-per-trial {gpu:g} must be a fraction up to 1 or a whole number")
