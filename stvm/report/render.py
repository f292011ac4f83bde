"""Render the report: Markdown (figures as files), self-contained HTML (figures as base64 PNG), CSV tables.

The renderers only format; every value arrives in a ``Table`` or ``Figure`` built from the
pipeline's files. Floats are shown with the table's ``decimals`` ("–" for a missing value); the
CSVs keep full precision.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import math
import re
from dataclasses import dataclass, field

from stvm.report.tables import Cell, Table


@dataclass(frozen=True)
class Figure:
    """A PNG figure: ``name`` is its file stem under figures/."""

    name: str
    title: str
    png: bytes
    caption: str = ""


@dataclass(frozen=True)
class Section:
    title: str
    text: str = ""
    tables: list[Table] = field(default_factory=list)
    figures: list[Figure] = field(default_factory=list)


def fmt(value: Cell, decimals: int) -> str:
    """Display form of a cell: floats rounded, ``None``/NaN as an en dash, Δ-style signs kept by caller."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool) or isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{decimals}f}"
    return str(value)


def _display(table: Table, column: str, value: Cell) -> str:
    """Like ``fmt``, with an explicit sign for Δ columns and in tables of differences."""
    if ("Δ" in column or table.signed) and isinstance(value, float) and not math.isnan(value):
        return f"{value:+.{table.decimals}f}"
    return fmt(value, table.decimals)


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table_markdown(table: Table) -> str:
    """One table as GitHub Markdown, with its title and note."""
    lines = [f"### {table.title}", "", "| " + " | ".join(_md_escape(c) for c in table.columns) + " |",
             "|" + "---|" * len(table.columns)]
    for row in table.rows:
        cells = [_md_escape(_display(table, c, v)) for c, v in zip(table.columns, row, strict=True)]
        lines.append("| " + " | ".join(cells) + " |")
    if table.note:
        lines += ["", f"*{table.note}* (CSV: `tables/{table.name}.csv`)"]
    return "\n".join(lines)


def render_markdown(title: str, sections: list[Section]) -> str:
    """The whole report as Markdown; figures are linked as ``figures/<name>.png``."""
    out = [f"# {title}", ""]
    for sec in sections:
        out += [f"## {sec.title}", ""]
        if sec.text:
            out += [sec.text, ""]
        for t in sec.tables:
            out += [table_markdown(t), ""]
        for f in sec.figures:
            out += [f"![{f.title}](figures/{f.name}.png)", ""] + ([f"*{f.caption}*", ""] if f.caption else [])
    return "\n".join(out).rstrip() + "\n"


_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1200px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}table{border-collapse:collapse;margin:.6em 0;font-size:.88em}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:right}th{background:#f2f2f2}
td:first-child,th:first-child,td.text{text-align:left}tr.paper td{color:#555;background:#fafafa}
.note{color:#555;font-size:.85em}img{max-width:100%;border:1px solid #ddd;margin:.4em 0}
code{background:#f4f4f4;padding:0 .2em}figure{margin:1em 0}figcaption{color:#555;font-size:.85em}
td.long{overflow-wrap:anywhere}table.wide{font-size:.74em}table.wide th,table.wide td{padding:.2em .3em}"""

WIDE = 12  # tables with more columns (per-class IoU) get a smaller font so they fit the page


def _cell_class(value: Cell) -> str:
    """Numbers align right; text left; long tokens (hashes) may wrap anywhere so tables fit the page."""
    if isinstance(value, (int, float)) or value is None:
        return ""
    return ' class="text long"' if len(str(value)) > 32 else ' class="text"'


def table_html(table: Table) -> str:
    """One table as HTML (rows from the paper get class ``paper``)."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = []
    for row in table.rows:
        cls = ' class="paper"' if row and isinstance(row[0], str) and row[0].startswith("paper") else ""
        cells = "".join(f"<td{_cell_class(v)}>{html.escape(_display(table, c, v))}</td>"
                        for c, v in zip(table.columns, row, strict=True))
        body.append(f"<tr{cls}>{cells}</tr>")
    note = f'<p class="note">{html.escape(table.note)}</p>' if table.note else ""
    wide = ' class="wide"' if len(table.columns) > WIDE else ""
    return (f'<h3 id="{table.name}">{html.escape(table.title)}</h3>\n<table data-name="{table.name}"{wide}>'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{note}")


def figure_html(fig: Figure) -> str:
    """A figure as an <img> with the PNG embedded as a base64 data URI."""
    data = base64.b64encode(fig.png).decode("ascii")
    cap = f"<figcaption>{html.escape(fig.caption)}</figcaption>" if fig.caption else ""
    return (f'<figure id="{fig.name}"><img alt="{html.escape(fig.title)}" src="data:image/png;base64,{data}">'
            f"{cap}</figure>")


def _inline(text: str) -> str:
    """Escape a paragraph and turn Markdown `code` spans into <code> (the only markup the text uses)."""
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(text))


def render_html(title: str, sections: list[Section]) -> str:
    """The whole report as one self-contained HTML page (no external files, scripts or fonts)."""
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>"]
    for sec in sections:
        parts.append(f"<section><h2>{html.escape(sec.title)}</h2>")
        if sec.text:
            parts.append("".join(f"<p>{_inline(p)}</p>" for p in sec.text.split("\n\n")))
        parts += [table_html(t) for t in sec.tables] + [figure_html(f) for f in sec.figures]
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def table_csv(table: Table) -> str:
    """A table as CSV with full-precision numbers (``None`` as an empty cell)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(table.columns)
    writer.writerows([["" if v is None else repr(v) if isinstance(v, float) else v for v in row]
                      for row in table.rows])
    return buf.getvalue()
