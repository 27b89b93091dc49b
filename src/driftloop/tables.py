"""Tables for the terminal that never cut a value: they wrap, or stack when even wrapping cannot fit.

Every ``driftloop`` command prints its tables through :func:`print_table`. Columns that hold dates, numbers
and versions stay whole on one line; columns marked ``wrap`` (names, paths, reasons) wrap at spaces and fold
long words (after a ``/`` where they can). When the whole columns and the narrowest wrapped ones still do not
fit the terminal, each row is shown as a block of ``column  value`` lines instead.
"""

from __future__ import annotations

import math
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TextIO

GAP = "  "
MIN_WRAP_WIDTH = 12  # a wrapped column narrower than this reads as a column of fragments: stack instead
EMPTY = "–"


@dataclass(frozen=True)
class Column:
    """A table column.

    Attributes:
        name: The header.
        wrap: The value may wrap over several lines (names, paths, reasons); otherwise it stays whole.
        fold: A wrapped value may also break inside a word (paths); False breaks only at spaces (dates).
        right: Right-align (numbers).
        below: Shown under its row across the table's width, labelled (long text: a reason, a path).
    """

    name: str
    wrap: bool = False
    fold: bool = True
    right: bool = False
    below: bool = False


@dataclass(frozen=True)
class Cell:
    """A value with a style for terminals that show colour (rich style names: "red", "green", "bold")."""

    text: str
    style: str | None = None


@dataclass
class Table:
    """A title, columns and rows of values (str, :class:`Cell`, numbers or None)."""

    title: str
    columns: Sequence[Column]
    rows: list[list[Cell]] = field(default_factory=list)
    spaced: bool = True  # a blank line between rows when one takes several lines (False: key-value lists)
    header: bool = True  # False: no header and rule (a key-value list)

    def add_row(self, *values: object) -> None:
        if len(values) != len(self.columns):
            raise ValueError(f"{len(values)} values for {len(self.columns)} columns")
        self.rows.append([v if isinstance(v, Cell) else Cell(cell_text(v)) for v in values])


# -- number formats ------------------------------------------------------------------------------

def cell_text(value: object) -> str:
    """How a value reads in a table: integers as integers, other numbers as :func:`metric`, None as –."""
    if value is None:
        return EMPTY
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return metric(value)
    return str(value)


def metric(value: float | None) -> str:
    """A metric with four decimals (0.9747); an int stays an int (for counts, see :func:`number`)."""
    if value is None:
        return EMPTY
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4f}"


def number(value: float | int | None) -> str:
    """A count or a measure: whole numbers without decimals (482, not 482.0000), others with up to four decimals."""
    if value is None:
        return EMPTY
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value) and value.is_integer()):
        return str(int(value))
    return f"{value:.4f}".rstrip("0").rstrip(".") if math.isfinite(value) else str(value)


def moment(iso: str | None) -> str:
    """A timestamp in full, with a space for the ``T`` so it can wrap between the date and the time."""
    return EMPTY if not iso else str(iso).replace("T", " ", 1)


def signed(value: float) -> str:
    """A difference with its sign (+0.0021, -0.0135), four decimals."""
    return f"{value:+.4f}"


# -- layout --------------------------------------------------------------------------------------

def terminal_width() -> int:
    """The terminal's width: $COLUMNS, else the terminal's own, else 80."""
    return shutil.get_terminal_size((80, 24)).columns


Segment = tuple[str, "str | None"]


def render(table: Table, width: int) -> list[list[Segment]]:
    """The table's lines at ``width`` columns, each a list of (text, style) segments."""
    lines: list[list[Segment]] = [[(text, "bold")] for text in wrap(table.title, width)] if table.title else []
    if not table.rows:
        return [*lines, [("(none)", "dim")]]
    inline = [i for i, c in enumerate(table.columns) if not c.below]
    below = [i for i, c in enumerate(table.columns) if c.below]
    widths = _fit(table, width, inline)
    if widths is None:
        return lines + _stacked(table, width)
    columns = [table.columns[i] for i in inline]
    if table.header:
        lines.append(_join([(_pad(c.name, w, c.right), "bold") for c, w in zip(columns, widths, strict=True)]))
        lines.append(_join([("─" * w, "dim") for w in widths]))
    blocks = []
    for full_row in table.rows:
        row = [full_row[i] for i in inline]
        cells = [wrap(cell.text, w) if column.wrap else cell.text.split("\n")
                 for column, cell, w in zip(columns, row, widths, strict=True)]
        height = max(len(c) for c in cells)
        block = []
        for i in range(height):
            block.append(_join([(_pad(c[i] if i < len(c) else "", w, column.right), cell.style)
                                for column, cell, c, w in zip(columns, row, cells, widths, strict=True)]))
        for i in below:
            block.extend(_labelled(table.columns[i].name, full_row[i], width, indent=len(GAP)))
        blocks.append(block)
    spaced = table.spaced and any(len(b) > 1 for b in blocks)
    for number_, block in enumerate(blocks):
        if spaced and number_:
            lines.append([])
        lines.extend(block)
    return lines


