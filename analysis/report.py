"""`raylab report STUDY_DIR... [--out DIR] [--format md|html]`: a report a person can hand in.

First a summary (one line per study: its headline result, linked to its
section), then per study: the summary table (mean ± std over seeds, with the
course report's value next to it where there is one), the ranking and whether
it is safe to call, and the figures of `analysis.report_figures` as PNG files
next to report.md, linked relatively. One config keeps one colour in every
figure (`plots.config_colors`). `--format html` adds report.html
(`analysis.report_html`: contents, heading anchors, readable on a phone).
No timestamps: the same results give the same report.

A combined folder (`raylab.study.combine`, e.g. results/assignment: several
values in the `study` column) is split with `Study.split()`: one section per
study, each rendered as that study's own folder would be (its variants, swept
fields, figures prefixed by its name, its `report` column), after a short
intro naming the runs shared between studies.

The course report's numbers live in REPORTED, keyed by (study, variant). The
exact names expected (name job variants like this to get the `report` column):

    study            variant       course report
    lab1_simplenn    baseline      0.6606
    lab1_simplenn    step-decay    0.6576
    lab2_augment     augment       0.7122
    lab2_batchnorm   bn            0.7144   (BN at the default lr; "bn+lr=0.1" is not it)
    lab2_swish       swish         0.7258
    lab3_resnet20    resnet20      0.924

Matching is tolerant: case, "_" / "-" / spaces are ignored, a few aliases map
to these names (VARIANT_ALIASES: "step", "decay", "augmented", "batchnorm",
"silu", "resnet-20", ...), and in the combined `assignment` study (or any
variant written "lab2_swish/swish") the variant alone picks the entry.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Mapping, Sequence

from raylab.results import ResultsError
from raylab.storage import is_uri

from . import plots
from .load import Study, StudyError, load_study, shared_variants
from .order import variant_order
from .report_figures import study_figures
from .report_html import heading_id, markdown_to_html
from .summary import difference, fmt_pm, rank, summarize, to_markdown

REPORTED: dict[tuple[str, str], float] = {
    ("lab1_simplenn", "baseline"): 0.6606,
    ("lab1_simplenn", "step-decay"): 0.6576,
    ("lab2_augment", "augment"): 0.7122,
    ("lab2_batchnorm", "bn"): 0.7144,
    ("lab2_swish", "swish"): 0.7258,
    ("lab3_resnet20", "resnet20"): 0.924,
}
# Epochs behind each course-report number: a shorter reproduction is labelled as such.
REPORTED_EPOCHS = {"lab1_simplenn": 30, "lab2_augment": 30, "lab2_batchnorm": 30, "lab2_swish": 30,
                   "lab3_resnet20": 200}
VARIANT_ALIASES = {
    "base": "baseline", "default": "baseline",
    "step": "step-decay", "decay": "step-decay", "stepdecay": "step-decay", "step-lr": "step-decay",
    "lr-decay": "step-decay", "step-10-0.9": "step-decay",
    "aug": "augment", "augmented": "augment", "augmentation": "augment",
    "batchnorm": "bn", "batch-norm": "bn", "bn-relu": "bn",
    "silu": "swish",
    "resnet-20": "resnet20",
}
COMBINED_STUDIES = frozenset({"assignment"})  # studies holding several labs' variants
# Pairs drawn side by side when both variants are in a study: (a, b) shows b − a.
PAIRS = [("lr=0.1", "bn+lr=0.1"), ("baseline", "bn"), ("baseline", "swish"), ("relu", "swish"),
         ("baseline", "augment"), ("no-augment", "augment"), ("l2", "l1")]


def _norm_study(name: str) -> str:
    return re.sub(r"[\s\-_]+", "_", str(name).strip().lower())


def _norm_variant(name: str) -> str:
    v = re.sub(r"[\s_\-]+", "-", str(name).strip().lower())
    return VARIANT_ALIASES.get(v, v)


_BY_STUDY = {(_norm_study(s), _norm_variant(v)): val for (s, v), val in REPORTED.items()}


def reported_value(study: str, variant: str) -> float | None:
    """The course report's value for this (study, variant), or None; see the module docstring."""
    s, v = _norm_study(study), str(variant)
    if "/" in v or ":" in v:  # "lab2_swish/swish" inside a combined study
        prefix, v = re.split(r"[/:]", v, maxsplit=1)
        hit = _BY_STUDY.get((_norm_study(prefix), _norm_variant(v)))
        if hit is not None:
            return hit
    v = _norm_variant(v)
    if (s, v) in _BY_STUDY:
        return _BY_STUDY[(s, v)]
    if s in COMBINED_STUDIES:
        hits = [val for (_, rv), val in _BY_STUDY.items() if rv == v]
        return hits[0] if len(hits) == 1 else None
    return None


