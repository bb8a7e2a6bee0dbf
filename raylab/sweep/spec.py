"""A trial's spec: everything it needs, as plain data that Tune stores and restores.

A sampled trial's values travel under the Tune config key `sampled`, apart
from the fixed `spec` (raylab/declare/space.py); `resolve_spec` merges them
back into the one config the trial trains with.
"""
from __future__ import annotations

import re

_ID = re.compile(r"^(.*)_s(\d+)_n(\d+)$")


def resolve_spec(config: dict, name: str | None = None) -> dict:
    """The spec a trial trains with: sampled values merged into its config, its own id and checkpoint.

    `name` is the Tune trial name (sweep/searcher.trial_name made it at creation);
    a grid trial's spec is returned as it is.
    """
    spec = config["spec"]
    sampled = config.get("sampled")
    if not sampled:
        return spec
    from raylab.train.checkpoints import checkpoint_path  # torch: callers are trials and the driver

    match = _ID.match(name or "")
    if match is None:
        raise ValueError(f"sampled trial name {name!r} is not VARIANT_sSEED_nNUMBER")
    meta = {**spec["meta"], "variant": match.group(1), "trial_id": name}
    return {**spec, "trial": {**spec["trial"], **sampled}, "meta": meta, "shared_with": [],
            "checkpoint": checkpoint_path(spec["root"], name)}
