"""report.md as one offline HTML page: contents, linkable headings, tables that fit a phone.

Handles the Markdown `analysis.report` writes: headings, paragraphs, "- "
lists, pipe tables, images and inline code / bold / italic / links. Heading
ids are GitHub's (lower case, punctuation dropped, spaces to "-"), so a link
"#lab2_lr_sweep" works in report.md on GitHub and in report.html alike. Each
image gets its width from its PNG at 96 CSS px per inch of figure, so a
four-panel grid is drawn wider than a one-axes figure, never past the screen.
"""
from __future__ import annotations

import html
import re
import struct
from pathlib import Path

DPI = 150  # the dpi analysis.report saves figures at: PNG pixels per figure inch
STYLE = """
body{font-family:system-ui,sans-serif;line-height:1.45;max-width:1100px;margin:0 auto;padding:0 12px 3em}
h1,h2,h3{line-height:1.2}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
a.anchor{color:#999;text-decoration:none;margin-left:.3em;font-weight:normal}
nav.toc{background:#f6f8fa;border:1px solid #ddd;padding:.4em 1em;margin:1em 0}
nav.toc ul{margin:.2em 0;padding-left:1.2em}
.scroll{overflow-x:auto;margin:1em 0}
table{border-collapse:collapse;font-size:.92em}td,th{border:1px solid #bbb;padding:3px 8px;text-align:left;white-space:nowrap}
td.r{text-align:right;font-variant-numeric:tabular-nums}th.r{text-align:right}
figure{margin:1.2em 0}img{max-width:100%;height:auto}figcaption{font-size:.92em;color:#333}
code{background:#f3f3f3;padding:0 2px;overflow-wrap:anywhere}p,li{overflow-wrap:anywhere}
"""


def heading_id(text: str, seen: dict[str, int]) -> str:
    """GitHub's anchor for a heading: lower case, only word characters, "-" and spaces (as "-")."""
    base = re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-") or "section"
    n = seen.get(base, 0)
    seen[base] = n + 1
    return base if n == 0 else f"{base}-{n}"


def _plain(text: str) -> str:
    """Heading text as GitHub slugs it: code ticks and emphasis markers dropped."""
    return re.sub(r"[`*]", "", text)


def inline(text: str) -> str:
    out = html.escape(text, quote=True)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", r'<a href="\2">\1</a>', out)
    out = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)
    out = re.sub(r"(?<![\w*])\*([^*]+)\*(?![\w*])", r"<em>\1</em>", out)
    return out


def png_width(path: Path) -> int | None:
    """Pixel width from a PNG's IHDR chunk, or None when the file is not a readable PNG."""
    try:
        head = path.read_bytes()[:24]
    except OSError:
        return None
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    return struct.unpack(">I", head[16:20])[0]


def markdown_to_html(md: str, title: str = "raylab report", base: Path | None = None) -> str:
    """The Markdown of `analysis.report` as one HTML page; `base`: the folder its images are in."""
    body: list[str] = []
    toc: list[tuple[int, str, str]] = []
    seen: dict[str, int] = {}
    lines = md.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            text = line[level:].strip()
            hid = heading_id(_plain(text), seen)
            if level > 1:
                toc.append((level, hid, text))
            body.append(f'<h{level} id="{hid}">{inline(text)}'
                        f'<a class="anchor" href="#{hid}" aria-label="link to this section">#</a></h{level}>')
            i += 1
        elif m := re.fullmatch(r"!\[(.*)\]\((.+)\)", line.strip()):
            i += 1
            caption = ""
            while i < len(lines) and not lines[i].strip():
                i += 1
            if i < len(lines) and re.fullmatch(r"\*[^*].*\*", lines[i].strip()):
                caption, i = lines[i].strip()[1:-1], i + 1
            body.append(_figure(m[2], m[1], caption, base))
        elif line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(lines[i])
                i += 1
            body.append('<div class="scroll">' + _table(rows) + "</div>")
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{inline(lines[i][2:])}</li>")
                i += 1
            body.append("<ul>" + "".join(items) + "</ul>")
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not lines[i].startswith(("#", "|", "![", "- ")):
                para.append(lines[i])
                i += 1
            body.append(f"<p>{inline(' '.join(para))}</p>")
    _insert_toc(body, toc)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def _insert_toc(body: list[str], toc: list[tuple[int, str, str]]) -> None:
    """Contents of the h2 / h3 headings, placed before the first h2."""
    if not toc:
        return
    items, depth = [], 2
    for level, hid, text in toc:
        while depth < level:
            items.append("<ul>")
            depth += 1
        while depth > level:
            items.append("</ul>")
            depth -= 1
        items.append(f'<li><a href="#{hid}">{inline(text)}</a></li>')
    items += ["</ul>"] * (depth - 2)
    nav = '<nav class="toc" aria-label="contents"><strong>Contents</strong><ul>' + "".join(items) + "</ul></nav>"
    first = next(k for k, b in enumerate(body) if b.startswith("<h2"))
    body.insert(first, nav)


def _figure(src: str, alt: str, caption: str, base: Path | None) -> str:
    px = png_width(base / src) if base is not None else None
    width = f' width="{round(px * 96 / DPI)}"' if px else ""
    return (f'<figure><img src="{html.escape(src, quote=True)}" alt="{html.escape(alt, quote=True)}"'
            f'{width}>' + (f"<figcaption>{inline(caption)}</figcaption>" if caption else "")
            + "</figure>")


def _cells(row: str) -> list[str]:
    cells = re.split(r"(?<!\\)\|", row.strip().strip("|"))
    return [c.strip().replace("\\|", "|") for c in cells]


def _table(rows: list[str]) -> str:
    head, align = _cells(rows[0]), _cells(rows[1]) if len(rows) > 1 else []
    right = [a.endswith(":") for a in align]

    def cls(j: int) -> str:
        return ' class="r"' if j < len(right) and right[j] else ""
    out = ["<table>", "<tr>" + "".join(f"<th{cls(j)}>{inline(c)}</th>" for j, c in enumerate(head)) + "</tr>"]
    for row in rows[2:]:
        out.append("<tr>" + "".join(f"<td{cls(j)}>{inline(c)}</td>" for j, c in enumerate(_cells(row)))
                   + "</tr>")
    return "\n".join(out + ["</table>"])
