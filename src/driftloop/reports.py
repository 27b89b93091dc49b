"""Human-facing reports: the Markdown model card and the HTML validation/evaluation report.

Both render in the Kubeflow dashboard (as Markdown and HTML artifacts) and open from the registry.
The HTML is self-contained: inline CSS and SVG, no scripts, no external assets.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable

from driftloop.data import DatasetSpec
from driftloop.evaluation import Evaluation, GateDecision, non_finite_metrics
from driftloop.validation import ValidationReport

_METRIC_ORDER = ("roc_auc", "accuracy", "f1", "log_loss", "brier")


def model_card(
    name: str,
    version: int | None,
    spec: DatasetSpec,
    evaluation: Evaluation,
    decision: GateDecision,
    lineage: dict,
) -> str:
    """A Markdown model card: what the model is, how good, trained on what, and why it passed or not."""
    title = f"{name} v{version}" if version is not None else f"{name} (candidate)"
    lines = [f"# Model card: {_md(title)}", ""]
    lines += [
        "| | |",
        "|---|---|",
        f"| Estimator | {_code(lineage.get('estimator', '?'))} |",
        f"| Model format | {_md(lineage.get('model_format', 'sklearn'))} (served by driftloop's KServe runtime) |",
        f"| Training data | {_code(lineage.get('data_uri', '?'))} |",
        f"| Data sha256 | {_code(str(lineage.get('data_sha256', '?'))[:16])}… |",
        f"| Pipeline run | {_code(lineage.get('run_id', '?'))} |",
        f"| Gate | **{'passed' if decision.passed else 'failed'}** on {_md(decision.metric)} |",
        "",
        "## Holdout metrics",
        "",
        "| metric | candidate | champion |",
        "|---|---|---|",
    ]
    champion = decision.champion or {}
    for metric in _METRIC_ORDER:
        if metric in evaluation.metrics:
            other = f"{champion[metric]:.4f}" if metric in champion else "–"
            lines.append(f"| {metric} | {evaluation.metrics[metric]:.4f} | {other} |")
    leaderboard = lineage.get("leaderboard") or []
    if leaderboard:
        lines += ["", f"## Estimator chosen by `auto` (validation {_md(leaderboard[0].get('metric', ''))})", "",
                  "| candidate | validation score | fit seconds | |", "|---|---|---|---|"]
        lines += [f"| {_md(c.get('estimator', '?'))} | {c.get('value', float('nan')):.4f} | "
                  f"{c.get('fit_seconds', 0):.2f} | {'**chosen**' if c.get('chosen') else ''} |" for c in leaderboard]
    (tn, fp), (fn, tp) = evaluation.confusion_matrix
    lines += ["", "## Confusion matrix (threshold 0.5)", "", "| | predicted 0 | predicted 1 |", "|---|---|---|",
              f"| actual 0 | {tn} | {fp} |", f"| actual 1 | {fn} | {tp} |", "", "## Gate decision", ""]
    lines += [f"- {_md(reason)}" for reason in decision.reasons]
    lines += ["", "## Features", "", "| feature | kind |", "|---|---|"]
    lines += [f"| {_md(f.name)} | {f.kind} |" for f in spec.features]
    positive = _code(spec.target_classes[-1]) if spec.target_classes else "?"
    lines += ["", f"Target: {_code(spec.target)} (positive class {positive})."]
    if spec.ignored:
        lines += ["", "Left out: " + "; ".join(f"{_code(k)} ({_md(v)})" for k, v in spec.ignored.items())]
    params = lineage.get("params") or {}
    if params:
        lines += ["", "## Parameters", "", *_fenced(_json(params), "json")]
    return "\n".join(lines) + "\n"


# Column names, URIs, run ids and reasons come from users' tables and requests. In Markdown they are
# text: no raw HTML, no links or images (which would load a URL when the card is opened), no broken table
# rows. Entities keep < > & readable; backslashes escape Markdown's own punctuation; a line break would
# end a table row or start a block, so it becomes a space.
_MARKDOWN_TEXT = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\\": "\\\\", "`": "\\`",
                                "[": "\\[", "]": "\\]", "|": "\\|", "\n": " ", "\r": " "})
# Values made only of these characters cannot leave a code span, so they keep the code look.
_PLAIN_CODE = re.compile(r"[\w.:/@+=,~%-]*")


def _md(value) -> str:
    """User-controlled text as inert Markdown text."""
    return str(value).translate(_MARKDOWN_TEXT)


def _code(value) -> str:
    """A value as a code span when nothing in it can break out of one, else as escaped text."""
    text = str(value)
    return f"`{text}`" if _PLAIN_CODE.fullmatch(text) else _md(text)


def _fenced(text: str, info: str) -> list[str]:
    """A fenced code block whose fence no backtick run inside ``text`` can close."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + info, text, fence]


