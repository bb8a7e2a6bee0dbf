"""Per-variant statistics over seeds: the variant table, the ranking of variants, Markdown.

    table = summarize(study)          # one row per (study, variant)
    r = rank(table)                   # r.order, r.safe, r.note
    print(to_markdown(table))         # "0.712 ± 0.004" cells

Statistics are over the trials of a variant that did not fail (a failed trial
has no result); diverged trials count, since their best epoch is a real
result, and are also counted in `diverged`; trials that finished at chance
accuracy are counted in `did_not_learn` (`analysis.outcome`). std uses ddof=1 (the sample std),
so one seed gives NaN std, printed as "(n=1)": a single run gives no spread.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd

from raylab.results import config_column

from .load import StudyResults, swept_fields
from .order import variant_order
from .outcome import DID_NOT_LEARN, did_not_learn

# summarize()'s columns (one per swept field goes after `variant`): statistics over a variant's seeds
TABLE_COLUMNS = [
    "study", "variant", "n_seeds", "best_val_acc_mean", "best_val_acc_std",
    "final_val_acc_mean", "final_val_acc_std", "best_epoch_mean", "epochs_run_max",
    "diverged", "failed", "running", "did_not_learn",
]


def summarize(data: StudyResults | pd.DataFrame, swept: list[str] | None = None) -> pd.DataFrame:
    """One row per (study, variant): columns TABLE_COLUMNS plus one per swept field.

    `data` is a StudyResults or its trials DataFrame; `swept` defaults to the study's
    swept fields (study.json or inferred) and adds their values as columns
    named after the field (`lr`, `weight_decay`), placed after `variant`.
    """
    trials = data.trials if isinstance(data, StudyResults) else data
    if swept is None:
        swept = data.swept if isinstance(data, StudyResults) else swept_fields(trials)
    rows = []
    for (study, variant), g in trials.groupby(["study", "variant"], sort=False, dropna=False):
        status = g["status"].astype(str)
        ok = g[status.ne("failed") & np.isfinite(g["best_val_acc"].astype(float))]
        final = ok["final_val_acc"].astype(float).replace([np.inf, -np.inf], np.nan)
        row = {
            "study": study, "variant": variant, "n_seeds": int(len(ok)),
            "best_val_acc_mean": ok["best_val_acc"].mean(),
            "best_val_acc_std": ok["best_val_acc"].std(ddof=1),
            "final_val_acc_mean": final.mean(), "final_val_acc_std": final.std(ddof=1),
            "best_epoch_mean": ok["best_epoch"].mean(),
            "epochs_run_max": g["epochs_run"].max(),
            "diverged": int(status.eq("diverged").sum()), "failed": int(status.eq("failed").sum()),
            "running": int(status.eq("running").sum()),
            "did_not_learn": int(did_not_learn(g).sum()),
        }
        for name in swept:
            col = config_column(name)
            row[name] = g[col].iloc[0] if col in g.columns else None
        rows.append(row)
    out = pd.DataFrame(rows, columns=["study", "variant", *swept, *TABLE_COLUMNS[2:]])
    for col in TABLE_COLUMNS[2:]:
        out[col] = pd.to_numeric(out[col])
    return _sort(out, trials, swept)


def _sort(table: pd.DataFrame, trials: pd.DataFrame, swept: list[str]) -> pd.DataFrame:
    """Studies by name, variants in `variant_order` (swept values as numbers), as the figures list them."""
    if table.empty:
        return table.reset_index(drop=True)
    order = {v: i for i, v in enumerate(variant_order(trials, swept))}
    table = table.assign(_k=table["variant"].map(order)).sort_values(["study", "_k"], kind="stable")
    return table.drop(columns="_k").reset_index(drop=True)


# ------------------------------------------------------------------ ranking
@dataclass(frozen=True)
class Ranking:
    """Variants best first by the mean of `by` over seeds, and whether the winner is clear."""

    order: list[str]
    by: str
    safe: bool        # False when the top two are within one std, or a std is unknown (1 seed)
    note: str         # one paragraph for a report


def rank(summary: pd.DataFrame, by: str = "best_val_acc") -> Ranking:
    """Rank the rows of one study's summary; several studies are labelled `study/variant`."""
    mean, std = f"{by}_mean", f"{by}_std"
    table = summary[np.isfinite(summary[mean].astype(float))]
    labels = _labels(table)
    table = table.assign(_label=labels).sort_values(mean, ascending=False, kind="stable")
    order = list(table["_label"])
    what = by.replace("_", " ")
    if len(order) == 0:
        return Ranking([], by, False, "Nothing to rank yet: no trial has a finite result.")
    if len(order) == 1:
        return Ranking(order, by, False, f"Only one variant ({order[0]}): nothing to rank.")
    head = f"Ranking by {what} (mean over seeds): {' > '.join(order)};"
    a, b = table.iloc[0], table.iloc[1]
    pa, pb = fmt_pm(a[mean], a[std], a["n_seeds"]), fmt_pm(b[mean], b[std], b["n_seeds"])
    gap = float(a[mean] - b[mean])
    if not (np.isfinite(a[std]) and np.isfinite(b[std])):
        safe, verdict = False, (f"not safe to call: top two without a spread estimate (fewer than 2 "
                                f"seeds): {a['_label']} {pa} vs {b['_label']} {pb}.")
    elif gap <= max(a[std], b[std]):
        safe, verdict = False, (f"not safe to call: top two within 1 std "
                                f"({a['_label']} {pa} vs {b['_label']} {pb}).")
    else:
        safe, verdict = True, (f"{a['_label']} leads {b['_label']} by {gap:.3f}, more than one std "
                               f"({a['_label']} {pa} vs {b['_label']} {pb}).")
    partial = int(summary["running"].sum()) if "running" in summary else 0
    tail = f" Partial results: {partial} trial(s) still running." if partial else ""
    return Ranking(order, by, safe, f"{head} {verdict}{tail}")


