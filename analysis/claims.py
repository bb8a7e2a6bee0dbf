"""The course report's claims, each a tested verdict: reproduced, contradicted or inconclusive.

Claims are declared next to their studies in the job files (`raylab.declare.claim.Claim`)
and carried in study.json with, per variant, the config its trials must have.
A claim's samples are every completed trial with that config, in any of the
folders given and under any study name (an identical config trained for
another study, or by an earlier run, is the same experiment), one per seed.

Statistics: the difference of the two variants' means with a 95% confidence
interval from Welch's t (unequal variances, Welch-Satterthwaite degrees of
freedom); one-sample t for thresholds. A claim that a is better than b is
*reproduced* when the whole interval is above 0, *contradicted* when it is
below 0, and otherwise *inconclusive at n seeds*, with the seeds per variant
that would make the interval clear 0 if the spread and the difference stayed
as observed. Welch rather than a bootstrap: with 3 seeds a bootstrap has only
10 distinct resamples per variant and its interval is too narrow.

Imports neither torch nor Ray.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from raylab.declare.claim import Claim, ClaimError
from raylab.results import config_column

from .intervals import LEVEL, MAX_SEEDS, one_sample, seeds_needed, t_cdf, t_quantile, welch  # noqa: F401
from .load import StudyResults

DONE = ("completed", "diverged")  # a diverged trial keeps its epochs: its best val acc is a sample
# Config fields newer than some result files, with the value every trial had before the field existed.
ADDED_FIELDS = {"pad": "zero", "vflip": False, "model_options": "{}"}


@dataclass
class Verdict:
    claim: Claim
    verdict: str            # reproduced | contradicted | inconclusive at n seeds | not run
    ours: str               # what we measured, in words and numbers
    n: int                  # seeds of the variant with the fewest
    diff: float = math.nan  # the tested quantity (difference, mean or ratio)
    lo: float = math.nan    # its 95% CI
    hi: float = math.nan
    seeds_needed: int | None = None  # per variant, to call an inconclusive claim; None: not estimable

    def needed_text(self) -> str:
        if not self.verdict.startswith("inconclusive"):
            return ""
        if self.seeds_needed is None:
            return "not estimable"
        return f">{MAX_SEEDS}" if self.seeds_needed > MAX_SEEDS else str(self.seeds_needed)


# ------------------------------------------------------------------ samples
def claims_of(studies: Sequence[StudyResults]) -> list[Claim]:
    """Every claim in the folders' study.json, once each (by study and text), in order."""
    out: dict[tuple[str, str], Claim] = {}
    for s in studies:
        for raw in s.meta.get("claims", []) or []:
            c = Claim.from_dict(raw)
            out.setdefault((c.study, c.text), c)
    return list(out.values())


def samples(claim: Claim, variant: str, studies: Sequence[StudyResults]) -> pd.Series:
    """The claim's metric for `variant`, one value per seed (index), from every folder."""
    config = claim.configs.get(variant)
    if config is None:
        raise ClaimError(f"claim '{claim.text}' ({claim.study}) names variant '{variant}', which is not among "
                         f"its declared variants {sorted(claim.configs)}: declare it in the job file")
    values: dict[int, float] = {}
    for s in studies:
        t = s.trials
        if t.empty:
            continue
        hit = t[config_matches(t, config) & t["status"].isin(DONE)]
        for row in hit.itertuples(index=False):
            seed = int(row.seed)
            if seed not in values:  # aliases and reruns of one config and seed: the first is kept
                values[seed] = _metric(claim.metric, row, s)
    return pd.Series(values, dtype=float).sort_index()


def config_matches(t: pd.DataFrame, config: dict) -> pd.Series:
    """Per row of a trials frame: has it every value of `config` (field -> value)?"""
    ok = pd.Series(True, index=t.index)
    for key, want in config.items():
        col = config_column(key)
        if col in t.columns:
            have = t[col]
            if key in ADDED_FIELDS:
                have = have.where(have.notna(), ADDED_FIELDS[key])
        elif key in ADDED_FIELDS:
            have = pd.Series(ADDED_FIELDS[key], index=t.index)
        else:
            return pd.Series(False, index=t.index)
        ok &= have.map(lambda v, w=want: _same(v, w))
    return ok


