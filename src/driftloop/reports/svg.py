"""Inline SVG charts: curves on the unit square (ROC, precision–recall, reliability), scatter plots on a value
scale (predicted against actual, residuals), horizontal bars (per-class recall, error by decile), small
distribution plots and trends across the drift monitor's windows.

Each chart is a standalone, well-formed SVG element (it parses as XML) with its text escaped; no script, no
external reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from driftloop.reports.html import e

NS = "http://www.w3.org/2000/svg"
TICKS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
GRID, AXIS, MUTED = "#e6eaef", "#8c959f", "#59636e"
REFERENCE_COLOUR, CURRENT_COLOUR = "#8c959f", "#0969da"


@dataclass(frozen=True)
class Series:
    """One curve: its legend text, points, colour and whether to mark each point (reliability bins)."""

    label: str
    xs: list[float]
    ys: list[float]
    colour: str
    dashed: bool = False
    markers: bool = False


def unit_square_chart(series: list[Series], x_label: str, y_label: str, *, diagonal: bool = True,
                      size: int = 360, title: str = "") -> str:
    """Curves on [0, 1]², with gridlines and ticks every 0.2, axis labels, the diagonal (chance for ROC, perfect
    calibration for reliability) and a legend below the plot, one line per curve."""
    left, top, right, bottom = 48, 12, 14, 40
    inner = size - left - right
    legend_top = top + inner + bottom
    height = legend_top + 18 * len(series) + 4

    def x(v: float) -> float:
        return left + v * inner

    def y(v: float) -> float:
        return top + (1 - v) * inner

    parts = [f'<svg xmlns="{NS}" width="{size}" height="{height}" viewBox="0 0 {size} {height}" role="img" '
             f'aria-label="{e(title or y_label + " against " + x_label)}" font-family="system-ui, sans-serif">']
    for t in TICKS:
        parts.append(f'<line x1="{x(t):.1f}" y1="{top}" x2="{x(t):.1f}" y2="{top + inner}" stroke="{GRID}"/>')
        parts.append(f'<line x1="{left}" y1="{y(t):.1f}" x2="{left + inner}" y2="{y(t):.1f}" stroke="{GRID}"/>')
        parts.append(f'<text x="{x(t):.1f}" y="{top + inner + 15}" font-size="11" text-anchor="middle" '
                     f'fill="{MUTED}">{t:.1f}</text>')
        parts.append(f'<text x="{left - 6}" y="{y(t) + 4:.1f}" font-size="11" text-anchor="end" '
                     f'fill="{MUTED}">{t:.1f}</text>')
    parts.append(f'<rect x="{left}" y="{top}" width="{inner}" height="{inner}" fill="none" stroke="{AXIS}"/>')
    if diagonal:
        parts.append(f'<line x1="{x(0):.1f}" y1="{y(0):.1f}" x2="{x(1):.1f}" y2="{y(1):.1f}" stroke="{AXIS}" '
                     f'stroke-dasharray="4 4"/>')
    parts.append(f'<text x="{left + inner / 2:.1f}" y="{top + inner + 32}" font-size="12" text-anchor="middle">'
                 f'{e(x_label)}</text>')
    parts.append(f'<text x="13" y="{top + inner / 2:.1f}" font-size="12" text-anchor="middle" '
                 f'transform="rotate(-90 13 {top + inner / 2:.1f})">{e(y_label)}</text>')
    for i, s in enumerate(series):
        points = [(x(_clip(a)), y(_clip(b))) for a, b in zip(s.xs, s.ys) if _finite(a) and _finite(b)]
        dash = ' stroke-dasharray="7 4"' if s.dashed else ""
        if points:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{s.colour}" stroke-width="2.2"{dash}/>')
        if s.markers:
            parts += [f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{s.colour}"/>' for px, py in points]
        ly = legend_top + 18 * i + 10
        parts.append(f'<line x1="{left}" y1="{ly - 4}" x2="{left + 22}" y2="{ly - 4}" stroke="{s.colour}" '
                     f'stroke-width="3"{dash}/>')
        parts.append(f'<text x="{left + 28}" y="{ly}" font-size="12">{e(s.label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


@dataclass(frozen=True)
class Points:
    """A cloud of points in one colour, with its legend text."""

    label: str
    xs: list[float]
    ys: list[float]
    colour: str


def scatter_chart(clouds: list[Points], x_label: str, y_label: str, *, guide: str = "diagonal", size: int = 360,
                  title: str = "") -> str:
    """Points on their own value scale with about five round ticks per axis, one ``<circle>`` per finite point.

    Args:
        guide: ``diagonal`` — x and y share one scale and the dashed line y = x is drawn (predicted against
            actual: a perfect model's points lie on it); ``zero`` — a dashed line at y = 0, y symmetric around
            it (residuals); ``""`` — none.
    """
    left, top, right, bottom = 58, 12, 14, 40
    inner = size - left - right
    legend_top = top + inner + bottom
    height = legend_top + 18 * len(clouds) + 4
    points = [[(a, b) for a, b in zip(c.xs, c.ys) if _finite(a) and _finite(b)] for c in clouds]
    xs = [a for cloud in points for a, _ in cloud] or [0.0, 1.0]
    ys = [b for cloud in points for _, b in cloud] or [0.0, 1.0]
    if guide == "diagonal":
        x_low, x_high, x_ticks = _axis(min(xs + ys), max(xs + ys))
        y_low, y_high, y_ticks = x_low, x_high, x_ticks
    else:
        x_low, x_high, x_ticks = _axis(min(xs), max(xs))
        reach = max(abs(v) for v in ys) or 1.0
        y_low, y_high, y_ticks = _axis(-reach, reach) if guide == "zero" else _axis(min(ys), max(ys))

    def x(v: float) -> float:
        return left + (v - x_low) / (x_high - x_low) * inner

    def y(v: float) -> float:
        return top + (1 - (v - y_low) / (y_high - y_low)) * inner

    parts = [f'<svg xmlns="{NS}" width="{size}" height="{height}" viewBox="0 0 {size} {height}" role="img" '
             f'aria-label="{e(title or y_label + " against " + x_label)}" font-family="system-ui, sans-serif">']
    for t in x_ticks:
        parts.append(f'<line x1="{x(t):.1f}" y1="{top}" x2="{x(t):.1f}" y2="{top + inner}" stroke="{GRID}"/>')
        parts.append(f'<text x="{x(t):.1f}" y="{top + inner + 15}" font-size="11" text-anchor="middle" '
                     f'fill="{MUTED}">{_tick_text(t)}</text>')
    for t in y_ticks:
        parts.append(f'<line x1="{left}" y1="{y(t):.1f}" x2="{left + inner}" y2="{y(t):.1f}" stroke="{GRID}"/>')
        parts.append(f'<text x="{left - 6}" y="{y(t) + 4:.1f}" font-size="11" text-anchor="end" '
                     f'fill="{MUTED}">{_tick_text(t)}</text>')
    parts.append(f'<rect x="{left}" y="{top}" width="{inner}" height="{inner}" fill="none" stroke="{AXIS}"/>')
    if guide == "diagonal":
        parts.append(f'<line x1="{x(x_low):.1f}" y1="{y(y_low):.1f}" x2="{x(x_high):.1f}" y2="{y(y_high):.1f}" '
                     f'stroke="{AXIS}" stroke-dasharray="4 4"/>')
    elif guide == "zero":
        parts.append(f'<line x1="{left}" y1="{y(0):.1f}" x2="{left + inner}" y2="{y(0):.1f}" stroke="{AXIS}" '
                     f'stroke-dasharray="4 4"/>')
    parts.append(f'<text x="{left + inner / 2:.1f}" y="{top + inner + 32}" font-size="12" text-anchor="middle">'
                 f'{e(x_label)}</text>')
    parts.append(f'<text x="13" y="{top + inner / 2:.1f}" font-size="12" text-anchor="middle" '
                 f'transform="rotate(-90 13 {top + inner / 2:.1f})">{e(y_label)}</text>')
    for i, (cloud, kept) in enumerate(zip(clouds, points)):
        parts += [f'<circle cx="{x(a):.1f}" cy="{y(b):.1f}" r="2.2" fill="{cloud.colour}" fill-opacity="0.45"/>'
                  for a, b in kept]
        ly = legend_top + 18 * i + 10
        parts.append(f'<rect x="{left}" y="{ly - 9}" width="10" height="10" fill="{cloud.colour}"/>')
        parts.append(f'<text x="{left + 16}" y="{ly}" font-size="12">{e(cloud.label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


@dataclass(frozen=True)
class Bars:
    """One series of a bar chart: a value per label (None: no bar), its colour and legend text."""

    label: str
    values: list[float | None]
    colour: str


def bar_chart(labels: list[str], series: list[Bars], *, maximum: float | None = None, width: int = 420,
              value_text=lambda v: f"{v:.2f}", title: str = "") -> str:
    """Horizontal bars, one group per label (a class, a decile) with a bar per series, each bar's value written
    at its end; long labels are shortened, the whole label kept in a tooltip. Bars start at zero; ``maximum``
    (default: the largest value) is the full width."""
    label_width, bar_height, gap = 96, 11, 7
    value_room = 62
    bar_room = width - label_width - value_room
    group = bar_height * len(series) + gap
    legend = 18 if len(series) > 1 else 0
    height = group * len(labels) + legend + 4
    top_value = maximum if maximum else max((v for s in series for v in s.values if _finite(v) and v > 0),
                                           default=1.0)
    parts = [f'<svg xmlns="{NS}" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{e(title)}" font-family="system-ui, sans-serif">']
    for i, name in enumerate(labels):
        y0 = legend + i * group + 2
        short = name if len(name) <= 14 else name[:13] + "…"
        parts.append(f'<text x="{label_width - 6}" y="{y0 + bar_height * len(series) / 2 + 4:.1f}" font-size="11" '
                     f'text-anchor="end">{e(short)}<title>{e(name)}</title></text>')
        for j, s in enumerate(series):
            value = s.values[i] if i < len(s.values) else None
            if not _finite(value):
                continue
            w = bar_room * min(max(value, 0.0), top_value) / top_value
            by = y0 + j * bar_height
            parts.append(f'<rect x="{label_width}" y="{by}" width="{max(w, 0.5):.1f}" height="{bar_height - 1}" '
                         f'fill="{s.colour}"><title>{e(s.label)}: {e(value_text(value))}</title></rect>')
            parts.append(f'<text x="{label_width + w + 4:.1f}" y="{by + bar_height - 2}" font-size="10" '
                         f'fill="{MUTED}">{e(value_text(value))}</text>')
    if len(series) > 1:
        x0 = label_width
        for s in series:
            parts.append(f'<rect x="{x0}" y="2" width="10" height="10" fill="{s.colour}"/>')
            parts.append(f'<text x="{x0 + 14}" y="11" font-size="11">{e(s.label)}</text>')
            x0 += 24 + 7 * len(s.label)
    parts.append("</svg>")
    return "".join(parts)


def _nice_step(span: float, ticks: int = 5) -> float:
    raw = span / ticks if span > 0 else 1.0
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)


def _axis(low: float, high: float) -> tuple[float, float, list[float]]:
    """``[low, high]`` widened to round ticks (never empty), and the ticks."""
    if high <= low:
        low, high = low - (abs(low) or 1.0) * 0.5, high + (abs(high) or 1.0) * 0.5
    step = _nice_step(high - low)
    first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
    return first * step, last * step, [round(i * step, 10) for i in range(first, last + 1)]


def _tick_text(value: float) -> str:
    """A tick's label: short (12k, 0.25, −3)."""
    if value == 0:
        return "0"
    if abs(value) >= 10_000:
        return f"{value / 1000:g}k".replace("-", "\u2212")
    return f"{value:g}".replace("-", "\u2212")


def box_pair(reference: dict | None, current: dict | None, width: int = 240) -> str:
    """Two horizontal box plots on one scale — the reference (grey) above the current data (blue): whiskers
    from the 1st to the 99th percentile, the box from the 25th to the 75th, a line at the median.

    Args:
        reference, current: Quantiles ``p01, p25, p50, p75, p99`` (a feature profile's); None when unknown.
    """
    shown = [q for q in (reference, current) if q and all(_finite(q.get(k)) for k in ("p01", "p99"))]
    if not shown:
        return ""
    low = min(q["p01"] for q in shown)
    high = max(q["p99"] for q in shown)
    span = (high - low) or 1.0
    pad, height = 6, 40

    def x(v: float) -> float:
        return pad + (v - low) / span * (width - 2 * pad)

    parts = [f'<svg xmlns="{NS}" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="distribution against the reference">']
    for row, (q, colour) in enumerate(((reference, REFERENCE_COLOUR), (current, CURRENT_COLOUR))):
        if not q or not all(_finite(q.get(k)) for k in ("p01", "p25", "p50", "p75", "p99")):
            continue
        mid = 10 + row * 19
        parts.append(f'<line x1="{x(q["p01"]):.1f}" y1="{mid}" x2="{x(q["p99"]):.1f}" y2="{mid}" stroke="{colour}"/>')
        parts.append(f'<rect x="{x(q["p25"]):.1f}" y="{mid - 6}" width="{max(x(q["p75"]) - x(q["p25"]), 1):.1f}" '
                     f'height="12" fill="{colour}" fill-opacity="0.35" stroke="{colour}"/>')
        parts.append(f'<line x1="{x(q["p50"]):.1f}" y1="{mid - 6}" x2="{x(q["p50"]):.1f}" y2="{mid + 6}" '
                     f'stroke="{colour}" stroke-width="2.5"/>')
    parts.append("</svg>")
    return "".join(parts)


def share_bars(reference: dict[str, float], current: dict[str, float], most: int = 6, width: int = 240) -> str:
    """Paired bars of category shares — the reference (grey) and the current data (blue) — for the categories
    most common in either, each labelled with its name."""
    names = sorted(set(reference) | set(current), key=lambda k: -max(reference.get(k, 0), current.get(k, 0)))[:most]
    if not names:
        return ""
    label_width, row_height = 84, 18
    bar_width = width - label_width - 4
    top_share = max(max(reference.get(k, 0), current.get(k, 0)) for k in names) or 1.0
    height = row_height * len(names) + 2
    parts = [f'<svg xmlns="{NS}" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="category shares against the reference" font-family="system-ui, sans-serif">']
    for i, name in enumerate(names):
        y0 = i * row_height + 2
        label = name if len(name) <= 12 else name[:11] + "…"
        parts.append(f'<text x="{label_width - 4}" y="{y0 + 12}" font-size="11" text-anchor="end">{e(label)}'
                     f'<title>{e(name)}: {reference.get(name, 0):.1%} → {current.get(name, 0):.1%}</title></text>')
        for j, (shares, colour) in enumerate(((reference, REFERENCE_COLOUR), (current, CURRENT_COLOUR))):
            w = bar_width * shares.get(name, 0) / top_share
            parts.append(f'<rect x="{label_width}" y="{y0 + j * 7}" width="{max(w, 0.5):.1f}" height="6" '
                         f'fill="{colour}"/>')
    parts.append("</svg>")
    return "".join(parts)


# Colours of model versions in trend charts (version n takes the n-th, cycling); colour-blind-safe (Okabe–Ito).
VERSION_COLOURS = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#000000", "#f0e442")


def version_colour(version: int | None) -> str:
    return MUTED if version is None else VERSION_COLOURS[(int(version) - 1) % len(VERSION_COLOURS)]


@dataclass(frozen=True)
class Trend:
    """One line of a trend panel: points ``(x position, value, colour, tooltip)``, each coloured on its own
    (by the version that served), joined in order by a thin line."""

    label: str
    points: list[tuple[int, float, str, str]]
    dashed: bool = False


@dataclass(frozen=True)
class Panel:
    """A strip of the trend chart on the scale [``low``, ``high``] (shares and scores: up to 1; an error in the
    target's units: up to its largest value), with an optional horizontal guide (a threshold)."""

    title: str
    trends: list[Trend]
    guide: float | None = None
    guide_label: str = ""
    low: float = 0.0
    high: float = 1.0


@dataclass(frozen=True)
class Mark:
    """A vertical line across every panel at an x position (between windows when it ends in .5)."""

    x: float
    label: str
    colour: str
    dashed: bool = False


def trend_chart(panels: list[Panel], x_labels: list[str], marks: list[Mark], *, width: int = 760,
                panel_height: int = 110, x_title: str = "window") -> str:
    """Panels stacked on one x axis (one slot per window), three ticks on y, each point with a tooltip
    (an SVG ``<title>``), and labelled vertical marks (retrains, promotions, rollbacks) across all panels."""
    left, right, gap = 52, 16, 26
    top = 16 + 14 * min(len(marks), 3)  # room for the marks' labels, staggered over three rows
    slots = max(len(x_labels), 1)
    inner = width - left - right
    step = inner / slots
    height = top + len(panels) * (panel_height + gap) + 30

    def x(position: float) -> float:
        return left + (position + 0.5) * step

    parts = [f'<svg xmlns="{NS}" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{e(", ".join(p.title for p in panels))} per {e(x_title)}" '
             'font-family="system-ui, sans-serif">']
    for index, panel in enumerate(panels):
        y0 = top + index * (panel_height + gap) + 14

        def y(v: float, y0: float = y0, low: float = panel.low, high: float = panel.high) -> float:
            return y0 + (1 - (min(max(float(v), low), high) - low) / (high - low)) * panel_height

        parts.append(f'<text x="{left}" y="{y0 - 4}" font-size="12" font-weight="600">{e(panel.title)}</text>')
        for t in (panel.low, (panel.low + panel.high) / 2, panel.high):
            parts.append(f'<line x1="{left}" y1="{y(t):.1f}" x2="{left + inner}" y2="{y(t):.1f}" stroke="{GRID}"/>')
            tick = f"{t:.2f}" if panel.high <= 1 else f"{t:.4g}"
            parts.append(f'<text x="{left - 6}" y="{y(t) + 4:.1f}" font-size="11" text-anchor="end" '
                         f'fill="{MUTED}">{tick}</text>')
        parts.append(f'<rect x="{left}" y="{y0}" width="{inner}" height="{panel_height}" fill="none" '
                     f'stroke="{AXIS}"/>')
        if panel.guide is not None and _finite(panel.guide):
            parts.append(f'<line x1="{left}" y1="{y(panel.guide):.1f}" x2="{left + inner}" y2="{y(panel.guide):.1f}" '
                         f'stroke="{MUTED}" stroke-dasharray="5 4"/>')
            parts.append(f'<text x="{left + inner - 4}" y="{y(panel.guide) - 4:.1f}" font-size="11" '
                         f'text-anchor="end" fill="{MUTED}">{e(panel.guide_label)}</text>')
        for trend in panel.trends:
            points = [(x(px), y(py), colour, tip) for px, py, colour, tip in trend.points if _finite(py)]
            dash = ' stroke-dasharray="6 4"' if trend.dashed else ""
            if len(points) > 1:
                path = " ".join(f"{px:.1f},{py:.1f}" for px, py, _, _ in points)
                parts.append(f'<polyline points="{path}" fill="none" stroke="{AXIS}" stroke-width="1.4"{dash}/>')
            for px, py, colour, tip in points:
                shape = (f'<rect x="{px - 3.5:.1f}" y="{py - 3.5:.1f}" width="7" height="7" fill="{colour}">'
                         if trend.dashed else f'<circle cx="{px:.1f}" cy="{py:.1f}" r="4" fill="{colour}">')
                parts.append(shape + f"<title>{e(tip)}</title>" + ("</rect>" if trend.dashed else "</circle>"))
    bottom = top + len(panels) * (panel_height + gap) - gap + 14
    for i, mark in enumerate(marks):
        mx = x(mark.x)
        dash = ' stroke-dasharray="3 3"' if mark.dashed else ""
        parts.append(f'<line x1="{mx:.1f}" y1="{top - 2 - 14 * (i % 3)}" x2="{mx:.1f}" y2="{bottom}" '
                     f'stroke="{mark.colour}" stroke-width="1.6"{dash}/>')
        parts.append(f'<text x="{mx + 3:.1f}" y="{top - 4 - 14 * (i % 3)}" font-size="11" '
                     f'fill="{mark.colour}">{e(mark.label)}</text>')
    every = max(1, -(-slots // 24))  # at most about 24 labels on the axis
    for i, label in enumerate(x_labels):
        if i % every == 0:
            parts.append(f'<text x="{x(i):.1f}" y="{bottom + 14}" font-size="11" text-anchor="middle" '
                         f'fill="{MUTED}">{e(label)}</text>')
    parts.append(f'<text x="{left + inner / 2:.1f}" y="{bottom + 28}" font-size="12" text-anchor="middle">'
                 f'{e(x_title)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _clip(value: float) -> float:
    return min(max(float(value), 0.0), 1.0)
