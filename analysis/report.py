"""`raylab report STUDY_DIR... [--out DIR] [--format md|html]`: a report a person can hand in.

Per study: the summary table (mean ± std over seeds, with the course report's
value next to it where there is one), the ranking and whether it is safe to
call, and the figures of `analysis.plots` as PNG files next to report.md,
linked relatively. No timestamps: the same results give the same report.

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
import html
import re
import sys
from pathlib import Path
from typing import Sequence

from raylab.results import ResultsError, config_column

from . import plots
from .load import Study, StudyError, load_study, shared_variants
from .summary import rank, summarize, to_markdown

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
def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "_", name).strip("_") or "study"


def _figures(study: Study, out: Path) -> list[tuple[str, str]]:
    """Draw and save the study's figures; returns (file name, caption) pairs."""
    slug, colors, made = _slug(study.name), plots.variant_colors(study.variants), []
    variants, m, t, w = study.variants, study.metrics, study.trials, study.weights

    def keep(fig, stem: str, caption: str) -> None:
        plots.save(fig, out / f"{slug}_{stem}", formats=("png",))
        made.append((f"{slug}_{stem}.png", caption))

    if m.empty:
        return made
    keep(plots.learning_curves(m, trials=t, study=study.name, colors=colors),
         "learning_curves", "Learning curves of every variant (line: mean over seeds; band: min-max).")
    space = study.meta.get("space")
    if space:  # a continuous search: each sample is a variant; plot against the sampled values instead
        from . import search_plots as sp
        keep(sp.accuracy_vs_params(t, space, study.name), "search_params",
             "Best (dot) and final (x) validation accuracy against each sampled field.")
        pair = sp.param_scatter(t, space, study.name)
        if pair is not None:
            keep(pair, "search_pair", "The first two sampled fields, coloured by best validation accuracy.")
        keep(sp.best_so_far(t, study.name), "search_best_so_far",
             "Best validation accuracy among the first k trials sampled.")
        return made
    if len(variants) > 1:
        keep(plots.sweep_curves(m, "val_acc", trials=t, study=study.name, colors=colors),
             "sweep_val_acc", "Validation accuracy of all variants on one axes.")
        swept = [f for f in study.swept if config_column(f) in t.columns]
        # One swept field: a sweep. Several (e.g. "bn+lr=0.1" vs "lr=0.01") would put
        # different variants at one x, so named-variant studies get the curves only.
        if len(swept) == 1:
            keep(plots.sweep_scatter(t, swept[0], study=study.name, colors=colors),
                 f"sweep_{swept[0]}", f"Best and final validation accuracy against {swept[0]}.")
        pairs = [(a, b) for a, b in PAIRS if a in variants and b in variants]
        if not pairs and len(variants) == 2:
            pairs = [(variants[0], variants[1])]
        for a, b in pairs:
            keep(plots.pairwise(t, m, a, b, study=study.name, colors=colors),
                 f"pair_{_slug(a)}_vs_{_slug(b)}", f"{a} against {b}, with the difference in "
                 f"best validation accuracy.")
    with_weights = sorted(set(w["variant"])) if len(w) else []
    if len(with_weights) >= 2:
        keep(plots.weight_histograms(w, study=study.name, colors=colors),
             "weights", "Final weight histograms overlaid; legend: fraction of weights near zero.")
    return made


def _study_section(study: Study, out: Path, level: int = 2) -> list[str]:
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
        return lines + ["No results yet.", ""]
    reported = {v: reported_value(study.name, v) for v in table["variant"]}
    reported = {v: x for v, x in reported.items() if x is not None}
    lines += [to_markdown(table, reported or None)]
    if reported:
        lines += ["`report`: the single-run value the course report gave for this variant; "
                  "`best − report`: the reproduced best val acc (mean over seeds) minus the report's best val acc.", ""]
        lines += _short_run_note(study.name, int(table["epochs_run_max"].max()))
    lines += [rank(table).note, ""]
    if study.meta.get("space"):  # a continuous search: the best samples and their values
        from .search_plots import top_k
        lines += ["Top trials of the search:", "", top_k(t, study.meta["space"]), ""]
    for name, caption in _figures(study, out):
        lines += [f"![{caption}]({name})", "", f"*{caption}*", ""]
    return lines


