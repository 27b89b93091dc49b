"""The HTML shared by driftloop's pages: escaping, the page shell and its stylesheet, small building blocks.

Pages are self-contained (inline CSS and SVG, no scripts, no external assets): the Kubeflow dashboard shows an
HTML artifact in a sandboxed ``<iframe srcdoc>``, and the registry's copy opens from a file. Every value that
comes from a table, a request or a parameter goes through :func:`e`; a link's address through :func:`safe_url`.
"""

from __future__ import annotations

import html
import math
from urllib.parse import urlsplit

BETTER, WORSE, SAME = "better", "worse", "same"
CANDIDATE_COLOUR, CHAMPION_COLOUR = "#0969da", "#8250df"


def e(value) -> str:
    """Text as inert HTML (quotes included, so it is safe in attribute values too)."""
    return html.escape(str(value))


def safe_url(url: str) -> str | None:
    """``url`` when it is an http(s) address a page may link to, else None (no ``javascript:`` or ``data:``)."""
    try:
        parts = urlsplit(str(url).strip())
    except ValueError:
        return None
    return str(url).strip() if parts.scheme in ("http", "https") and parts.netloc else None


def link(text: str, url: str) -> str:
    """A link when ``url`` is safe, else the text alone."""
    href = safe_url(url) if url else None
    return f'<a href="{e(href)}" target="_blank" rel="noopener">{e(text)}</a>' if href else e(text)


def number(value, digits: int = 4) -> str:
    """A score as text: fixed decimals, an en dash when missing or not a finite number."""
    if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "–"
    return f"{value:.{digits}f}"


def percent(share: float | None, digits: int = 1) -> str:
    return "–" if share is None or not math.isfinite(share) else f"{share * 100:.{digits}f} %"


def count(value: int | float | None) -> str:
    """A row count with thousands separators (thin spaces keep it one word)."""
    return "–" if value is None else f"{int(value):,}".replace(",", "\u202f")


def amount(value, significant: int = 4, *, sign: bool = False, like: float | None = None) -> str:
    """A value in the target's units (an RMSE, a prediction) to ``significant`` digits, never in exponent form:
    ``12 346``, ``4.231``, ``0.01234``; with ``sign``, a leading + or a true minus. A difference takes the
    decimals of the values it is the difference of (``like``), so +0.0028 stands beside 0.4922."""
    if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "–"
    scale = like if isinstance(like, (int, float)) and math.isfinite(like) and like else value
    magnitude = math.floor(math.log10(abs(scale))) if scale else 0
    decimals = min(max(significant - 1 - magnitude, 0), 8)
    text = f"{value:{'+' if sign else ''},.{decimals}f}".replace(",", "\u202f")
    return text.replace("-", "\u2212") if sign else text


def signed(delta: float | None, digits: int = 4) -> str:
    """A difference with its sign; a true minus sign, so a negative Δ cannot be misread."""
    if delta is None or not math.isfinite(delta):
        return "–"
    return f"{delta:+.{digits}f}".replace("-", "\u2212")


def facts(items: list[tuple[str, str]], wide: tuple[str, ...] = ()) -> str:
    """A definition grid of header facts; values are HTML the caller built (escaped). Labels in ``wide`` take two
    columns (a sentence, a long URI)."""
    wide_class = ' class="wide"'
    cells = "".join(f"<div{wide_class if label in wide else ''}><dt>{e(label)}</dt><dd>{value}</dd></div>"
                    for label, value in items)
    return f'<dl class="facts">{cells}</dl>'


def banner(kind: str, title: str, detail_html: str = "") -> str:
    """A verdict: ``kind`` is pass, warn or fail (colour and word); the title is plain text."""
    detail = f"<div class=\"detail\">{detail_html}</div>" if detail_html else ""
    return f'<div class="banner {kind}" role="status"><strong>{e(title)}</strong>{detail}</div>'


