"""One order for a study's variants, used by its table, its legends and its x axes.

    variant_order(study.trials)        # ["wd=0", "wd=1e-05", ..., "wd=0.01"]

Variants sort by the values of their swept fields (fields taken in name
order, whoever lists them), as numbers where they are
numbers (so 1e-05 < 0.0001 < 0.01, and False < True), then by name; names and
text values compare "naturally" (digits as numbers: "lr=0.001" < "lr=0.1" < "lr=1").
Sorting the same trials always gives the same order, whoever asks.
"""
from __future__ import annotations

import math
import re
from typing import Any, Iterable, Sequence

import pandas as pd

from raylab.results import config_column

from .load import swept_fields

_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def natural_key(text: Any) -> tuple:
    """Sort key reading the numbers inside a string as numbers: "wd=1e-05" < "wd=0.0001"."""
    key: list[tuple[int, Any]] = []
    pos = 0
    s = str(text)
    for m in _NUMBER.finditer(s):
        if m.start() > pos:
            key.append((0, s[pos:m.start()]))
        key.append((1, float(m.group())))
        pos = m.end()
    if pos < len(s):
        key.append((0, s[pos:]))
    return tuple(key)


def value_key(value: Any) -> tuple:
    """Sort key of one config value: missing first, then numbers and booleans by value, then text."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return (0,)
    if isinstance(value, (bool, int, float)) or hasattr(value, "dtype"):
        try:
            return (1, float(value))
        except (TypeError, ValueError):
            pass
    return (2, natural_key(value))


def variant_order(trials: pd.DataFrame, swept: Sequence[str] | None = None) -> list[str]:
    """The study's variants sorted by their swept values (numbers as numbers), then by name.

    `trials` may be a trials or a metrics frame (both carry the config columns);
    `swept` defaults to the fields inferred from it (`analysis.load.swept_fields`).
    """
    if trials.empty:
        return []
    # fields by name, so the order does not depend on who lists them (study.json or inference)
    fields = sorted(set(swept_fields(trials) if swept is None else swept))
    cols = [config_column(f) for f in fields if config_column(f) in trials.columns]
    first = trials.drop_duplicates("variant")
    keys = {row["variant"]: (tuple(value_key(row[c]) for c in cols), natural_key(row["variant"]))
            for _, row in first.iterrows()}
    return sorted(keys, key=keys.__getitem__)


def sort_labels(labels: Iterable[str], order: Sequence[str] | None = None) -> list[str]:
    """`labels` in `order` where listed (a label may be "study/variant"), the rest naturally after."""
    rank = {v: i for i, v in enumerate(order or [])}

    def key(label: str) -> tuple:
        variant = label.split("/", 1)[1] if "/" in label and label not in rank else label
        return (0, rank[variant], natural_key(label)) if variant in rank else (1, 0, natural_key(label))
    return sorted(dict.fromkeys(labels), key=key)
