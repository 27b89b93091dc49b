"""Writes the README's table of contents from its headings (between the TOC markers).

    .venv/bin/python tools/readme_toc.py [--check]
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- toc -->", "<!-- /toc -->"


def anchor(title: str) -> str:
    """GitHub's heading anchor: lowercase, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def toc(text: str) -> str:
    lines, fenced = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        match = None if fenced else re.match(r"^(##|###) (.+)$", line)
        if match and match.group(2) != "Contents":
            indent = "  " if match.group(1) == "###" else ""
            lines.append(f"{indent}- [{match.group(2).replace('`', '')}](#{anchor(match.group(2))})")
    return "\n".join(lines)


def with_toc(text: str) -> str:
    before, rest = text.split(START, 1)
    _, after = rest.split(END, 1)
    return f"{before}{START}\n{toc(text)}\n{END}{after}"


if __name__ == "__main__":
    text = README.read_text()
    updated = with_toc(text)
    if "--check" in sys.argv:
        sys.exit(0 if updated == text else "README.md: the table of contents is stale; run tools/readme_toc.py")
    README.write_text(updated)