def table(head: list[str], rows: list[list[str]], *, classes: str = "", row_classes: list[str] | None = None) -> str:
    """A table; cells are HTML the caller built (escaped). Numeric columns are marked with class ``num``."""
    header = "".join(f"<th>{h}</th>" for h in head)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        body.append(f"<tr{cls}>" + "".join(row) + "</tr>")
    attr = f' class="{classes}"' if classes else ""
    return f"<table{attr}><thead><tr>{header}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def td(content: str, cls: str = "") -> str:
    return f'<td class="{cls}">{content}</td>' if cls else f"<td>{content}</td>"


STYLE = """
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --soft: #f6f8fa;
        --better: #1a7f37; --better-bg: #dafbe1; --worse: #cf222e; --worse-bg: #ffebe9;
        --warn: #9a6700; --warn-bg: #fff8c5; --candidate: #0969da; --champion: #8250df; }
* { box-sizing: border-box; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); margin: 0;
       padding: 1.25rem 1.5rem 2rem; }
main { max-width: 74rem; margin: 0 auto; }
h1 { font-size: 1.6rem; margin: 0 0 .15rem; }
h2 { font-size: 1.15rem; margin: 1.6rem 0 .5rem; padding-bottom: .25rem; border-bottom: 1px solid var(--line); }
h3 { font-size: 1rem; margin: .8rem 0 .3rem; }
.subtitle { color: var(--muted); margin: 0 0 .8rem; overflow-wrap: anywhere; }
.facts { display: grid; grid-template-columns: repeat(auto-fill, minmax(13.5rem, 1fr)); gap: .5rem 1.25rem;
         margin: .6rem 0 1rem; padding: .75rem 1rem; background: var(--soft); border-radius: 6px; }
.facts div { min-width: 0; } .facts div.wide { grid-column: span 2; } .facts dt { color: var(--muted); font-size: .8rem; }
.facts dd { margin: 0; overflow-wrap: anywhere; }
.banner { border-radius: 6px; padding: .7rem 1rem; margin: .6rem 0; border-left: 6px solid; }
.banner strong { font-size: 1.1rem; } .banner .detail { margin-top: .25rem; }
.banner.pass { background: var(--better-bg); border-color: var(--better); }
.banner.warn { background: var(--warn-bg); border-color: var(--warn); }
.banner.fail { background: var(--worse-bg); border-color: var(--worse); }
table { border-collapse: collapse; margin: .4rem 0 1rem; font-size: .9rem; }
th, td { border-bottom: 1px solid var(--line); padding: .3rem .7rem; text-align: left; vertical-align: top; }
thead th { background: var(--soft); font-weight: 600; }
td.num, th.num, th:has(> .num) { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.better { color: var(--better); background: var(--better-bg); font-weight: 600; }
td.worse { color: var(--worse); background: var(--worse-bg); font-weight: 600; }
td.same { color: var(--muted); }
tr.fail td { background: var(--worse-bg); } tr.warn td { background: var(--warn-bg); }
tr.chosen td { font-weight: 600; } tr.baseline td { color: var(--muted); font-style: italic; }
.charts { display: flex; flex-wrap: wrap; gap: 1rem 2rem; }
figure { margin: 0; width: 360px; } figure.wide { width: auto; } figcaption { font-weight: 600; margin-bottom: .2rem; }
.note { color: var(--muted); font-size: .85rem; }
.cm td { text-align: center; min-width: 7.5rem; } .cm .rate { display: block; font-size: .8rem; color: var(--muted); }
.cm.heat td { min-width: 3.6rem; padding: .25rem .4rem; } .cm.heat th { font-weight: 600; }
.scroll { overflow-x: auto; max-width: 100%; }
.pair { display: flex; flex-wrap: wrap; gap: .5rem 2.5rem; }
code { background: var(--soft); padding: 0 .25rem; border-radius: 4px; font-size: .88em; }
details summary { cursor: pointer; color: var(--muted); margin: .3rem 0; }
.key { display: inline-block; width: .8rem; height: .8rem; border-radius: 2px; vertical-align: -1px; }
"""


def page(title: str, body: str) -> str:
    """The whole document around ``body`` (already HTML); ``title`` is plain text."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)}</title>
<style>{STYLE}</style></head>
<body><main>
{body}
</main></body></html>
"""