# ------------------------------------------------------------------ report
def _reported(study: Study, variants: Sequence[str],
              same_runs: Mapping[tuple[str, str], list[tuple[str, str]]]) -> tuple[dict, list[str]]:
    """variant -> course-report value, own or via a variant that is the same runs; and notes saying so.

    A combined sweep trains a shared baseline once (e.g. `lab2_augment/baseline`
    is `lab1_simplenn/baseline`), so the course report's value for those runs
    belongs in every section that shows them.
    """
    values, notes = {}, []
    for v in variants:
        own = reported_value(study.name, v)
        if own is not None:
            values[v] = own
            continue
        for s, other in same_runs.get((study.name, v), []):
            hit = reported_value(s, other)
            if hit is not None:
                values[v] = hit
                notes.append(f"`{v}` is the same runs as `{s}/{other}`: its `report` value is that one's.")
                break
    return values, notes


def _headline(study: Study, table, reported: Mapping[str, float]) -> str:
    """One line for the summary: the best variant, whether the lead is safe, what did not learn."""
    link = f"[{study.name}](#{heading_id(study.name, {})})"
    if table.empty:
        return f"{link}: no results yet."
    r = rank(table)
    rows = table.set_index("variant")
    top = rows.loc[r.order[0]] if r.order else None
    if top is None:
        return f"{link}: no trial has a finite result yet."
    best = fmt_pm(top["best_val_acc_mean"], top["best_val_acc_std"], top["n_seeds"])
    course = f" (course report: {reported[r.order[0]]:.4f})" if r.order[0] in reported else ""
    epochs, course_epochs = int(top["epochs_run_max"]), REPORTED_EPOCHS.get(_norm_study(study.name))
    if course and course_epochs and epochs < course_epochs:
        course = f" after {epochs} epochs (course report: {reported[r.order[0]]:.4f} after {course_epochs})"
    if len(r.order) == 1:
        line = f"{link}: `{r.order[0]}` reaches best val acc {best}{course}."
    else:
        second = rows.loc[r.order[1]]
        other = fmt_pm(second["best_val_acc_mean"], second["best_val_acc_std"], second["n_seeds"])
        verdict = (f"leads `{r.order[1]}` ({other}) by more than one std" if r.safe else
                   f"not separable from `{r.order[1]}` ({other}): within one std or too few seeds")
        line = f"{link}: best `{r.order[0]}`, {best}{course}; {verdict}."
    flat = [v for v, n in zip(table["variant"], table["did_not_learn"]) if n > 0]
    div = [v for v, n in zip(table["variant"], table["diverged"]) if n > 0]
    for names, what in ((flat, "did not learn (ended at chance)"), (div, "diverged")):
        if names:
            line += " " + ", ".join(f"`{v}`" for v in names) + f" {what}."
    return line


def _study_section(study: Study, out: Path, colors: Mapping[str, str],
                   same_runs: Mapping[tuple[str, str], list[tuple[str, str]]],
                   level: int = 2) -> tuple[list[str], str]:
    """The section's Markdown lines and its one-line headline for the summary."""
    t = study.trials
    counts = t["status"].value_counts()
    status = ", ".join(f"{n} {s}" for s, n in counts.items()) or "no trials yet"
    parent = study.meta.get("combined")
    where = f"Folder `{study.path}`" + (f" (study `{study.name}` of the combined sweep `{parent}`)"
                                        if parent else "")
    lines = ["#" * level + f" {study.name}", "",
             f"{where}: {len(study.variants)} variant(s), {len(t)} trial(s) ({status}).",
             f"Swept: {', '.join(study.swept) or 'nothing (named variants)'}.", ""]
    if study.running:
        lines += ["**Partial results**: some trials are still running; numbers will change.", ""]
    table = summarize(study)
    if table.empty:
        return lines + ["No results yet.", ""], _headline(study, table, {})
    reported, shared_notes = _reported(study, list(table["variant"]), same_runs)
    lines += [to_markdown(table, reported or None)]
    if reported:
        lines += ["`report`: the single-run value the course report gave for this variant (– where it "
                  "gave none); `best − report`: the reproduced best val acc (mean over seeds) minus the "
                  "report's best val acc. " + " ".join(shared_notes), ""]
        lines += _short_run_note(study.name, int(table["epochs_run_max"].max()))
    lines += [rank(table).note, ""]
    pairs = [(a, b) for a, b in PAIRS if a in study.variants and b in study.variants]
    if not pairs and len(study.variants) == 2:  # two named variants: their difference is the point
        pairs = [tuple(variant_order(t, study.swept))]
    diffs = [_difference_text(t, a, b) for a, b in pairs]
    if diffs:
        lines += ["Differences in best val acc (mean difference ± √(sa²+sb²) over seeds): "
                  + "; ".join(diffs) + ".", ""]
    if study.meta.get("space"):  # a continuous search: the best samples and their values
        from .search_plots import top_k
        lines += ["Top trials of the search:", "", top_k(t, study.meta["space"]), ""]
    for name, caption in study_figures(study, out, colors, PAIRS):
        lines += [f"![{caption}]({name})", "", f"*{caption}*", ""]
    return lines, _headline(study, table, reported)


