"""Read study folders (the Parquet contract of `raylab.results`) into DataFrames.

    study = load_study("results/lab2_lr_sweep")       # or "s3://bucket/results/lab2_lr_sweep"
    study.metrics, study.trials, study.weights         # tidy tables, one row per epoch / trial / bin
    study.swept                                        # config fields the variants differ in: ["lr"]
    study.split()                                      # a combined sweep: one StudyResults per `study` value

Reads compacted folders (the three files), the append-only parts of a running
or killed sweep (raylab/results/parts.py) and mixes of both alike, one row per key.
A running trial's row holds its best / final val acc so far, as the writer
stored them; weights may be missing. Anything that is not a study folder
raises StudyError with one line.

A combined sweep (`raylab.declare.study.combine`, e.g. jobs/assignment.py) writes one
folder whose rows carry several values in the `study` column; an identical
config is trained once and its rows are written under every study holding it.
`study.split()` (= `split_studies(study)`) gives one StudyResults per value, each as
a folder of its own would load: its variants only, swept fields inferred
within it, the same path.
Imports neither torch nor Ray.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
import pandas as pd
import pyarrow.fs as pafs

from raylab import results as R
from raylab.declare.config import RUNTIME_FIELDS
from raylab.results.parts import has_table
from raylab.results.storage import is_uri, read_json

# Columns of metrics / trials that are results, not config (where a trial ran is not config either).
_RESULT_COLUMNS = frozenset(R.METRIC_COLUMNS) | frozenset(R.TRIAL_COLUMNS) | frozenset(R.PLACEMENT_COLUMNS)


class StudyError(R.ResultsError):
    """A folder that is not a study, or a file that is not in the contract (one-line message)."""


@dataclass
class StudyResults:
    """What one study folder (or several, see `load_studies`) holds, as three tidy DataFrames:
    `load_study` returns it. (raylab's `Study` is the declaration a job file makes.)"""

    name: str
    path: str
    metrics: pd.DataFrame
    trials: pd.DataFrame
    weights: pd.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)  # study.json, {} when absent

    @property
    def variants(self) -> list[str]:
        """Variant names in the order of study.json when given, else sorted."""
        present = set(self.trials["variant"]) | set(self.metrics["variant"])
        listed = list(dict.fromkeys(v for v in self.meta.get("variants", [])
                                    if isinstance(v, str) and v in present))
        return listed + sorted(present - set(listed))

    @property
    def studies(self) -> list[str]:
        """The values of the `study` column, sorted (several in a combined sweep)."""
        return sorted(set(self.trials["study"].dropna()) | set(self.metrics["study"].dropna()))

    def split(self) -> list["StudyResults"]:
        """One StudyResults per `study` value (see `split_studies`); [self] when there is one."""
        return split_studies(self)

    @property
    def swept(self) -> list[str]:
        """Config field names the variants differ in: study.json's `swept`, else inferred."""
        if isinstance(self.meta.get("swept"), list):
            return [str(f) for f in self.meta["swept"]]
        return swept_fields(self.trials)

    @property
    def running(self) -> bool:
        """True while some trial has not finished (partial results of a live sweep)."""
        return bool((self.trials["status"] == "running").any())

    def __repr__(self) -> str:
        return (f"StudyResults({self.name!r}, {len(self.variants)} variants, {len(self.trials)} trials, "
                f"{len(self.metrics)} epoch rows, swept={self.swept})")


# ------------------------------------------------------------------ loading
def load_study(path: str | os.PathLike) -> StudyResults:
    """Load one study folder: a local path or a pyarrow filesystem URI (s3://, gs://, file://)."""
    path = os.fspath(path)
    if not is_uri(path):
        path = path.rstrip("/") or "/"
    info = _info(path)
    if info.type == pafs.FileType.NotFound:
        raise StudyError(f"{path}: no such folder")
    if info.type != pafs.FileType.Directory:
        raise StudyError(f"{path} is a file, not a study folder (expected a folder holding "
                         f"{R.METRICS} and {R.TRIALS})")
    if not (has_table(path, R.METRICS) or has_table(path, R.TRIALS)):
        inner = _child_studies(path)
        hint = (f"; it holds study folders {', '.join(inner[:5])}{', ...' if len(inner) > 5 else ''}"
                if inner else "")
        raise StudyError(f"{path} is not a raylab study folder (no {R.METRICS} or {R.TRIALS}){hint}")
    try:
        metrics = _read(path, R.METRICS)
        trials = _read(path, R.TRIALS)
        weights = _read(path, R.WEIGHTS)
    except R.ResultsError as exc:
        raise StudyError(str(exc)) from None
    meta = _read_meta(path)
    trials["status"] = trials["status"].fillna("running").astype(str)
    name = (meta.get("name") if isinstance(meta.get("name"), str) else None) \
        or _single(trials["study"]) or _single(metrics["study"]) or _basename(path)
    for df in (metrics, trials, weights):  # a single-run folder may leave `study` empty
        if len(df):
            df["study"] = df["study"].fillna(name).astype(str)
    return StudyResults(name=name, path=path, metrics=metrics, trials=trials, weights=weights, meta=meta)


