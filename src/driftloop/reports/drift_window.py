"""The drift monitor's page of one window: what was watched, what the monitor decided and on which numbers.

Top to bottom: the header (model, window, time range, rows, reference version, realised quality in the task's
metric — accuracy, or RMSE for regression — against the value the version is held to, the decision), the verdict, every feature's test as the monitor ran it (score,
threshold, verdict) with a small plot of the window against the reference, then the prediction's drift apart
from the features (it is not counted in the drift share) and realised quality per serving version.

The numbers are the monitor's own decision record (the window summary it keeps and serves), never recomputed
here: the page cannot disagree with the decision. The plots come from profiles of the same reference sample
and window rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from driftloop.profile import FeatureProfile
from driftloop.reports.facts import METRIC_LABELS, metric_text
from driftloop.reports.html import amount, banner, count, e, facts, number, page, percent, signed, table, td
from driftloop.reports.svg import CURRENT_COLOUR, REFERENCE_COLOUR, box_pair, share_bars
from driftloop.tasks import (
    BINARY,
    IN_TARGET_UNITS,
    QUALITY_METRIC,
    QUALITY_REPORTED,
    drop_text,
    higher_is_better,
)

INDEX_FILE = "index.html"  # the model's window index, beside the window pages
# Trigger decisions that are not a retrain, in words (monitor/trigger.py's actions).
NOT_TRIGGERED = {"quiet": "no retrain: too few windows signal", "cooldown": "no retrain: in the cooldown",
                 "in-flight": "no retrain: one is already running", "stopped": "no retrain: retraining stopped"}


@dataclass
class WindowPage:
    """What a window's page shows.

    Attributes:
        window: The monitor's window summary (``WindowRecord.summary(labels)``): scores, share, threshold,
            prediction drift, quality and decision exactly as the monitor recorded them.
        reference, current: Feature profiles (and ``prediction``'s class shares, or its amounts' distribution) of
            the reference sample and the window's rows, for the plots.
        quality_drop, min_labels: The trigger's quality rule (a window signals when its realised quality is worse
            than the value it is held to by this much — tasks.quality_drop — on at least this many labelled rows).
        retrain: The retrain this window triggered (key, state, run), if any.
    """

    window: dict
    reference: dict[str, FeatureProfile] = field(default_factory=dict)
    current: dict[str, FeatureProfile] = field(default_factory=dict)
    quality_drop: float | None = None
    min_labels: int | None = None
    retrain: dict | None = None

    @property
    def title(self) -> str:
        return f"Drift window #{self.window['id']} of {self.window['model']}"


def window_report_html(view: WindowPage) -> str:
    """The self-contained HTML page of one window (no script; inline CSS and SVG)."""
    w = view.window
    body = [f"<h1>{e(view.title)}</h1>",
            f'<p class="subtitle">{e(time_range(w))} · <a href="{INDEX_FILE}">all windows of {e(w["model"])}</a></p>',
            _verdict(view), _header(view)]
    if w.get("error"):
        body.append(f"<p>{e('The window could not be analysed: ' + w['error'])}</p>")
        return page(view.title, "\n".join(body))
    body += _features_section(view)
    body += _prediction_section(view)
    body += _quality_section(view)
    return page(view.title, "\n".join(body))


def time_range(window: dict) -> str:
    """``2026-03-01 10:00:05 – 10:04:59 UTC (4 min 54 s)`` (the date repeated only when it changes)."""
    opened = datetime.fromtimestamp(float(window["opened_at"]), UTC)
    closed = datetime.fromtimestamp(float(window["closed_at"]), UTC)
    end = closed.strftime("%H:%M:%S" if closed.date() == opened.date() else "%Y-%m-%d %H:%M:%S")
    return f"{opened:%Y-%m-%d %H:%M:%S} – {end} UTC ({duration(closed.timestamp() - opened.timestamp())})"


def duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {secs} s" if minutes else f"{secs} s"


def share_text(window: dict) -> str:
    """``11 of 14 features drifted (78.6 %; dataset drift at 30.0 %)`` from the record's own verdicts."""
    tests = window.get("feature_tests") or []
    drifted = len(window.get("drifted_features") or [])
    threshold = window.get("drift_threshold")
    at = f"; dataset drift at {percent(threshold)}" if threshold is not None else ""
    return f"{drifted} of {len(tests)} features drifted ({percent(window.get('drift_share'))}{at})"