def _fit(table: Table, width: int, inline: list[int]) -> list[int] | None:
    """Widths of the ``inline`` columns that fit ``width``, wrapping what may wrap; None when only stacking fits."""
    columns = [table.columns[i] for i in inline]
    natural = [max([len(c.name)] + [len(part) for row in table.rows for part in row[i].text.split("\n")])
               for i, c in zip(inline, columns, strict=True)]
    room = width - len(GAP) * (len(natural) - 1)
    if sum(natural) <= room:
        return natural
    widths = [min(n, max(len(c.name), MIN_WRAP_WIDTH if c.fold else _longest_word(table, i))) if c.wrap else n
              for i, c, n in zip(inline, columns, natural, strict=True)]
    if sum(widths) > room:
        return None
    _share(widths, natural, room - sum(widths))
    # A date wrapped at its one space uses less than its width: hand what it leaves to the others.
    for i, (index, column) in enumerate(zip(inline, columns, strict=True)):
        if column.wrap and not column.fold and widths[i] < natural[i]:
            used = max(len(part) for row in table.rows for part in wrap(row[index].text, widths[i]))
            spare, widths[i], natural[i] = widths[i] - used, used, used
            _share(widths, natural, spare)
    return widths


def _share(widths: list[int], natural: list[int], spare: int) -> None:
    """Gives ``spare`` columns, one at a time, to the narrowest column still short of its natural width, so
    short values end whole before long ones widen."""
    while spare > 0:
        lacking = [i for i in range(len(widths)) if widths[i] < natural[i]]
        if not lacking:
            return
        widths[min(lacking, key=lambda i: widths[i])] += 1
        spare -= 1


def _longest_word(table: Table, index: int) -> int:
    return max(len(word) for row in table.rows for word in row[index].text.split())


def _stacked(table: Table, width: int) -> list[list[Segment]]:
    """Each row as a block: the first column as its heading, then one ``name  value`` line per column."""
    label_width = max(len(c.name) for c in table.columns[1:]) if len(table.columns) > 1 else 0
    value_width = max(width - 2 - label_width - len(GAP), MIN_WRAP_WIDTH)
    lines: list[list[Segment]] = []
    for number_, row in enumerate(table.rows):
        if number_:
            lines.append([])
        first = table.columns[0]
        lines.append([(f"{first.name} ", "dim"), (row[0].text, row[0].style or "bold")])
        for column, cell in zip(table.columns[1:], row[1:], strict=True):
            for i, part in enumerate(wrap(cell.text, value_width)):
                label = column.name if i == 0 else ""
                lines.append([(f"  {label:<{label_width}}{GAP}", "dim"), (part, cell.style)])
    return lines


def _labelled(label: str, cell: Cell, width: int, indent: int) -> list[list[Segment]]:
    """``label: value`` wrapped at ``width``, continuation lines under the value's start."""
    lead = " " * indent
    parts = wrap(f"{label}: {cell.text}", max(width - indent, MIN_WRAP_WIDTH))
    first = parts[0].removeprefix(f"{label}:").lstrip(" ")
    lines = [[(f"{lead}{label}: ", "dim"), (first, cell.style)]] if parts[0].startswith(f"{label}:") else \
        [[(lead + parts[0], cell.style)]]
    return lines + [[(lead + part, cell.style)] for part in parts[1:]]


def _pad(text: str, width: int, right: bool) -> str:
    return text.rjust(width) if right else text.ljust(width)


def _join(cells: list[Segment]) -> list[Segment]:
    out: list[Segment] = []
    for i, cell in enumerate(cells):
        if i:
            out.append((GAP, None))
        out.append(cell)
    while out and not out[-1][0].strip():  # no trailing blanks
        out.pop()
    if out:
        text, style = out[-1]
        out[-1] = (text.rstrip(), style)
    return out


_BREAK_AFTER = "/-_,.:=&?"


def wrap(text: str, width: int) -> list[str]:
    """``text`` in lines of at most ``width``: at spaces, and long words folded after a separator if possible."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        current = ""
        for word in paragraph.split(" "):
            candidate = f"{current} {word}" if current else word
            if len(candidate) <= width:
                current = candidate
                continue
            if current:
                lines.append(current)
            while len(word) > width:
                cut = max((word.rfind(ch, 0, width) + 1 for ch in _BREAK_AFTER), default=0)
                cut = cut if cut >= width // 2 else width
                lines.append(word[:cut])
                word = word[cut:]
            current = word
        lines.append(current)
    return lines


def plain(table: Table, width: int) -> str:
    """The rendered table as plain text."""
    return "\n".join("".join(text for text, _ in line) for line in render(table, width))


def print_table(table: Table, stream: TextIO | None = None, width: int | None = None) -> None:
    """Prints the table at the terminal's width, in colour where the stream is a terminal."""
    from rich.console import Console
    from rich.text import Text

    stream = stream or sys.stdout
    width = width or terminal_width()
    console = Console(file=stream, highlight=False, width=max(width, 20))
    for line in render(table, width):
        console.print(Text.assemble(*((text, style or "") for text, style in line)), soft_wrap=True)


def print_lines(lines: Sequence[str], stream: TextIO | None = None) -> None:
    """Prints prose lines whole: the terminal wraps them, and a search for a phrase still finds it."""
    for line in lines:
        print(line, file=stream or sys.stdout)


def print_wrapped(lines: Sequence[str], stream: TextIO | None = None, hanging: int = 2) -> None:
    """Prints lines wrapped at the terminal's width, each continuation under its line's text (reasons, notes)."""
    width = terminal_width()
    for line in lines:
        lead = " " * (len(line) - len(line.lstrip(" ")) + hanging)
        parts = wrap(line.strip(), max(width - len(lead), MIN_WRAP_WIDTH))
        first = line[:len(line) - len(line.lstrip(" "))] + parts[0]
        print("\n".join([first, *(lead + part for part in parts[1:])]), file=stream or sys.stdout)
