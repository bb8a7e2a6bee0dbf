"""`raylab report STUDY_DIR... [--out DIR] [--format md|html]`: a report a person can hand in.

First a summary (one line per study: its headline result, linked to its
section), then per study: the summary table (mean ± std over seeds, with the
course report's value next to it where there is one), the ranking and whether
it is safe to call, and the figures of `analysis.report_figures` as PNG files
next to report.md, linked relatively. One config keeps one colour in every
figure (`plots.config_colors`). `--format html` adds report.html
(`analysis.report_html`: contents, heading anchors, readable on a phone).
Each section also lists where its numbers came from (study.json's provenance,
the nodes and devices its trials ran on: raylab/results/provenance.py) and
warns when its variants, or folders compared together, ran on different
raylab code or device kinds. No timestamps: the same results give the same report.

A combined folder (`raylab.declare.study.combine`, e.g. results/assignment: several
values in the `study` column) is split with `StudyResults.split()`: one section per
study, each rendered as that study's own folder would be (its variants, swept
fields, figures prefixed by its name, its `report` column), after a short
intro naming the runs shared between studies.

The course report's side comes from study.json, where the job files put it
(`Study(reported=..., reported_epochs=..., pairs=..., claims=...)`): the
report's value per (study, variant) for the `report` column
(`analysis.references`), the pairs drawn side by side, and the claims, whose
verdicts (`analysis.claims`) open the report as a table. Nothing about the
course is written here. When a study name repeats across folders, the later
one's figure files also carry its folder's name.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Mapping, Sequence

from raylab.declare.claim import ClaimError
from raylab.results import ResultsError
from raylab.results.provenance import mixed, section
from raylab.results.storage import is_uri

from . import claims, plots
from .load import StudyResults, StudyError, load_study, shared_variants
from .order import variant_order
from .references import References
from .report_figures import slug, study_figures
from .report_html import heading_id, markdown_to_html
from .variant_stats import difference, fmt_pm, rank, summarize, to_markdown

# ------------------------------------------------------------------ report
def _reported(study: StudyResults, variants: Sequence[str], refs: References,
              same_runs: Mapping[tuple[str, str], list[tuple[str, str]]]) -> tuple[dict, list[str]]:
    """variant -> course-report value, own or via a variant that is the same runs; and notes saying so.

    A combined sweep trains a shared baseline once (e.g. `lab2_augment/baseline`
    is `lab1_simplenn/baseline`), so the course report's value for those runs
    belongs in every section that shows them.
    """
    values, notes = {}, []
    for v in variants:
        own = refs.value(study.name, v)
        if own is not None:
            values[v] = own
            continue
        for s, other in same_runs.get((study.name, v), []):
            hit = refs.value(s, other)
            if hit is not None:
                values[v] = hit
                notes.append(f"`{v}` is the same runs as `{s}/{other}`: its `report` value is that one's.")
                break
    return values, notes


def _headline(study: StudyResults, table, reported: Mapping[str, float], course_epochs: int | None,
              link: str) -> str:
    """One line for the summary: the best variant, whether the lead is safe, what did not learn."""
    if table.empty:
        return f"{link}: no results yet."
    r = rank(table)
    rows = table.set_index("variant")
    top = rows.loc[r.order[0]] if r.order else None
    if top is None:
        return f"{link}: no trial has a finite result yet."
    best = fmt_pm(top["best_val_acc_mean"], top["best_val_acc_std"], top["n_seeds"])
    course = f" (course report: {reported[r.order[0]]:.4f})" if r.order[0] in reported else ""
    epochs = int(top["epochs_run_max"])
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


def _study_section(study: StudyResults, out: Path, colors: Mapping[str, str], refs: References,
                   same_runs: Mapping[tuple[str, str], list[tuple[str, str]]],
                   level: int = 2, prefix: str | None = None, link: str | None = None) -> tuple[list[str], str]:
    """The section's Markdown lines and its one-line headline for the summary (starting with
    `link`, default: to the study's heading); figure files start with `prefix` (default: its name)."""
    link = link or f"[{study.name}](#{heading_id(study.name, {})})"
    course_epochs = refs.epochs.get(study.name)
    t = study.trials
    counts = t["status"].value_counts()
    status = ", ".join(f"{n} {s}" for s, n in counts.items()) or "no trials yet"
    parent = study.meta.get("combined")
    where = f"Folder `{study.path}`" + (f" (study `{study.name}` of the combined sweep `{parent}`)"
                                        if parent else "")
    lines = ["#" * level + f" {study.name}", "",
             f"{where}: {len(study.variants)} variant(s), {len(t)} trial(s) ({status}).",
             f"Swept: {', '.join(study.swept) or 'nothing (named variants)'}.", "",
             "Provenance:", "", *(f"- {line}" for line in section(study.meta, t)), ""]
    if study.running:
        lines += ["**Partial results**: some trials are still running; numbers will change.", ""]
    table = summarize(study)
    if table.empty:
        return lines + ["No results yet.", ""], _headline(study, table, {}, course_epochs, link)
    reported, shared_notes = _reported(study, list(table["variant"]), refs, same_runs)
    lines += [to_markdown(table, reported or None)]
    if reported:
        lines += ["`report`: the single-run value the course report gave for this variant (– where it "
                  "gave none); `best − report`: the reproduced best val acc (mean over seeds) minus the "
                  "report's best val acc. " + " ".join(shared_notes), ""]
        lines += _short_run_note(course_epochs, int(table["epochs_run_max"].max()))
    lines += [rank(table).note, ""]
    lines += [f"**Not like for like**: {w}." for w in mixed(t)] + ([""] if mixed(t) else [])
    declared = refs.pairs.get(study.name, [])
    pairs = [(a, b) for a, b in declared if a in study.variants and b in study.variants]
    if not pairs and len(study.variants) == 2:  # two named variants: their difference is the point
        pairs = [tuple(variant_order(t, study.swept))]
    diffs = [_difference_text(t, a, b) for a, b in pairs]
    if diffs:
        lines += ["Differences in best val acc (mean difference ± √(sa²+sb²) over seeds): "
                  + "; ".join(diffs) + ".", ""]
    if study.meta.get("space"):  # a continuous search: the best samples and their values
        from .search_plots import top_k
        lines += ["Top trials of the search:", "", top_k(t, study.meta["space"]), ""]
    for name, caption in study_figures(study, out, colors, declared, prefix):
        lines += [f"![{caption}]({name})", "", f"*{caption}*", ""]
    return lines, _headline(study, table, reported, course_epochs, link)