def _json(value) -> str:
    import json

    return json.dumps(value, indent=2, sort_keys=True, default=str)


def evaluation_report_html(
    title: str,
    evaluation: Evaluation,
    decision: GateDecision,
    validation: ValidationReport | None = None,
    champion_evaluation: Evaluation | None = None,
) -> str:
    """The HTML report: gate verdict, metrics, ROC curve, confusion matrix, validation checks."""
    verdict = "PASSED" if decision.passed else "FAILED"
    colour = "#1a7f37" if decision.passed else "#cf222e"
    evaluations = [("candidate", evaluation, "#0969da")]
    if champion_evaluation is not None:
        evaluations.append((f"champion v{decision.champion_version}", champion_evaluation, "#8c959f"))
    body = [
        f"<h1>{_e(title)}</h1>",
        f'<p class="verdict" style="background:{colour}">Gate {verdict}</p>',
        "<ul>" + "".join(f"<li>{_e(r)}</li>" for r in decision.reasons) + "</ul>",
        *_recent_section(decision),
        "<h2>Holdout metrics</h2>",
        _metrics_table(evaluation, champion_evaluation),
        *([f"<p>Left out of the dashboard's metrics (not a finite number): "
           f"{_e(', '.join(non_finite_metrics(evaluation.metrics)))}.</p>"]
          if non_finite_metrics(evaluation.metrics) else []),
        '<div class="row"><div><h2>ROC curve</h2>',
        _roc_svg([(label, evaluation_.roc_curve, colour) for label, evaluation_, colour in evaluations]),
        "</div><div><h2>Calibration (reliability)</h2>",
        _reliability_svg([(f"{label} (Brier {evaluation_.metrics.get('brier', float('nan')):.3f})",
                           evaluation_.calibration_curve, colour) for label, evaluation_, colour in evaluations]),
        "</div><div><h2>Confusion matrix</h2>",
        _confusion_table(evaluation.confusion_matrix),
        "</div></div>",
    ]
    if validation is not None:
        body += [
            f"<h2>Data validation ({validation.n_rows_used} of {validation.n_rows} rows used)</h2>",
            _checks_table(validation),
        ]
    return _page(title, "\n".join(body))


def _e(value) -> str:
    return html.escape(str(value))


