"""Reading driftloop's report pages as a person would: headings, the verdict, header facts, tables, charts.

The pages are parsed with :mod:`html.parser` (no grepping where structure matters); SVG charts are also parsed
as XML, which they must be on their own.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from html.parser import HTMLParser

SVG_NS = {"svg": "http://www.w3.org/2000/svg"}
VOID = {"meta", "br", "img", "input", "link", "hr", "rect", "line", "polyline", "circle"}


@dataclass
class Cell:
    text: str
    classes: set[str]


@dataclass
class Table:
    heading: str  # the nearest heading above it
    head: list[str] = field(default_factory=list)
    rows: list[list[Cell]] = field(default_factory=list)
    row_classes: list[set[str]] = field(default_factory=list)

    def row(self, first_cell: str) -> list[Cell]:
        return next(r for r in self.rows if r and r[0].text == first_cell)


@dataclass
class Banner:
    kind: str  # pass | warn | fail
    title: str
    detail: str


class ReportPage(HTMLParser):
    """Everything a test asserts on, collected in one pass; ``errors`` lists mis-nested tags."""

    def __init__(self, document: str) -> None:
        super().__init__(convert_charrefs=True)
        self.document = document
        self.title = ""
        self.headings: list[tuple[str, str]] = []  # (tag, text)
        self.banners: list[Banner] = []
        self.facts: dict[str, str] = {}
        self.fact_links: dict[str, list[str]] = {}
        self.tables: list[Table] = []
        self.links: list[tuple[str, str]] = []  # (href, text)
        self.scripts = 0
        self.errors: list[str] = []
        self._stack: list[tuple[str, dict]] = []
        self._text: list[str] | None = None
        self._capture: str | None = None
        self._banner: Banner | None = None
        self._fact_label = ""
        self._cell: Cell | None = None
        self._row: list[Cell] | None = None
        self._table: Table | None = None
        self._in_head = False
        self._href: str | None = None
        self._link_text: list[str] = []
        self.feed(document)
        self.close()

    # -- structure --
    def handle_starttag(self, tag, attrs) -> None:
        attrs = {k: v or "" for k, v in attrs}
        if tag == "script":
            self.scripts += 1
        if tag == "br":  # a line break separates words, as it does on screen
            self.handle_data(" ")
        if tag not in VOID:
            self._stack.append((tag, attrs))
        classes = set(attrs.get("class", "").split())
        if tag in ("h1", "h2", "h3", "title", "dt", "dd", "strong") or (tag == "div" and "detail" in classes):
            self._capture, self._text = tag, []
        if tag == "div" and "banner" in classes:
            self._banner = Banner(next(iter(classes - {"banner"}), ""), "", "")
        if tag == "table":
            self._table = Table(self.headings[-1][1] if self.headings else "")
        if tag == "thead":
            self._in_head = True
        if tag == "tr" and self._table is not None:
            self._row = []
            if not self._in_head:
                self._table.row_classes.append(classes)
        if tag in ("td", "th") and self._row is not None:
            self._cell = Cell("", classes)
        if tag == "a":
            self._href, self._link_text = attrs.get("href", ""), []

    def handle_endtag(self, tag) -> None:
        if tag in VOID:
            return
        if not self._stack or self._stack[-1][0] != tag:
            self.errors.append(f"unexpected </{tag}>")
        else:
            self._stack.pop()
        if self._capture == tag and self._text is not None:
            text = " ".join("".join(self._text).split())
            if tag in ("h1", "h2", "h3"):
                self.headings.append((tag, text))
            elif tag == "title":
                self.title = self.title or text  # the document's; an SVG <title> is a tooltip
            elif tag == "dt":
                self._fact_label = text
            elif tag == "dd":
                self.facts[self._fact_label] = text
            elif tag == "strong" and self._banner is not None and not self._banner.title:
                self._banner.title = text
            elif tag == "div" and self._banner is not None:
                self._banner.detail = text
            self._capture, self._text = None, None
        if tag == "div" and self._banner is not None and not any(
                "banner" in a.get("class", "") for t, a in self._stack if t == "div"):
            self.banners.append(self._banner)
            self._banner = None
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._cell.text = " ".join(self._cell.text.split())
            self._row.append(self._cell)
            self._cell = None
        if tag == "tr" and self._row is not None and self._table is not None:
            if self._in_head:
                self._table.head = [c.text for c in self._row]
            else:
                self._table.rows.append(self._row)
            self._row = None
        if tag == "thead":
            self._in_head = False
        if tag == "table" and self._table is not None:
            self.tables.append(self._table)
            self._table = None
        if tag == "a" and self._href is not None:
            self.links.append((self._href, "".join(self._link_text).strip()))
            if self._fact_label and self._capture == "dd":
                self.fact_links.setdefault(self._fact_label, []).append(self._href)
            self._href = None

    def handle_data(self, data) -> None:
        if self._text is not None:
            self._text.append(data)
        if self._cell is not None:
            self._cell.text += data
        if self._href is not None:
            self._link_text.append(data)

    # -- queries --
    @property
    def banner(self) -> Banner:
        assert len(self.banners) >= 1, "no verdict banner"
        return self.banners[0]

    def table_under(self, heading_start: str) -> Table:
        return next(t for t in self.tables if t.heading.startswith(heading_start))

    def svgs(self) -> list[ET.Element]:
        """Every inline SVG, parsed as XML (so each must be well-formed on its own)."""
        return [ET.fromstring(m) for m in re.findall(r"<svg.*?</svg>", self.document, re.S)]

    def heading_index(self, start: str) -> int:
        return next(i for i, (_, text) in enumerate(self.headings) if text.startswith(start))


def svg_texts(svg: ET.Element) -> list[str]:
    return [t.text or "" for t in svg.iter(f"{{{SVG_NS['svg']}}}text")]


def polylines(svg: ET.Element) -> list[list[tuple[float, float]]]:
    return [[tuple(map(float, p.split(","))) for p in line.get("points").split()]
            for line in svg.findall("svg:polyline", SVG_NS)]


def signed_number(text: str) -> float:
    """A number as a report prints it (a true minus sign, perhaps a word after it)."""
    return float(text.split()[0].replace("\u2212", "-"))