def _same(have, want) -> bool:
    if isinstance(want, (list, tuple)):
        try:
            have = json.loads(have) if isinstance(have, str) else list(have)
        except (TypeError, ValueError):
            return False
        return len(have) == len(want) and all(_same(h, w) for h, w in zip(have, want))
    if isinstance(want, bool):
        return isinstance(have, (bool, np.bool_)) and bool(have) == want
    if isinstance(want, (int, float)):
        try:
            return math.isclose(float(have), float(want), rel_tol=1e-9, abs_tol=1e-12)
        except (TypeError, ValueError):
            return False
    return have == want


def _other_settings(claim: Claim, variant: str, studies: Sequence[StudyResults]) -> str:
    """'; N trials of study/variant ran with epochs=10 (declared 200)': why rows of that name do not count."""
    config = claim.configs[variant]
    for s in studies:
        t = s.trials
        rows = t[(t["study"] == claim.study) & (t["variant"] == variant)] if len(t) else t
        if len(rows):
            row = rows.iloc[0]
            diff = [f"{k}={_value(row, k)} (declared {json.dumps(w)})" for k, w in config.items()
                    if not config_matches(rows.head(1), {k: w}).iloc[0]]
            return f"; {len(rows)} trial(s) of {claim.study}/{variant} ran with {', '.join(diff)}" if diff else ""
    return ""


def _value(row: pd.Series, key: str):
    col = config_column(key)
    return row[col] if col in row.index and not pd.isna(row[col]) else ADDED_FIELDS.get(key)


def _metric(metric: str, row, study: StudyResults) -> float:
    if metric == "overfit_gap":  # train acc - val acc at the last epoch: the overfitting left at the end
        m = study.metrics
        last = m[m["trial_id"] == row.trial_id].sort_values("epoch").tail(1)
        return float(last["train_acc"].iloc[0] - last["val_acc"].iloc[0]) if len(last) else math.nan
    if metric == "near_zero":
        from .plots import near_zero_fraction
        w = study.weights
        w = w[w["trial_id"] == row.trial_id] if len(w) else w
        return near_zero_fraction(w) if len(w) else math.nan
    return float(getattr(row, metric))


# ------------------------------------------------------------------ verdicts
def check(claim: Claim, studies: Sequence[StudyResults]) -> Verdict:
    """The claim's verdict from the folders' trials."""
    got = {v: samples(claim, v, studies).dropna() for v in claim.variants()}
    n = min(len(s) for s in got.values())
    if n == 0:
        missing = [v for v, s in got.items() if s.empty]
        return Verdict(claim, "not run", f"no completed trial of {', '.join(missing)} with the declared config"
                       + _other_settings(claim, missing[0], studies), 0)
    return {"greater": _greater, "not_greater": _greater, "best": _best, "below": _threshold,
            "at_least": _threshold, "ratio": _ratio}[claim.kind](claim, got, n)


def _fmt(x: float) -> str:
    return f"{x:+.3f}"


def _greater(claim: Claim, got: dict[str, pd.Series], n: int) -> Verdict:
    a, b = got[claim.a], got[claim.b]
    means = f"{claim.a} {a.mean():.3f}, {claim.b} {b.mean():.3f}"
    if n < 2:
        return Verdict(claim, f"inconclusive at {n} seeds", f"{means} (n=1: no interval)", n,
                       a.mean() - b.mean(), seeds_needed=None)
    d, lo, hi = welch(a, b)
    var = (a.var(ddof=1), b.var(ddof=1))
    if claim.kind == "greater":
        verdict = "reproduced" if lo > 0 else "contradicted" if hi < 0 else f"inconclusive at {n} seeds"
        needed = seeds_needed(abs(d), *var)
    else:  # not_greater: no gain as large as the margin
        verdict = "reproduced" if hi < claim.margin else "contradicted" if lo > 0 else f"inconclusive at {n} seeds"
        sides = [seeds_needed(claim.margin - d, *var) if d < claim.margin else None,
                 seeds_needed(d, *var) if d > 0 else None]
        needed = min((x for x in sides if x is not None), default=None)
    metric = "" if claim.metric == "best_val_acc" else f" ({claim.metric})"
    return Verdict(claim, verdict, f"{means}; diff {_fmt(d)} [{_fmt(lo)}, {_fmt(hi)}]{metric}", n, d, lo, hi, needed)


