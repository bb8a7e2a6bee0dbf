"""README and docs/: every relative link resolves, and README stays one screenful.

A link is checked as GitHub renders it: a path relative to the Markdown file that holds it
(a file or folder in the checkout), and an `#anchor` that one of the target's headings
produces (GitHub's heading ids, the ones `raylab report` writes too). Links inside code are
text, not links. External links (http:, https:, mailto:) are not fetched.
"""
import re
from pathlib import Path

import pytest

from analysis.report_html import _plain, heading_id

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 250  # one screenful: nanoGPT's README is 234 lines, airbench's 116
LINK = re.compile(r"\[([^\]]*)\]\(([^)\s]+)\)")  # [text](target) and ![alt](src)
FENCE = re.compile(r"^ {0,3}(```|~~~)")
HEADING = re.compile(r"^ {0,3}#{1,6}\s+(.*?)(\s+#+)?\s*$")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)  # http:, https:, mailto: ...


def prose(text: str) -> list[str]:
    """The lines of a Markdown file outside fenced and indented code blocks."""
    lines, fenced, code, blank_before = [], False, False, True
    for line in text.splitlines():
        if FENCE.match(line):
            fenced, blank_before = not fenced, False
            continue
        if fenced:
            continue
        blank = not line.strip()
        if line.startswith("    ") and (code or blank_before):  # an indented block starts after a blank line
            code = True
        elif not blank:
            code = False
        if not code and not blank:
            lines.append(line)
        blank_before = blank
    return lines


def anchors(path: Path) -> set[str]:
    """The heading ids GitHub gives a Markdown file's headings (repeats get -1, -2, ...)."""
    seen: dict[str, int] = {}
    out = set()
    for line in prose(path.read_text()):
        m = HEADING.match(line)
        if m:
            text = LINK.sub(r"\1", m.group(1))  # a linked heading is slugged by its text
            out.add(heading_id(_plain(text), seen))
    return out


def link_targets(path: Path) -> list[str]:
    """Every link's target, except in code: `[x](y)` between backticks is text."""
    return [m.group(2) for line in prose(path.read_text()) for m in LINK.finditer(re.sub(r"`[^`]*`", "``", line))]


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    """Each relative link of `path` that names no file in `root`, or no heading of its target."""
    broken = []
    for target in link_targets(path):
        if EXTERNAL.match(target):
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists() or not dest.is_relative_to(root.resolve()):
            broken.append(f"{target}: no such file in the checkout")
        elif anchor and (dest.suffix != ".md" or anchor not in anchors(dest)):
            broken.append(f"{target}: no heading with id '{anchor}' in {dest.name}")
    return broken


def test_readme_is_one_screenful():
    lines = (ROOT / "README.md").read_text().count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines: move detail into docs/"


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(path):
    assert link_targets(path) or path.name != "README.md", "README links to its guides"
    assert broken_links(path) == []


def test_the_link_check_catches_a_missing_file_or_heading(tmp_path):
    (tmp_path / "guide.md").write_text("# A guide\n\n## Two words: `code`\n\n## Two words: `code`\n")
    page = tmp_path / "page.md"
    page.write_text("# Page\n\n[ok](guide.md#two-words-code-1) [ok](#page) [web](https://example.org/x)\n"
                    "[gone](missing.md) [bad](guide.md#three-words) [self](#nothing)\n\n"
                    "    [in code](missing-too.md)\n\n```\n[fenced](missing-three.md)\n```\n"
                    "`[inline](missing-four.md)`\n")
    assert broken_links(page, tmp_path) == [
        "missing.md: no such file in the checkout",
        "guide.md#three-words: no heading with id 'three-words' in guide.md",
        "#nothing: no heading with id 'nothing' in page.md",
    ]