def load_studies(paths: Iterable[str | os.PathLike]) -> StudyResults:
    """Load several study folders into one StudyResults; the `study` column tells them apart."""
    studies = [load_study(p) for p in paths]
    if not studies:
        raise StudyError("no study folders given")
    if len(studies) == 1:
        return studies[0]

    def cat(attr: str) -> pd.DataFrame:
        frames = [getattr(s, attr) for s in studies if len(getattr(s, attr))]
        if not frames:
            return getattr(studies[0], attr).iloc[0:0].copy()
        return pd.concat(frames, ignore_index=True, sort=False)

    meta = {"studies": [s.meta or {"name": s.name} for s in studies]}
    return StudyResults(name=" + ".join(s.name for s in studies), path=",".join(s.path for s in studies),
                 metrics=cat("metrics"), trials=cat("trials"), weights=cat("weights"), meta=meta)


# ------------------------------------------------------------------ combined sweeps
def split_studies(study: StudyResults) -> list[StudyResults]:
    """The studies of a combined folder (several `study` values) as one StudyResults each.

    Each part holds only the metrics / trials / weights rows of its `study`
    value, so its variants, summary and inferred swept fields are its own, as
    if it had been run alone. Order and per-study meta come from study.json
    when it names the studies (a `studies` list of names or of objects with
    name / variants / swept, as `load_studies` makes, or variants written
    "study/variant"); otherwise the parts are sorted by name, their variants
    sorted (by the swept value for a one-field sweep) and their swept fields
    inferred. The parent's name is kept in each part's meta as `combined`.
    A study with a single `study` value is returned unchanged, as [study].
    """
    names = study.studies
    if len(names) <= 1:
        return [study]
    metas = _sub_metas(study.meta)
    order = [n for n in metas if n in names] + sorted(n for n in names if n not in metas)
    parts = []
    for name in order:
        def rows(df: pd.DataFrame) -> pd.DataFrame:
            return df[df["study"] == name].reset_index(drop=True)
        meta = {**metas.get(name, {}), "name": name, "combined": study.name,
                **{k: study.meta[k] for k in ("provenance",) if k in study.meta}}  # one driver ran them all
        parts.append(StudyResults(name=name, path=study.path, metrics=rows(study.metrics),
                           trials=rows(study.trials), weights=rows(study.weights), meta=meta))
    return parts


def shared_variants(study: StudyResults) -> list[list[tuple[str, str]]]:
    """Groups of (study, variant) of a combined folder that are the same runs.

    A combined sweep trains each distinct config once and writes its rows under
    every study that holds it; these are the (study, variant) pairs whose
    trials have identical configs and seeds. Only groups spanning 2+ studies.
    """
    t = study.trials
    if t.empty or t["study"].nunique() < 2:
        return []
    cols = config_fields(t)
    keys: dict[tuple[str, str], set] = {}
    for row in t[["study", "variant", "seed", *cols]].itertuples(index=False):
        vals = tuple(None if (isinstance(v, float) and math.isnan(v)) else _hashable(v) for v in row[2:])
        keys.setdefault((row[0], row[1]), set()).add(vals)
    groups: dict[frozenset, list[tuple[str, str]]] = {}
    for sv, k in keys.items():
        groups.setdefault(frozenset(k), []).append(sv)
    out = [sorted(g) for g in groups.values() if len({s for s, _ in g}) > 1]
    return sorted(out)


