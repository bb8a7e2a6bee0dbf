"""A job file's own models (raylab/declare/registry.py), shipped to trials by value and checked before they run.

Trials run in other processes and on other nodes, where the job file is not
importable: the driver pickles each user model *by value* into the trial spec
(which Tune also keeps for a resume), and `install` registers it in the
worker before the trial's config is read.
"""
from __future__ import annotations

import json
import sys

from ray import cloudpickle  # the copy Ray itself pickles functions and configs with

from raylab.errors import ConfigError
from raylab.declare.registry import BY_VALUE, USER, check_logits, model
from raylab.sweep.shared_data import data_key


def pack(names: set[str]) -> bytes | None:
    """The user models among `names`, pickled by value for trials elsewhere; None when none."""
    for name in sorted(BY_VALUE):  # a job file's helper module: workers cannot import it
        if name in sys.modules:  # gone: the job file itself (runpy), which pickles by value anyway
            cloudpickle.register_pickle_by_value(sys.modules[name])
    chosen = {n: USER[n].builder for n in sorted(names) if n in USER}
    return cloudpickle.dumps(chosen) if chosen else None


def install(packed: bytes | None) -> None:
    """In a trial's process: register the models the driver shipped (before its config is read)."""
    if not packed:
        return
    for name, builder in cloudpickle.loads(packed).items():
        if name not in USER:
            model(name)(builder)


def check_user_models(trials, refs: dict) -> None:
    """Build each distinct job-file model once on the data's image shape and check its logits,
    so a model that returns no logits is refused in one line before a trial runs."""
    import ray

    from raylab.train.model_summary import model_summary
    from raylab.train.models import build_model

    seen = set()
    for t in trials:
        c = t.config
        key = (c.model, c.model_options, c.batchnorm, c.activation, c.shortcut, data_key(c))
        if c.model not in USER or key in seen:
            continue
        seen.add(key)
        arrays = ray.get(refs[data_key(c)])
        shape, n = tuple(arrays["train_x"].shape[1:]), len(arrays["classes"])
        try:
            net = build_model(c.model, num_classes=n, in_channels=shape[0], batchnorm=c.batchnorm,
                              activation=c.activation, shortcut=c.shortcut, options=json.loads(c.model_options))
            out = model_summary(net, shape, name=c.model).output
        except Exception as exc:  # the user's own code: one line naming the model
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise ConfigError(f"model '{c.model}' failed on a {'x'.join(map(str, shape))} image: "
                              f"{type(exc).__name__}: {first}") from None
        check_logits(out, n, c.model)