def decision_text(window: dict) -> str:
    """The trigger decision in words: a retrain, or why not."""
    decision = window.get("decision") or {}
    action = decision.get("action")
    if window.get("error"):
        return "not analysed (the window does not count)"
    if action == "trigger":
        return "retrain triggered"
    return NOT_TRIGGERED.get(action, action or "none recorded")


def quality_metric(window: dict) -> str:
    """The metric a window's realised quality is judged in (summaries from before tasks judged accuracy)."""
    return window.get("quality_metric") or QUALITY_METRIC[BINARY]


def quality_label(window: dict) -> str:
    """"Realised accuracy", "Realised RMSE": what the window's quality figure is called."""
    return f"Realised {METRIC_LABELS[quality_metric(window)]}"


def expected_quality(window: dict) -> float | None:
    """The value of the quality metric the reference version is held to (``reference_accuracy`` in summaries
    written before tasks)."""
    return window.get("reference_quality", window.get("reference_accuracy"))


def quality_delta(metric: str, realised: float | None, expected: float | None) -> str:
    if realised is None or expected is None:
        return "–"
    if metric in IN_TARGET_UNITS:
        return amount(realised - expected, sign=True, like=expected)
    return signed(realised - expected)


def quality_text(window: dict) -> str:
    """Realised quality on the labelled rows against the value the reference version is held to (its holdout's,
    or a drift retrain's on the recent rows its gate judged it on)."""
    metric = quality_metric(window)
    quality = window.get("quality") or {}
    realised, labelled = quality.get(metric), quality.get("labelled") or 0
    expected = expected_quality(window)
    if realised is None:
        return f"no labels yet (expected {metric_text(metric, expected)})" if expected is not None else "no labels yet"
    text = f"{metric_text(metric, realised)} on {count(labelled)} labelled rows"
    if expected is not None:
        text += f" (expected {metric_text(metric, expected)}, Δ {quality_delta(metric, realised, expected)})"
    unseen = quality.get("unseen_classes") or {}
    if unseen:
        text += (f"; {count(sum(unseen.values()))} labels of classes never learned "
                 f"({', '.join(f'{label} {n}' for label, n in unseen.items())}), counted as wrong")
    return text


def _verdict(view: WindowPage) -> str:
    w = view.window
    if w.get("error"):
        return banner("fail", "Not analysed", e(w["error"]))
    decision = w.get("decision") or {}
    reason = e(decision.get("reason", ""))
    causes = []
    if w.get("dataset_drift"):
        causes.append("dataset drift")
    if w.get("quality_dropped"):
        metric = quality_metric(w)
        causes.append(f"{quality_label(w).lower()} {'dropped' if higher_is_better(metric) else 'rose'}")
    if decision.get("action") == "trigger":
        return banner("fail", f"{' and '.join(causes).capitalize() or 'Signal'} — retrain triggered", reason)
    if causes:
        return banner("warn", f"{' and '.join(causes).capitalize()} — {decision_text(w)}", reason)
    return banner("pass", f"No drift — {share_text(w)}", reason)


def _header(view: WindowPage) -> str:
    w = view.window
    by_version = w.get("rows_by_version") or {}
    rows = count(w["n_rows"]) + (" (" + ", ".join(f"v{v}: {count(n)}" for v, n in sorted(by_version.items())) + ")"
                                 if by_version else "")
    reference = f"production v{w['reference_version']}"
    if w.get("reference_rows"):
        reference += f" ({count(w['reference_rows'])} sample rows)"
    prediction = w.get("prediction_drift") or {}
    items = [("Model", e(w["model"])), ("Window", e(f"#{w['id']}")), ("Time range", e(time_range(w))),
             ("Rows", e(rows)), ("Reference", e(reference)), (quality_label(w), e(quality_text(w))),
             ("Decision", e(decision_text(w)))]
    if not w.get("error"):
        items += [("Drift share", e(share_text(w))),
                  ("Prediction drift", e(_prediction_text(prediction)) if prediction else "–")]
    if view.retrain:
        items.append(("Retrain", e(f"{view.retrain.get('key', '')} ({view.retrain.get('state', '')})")))
    if (w.get("decision") or {}).get("reason"):
        items.append(("Why", e(w["decision"]["reason"])))
    return facts(items, wide=("Time range", quality_label(w), "Drift share", "Why", "Retrain"))


def _prediction_text(prediction: dict) -> str:
    verdict = "drifted" if prediction.get("drifted") else "no drift"
    return (f"{verdict}: {prediction.get('method', '')} {number(prediction.get('score'))} "
            f"(threshold {number(prediction.get('threshold'), 2)})")


