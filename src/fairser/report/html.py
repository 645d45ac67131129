"""One self-contained HTML file: inline CSS, figures as base64 PNG, no script, no link to anything outside.

Opening it needs no network and no other file, so it can be mailed or archived with a paper.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

__all__ = ["ReportFigure", "markdown_table_to_html", "render_html"]

_CSS = """
body { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; margin: 0 auto; max-width: 1180px;
       padding: 1.2em 2em 3em; color: #111; background: #fff; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { border-bottom: 2px solid #333; padding-bottom: 0.15em;
       margin-top: 1.8em; } h3 { margin-bottom: 0.3em; }
.banner { background: #000; color: #fff; font-weight: bold; font-size: 1.25em; padding: 0.55em 0.9em;
          border: 4px double #fff; outline: 3px solid #000; margin: 0.8em 0; letter-spacing: 0.04em; }
.meta { color: #333; font-size: 0.95em; } .meta code { background: #f3f3f3; padding: 0 0.25em; }
figure { margin: 1.2em 0; padding: 0.6em; border: 1px solid #bbb; }
figure img { max-width: 100%; height: auto; display: block; margin: 0 auto; }
figcaption { font-size: 0.9em; color: #222; margin-top: 0.4em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.88em; }
th, td { border: 1px solid #999; padding: 0.25em 0.55em; text-align: right; vertical-align: top; }
th { background: #e8e8e8; } td.text, th.text { text-align: left; }
tbody tr:nth-child(even) { background: #f6f6f6; }
.undefined td { text-align: left; } .warn { border-left: 5px solid #000; padding-left: 0.6em; }
ul.notes li { margin-bottom: 0.3em; } .small { font-size: 0.85em; color: #333; }
"""


@dataclass
class ReportFigure:
    """A figure of the report: its PNG bytes, file name, caption and alt text."""

    name: str
    png: bytes
    caption: str
    alt: str
    filename: str = ""


def _inline(text: str) -> str:
    """Escape, then the two Markdown marks render_table uses: **bold** and `code`."""
    out = html.escape(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", out)


def markdown_table_to_html(text: str) -> str:
    """Render the Markdown of :func:`fairser.results.tables.render_table` (paragraphs + one pipe table)."""
    parts: list[str] = []
    table: list[list[str]] = []

    def flush() -> None:
        if not table:
            return
        head, body = table[0], [r for r in table[1:] if not all(set(c) <= set("-: ") for c in r)]
        rows = [
            "<thead><tr>" + "".join(f'<th class="{_cls(i)}">{_inline(c)}</th>' for i, c in enumerate(head))
        ]
        rows.append("</tr></thead><tbody>")
        for r in body:
            rows.append(
                "<tr>"
                + "".join(f'<td class="{_cls(i)}">{_inline(c)}</td>' for i, c in enumerate(r))
                + "</tr>"
            )
        parts.append('<table class="paper">' + "".join(rows) + "</tbody></table>")
        table.clear()

    for line in text.splitlines():
        if line.startswith("|"):
            table.append([c.strip() for c in line.strip().strip("|").split("|")])
        else:
            flush()
            if line.strip():
                parts.append(f'<p class="small">{_inline(line.strip())}</p>')
    flush()
    return "\n".join(parts)


def _cls(i: int) -> str:
    return "text" if i < 2 else ""


def frame_to_html(frame: pd.DataFrame, *, css_class: str = "", max_rows: int | None = None) -> str:
    """A plain HTML table of a DataFrame (text escaped; first columns left-aligned)."""
    shown = frame if max_rows is None else frame.head(max_rows)
    head = "".join(f'<th class="text">{html.escape(str(c))}</th>' for c in shown.columns)
    body = []
    for rec in shown.itertuples(index=False):
        cells = []
        for v in rec:
            text = "–" if v is None or (isinstance(v, float) and v != v) else str(v)
            cells.append(f'<td class="text">{html.escape(text)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    more = ""
    if max_rows is not None and len(frame) > max_rows:
        more = f'<p class="small">… and {len(frame) - max_rows} more rows (see the CSV).</p>'
    return f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>{more}'


def render_html(
    *,
    title: str,
    synthetic: bool,
    meta_lines: Sequence[str],
    headline: pd.DataFrame | None,
    headline_markdown: str | None = None,
    figures: Sequence[ReportFigure],
    table_markdown: str | None,
    undefined: pd.DataFrame,
    notes: Sequence[str],
    warnings: Sequence[str],
    files: Sequence[str],
    max_undefined: int = 300,
    sections: Sequence = (),
) -> str:
    """The report as one HTML string with everything inline. ``sections`` (e.g.
    :class:`fairser.report.risk.RiskSection`: ``id, title, paragraphs, table, figure``) follow the table."""
    e = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
    ]
    if synthetic:
        out.append(
            '<div class="banner" id="synthetic-banner">SYNTHETIC DATA — numbers come from the built-in eSpeak NG '
            "corpus and describe this generator, not real speech.</div>"
        )
    out.append('<div class="meta">' + "".join(f"<div>{_inline(m)}</div>" for m in meta_lines) + "</div>")
    if warnings:
        out.append('<h2 id="warnings">Warnings</h2><ul class="notes warn">')
        out += [f"<li>{e(w)}</li>" for w in warnings]
        out.append("</ul>")
    if headline is not None and len(headline):
        out.append('<h2 id="headline">Headline numbers</h2>')
        out.append(frame_to_html(headline, css_class="headline"))
    if headline_markdown:  # the gaps with their uncertainty (fairser.results.tables.render_gaps)
        title, _, body = headline_markdown.partition("\n")
        out.append(f"<h3>{e(title.removeprefix('### '))}</h3>" + markdown_table_to_html(body))
    out.append('<h2 id="figures">Figures</h2>')
    for fig in figures:
        data = base64.b64encode(fig.png).decode("ascii")
        out.append(
            f'<figure id="fig-{e(fig.name)}"><img src="data:image/png;base64,{data}" alt="{e(fig.alt)}">'
            f"<figcaption>{_inline(fig.caption)}</figcaption></figure>"
        )
    out.append('<h2 id="table">Paper-style table</h2>')
    out.append(
        markdown_table_to_html(table_markdown) if table_markdown else "<p>No table: no finished run.</p>"
    )
    for sec in sections:
        out.append(f'<h2 id="{e(sec.id)}">{e(sec.title)}</h2>')
        out += [f"<p>{_inline(p)}</p>" for p in sec.paragraphs]
        out.append(frame_to_html(sec.table, css_class=sec.id))
        if sec.figure is not None:
            data = base64.b64encode(sec.figure.png).decode("ascii")
            out.append(
                f'<figure id="fig-{e(sec.figure.name)}"><img src="data:image/png;base64,{data}" '
                f'alt="{e(sec.figure.alt)}"><figcaption>{_inline(sec.figure.caption)}</figcaption></figure>'
            )
    out.append('<h2 id="undefined">Undefined numbers and why</h2>')
    if len(undefined):
        out.append(
            f"<p>{len(undefined)} kind(s) of number could not be computed; they are NaN (blank or n/a) in the "
            "tables and figures for the reason given.</p>"
        )
        out.append(frame_to_html(undefined, css_class="undefined", max_rows=max_undefined))
    else:
        out.append("<p>Every number asked for is defined.</p>")
    if notes:
        out.append(
            '<h2 id="notes">Notes</h2><ul class="notes">'
            + "".join(f"<li>{e(n)}</li>" for n in notes)
            + "</ul>"
        )
    if files:
        out.append(
            '<h2 id="files">Files</h2><ul class="small">'
            + "".join(f"<li><code>{e(f)}</code></li>" for f in files)
        )
        out.append("</ul>")
    out.append("</body></html>")
    return "\n".join(out)
