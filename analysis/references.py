"""The course report's side of a results folder: its numbers, their epochs and the pairs to draw.

The job files declare them (`Study(reported=..., reported_epochs=..., pairs=...)`),
the run carries them into study.json, and `raylab report` reads them from there:
nothing about the course is written in `analysis`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from . import claims
from .load import StudyResults


@dataclass
class References:
    """The course report's numbers and pairs, from a folder's study.json."""
    values: dict[tuple[str, str], float] = field(default_factory=dict)  # (study, variant) -> best val acc
    epochs: dict[str, int] = field(default_factory=dict)                # study -> epochs behind them
    pairs: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # study -> (a, b): b - a drawn

    @classmethod
    def of(cls, study: StudyResults) -> "References":
        """From the folder's study.json; a value counts only where the variant's trials have the
        config it was declared for (an older run with other settings gets no `report` column)."""
        refs = cls()
        t = study.trials
        for r in study.meta.get("reported", []) or []:
            rows = t[(t["study"] == r["study"]) & (t["variant"] == r["variant"])] if len(t) else t
            if len(rows) and bool(claims.config_matches(rows, r.get("config") or {}).all()):
                refs.values[(r["study"], r["variant"])] = float(r["value"])
                if r.get("epochs"):
                    refs.epochs[r["study"]] = int(r["epochs"])
        for p in study.meta.get("pairs", []) or []:
            refs.pairs.setdefault(p["study"], []).append((p["a"], p["b"]))
        return refs

    def value(self, study: str, variant: str) -> float | None:
        """The course report's value for this (study, variant), or None."""
        return self.values.get((study, variant))
