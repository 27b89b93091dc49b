"""Reading a printed table back, to check that a wrapped value is still whole."""

from __future__ import annotations

import re


def squash(text: str) -> str:
    """The text without whitespace: a value wrapped over lines squashes to the same string as the value."""
    return re.sub(r"\s+", "", text)


def table_columns(output: str, title: str) -> dict[str, str]:
    """Each column's text, top to bottom, of the table whose title starts with ``title``.

    The rule under the header (runs of ─) gives each column's span. Lines of the table whose gaps between
    spans are blank are row lines; the rest (a labelled value under its row, text after the table) are skipped.
    """
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    rule = next(i for i in range(start, len(lines)) if lines[i].strip() and set(lines[i]) <= {"─", " "})
    spans = [(m.start(), m.end()) for m in re.finditer("─+", lines[rule])]
    names = [lines[rule - 1][a:b].strip() for a, b in spans]
    cells: dict[str, list[str]] = {name: [] for name in names}
    for line in lines[rule + 1:]:
        gaps = [line[end:next_start] for (_, end), (next_start, _) in zip(spans, spans[1:], strict=False)]
        if not line.strip() or any(gap.strip() for gap in gaps) or line[spans[-1][1]:].strip():
            continue
        for name, (a, b) in zip(names, spans, strict=True):
            cells[name].append(line[a:b])
    return {name: "\n".join(parts) for name, parts in cells.items()}
