"""The drift monitor's index page of a model: the trend across windows, then every window linked to its page.

The chart stacks drift share, prediction drift and realised quality (the task's metric) per window, each point coloured by the
version that served, with the retrains the monitor triggered and the promotions and rollbacks of the registry's
audit trail marked across it. The numbers are the window summaries the monitor keeps (its decision records).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from driftloop.reports.drift_window import (
    decision_text,
    expected_quality,
    quality_label,
    quality_metric,
    quality_text,
    share_text,
)
from driftloop.reports.facts import METRIC_LABELS, metric_text
from driftloop.reports.html import count, e, facts, number, page, percent, table, td
from driftloop.reports.svg import Mark, Panel, Trend, trend_chart, version_colour
from driftloop.tasks import IN_TARGET_UNITS

EVENT_COLOURS = {"trigger": "#bc4c00", "promotion": "#1a7f37", "rollback": "#cf222e"}


@dataclass(frozen=True)
class Event:
    """What happened to the model between windows: a retrain the monitor triggered (after ``window``), a
    promotion or a rollback (at ``at``, a Unix time)."""

    kind: str  # trigger | promotion | rollback
    label: str
    at: float
    window: int | None = None


@dataclass
class IndexPage:
    """What a model's index shows: its window summaries (oldest first), the audit trail's events, and the
    names of the window pages that exist (retention deletes old ones)."""

    model: str
    windows: list[dict]
    events: list[Event] = field(default_factory=list)
    reports: set[str] = field(default_factory=set)
    at: str = ""


def drift_index_html(view: IndexPage) -> str:
    """The self-contained HTML index of a model's windows (no script)."""
    title = f"Drift monitor: {view.model}"
    windows = view.windows
    subtitle = f"{count(len(windows))} windows"
    if windows:
        first = datetime.fromtimestamp(float(windows[0]["opened_at"]), UTC)
        last = datetime.fromtimestamp(float(windows[-1]["closed_at"]), UTC)
        subtitle += f" from {first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC"
    if view.at:
        subtitle += f" · as of {view.at[:19].replace('T', ' ')} UTC"
    body = [f"<h1>{e(title)}</h1>", f'<p class="subtitle">{e(subtitle)}</p>', _summary(view)]
    if windows:
        body += ["<h2>Trend</h2>", _chart(view), _legend(view)]
    body += ["<h2>Windows (newest first)</h2>", _windows_table(view)]
    return page(title, "\n".join(body))


def _summary(view: IndexPage) -> str:
    analysed = [w for w in view.windows if not w.get("error")]
    drifted = sum(bool(w.get("dataset_drift")) for w in analysed)
    triggers = [ev for ev in view.events if ev.kind == "trigger"]
    versions = sorted({int(v) for w in view.windows for v in (w.get("rows_by_version") or {})})
    items = [("Windows", e(f"{count(len(view.windows))} ({count(len(view.windows) - len(analysed))} not analysed)")),
             ("Dataset drift", e(f"in {count(drifted)} of {count(len(analysed))} analysed windows")),
             ("Retrains triggered", e(count(len(triggers)))),
             ("Versions that served", e(", ".join(f"v{v}" for v in versions) or "–"))]
    return facts(items)


def _position(view: IndexPage, event: Event) -> float | None:
    """Where an event sits on the chart: on its window (a trigger), else just before the first window that
    closed after it; None when it happened before the first window shown."""
    if event.window is not None:
        return next((i for i, w in enumerate(view.windows) if w["id"] == event.window), None)
    if not view.windows or event.at < float(view.windows[0]["opened_at"]):
        return None
    later = next((i for i, w in enumerate(view.windows) if float(w["closed_at"]) >= event.at), len(view.windows))
    return later - 0.5