def _metrics_table(evaluation: Evaluation, champion: Evaluation | None) -> str:
    head = "<tr><th>metric</th><th>candidate</th>" + ("<th>champion</th>" if champion else "") + "</tr>"
    rows = []
    for metric in _METRIC_ORDER:
        cells = f"<td>{metric}</td><td>{evaluation.metrics[metric]:.4f}</td>"
        if champion:
            cells += f"<td>{champion.metrics[metric]:.4f}</td>"
        rows.append(f"<tr>{cells}</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _confusion_table(matrix: list[list[int]]) -> str:
    (tn, fp), (fn, tp) = matrix
    total = max(tn + fp + fn + tp, 1)

    def cell(n: int, good: bool) -> str:
        alpha = 0.15 + 0.7 * n / total
        rgb = "26,127,55" if good else "207,34,46"
        return f'<td style="background:rgba({rgb},{alpha:.2f})">{n}</td>'

    return (
        "<table><tr><th></th><th>predicted 0</th><th>predicted 1</th></tr>"
        f"<tr><th>actual 0</th>{cell(tn, True)}{cell(fp, False)}</tr>"
        f"<tr><th>actual 1</th>{cell(fn, False)}{cell(tp, True)}</tr></table>"
    )


def _roc_svg(curves: Iterable[tuple[str, dict, str]], size: int = 260) -> str:
    return _curve_svg(curves, "fpr", "tpr", "false positive rate", "true positive rate", size)


def _reliability_svg(curves: Iterable[tuple[str, dict, str]], size: int = 260) -> str:
    return _curve_svg(curves, "predicted", "observed", "predicted probability", "observed share positive", size)


def _recent_section(decision: GateDecision) -> list[str]:
    """A drift retrain's comparison on the newest rows, which decided the gate, first."""
    if decision.recent_candidate is None:
        return []
    rows = ["<tr><th>metric</th><th>candidate</th><th>champion</th><th>Δ</th></tr>"]
    for metric in _METRIC_ORDER:
        if metric in decision.recent_candidate:
            value = decision.recent_candidate[metric]
            other = (decision.recent_champion or {}).get(metric)
            delta = "" if other is None else f"{value - other:+.4f}"
            rows.append(f"<tr><td>{metric}</td><td>{value:.4f}</td><td>{'' if other is None else f'{other:.4f}'}</td>"
                        f"<td>{delta}</td></tr>")
    return [f"<h2>On the {decision.n_recent} most recent rows (the world as it is now; these decide)</h2>",
            "<table>" + "".join(rows) + "</table>"]


def _curve_svg(curves: Iterable[tuple[str, dict, str]], x_key: str, y_key: str, x_label: str, y_label: str,
               size: int = 260) -> str:
    """Curves on the unit square with its diagonal (chance for ROC, perfect calibration for reliability)."""
    pad = 30
    inner = size - 2 * pad
    parts = [
        f'<svg width="{size}" height="{size}" viewBox="0 0 {size} {size}" xmlns="http://www.w3.org/2000/svg">',
        f'<rect x="{pad}" y="{pad}" width="{inner}" height="{inner}" fill="none" stroke="#d0d7de"/>',
        f'<line x1="{pad}" y1="{pad + inner}" x2="{pad + inner}" y2="{pad}" stroke="#d0d7de" stroke-dasharray="4"/>',
        f'<text x="{size / 2}" y="{size - 6}" font-size="11" text-anchor="middle">{_e(x_label)}</text>',
        f'<text x="10" y="{size / 2}" font-size="11" text-anchor="middle" transform="rotate(-90 10 {size / 2})">'
        f'{_e(y_label)}</text>',
    ]
    for i, (label, curve, colour) in enumerate(curves):
        if not curve.get(x_key):
            continue
        points = " ".join(
            f"{pad + x * inner:.1f},{pad + (1 - y) * inner:.1f}" for x, y in zip(curve[x_key], curve[y_key])
        )
        parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"/>')
        parts.append(f'<text x="{pad + inner - 4}" y="{pad + inner - 8 - 14 * i}" font-size="11" '
                     f'text-anchor="end" fill="{colour}">{_e(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _checks_table(report: ValidationReport) -> str:
    rows = []
    for check in report.checks:
        rows.append(
            f'<tr class="{check.status}"><td>{_e(check.column)}</td><td>{_e(check.check)}</td>'
            f"<td>{check.status}</td><td>{_e(check.detail)}</td></tr>"
        )
    return "<table><tr><th>column</th><th>check</th><th>status</th><th>detail</th></tr>" + "".join(rows) + "</table>"


def _page(title: str, body: str) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #1f2328; max-width: 60rem; }}
table {{ border-collapse: collapse; margin: .5rem 0 1rem; }}
th, td {{ border: 1px solid #d0d7de; padding: .3rem .6rem; text-align: left; font-size: .9rem; }}
.verdict {{ color: white; display: inline-block; padding: .3rem .8rem; border-radius: 4px; font-weight: 600; }}
.row {{ display: flex; gap: 3rem; flex-wrap: wrap; }}
tr.fail td {{ background: #ffebe9; }} tr.warn td {{ background: #fff8c5; }}
</style></head>
<body>
{body}
</body></html>
"""


def validation_report_html(title: str, report: ValidationReport, spec: DatasetSpec) -> str:
    """The HTML page of one validation: the spec that was applied and every check."""
    features = "".join(f"<tr><td>{_e(f.name)}</td><td>{f.kind}</td></tr>" for f in spec.features)
    ignored = "".join(f"<li><code>{_e(k)}</code>: {_e(v)}</li>" for k, v in spec.ignored.items())
    body = [
        f"<h1>{_e(title)}</h1>",
        f"<p>{report.n_rows_used} of {report.n_rows} rows used; {len(report.warnings)} warnings.</p>",
        _checks_table(report),
        f"<h2>Dataset spec</h2><p>Target <code>{_e(spec.target)}</code>, classes {_e(list(spec.target_classes))}</p>",
        f"<table><tr><th>feature</th><th>kind</th></tr>{features}</table>",
    ]
    if ignored:
        body.append(f"<p>Left out:</p><ul>{ignored}</ul>")
    return _page(title, "\n".join(body))