def difference(trials: pd.DataFrame, a: str, b: str, metric: str = "best_val_acc") -> dict:
    """`metric` of variant b minus variant a over their non-failed trials.

    std is sqrt(std_a^2 + std_b^2) (independent runs; ddof=1 each), NaN when a side has 1 seed.
    """
    def side(v: str) -> pd.Series:
        g = trials[(trials["variant"] == v) & trials["status"].astype(str).ne("failed")]
        vals = g[metric].astype(float)
        return vals[np.isfinite(vals)]

    va, vb = side(a), side(b)
    return {"a": a, "b": b, "metric": metric, "mean": vb.mean() - va.mean(),
            "std": math.sqrt(va.std(ddof=1) ** 2 + vb.std(ddof=1) ** 2),
            "n_a": int(len(va)), "n_b": int(len(vb))}


# ------------------------------------------------------------------ formatting
def fmt_pm(mean: float, std: float, n: int | None = None, digits: int = 3) -> str:
    """'0.712 ± 0.004'; '0.712 (n=1)' without a std; '–' without a mean."""
    if mean is None or not np.isfinite(mean):
        return "–"
    if std is None or not np.isfinite(std):
        return f"{mean:.{digits}f}" + (f" (n={int(n)})" if n is not None else "")
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def to_markdown(summary: pd.DataFrame, reported: Mapping[str, float] | None = None,
                digits: int = 3) -> str:
    """The summary as a Markdown table; `reported` (variant -> value) adds report columns.

    The `report` column is the course report's value for that variant (it
    quoted the best validation accuracy of a run; "–" where it gave none) and
    `best − report` the reproduced best val acc mean minus it. `outcome` says
    how the trials ended: "learned", or counts of diverged / did not learn /
    running / failed. Numbers are right-aligned, text (names, booleans) left.
    """
    swept = [c for c in summary.columns if c not in TABLE_COLUMNS]
    multi = summary["study"].nunique() > 1
    header = (["study"] if multi else []) + ["variant", *swept, "seeds", "best val acc",
                                             "final val acc", "best epoch"]
    has_report = bool(reported) and any(v in reported for v in summary["variant"])
    if has_report:
        header += ["report", "best − report"]
    header.append("outcome")
    text = {"study", "variant", "outcome"} | {c for c in swept if not _numeric(summary[c])}
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if h in text else "---:" for h in header) + "|"]
    for _, r in summary.iterrows():
        cells = ([_cell(r["study"])] if multi else []) + [_cell(r["variant"])]
        cells += [_value(r[c]) for c in swept]
        cells += [str(int(r["n_seeds"])),
                  fmt_pm(r["best_val_acc_mean"], r["best_val_acc_std"], r["n_seeds"], digits),
                  fmt_pm(r["final_val_acc_mean"], r["final_val_acc_std"], r["n_seeds"], digits),
                  "–" if not np.isfinite(r["best_epoch_mean"]) else f"{r['best_epoch_mean']:.1f}"]
        if has_report:
            rep = (reported or {}).get(r["variant"])
            if rep is None:
                cells += ["–", "–"]
            else:
                diff = r["best_val_acc_mean"] - rep
                cells += [f"{rep:.4f}", "–" if not np.isfinite(diff) else f"{diff:+.{digits}f}"]
        cells.append(outcome(r))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def outcome(row: Mapping) -> str:
    """How a summary row's trials ended: "learned", or "2 diverged", "2 did not learn", ..."""
    parts = [f"{int(row[k])} {name}" for k, name in (
        ("diverged", "diverged"), ("did_not_learn", DID_NOT_LEARN), ("running", "running"),
        ("failed", "failed")) if row.get(k, 0) > 0]
    return ", ".join(parts) or "learned"


def _numeric(col: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)


def _labels(table: pd.DataFrame) -> list[str]:
    if table["study"].nunique() > 1:
        return [f"{s}/{v}" for s, v in zip(table["study"], table["variant"])]
    return list(table["variant"])


def _cell(v: object) -> str:
    return str(v).replace("|", "\\|")


def _value(v: object) -> str:
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (float, np.floating)):
        return "–" if not np.isfinite(v) else f"{v:g}"
    return "–" if v is None else _cell(v)