def _sub_metas(meta: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """study name -> its meta where the parent's study.json says it: raylab writes a
    `studies` list of {name, variants, swept} (Study.describe, load_studies) and
    combined variants as "study/variant"."""
    out: dict[str, dict[str, Any]] = {}
    for entry in meta.get("studies", []) if isinstance(meta.get("studies"), list) else []:
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            out.setdefault(entry["name"], {k: v for k, v in entry.items()
                                           if k in ("description", "swept", "variants", "seeds")})
    for v in meta.get("variants", []) if isinstance(meta.get("variants"), list) else []:
        if isinstance(v, str) and "/" in v:  # "lab2_swish/swish"
            name, var = v.split("/", 1)
            listed = out.setdefault(name, {}).setdefault("variants", [])
            if var not in listed:
                listed.append(var)
    return out


# ------------------------------------------------------------------ helpers
def config_fields(df: pd.DataFrame) -> list[str]:
    """Config columns of a metrics or trials frame: everything that is not a result column."""
    return [c for c in df.columns if c not in _RESULT_COLUMNS]


def swept_fields(trials: pd.DataFrame) -> list[str]:
    """Config fields (field names, so `lr`, not `base_lr`) constant within and varying across variants."""
    if trials.empty:
        return []
    out = []
    for col in config_fields(trials):
        name = "lr" if col == "base_lr" else col
        if name in RUNTIME_FIELDS:  # where or how a trial ran: never a swept field
            continue
        values = trials[col].map(_hashable)
        per_variant = values.groupby(trials["variant"]).nunique(dropna=False)
        if (per_variant <= 1).all() and values.nunique(dropna=False) > 1:
            out.append(name)
    return out


def diverged_trials(metrics: pd.DataFrame, trials: pd.DataFrame | None = None) -> set[str]:
    """Trial ids that diverged: status `diverged` in trials, or a non-finite loss after epoch 0.

    Epoch 0 is skipped because a trainer may leave its train_loss empty (no training yet).
    """
    out: set[str] = set()
    if trials is not None and len(trials):
        out |= set(trials.loc[trials["status"].astype(str).eq("diverged"), "trial_id"])
    if metrics is not None and len(metrics):
        losses = metrics[["train_loss", "val_loss"]].astype(float)
        bad = ~np.isfinite(losses).all(axis=1) & (metrics["epoch"] > 0)
        out |= set(metrics.loc[bad, "trial_id"])
    return out


def _hashable(v: Any) -> Any:
    if isinstance(v, (list, dict, np.ndarray)):
        return json.dumps(v if not isinstance(v, np.ndarray) else v.tolist())
    return v


def _info(path: str) -> pafs.FileInfo:
    try:
        fs, p = R.resolve_fs(path)
        return fs.get_file_info(p)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise StudyError(f"{path}: cannot open ({str(exc).splitlines()[0]})") from None


def _child_studies(path: str) -> list[str]:
    try:
        fs, p = R.resolve_fs(path)
        entries = fs.get_file_info(pafs.FileSelector(p, recursive=False))
    except (OSError, ValueError):
        return []
    return sorted(e.base_name for e in entries if e.type == pafs.FileType.Directory
                  and (has_table(R.join(path, e.base_name), R.METRICS)
                       or has_table(R.join(path, e.base_name), R.TRIALS)))


def _read(path: str, name: str) -> pd.DataFrame:
    df = R.read_table(path, name, required=False)
    for col in R.NUMERIC[name]:
        if df[col].dtype != "float64":  # as written: no 6-million-row copy for the weights' bins
            df[col] = pd.to_numeric(df[col], errors="coerce").astype("float64")
    df["seed"] = pd.to_numeric(df["seed"], errors="coerce")
    if name == R.METRICS and len(df):
        df = df.sort_values(["trial_id", "epoch"], kind="stable").reset_index(drop=True)
    return df


def _read_meta(path: str) -> dict[str, Any]:
    meta_path = R.join(path, R.STUDY_JSON)
    try:
        fs, p = R.resolve_fs(meta_path)
        if fs.get_file_info(p).type != pafs.FileType.File:
            return {}
        meta = read_json(meta_path)
    except (OSError, ValueError) as exc:
        raise StudyError(f"{meta_path} is not valid JSON ({str(exc).splitlines()[0]})") from None
    if not isinstance(meta, dict):
        raise StudyError(f"{meta_path} must hold a JSON object with name, swept, variants, seeds")
    return meta


def _single(col: pd.Series) -> str | None:
    values = col.dropna().unique()
    return str(values[0]) if len(values) == 1 else None


def _basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1] or path