def _chart(view: IndexPage) -> str:
    windows = view.windows
    shares, predictions, holdouts = [], [], []
    realised: dict[int, list] = {}
    # Realised quality in the task's metric (the newest window's: a model keeps its task).
    metric = quality_metric(windows[-1])
    name = METRIC_LABELS[metric]
    for i, w in enumerate(windows):
        ref = int(w["reference_version"])
        colour = version_colour(ref)
        if w.get("drift_share") is not None:
            shares.append((i, w["drift_share"], colour, f"#{w['id']} (v{ref}): {share_text(w)}"))
        prediction = w.get("prediction_drift") or {}
        if prediction.get("score") is not None:
            predictions.append((i, prediction["score"], colour, f"#{w['id']} (v{ref}): prediction "
                                f"{prediction.get('method', '')} {number(prediction['score'])}"))
        if quality_metric(w) != metric:
            continue
        if (expected := expected_quality(w)) is not None:
            holdouts.append((i, expected, colour, f"#{w['id']}: v{ref} holdout {name} {metric_text(metric, expected)}"))
        for version, stats in ((w.get("quality") or {}).get("by_version") or {}).items():
            if stats.get(metric) is not None:
                realised.setdefault(int(version), []).append(
                    (i, stats[metric], version_colour(int(version)),
                     f"#{w['id']}: v{version} realised {name} {metric_text(metric, stats[metric])} "
                     f"on {count(stats.get('labelled', 0))} labelled rows"))
    latest = windows[-1]
    share_guide = latest.get("drift_threshold")
    prediction_guide = (latest.get("prediction_drift") or {}).get("threshold")
    panels = [
        Panel("Drift share (features only)", [Trend("drift share", shares)], share_guide,
              f"dataset drift at {percent(share_guide)}" if share_guide is not None else ""),
        Panel("Prediction drift score", [Trend("prediction drift", predictions)], prediction_guide,
              f"threshold {number(prediction_guide, 2)}" if prediction_guide is not None else ""),
        Panel(f"{quality_label(windows[-1])} per serving version (■ holdout {name} of the reference)",
              [Trend("holdout", holdouts, dashed=True)]
              + [Trend(f"v{v}", points) for v, points in sorted(realised.items())],
              **_scale(metric, [p[1] for p in holdouts] + [p[1] for ps in realised.values() for p in ps])),
    ]
    marks = [Mark(x, event.label, EVENT_COLOURS.get(event.kind, "#59636e"), dashed=event.kind == "trigger")
             for event, x in _placed(view)]
    return trend_chart(panels, [str(w["id"]) for w in windows], marks)


def _placed(view: IndexPage) -> list[tuple[Event, float]]:
    return [(event, x) for event in view.events if (x := _position(view, event)) is not None]


def _scale(metric: str, values: list[float]) -> dict[str, float]:
    """The quality panel's scale: a score's starts a tenth below the lowest value (at a tenth), so that a drop of a
    few points shows; an error's (in the target's units) runs from 0 to a little above the highest value."""
    if metric in IN_TARGET_UNITS:
        return {"low": 0.0, "high": max(values) * 1.1 if values and max(values) > 0 else 1.0}
    return {"low": max(0.0, min(int(min(values) * 10) / 10 - 0.1, 0.9)) if values else 0.0}


def _legend(view: IndexPage) -> str:
    versions = sorted({int(w["reference_version"]) for w in view.windows}
                      | {int(v) for w in view.windows for v in ((w.get("quality") or {}).get("by_version") or {})})
    keys = [f'<span class="key" style="background:{version_colour(v)}"></span> v{v}' for v in versions]
    keys += [f'<span class="key" style="background:{colour}"></span> {kind}'
             for kind, colour in EVENT_COLOURS.items() if any(ev.kind == kind for ev, _ in _placed(view))]
    return ('<p class="note">Points are coloured by version: drift against the production version of the '
            "window, realised quality by the version that answered. " + " &nbsp; ".join(keys) + "</p>")


def _windows_table(view: IndexPage) -> str:
    triggered = {ev.window for ev in view.events if ev.kind == "trigger"}
    head = ["window", "closed (UTC)", '<span class="num">rows</span>', "reference", "drift share",
            "prediction drift", "realised quality", "decision"]
    rows, classes = [], []
    for w in reversed(view.windows):
        name = w.get("report")
        label = f"#{w['id']}"
        cell = f'<a href="{e(name)}">{e(label)}</a>' if name and name in view.reports else e(label)
        closed = datetime.fromtimestamp(float(w["closed_at"]), UTC)
        prediction = w.get("prediction_drift") or {}
        drift = "–" if w.get("error") else share_text(w)
        rows.append([td(cell), td(e(f"{closed:%Y-%m-%d %H:%M:%S}")), td(count(w["n_rows"]), "num"),
                     td(e(f"v{w['reference_version']}")), td(e(drift)),
                     td(e(f"{number(prediction['score'])}{' drifted' if prediction.get('drifted') else ''}")
                        if prediction.get("score") is not None else "–"),
                     td(e(f"{METRIC_LABELS[quality_metric(w)]} {quality_text(w)}")), td(e(decision_text(w)))])
        trigger = w["id"] in triggered or (w.get("decision") or {}).get("action") == "trigger"
        classes.append("fail" if trigger else "warn" if w.get("signal") else "")
    return table(head, rows, row_classes=classes)
