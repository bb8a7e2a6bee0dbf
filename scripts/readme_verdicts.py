"""Copy the claims table that opens docs/results/report.md into README's "Course verdicts":
the claims with a verdict as a table, the rest named in the paragraph after it. Run from the
checkout root; scripts/fidelity_collect.sh runs it last, so README never types a verdict."""
import re
from pathlib import Path

HEADER = "| claim | course report | ours (mean, 95% CI) | n seeds | verdict |"


def claims(report: str) -> list[list[str]]:
    lines = report.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| claim | study |"))
    rows = []
    for line in lines[start + 2:]:
        if not line.strip():
            break
        rows.append([c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows  # claim, study, course report, ours, n seeds, verdict, seeds to call it


def render(readme: str, report: str) -> str:
    """README with its verdict table and the paragraph after it made from report.md's claims."""
    rows = claims(report)
    table = [HEADER, "|---|---|---|---:|---|"]
    for claim, _, theirs, ours, n, verdict, needed in rows:
        if verdict != "not run":
            table.append(f"| {claim} | {theirs} | {ours} | {n} | {verdict}"
                         f"{f' ({needed} seeds would call it)' if needed else ''} |")
    todo = [r[0] for r in rows if r[5] == "not run"]
    after = (f"Not run yet: {'; '.join(todo)} (see report.md for why; `raylab resume` or a new run, "
             "then `scripts/fidelity_collect.sh`)." if todo else "Every claim has a computed verdict.")
    a = readme.index(HEADER)
    b = readme.index("\n\n", readme.index("\n\n", a) + 2)  # the table, then the paragraph after it
    return readme[:a] + "\n".join(table) + "\n\n" + after + readme[b:]


def main() -> None:
    readme = Path("README.md")
    readme.write_text(render(readme.read_text(), Path("docs/results/report.md").read_text()))


if __name__ == "__main__":
    main()
