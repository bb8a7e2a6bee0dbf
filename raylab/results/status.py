"""What a study folder says about its trials, as the tables the CLI prints: `raylab status`
(one line per trial, while a sweep runs or after) and the per-variant summary that
`raylab run` and `raylab resume` end with. Imports neither torch nor Ray."""
from __future__ import annotations

from raylab.results.contract import METRICS, TRIALS
from raylab.results.reader import read_table
from raylab.results.rows import count


def trial_lines(root: str) -> list[str]:
    """One line per trial from the Parquet files: status, epochs run of the config's, best val acc."""
    trials = read_table(root, TRIALS)
    metrics = read_table(root, METRICS, required=False)
    best = metrics.groupby("trial_id")["val_acc"].max()
    lines = [f"{'trial':<36} {'status':<10} {'epoch':>9} {'best val acc':>13} {'restarts':>8}"]
    for row in trials.sort_values("trial_id").to_dict("records"):
        done, total = count(row.get("epochs_run")), count(row.get("epochs"))
        lines.append(f"{row['trial_id']:<36} {row['status']:<10} {done:>4}/{total:<4} "
                     f"{best.get(row['trial_id'], float('nan')):>13.4f} {count(row.get('restarts')):>8}")
    counts = trials["status"].value_counts().to_dict()
    return lines + ["", ", ".join(f"{v} {k}" for k, v in counts.items()) + f"; {len(metrics)} epoch rows"]


def variant_lines(root: str) -> tuple[list[str], int]:
    """Variant, seeds, best val acc mean ± std: the table a user reads first; and how many trials failed."""
    trials = read_table(root, TRIALS)
    several = trials["study"].nunique() > 1  # a combined sweep: name each row's study too
    lines = ["", f"{'variant':<36} {'seeds':>5} {'best val acc':>17} {'status'}"]
    for (study, variant), g in trials.groupby(["study", "variant"], sort=False):
        acc = g["best_val_acc"].astype(float)
        std = f"± {acc.std():.4f}" if len(acc) > 1 else "       "
        states = ", ".join(f"{k} {v}" for k, v in g["status"].value_counts().items())
        name = f"{study}/{variant}" if several else variant
        lines.append(f"{name:<36} {len(g):>5} {acc.mean():>8.4f} {std} {states}")
    failed = int((trials["status"] == "failed").sum())
    lines.append(f"\nresults: {root}/  (metrics.parquet, trials.parquet, weights.parquet)")
    if failed:
        lines.append(f"{failed} trial(s) failed: `raylab resume {root}` retries them from their checkpoints")
    return lines, failed