def _best(claim: Claim, got: dict[str, pd.Series], n: int) -> Verdict:
    a = got[claim.a]
    others = {v: s for v, s in got.items() if v != claim.a}
    top = max(got, key=lambda v: got[v].mean())
    if n < 2:
        return Verdict(claim, f"inconclusive at {n} seeds", f"best mean: {top} {got[top].mean():.3f} (n=1)", n)
    tests = {v: welch(a, s) for v, s in others.items()}
    if all(lo > 0 for _, lo, _ in tests.values()):
        verdict = "reproduced"
    elif any(hi < 0 for _, _, hi in tests.values()):
        verdict = "contradicted"
    else:
        verdict = f"inconclusive at {n} seeds"
    # the comparison that decides: the runner-up when a leads, else the variant ahead of it
    rival = max(others, key=lambda v: others[v].mean()) if top == claim.a else top
    d, lo, hi = tests[rival]
    if top == claim.a:  # reproducing needs every rival cleared
        needed = max((seeds_needed(t[0], a.var(ddof=1), others[v].var(ddof=1)) or MAX_SEEDS + 1)
                     for v, t in tests.items())
    else:               # contradicting needs one rival ahead by a clear margin
        needed = min((seeds_needed(-t[0], a.var(ddof=1), others[v].var(ddof=1)) or MAX_SEEDS + 1)
                     for v, t in tests.items() if t[0] < 0)
    ours = f"best: {top} {got[top].mean():.3f}; {claim.a} - {rival} {_fmt(d)} [{_fmt(lo)}, {_fmt(hi)}]"
    return Verdict(claim, verdict, ours, n, d, lo, hi, needed)


def _threshold(claim: Claim, got: dict[str, pd.Series], n: int) -> Verdict:
    a = got[claim.a]
    bound = claim.value - (claim.margin if claim.kind == "at_least" else 0.0)
    if n < 2:
        return Verdict(claim, f"inconclusive at {n} seeds", f"{claim.a} {a.mean():.3f} (n=1: no interval)", n,
                       a.mean())
    m, lo, hi = one_sample(a)
    if claim.kind == "below":
        verdict = "reproduced" if hi < bound else "contradicted" if lo > bound else f"inconclusive at {n} seeds"
    else:
        verdict = "reproduced" if lo >= bound else "contradicted" if hi < bound else f"inconclusive at {n} seeds"
    needed = seeds_needed(abs(m - bound), a.var(ddof=1))
    return Verdict(claim, verdict, f"{claim.a} {m:.3f} [{lo:.3f}, {hi:.3f}] against {bound:g}", n, m, lo, hi, needed)


def _ratio(claim: Claim, got: dict[str, pd.Series], n: int) -> Verdict:
    """A deterministic metric (MACs): no interval; the ratio is within the tolerance or not."""
    a, b = got[claim.a], got[claim.b]
    r = a.mean() / b.mean()
    ok = abs(r / claim.value - 1) <= claim.margin
    return Verdict(claim, "reproduced" if ok else "contradicted",
                   f"{claim.a} / {claim.b} = {r:.2f}x ({claim.metric} {a.mean():,.0f} / {b.mean():,.0f})", n, r, r, r)


# ------------------------------------------------------------------ table
def evaluate(studies: Sequence[StudyResults]) -> list[Verdict]:
    return [check(c, studies) for c in claims_of(studies)]


def to_markdown(verdicts: Sequence[Verdict]) -> list[str]:
    """The claims table (claim, the report's number, ours with 95% CI, n seeds, verdict, seeds to call it)."""
    if not verdicts:
        return []
    lines = ["| claim | study | course report | ours (mean, 95% CI) | n seeds | verdict | seeds to call it |",
             "|---|---|---|---|---:|---|---:|"]
    for v in verdicts:
        cells = [v.claim.text, f"`{v.claim.study}`", v.claim.reported or "", v.ours, str(v.n), v.verdict,
                 v.needed_text()]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return lines