def _difference_text(trials, a: str, b: str) -> str:
    d = difference(trials, a, b)
    spread = f" ± {d['std']:.3f}" if d["std"] == d["std"] else " (one seed: no spread)"
    return f"`{b}` − `{a}` = {d['mean']:+.3f}{spread}"


def _short_run_note(course: int | None, epochs: int) -> list[str]:
    if course is None or epochs >= course:
        return []
    return [f"**Short run**: these trials trained {epochs} epochs; the course report's value comes "
            f"after {course}, so `best − report` measures the missing epochs as much as the code.", ""]


def _combined_intro(study: StudyResults, parts: list[StudyResults], anchors: Sequence[str]) -> list[str]:
    lines = [f"## {study.name}", "",
             f"Folder `{study.path}` holds a combined sweep of {len(parts)} studies: "
             + ", ".join(f"[{p.name}](#{a})" for p, a in zip(parts, anchors))
             + ". Each has its own section below, as its own folder would render.", ""]
    shared = shared_variants(study)
    if shared:
        lines += ["Identical configs were trained once; their results appear under every study "
                  "that holds them (same runs, same numbers, same colour in every figure): "
                  + "; ".join(" = ".join(f"`{s}/{v}`" for s, v in g) for g in shared) + ".", ""]
    return lines


def _claims_section(studies: Sequence[StudyResults]) -> list[str]:
    verdicts = claims.evaluate(studies)
    if not verdicts:
        return []
    return ["## The course report's claims", "",
            "Each claim is declared next to its study in `jobs/` and tested on every completed trial "
            "with the declared config, from all folders above (one value per seed). `ours`: means and "
            "the difference with its 95% confidence interval over seeds (Welch's t; one-sample t "
            "against a threshold). *reproduced*: the interval lies on the claimed side of 0 (or of "
            "the threshold); *contradicted*: on the other side; *inconclusive at n seeds* otherwise, "
            "with the seeds per variant that would call it if the spread and the difference stayed "
            "as observed.", "", *claims.to_markdown(verdicts), ""]


def _across_folders(studies: Sequence[StudyResults]) -> list[str]:
    """Claims and readers compare variants from different folders too: say where those differ."""
    if len(studies) < 2:
        return []
    import pandas as pd

    found = mixed(pd.concat([s.trials for s in studies], ignore_index=True))
    return [f"**Not like for like across the folders**: {w}." for w in found] + ([""] if found else [])


def write_report(study_dirs: Sequence[str], out: str, fmt: str = "md") -> Path:
    """Write report.md (and report.html when fmt == "html") with figures into `out`; returns report.md.

    Layout: title and how to regenerate; the claims table (when any study
    declares claims); `## Summary` (one line per study with its headline
    result); then one section per study. Raises StudyError
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
    claims_lines = _claims_section(studies)
    seen: dict[str, int] = {}  # heading anchors in page order: a study name met again gets name-1
    for heading in ("raylab report", *claims_lines[:1], "Summary"):
        heading_id(heading.lstrip("# "), seen)
    sections, headlines, prefixes = [], [], set()
    for study in studies:
        refs, split = References.of(study), study.split()
        # Per folder: another folder's identical config is other runs, not these.
        same_runs = {sv: [o for o in g if o != sv] for g in shared_variants(study) for sv in g}
        if len(split) > 1:
            heading_id(study.name, seen)
        anchors = [heading_id(part.name, seen) for part in split]
        if len(split) > 1:
            sections += _combined_intro(study, split, anchors)
        for part, anchor in zip(split, anchors):
            folder = Path(str(part.path)).name
            repeated = anchor != heading_id(part.name, {})
            prefix = slug(part.name)
            if prefix in prefixes:  # a study name met again in another folder: its figures get the folder's name too
                prefix = slug(f"{folder}_{part.name}")
            prefixes.add(prefix)
            link = f"[{part.name}{f' ({folder})' if repeated else ''}](#{anchor})"
            lines, headline = _study_section(part, out_dir, next(colors), refs, same_runs,
                                             level=2 if len(split) == 1 else 3, prefix=prefix, link=link)
            sections += lines
            headlines.append(headline)
    lines = ["# raylab report", "",
             "Regenerate with `raylab report " + " ".join(str(d) for d in study_dirs)
             + f" --out {out}" + (" --format html" if fmt == "html" else "") + "`.", "",
             "Numbers are mean ± std over seeds (sample std, ddof=1); `(n=1)` marks a single run, "
             "which gives no spread. Accuracies are fractions of the validation split.", "",
             *claims_lines,  # first: the verdicts are what a reader of a reproduction came for
             *_across_folders(studies),
             "## Summary", "", *(f"- {h}" for h in headlines), ""]
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
    except (ResultsError, ClaimError) as exc:
        print(f"raylab report: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"raylab report: error: cannot write {out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(path if args.format == "md" else path.with_suffix(".html"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
