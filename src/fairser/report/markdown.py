"""The Markdown version of the report: the paper-style table, figure links, undefined numbers, notes."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

__all__ = ["frame_to_markdown", "render_markdown"]


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    return str(value).replace("|", "\\|").replace("\n", " ")


def frame_to_markdown(frame: pd.DataFrame, *, max_rows: int | None = None) -> str:
    """A pipe table (no dependency on ``tabulate``)."""
    shown = frame if max_rows is None else frame.head(max_rows)
    lines = ["| " + " | ".join(_cell(c) for c in shown.columns) + " |", "|" + "---|" * len(shown.columns)]
    lines += ["| " + " | ".join(_cell(v) for v in rec) + " |" for rec in shown.itertuples(index=False)]
    if max_rows is not None and len(frame) > max_rows:
        lines.append(f"\n… and {len(frame) - max_rows} more rows (see undefined.csv).")
    return "\n".join(lines) + "\n"


def render_markdown(
    *,
    title: str,
    synthetic: bool,
    meta_lines: Sequence[str],
    headline: pd.DataFrame | None,
    headline_markdown: str | None = None,
    figures: Sequence[tuple[str, str]],
    table_markdown: str | None,
    undefined: pd.DataFrame,
    notes: Sequence[str],
    warnings: Sequence[str],
    max_undefined: int = 100,
    sections: Sequence = (),
) -> str:
    """Markdown report; ``figures`` are ``(relative path, caption)``; ``sections`` (``id, title, paragraphs,
    table, figure`` with the figure's ``filename``) follow the figures."""
    out = [f"# {title}\n"]
    if synthetic:
        out.append(
            "> **SYNTHETIC DATA** — built-in eSpeak NG corpus; numbers describe this generator, not real speech.\n"
        )
    out += [f"{m}  " for m in meta_lines]
    out.append("")
    if warnings:
        out.append("## Warnings\n")
        out += [f"- {w}" for w in warnings]
        out.append("")
    if headline is not None and len(headline):
        out.append("## Headline numbers\n")
        out.append(frame_to_markdown(headline))
    if headline_markdown:  # the gaps with their uncertainty (fairser.results.tables.render_gaps)
        out.append(headline_markdown)
    out.append("## Paper-style table\n")
    out.append(table_markdown or "No table: no finished run.\n")
    out.append("## Figures\n")
    for path, caption in figures:
        out.append(f"![{caption.splitlines()[0]}]({path})\n\n{caption}\n")
    for sec in sections:
        out.append(f"## {sec.title}\n")
        out += [f"{p}\n" for p in sec.paragraphs]
        out.append(frame_to_markdown(sec.table))
        if sec.figure is not None:
            out.append(f"![{sec.figure.alt}]({sec.figure.filename})\n\n{sec.figure.caption}\n")
    out.append("## Undefined numbers and why\n")
    out.append(
        frame_to_markdown(undefined, max_rows=max_undefined)
        if len(undefined)
        else "Every number asked for is defined.\n"
    )
    if notes:
        out.append("## Notes\n")
        out += [f"- {n}" for n in notes]
    return "\n".join(out) + "\n"
