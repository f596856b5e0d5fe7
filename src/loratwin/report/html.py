"""A self-contained HTML page builder shared by every kind of report.

The page carries its charts as base64 data URIs and its style inline, and a Content-Security-Policy
forbids any other fetch, so it opens offline and cannot silently depend on the network. The PNGs
are also written beside index.html for slides and documents.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# what Page.write puts in a report folder
REPORT_FILES = ("index.html", "*.png")
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

_CSS = """
:root { --ink:#111827; --muted:#6b7280; --line:#e5e7eb; --bg:#f9fafb; --bad:#dc2626; --bad-bg:#fef2f2;
        --good:#15803d; --good-bg:#f0fdf4; --accent:#2563eb; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1200px; margin: 0 auto; padding: 28px 28px 48px; }
header h1 { margin: 0 0 4px; font-size: 26px; }
header .kind { text-transform: uppercase; letter-spacing: .08em; font-size: 12px; color: var(--accent); font-weight: 600; }
header p { margin: 2px 0; color: var(--muted); }
h2 { font-size: 19px; margin: 36px 0 8px; padding-bottom: 6px; border-bottom: 1px solid var(--line); }
p.intro { margin: 4px 0 14px; color: #374151; }
.verdict { margin: 18px 0 6px; padding: 12px 16px; border-radius: 8px; font-weight: 600; border: 1px solid; }
.verdict.bad { color: var(--bad); background: var(--bad-bg); border-color: #fecaca; }
.verdict.good { color: var(--good); background: var(--good-bg); border-color: #bbf7d0; }
.verdict.neutral { color: #374151; background: #fff; border-color: var(--line); }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 12px; margin: 14px 0; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; min-width: 0; }
.card .label { color: var(--muted); font-size: 12.5px; }
.card .value { font-size: 18.5px; font-weight: 650; font-variant-numeric: tabular-nums; }
.card .note { color: var(--muted); font-size: 12.5px; }
.card.bad .value { color: var(--bad); }
.card.good .value { color: var(--good); }
figure { margin: 12px 0 22px; background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 10px; }
figure img { display: block; width: 100%; height: auto; }
figcaption { color: var(--muted); font-size: 13.5px; margin: 6px 4px 2px; }
.table-wrap { overflow-x: auto; margin: 10px 0 18px; background: #fff; border: 1px solid var(--line); border-radius: 8px; }
.table-wrap.compact { display: inline-block; max-width: 100%; vertical-align: top; margin-right: 14px; }
table { border-collapse: collapse; width: 100%; font-size: 13.5px; font-variant-numeric: tabular-nums; }
caption { text-align: left; padding: 8px 12px; color: var(--muted); }
th, td { padding: 6px 10px; border-bottom: 1px solid var(--line); white-space: nowrap; }
th { background: #f3f4f6; text-align: left; font-weight: 600; white-space: normal; vertical-align: bottom; }
td.num, th.num { text-align: right; }
tr:last-child td { border-bottom: none; }
tr.bad td { background: var(--bad-bg); color: #991b1b; }
tr.good td { background: var(--good-bg); }
details { margin: 8px 0 18px; }
summary { cursor: pointer; color: var(--accent); font-weight: 600; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 18px; margin: 10px 0 18px;
           background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; }
footer { margin-top: 40px; color: var(--muted); font-size: 12.5px; }
@media print { body { background: #fff; } figure, .table-wrap { break-inside: avoid; } }
"""

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


@dataclass
class Cell:
    """A table cell: its text, and whether it is a number (right-aligned)."""

    text: str
    numeric: bool = False


@dataclass
class Page:
    """One report: append blocks in reading order, then `write` it."""

    title: str
    kind: str
    subtitle: Sequence[str] = ()
    _blocks: list[str] = field(default_factory=list)
    _charts: dict[str, bytes] = field(default_factory=dict)

    def section(self, title: str, intro: str | None = None) -> None:
        self._blocks.append(f"<h2>{_e(title)}</h2>")
        if intro:
            self.text(intro)

    def text(self, text: str) -> None:
        self._blocks.append(f'<p class="intro">{_e(text)}</p>')

    def verdict(self, text: str, tone: str = "neutral") -> None:
        self._blocks.append(f'<div class="verdict {_tone(tone)}">{_e(text)}</div>')

    def cards(self, cards: Iterable[tuple[str, str, str | None, str]]) -> None:
        """Headline numbers: (label, value, note or None, tone: 'bad' / 'good' / 'neutral')."""
        items = []
        for label, value, note, tone in cards:
            note_html = f'<div class="note">{_e(note)}</div>' if note else ""
            items.append(f'<div class="card {_tone(tone)}"><div class="label">{_e(label)}</div>'
                         f'<div class="value">{_e(value)}</div>{note_html}</div>')
        self._blocks.append(f'<div class="cards">{"".join(items)}</div>')

    def facts(self, pairs: Iterable[tuple[str, str]]) -> None:
        body = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in pairs)
        self._blocks.append(f'<dl class="facts">{body}</dl>')

    def chart(self, name: str, png: bytes, alt: str, caption: str | None = None) -> None:
        """A chart, embedded in the page and written as NAME.png beside it."""
        if not _NAME.match(name) or name in self._charts:
            raise ValueError(f"chart name {name!r} must be unique, lower case, digits, '-' or '_'")
        self._charts[name] = png
        uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        cap = f"<figcaption>{_e(caption)}</figcaption>" if caption else ""
        self._blocks.append(f'<figure id="{name}"><img src="{uri}" alt="{_e(alt)}">{cap}</figure>')

    def table(
        self,
        columns: Sequence[str],
        rows: Iterable[Sequence[Cell | str]],
        *,
        row_tones: Sequence[str | None] | None = None,
        caption: str | None = None,
        collapsed: str | None = None,
        compact: bool = False,
    ) -> None:
        """A table; `collapsed` puts it behind a disclosure with that label (long lists); `compact`
        sizes it to its content instead of the page width."""
        rows = [[c if isinstance(c, Cell) else Cell(str(c)) for c in row] for row in rows]
        numeric_cols = [bool(rows) and all(r[i].numeric or r[i].text in ("-", "") for r in rows)
                        for i in range(len(columns))]
        head = "".join(f'<th{" class=num" if numeric_cols[i] else ""}>{_e(c)}</th>' for i, c in enumerate(columns))
        body = []
        for i, row in enumerate(rows):
            tone = row_tones[i] if row_tones else None
            cls = f' class="{_tone(tone)}"' if tone in ("bad", "good") else ""
            cells = "".join(f'<td{" class=num" if c.numeric else ""}>{_e(c.text)}</td>' for c in row)
            body.append(f"<tr{cls}>{cells}</tr>")
        cap = f"<caption>{_e(caption)}</caption>" if caption else ""
        wrap = "table-wrap compact" if compact else "table-wrap"
        table = (f'<div class="{wrap}"><table>{cap}<thead><tr>{head}</tr></thead>'
                 f'<tbody>{"".join(body)}</tbody></table></div>')
        if collapsed:
            table = f"<details><summary>{_e(collapsed)}</summary>{table}</details>"
        self._blocks.append(table)

    @property
    def chart_names(self) -> list[str]:
        return list(self._charts)

    def render(self) -> str:
        sub = "".join(f"<p>{_e(s)}</p>" for s in self.subtitle)
        return (
            "<!DOCTYPE html>\n"
            '<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<link rel="icon" href="data:,">'
            f"<title>{_e(self.title)} · loratwin</title><style>{_CSS}</style></head>\n"
            f'<body><main><header><div class="kind">loratwin · {_e(self.kind)} report</div>'
            f"<h1>{_e(self.title)}</h1>{sub}</header>\n"
            + "\n".join(self._blocks)
            + f"\n<footer>Written by loratwin {_e(_version())}. Charts are also saved as PNG files beside this page.</footer>"
            "</main></body></html>\n"
        )

    def write(self, out_dir: str | Path) -> Path:
        """Write index.html and one PNG per chart, whole or not at all (loratwin.files.written_whole:
        a folder holding anything but a previous report is refused); returns the path of index.html."""
        from loratwin.files import written_whole

        html_text = self.render()
        with written_whole(out_dir, REPORT_FILES) as tmp:
            for name, png in self._charts.items():
                (tmp / f"{name}.png").write_bytes(png)
            (tmp / "index.html").write_text(html_text, encoding="utf-8")
        return Path(out_dir) / "index.html"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("loratwin")
    except PackageNotFoundError:
        return "(not installed)"


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _tone(tone: str | None) -> str:
    return tone if tone in ("bad", "good", "neutral") else "neutral"


# Number formatting shared by the kinds; None (not measured, nothing completed) shows as "-".

def num(value: float | None, digits: int = 1) -> Cell:
    return Cell("-" if value is None else f"{value:,.{digits}f}", numeric=True)


def pct(value: float | None, digits: int = 1) -> Cell:
    """A share in [0, 1] shown as a percentage."""
    return Cell("-" if value is None else f"{100 * value:.{digits}f}%", numeric=True)


def integer(value: int | None) -> Cell:
    return Cell("-" if value is None else f"{int(value):,}", numeric=True)