def _short_run_note(study: str, epochs: int) -> list[str]:
    course = REPORTED_EPOCHS.get(_norm_study(study))
    if course is None or epochs >= course:
        return []
    return [f"**Short run**: these trials trained {epochs} epochs; the course report's value comes "
            f"after {course}, so `best − report` measures the missing epochs as much as the code.", ""]


def _combined_intro(study: Study, parts: list[Study]) -> list[str]:
    lines = [f"## {study.name}", "",
             f"Folder `{study.path}` holds a combined sweep of {len(parts)} studies: "
             + ", ".join(f"`{p.name}`" for p in parts)
             + ". Each has its own section below, as its own folder would render.", ""]
    shared = shared_variants(study)
    if shared:
        lines += ["Identical configs were trained once; their results appear under every study "
                  "that holds them (same runs, same numbers): "
                  + "; ".join(" = ".join(f"`{s}/{v}`" for s, v in g) for g in shared) + ".", ""]
    return lines


def write_report(study_dirs: Sequence[str], out: str, fmt: str = "md") -> Path:
    """Write report.md (and report.html when fmt == "html") with figures into `out`; returns report.md.

    Raises StudyError (one line) when a folder is not a study.
    """
    if fmt not in ("md", "html"):
        raise ValueError(f"format must be md or html, not {fmt!r}")
    if not study_dirs:
        raise StudyError("no study folders given")
    studies = [load_study(d) for d in study_dirs]
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = ["# raylab report", "",
             "Regenerate with `raylab report " + " ".join(str(d) for d in study_dirs)
             + f" --out {out}" + (" --format html" if fmt == "html" else "") + "`.", "",
             "Numbers are mean ± std over seeds (sample std, ddof=1); `(n=1)` marks a single run, "
             "which gives no spread. Accuracies are fractions of the validation split.", ""]
    for study in studies:
        parts = study.split()
        if len(parts) == 1:
            lines += _study_section(study, out_dir)
        else:
            lines += _combined_intro(study, parts)
            for part in parts:
                lines += _study_section(part, out_dir, level=3)
    md = out_dir / "report.md"
    md.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    if fmt == "html":
        (out_dir / "report.html").write_text(markdown_to_html(md.read_text("utf-8")), encoding="utf-8")
    return md


# ------------------------------------------------------------------ html
def _inline(text: str) -> str:
    out = html.escape(text, quote=True)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)
    out = re.sub(r"(?<![\w*])\*([^*]+)\*(?![\w*])", r"<em>\1</em>", out)
    return out


def markdown_to_html(md: str, title: str = "raylab report") -> str:
    """The Markdown this module writes (headings, tables, images, paragraphs) as one HTML page."""
    body: list[str] = []
    lines = md.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{_inline(line[level:].strip())}</h{level}>")
            i += 1
        elif m := re.fullmatch(r"!\[(.*)\]\((.+)\)", line.strip()):
            body.append(f'<p><img src="{html.escape(m[2], quote=True)}" '
                        f'alt="{html.escape(m[1], quote=True)}" style="max-width:100%"></p>')
            i += 1
        elif line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(lines[i])
                i += 1
            body.append(_table(rows))
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not lines[i].startswith(("#", "|", "![")):
                para.append(lines[i])
                i += 1
            body.append(f"<p>{_inline(' '.join(para))}</p>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse}td,th{border:1px solid #bbb;padding:3px 8px}"
             "td.r{text-align:right}code{background:#f3f3f3}")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def _cells(row: str) -> list[str]:
    cells = re.split(r"(?<!\\)\|", row.strip().strip("|"))
    return [c.strip().replace("\\|", "|") for c in cells]


def _table(rows: list[str]) -> str:
    head, align = _cells(rows[0]), _cells(rows[1]) if len(rows) > 1 else []
    right = [a.endswith(":") for a in align]
    out = ["<table>", "<tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head) + "</tr>"]
    for row in rows[2:]:
        tds = []
        for j, c in enumerate(_cells(row)):
            cls = ' class="r"' if j < len(right) and right[j] else ""
            tds.append(f"<td{cls}>{_inline(c)}</td>")
        out.append("<tr>" + "".join(tds) + "</tr>")
    return "\n".join(out + ["</table>"])


# ------------------------------------------------------------------ CLI
def _default_out(first: str) -> str:
    if "://" in first:
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
        return 1
    print(path if args.format == "md" else path.with_suffix(".html"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