def _difference_text(trials, a: str, b: str) -> str:
    d = difference(trials, a, b)
    spread = f" ± {d['std']:.3f}" if d["std"] == d["std"] else " (one seed: no spread)"
    return f"`{b}` − `{a}` = {d['mean']:+.3f}{spread}"


def _short_run_note(study: str, epochs: int) -> list[str]:
    course = REPORTED_EPOCHS.get(_norm_study(study))
    if course is None or epochs >= course:
        return []
    return [f"**Short run**: these trials trained {epochs} epochs; the course report's value comes "
            f"after {course}, so `best − report` measures the missing epochs as much as the code.", ""]


def _combined_intro(study: Study, parts: list[Study]) -> list[str]:
    lines = [f"## {study.name}", "",
             f"Folder `{study.path}` holds a combined sweep of {len(parts)} studies: "
             + ", ".join(f"[{p.name}](#{heading_id(p.name, {})})" for p in parts)
             + ". Each has its own section below, as its own folder would render.", ""]
    shared = shared_variants(study)
    if shared:
        lines += ["Identical configs were trained once; their results appear under every study "
                  "that holds them (same runs, same numbers, same colour in every figure): "
                  + "; ".join(" = ".join(f"`{s}/{v}`" for s, v in g) for g in shared) + ".", ""]
    return lines


def write_report(study_dirs: Sequence[str], out: str, fmt: str = "md") -> Path:
    """Write report.md (and report.html when fmt == "html") with figures into `out`; returns report.md.

    Layout: title and how to regenerate; `## Summary` (one line per study
    with its headline result); then one section per study. Raises StudyError
    (one line) when a folder is not a study.
    """
    if fmt not in ("md", "html"):
        raise ValueError(f"format must be md or html, not {fmt!r}")
    if not study_dirs:
        raise StudyError("no study folders given")
    studies = [load_study(d) for d in study_dirs]
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    parts = [part for study in studies for part in study.split()]
    colors = iter(plots.config_colors(parts))  # one colour per config through the whole report
    same_runs = {sv: [o for o in g if o != sv] for study in studies
                 for g in shared_variants(study) for sv in g}
    sections, headlines = [], []
    for study in studies:
        split = study.split()
        if len(split) > 1:
            sections += _combined_intro(study, split)
        for part in split:
            lines, headline = _study_section(part, out_dir, next(colors), same_runs,
                                             level=2 if len(split) == 1 else 3)
            sections += lines
            headlines.append(headline)
    lines = ["# raylab report", "",
             "Regenerate with `raylab report " + " ".join(str(d) for d in study_dirs)
             + f" --out {out}" + (" --format html" if fmt == "html" else "") + "`.", "",
             "Numbers are mean ± std over seeds (sample std, ddof=1); `(n=1)` marks a single run, "
             "which gives no spread. Accuracies are fractions of the validation split.", "",
             "## Summary", "", *(f"- {h}" for h in headlines), ""]
    # The claims section (analysis.claims) goes here: right after the summary, before the studies.
    lines += sections
    md = out_dir / "report.md"
    md.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    if fmt == "html":
        (out_dir / "report.html").write_text(markdown_to_html(md.read_text("utf-8"), base=out_dir),
                                             encoding="utf-8")
    return md


# ------------------------------------------------------------------ CLI
def _default_out(first: str) -> str:
    if is_uri(first):
        return "report"
    return str(Path(first) / "report")


def main(argv: Sequence[str] | None = None) -> int:
    """`raylab report STUDY_DIR... [--out DIR] [--format md|html]`; 0 ok, 2 bad input (one line)."""
    parser = argparse.ArgumentParser(
        prog="raylab report", description="Summary tables and figures of one or more study folders.")
    parser.add_argument("study_dirs", nargs="+", metavar="STUDY_DIR",
                        help="study folder (local path or s3://... URI) holding metrics.parquet")
    parser.add_argument("--out", help="output folder (default: the first STUDY_DIR's report/)")
    parser.add_argument("--format", choices=("md", "html"), default="md",
                        help="md: report.md; html: report.md and report.html")
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    out = args.out or _default_out(args.study_dirs[0])
    try:
        path = write_report(args.study_dirs, out, args.format)
    except ResultsError as exc:
        print(f"raylab report: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"raylab report: error: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(path if args.format == "md" else path.with_suffix(".html"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