def _legend() -> str:
    return (f'<span class="note"><span class="key" style="background:{REFERENCE_COLOUR}"></span> reference '
            f'<span class="key" style="background:{CURRENT_COLOUR}"></span> this window</span>')


def _features_section(view: WindowPage) -> list[str]:
    w = view.window
    tests = w.get("feature_tests") or []
    # Drifted features first; otherwise in the spec's order (the order the monitor tested them).
    ordered = sorted(tests, key=lambda t: not t.get("drifted"))
    head = ["feature", "kind", "method", '<span class="num">score</span>', '<span class="num">threshold</span>',
            "drift", f"distribution {_legend()}"]
    rows, classes = [], []
    for t in ordered:
        name = t["column"]
        rows.append([td(f"<code>{e(name)}</code>"), td(e(t.get("kind", ""))), td(e(t.get("method", ""))),
                     td(number(t.get("score")), "num"), td(number(t.get("threshold"), 2), "num"),
                     td("drifted" if t.get("drifted") else "no"),
                     td(_plot(view.reference.get(name), view.current.get(name)))])
        classes.append("warn" if t.get("drifted") else "")
    intro = (f"<p>{e(share_text(w))}. The share counts features only; the model's prediction is tested apart "
             "below. Scores are the monitor's own, from the test it decided on.</p>")
    return [f"<h2>Features against the reference v{e(w['reference_version'])}</h2>", intro,
            table(head, rows, row_classes=classes)]


def _prediction_section(view: WindowPage) -> list[str]:
    prediction = view.window.get("prediction_drift")
    if not prediction:
        return []
    plot = _plot(view.reference.get("prediction"), view.current.get("prediction"))
    row = [td("<code>prediction</code>"), td(e(prediction.get("method", ""))),
           td(number(prediction.get("score")), "num"), td(number(prediction.get("threshold"), 2), "num"),
           td("drifted" if prediction.get("drifted") else "no"), td(plot)]
    head = ["output", "method", '<span class="num">score</span>', '<span class="num">threshold</span>', "drift",
            f"class shares {_legend()}"]
    return ["<h2>Prediction drift (not counted in the drift share)</h2>",
            table(head, [row], row_classes=["warn" if prediction.get("drifted") else ""])]


def _quality_section(view: WindowPage) -> list[str]:
    w = view.window
    quality = w.get("quality") or {}
    metric, expected = quality_metric(w), expected_quality(w)
    name = METRIC_LABELS[metric]
    others = [m for m in QUALITY_REPORTED[w.get("task") or BINARY] if m != metric]  # macro F1, MAE: shown beside
    rows = []
    for version, n in sorted((w.get("rows_by_version") or {}).items(), key=lambda kv: int(kv[0])):
        stats = (quality.get("by_version") or {}).get(version) or {}
        realised = stats.get(metric)
        is_reference = int(version) == int(w["reference_version"])
        rows.append([td(e(f"v{version}" + (" (reference)" if is_reference else ""))), td(count(n), "num"),
                     td(count(stats.get("labelled", 0)), "num"), td(metric_text(metric, realised), "num"),
                     td(metric_text(metric, expected) if is_reference else "–", "num"),
                     td(quality_delta(metric, realised, expected if is_reference else None), "num"),
                     *(td(metric_text(m, stats.get(m)), "num") for m in others)])
    head = ["version", '<span class="num">rows</span>', '<span class="num">labelled</span>',
            f'<span class="num">realised {e(name)}</span>', f'<span class="num">holdout {e(name)}</span>',
            '<span class="num">Δ</span>', *(f'<span class="num">{e(METRIC_LABELS[m])}</span>' for m in others)]
    rule = ""
    if view.quality_drop is not None and view.min_labels is not None:
        rule = (f"<p class=\"note\">A window signals a quality drop when its realised {e(name)} is more than "
                f"{e(drop_text(metric, view.quality_drop))} the holdout {e(name)} on at least "
                f"{count(view.min_labels)} labelled rows{': it did' if w.get('quality_dropped') else ''}. Labels "
                "arrive late; the index shows the latest figures.</p>")
    return ["<h2>Realised quality</h2>", table(head, rows), rule]


def _plot(reference: FeatureProfile | None, current: FeatureProfile | None) -> str:
    if current is None:
        return ""
    if current.kind == "numeric":
        return box_pair(reference.quantiles if reference else None, current.quantiles)
    return share_bars(reference.categories if reference else {}, current.categories)
