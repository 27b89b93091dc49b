"""The evaluation report: a page a person decides from, not a dump of numbers, in the terms of the model's task.

Top to bottom: what was evaluated (model, version, task, run, data, trigger, date, holdout), the verdict — with a
warning when the gate passed a candidate that is worse than the champion — the comparison that decided (a drift
retrain's recent rows first), candidate and champion side by side with a coloured Δ and the baselines a model
that ignores the features scores, then what the task needs (binary: class balance, ROC, precision–recall and
reliability curves, both 2×2 confusion matrices; multi-class and regression: :mod:`driftloop.reports.multiclass`,
:mod:`driftloop.reports.regression`), and how the model was chosen (``auto``'s leaderboard, a drift retrain's
weighting strategies).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from driftloop.evaluation import Evaluation, GateDecision, non_finite_metrics
from driftloop.reports import multiclass, regression
from driftloop.reports.facts import (
    METRIC_LABELS,
    REPORTED_METRICS,
    Baseline,
    MetricRow,
    RunFacts,
    baseline_accuracy,
    baselines,
    class_balance,
    compare,
    decisive,
    delta_text,
    holdout_rows,
    metric_text,
    trailing_warning,
    trigger_sentence,
)
from driftloop.reports.html import (
    CANDIDATE_COLOUR,
    CHAMPION_COLOUR,
    banner,
    count,
    e,
    facts,
    link,
    number,
    page,
    percent,
    table,
    td,
)
from driftloop.reports.svg import Series, unit_square_chart
from driftloop.serving.labels import UNRECORDED_BINARY_CLASSES
from driftloop.tasks import BINARY, MULTICLASS, REGRESSION, describe_task, higher_is_better


@dataclass
class EvaluationPage:
    """Everything the evaluation report shows; JSON-able, so the register step can render the registry's copy
    (which knows the version number) from what the evaluate step measured."""

    facts: RunFacts
    evaluation: Evaluation
    decision: GateDecision
    champion_evaluation: Evaluation | None = None
    leaderboard: list[dict] = field(default_factory=list)  # auto's candidates (training.Candidate as dicts)
    strategies: list[dict] = field(default_factory=list)  # a drift retrain's weightings (recency.Strategy)

    def to_dict(self) -> dict:
        return {"facts": self.facts.to_dict(), "evaluation": self.evaluation.to_dict(),
                "decision": self.decision.to_dict(),
                "champion_evaluation": self.champion_evaluation.to_dict() if self.champion_evaluation else None,
                "leaderboard": self.leaderboard, "strategies": self.strategies}

    @classmethod
    def from_dict(cls, data: dict) -> EvaluationPage:
        champion = data.get("champion_evaluation")
        # An outcome written before reports carried their facts has none: an unnamed header, filled in later.
        return cls(RunFacts.from_dict(data.get("facts") or {"model": ""}), Evaluation.from_dict(data["evaluation"]),
                   GateDecision(**data["decision"]), Evaluation.from_dict(champion) if champion else None,
                   list(data.get("leaderboard") or []), list(data.get("strategies") or []))


def evaluation_report_html(report: EvaluationPage) -> str:
    """The self-contained HTML page of one evaluation."""
    f, decision, evaluation = report.facts, report.decision, report.evaluation
    champion_label = _champion_label(decision)
    body = [
        f"<h1>Evaluation of {e(f.title)}</h1>",
        f'<p class="subtitle">{_subtitle(report)}</p>',
        _verdict(decision, champion_label, evaluation.task),
        _header(report, champion_label),
        "<h2>How the gate decided</h2>",
        "<ul>" + "".join(f"<li>{e(r)}</li>" for r in decision.reasons) + "</ul>",
        *_recent_section(decision, champion_label, evaluation.task),
        f"<h2>On the holdout ({count(holdout_rows(evaluation))} rows)</h2>",
        _metrics_table(_compare(evaluation.metrics, decision.champion, evaluation.task), champion_label,
                       baselines(evaluation, f.classes), f.target),
        *_non_finite_note(evaluation),
        *_task_sections(report, champion_label),
        *_training_section(report),
    ]
    return page(f"Evaluation: {f.title}", "\n".join(body))


def _task_sections(report: EvaluationPage, champion_label: str) -> list[str]:
    """What the task needs beyond the scores: curves and matrices, per-class scores, residuals."""
    champion = report.champion_evaluation
    if report.evaluation.task == MULTICLASS:
        return multiclass.sections(report.evaluation, champion, champion_label, report.facts.target)
    if report.evaluation.task == REGRESSION:
        return regression.sections(report.evaluation, champion, champion_label, report.facts.target)
    return [_context(report), "<h2>Curves</h2>", _charts(report, champion_label),
            f"<h2>Confusion matrices (threshold {report.evaluation.threshold:.2f})</h2>",
            _confusion_matrices(report, champion_label)]


def _compare(candidate: dict, champion: dict | None, task: str) -> list[MetricRow]:
    return compare(candidate, champion, REPORTED_METRICS.get(task, REPORTED_METRICS[BINARY]))


def _champion_label(decision: GateDecision) -> str:
    return f"champion v{decision.champion_version}" if decision.champion_version is not None else "champion"


def _subtitle(report: EvaluationPage) -> str:
    f = report.facts
    parts = [f"holdout of {count(holdout_rows(report.evaluation))} rows"]
    if report.decision.champion is not None:
        parts.append(f"compared with {e(_champion_label(report.decision))}")
    else:
        parts.append("no champion to compare with")
    if f.when:
        parts.append(e(f.when))
    return " · ".join(parts)


def _header(report: EvaluationPage, champion_label: str) -> str:
    f, evaluation = report.facts, report.evaluation
    run = link(f.run_name or f.run_id or "–", f.run_url)
    if f.run_name and f.run_id and f.run_id != f.run_name:
        run += f' <span class="note">id {e(f.run_id)}</span>'
    data = f"<code>{e(f.data_uri)}</code>" if f.data_uri else "–"
    if f.n_rows is not None:
        data += f" · {count(f.n_rows)} rows"
        if f.n_train is not None:
            data += f" ({count(f.n_train)} trained on)"
    if f.version is not None:
        version = e(f"v{f.version}")
    else:
        version = "not registered yet (candidate)" if report.decision.passed else "none: the gate failed"
    classes = evaluation.classes or (f.classes if evaluation.task == BINARY else [])
    target = f"<code>{e(f.target)}</code> · " if f.target else ""
    return facts([
        ("Model", e(f.model)),
        ("Version", version),
        ("Task", target + e(describe_task(evaluation.task, classes))),
        ("Pipeline run", run),
        ("Data", data),
        ("Triggered by", e(trigger_sentence(f.triggered_by, f.trigger_detail))),
        ("Evaluated", e(f.when or "–")),
        ("Holdout", e(_holdout_text(evaluation))),
        ("Compared with", e(champion_label) if report.decision.champion is not None else "nothing (no champion)"),
    ], wide=("Data", "Triggered by", "Task"))


def _holdout_text(evaluation: Evaluation) -> str:
    total = holdout_rows(evaluation)
    if evaluation.task == BINARY:
        positives, _ = class_balance(evaluation)
        return f"{count(total)} rows, {percent(positives / total if total else None)} positive"
    if evaluation.task == MULTICLASS:
        return f"{count(total)} rows, {len(evaluation.confusion_matrix)} classes"
    return f"{count(total)} rows"


def _verdict(decision: GateDecision, champion_label: str, task: str = BINARY) -> str:
    if not decision.passed:
        return banner("fail", "Gate FAILED — the candidate is not registered", e(_why_failed(decision, champion_label)))
    warning = trailing_warning(decision, task)
    if warning:
        return banner("warn", f"Gate PASSED — but the candidate is worse than {champion_label}", e(warning))
    candidate, champion, where = decisive(decision)
    if champion is None:
        return banner("pass", "Gate PASSED — the first version: nothing to compare against")
    gate = next(iter(compare(candidate, champion, (decision.metric,))), None)
    detail = ""
    if gate is not None and gate.delta is not None:
        lower = "" if higher_is_better(gate.name) else "; lower is better"
        detail = e(f"{gate.label} {metric_text(gate.name, gate.candidate)} against "
                   f"{metric_text(gate.name, gate.champion)} (Δ {delta_text(gate)}{lower}) on {where}.")
    word = "better than" if gate is not None and gate.verdict == "better" else "as good as"
    return banner("pass", f"Gate PASSED — {word} {champion_label}", detail)


def _why_failed(decision: GateDecision, champion_label: str) -> str:
    """The gate's failing condition in one sentence, from the decision's own numbers."""
    thresholds = decision.thresholds or {}
    candidate, champion, where = decisive(decision)
    name = decision.metric
    label = METRIC_LABELS.get(name, name)
    scores = decision.candidate if isinstance(decision.candidate, dict) else {}
    value = scores.get(name)
    if higher_is_better(name):
        minimum = thresholds.get("min_value")
        if value is not None and minimum is not None and not value >= minimum:
            return f"{label} {number(value)} is below the minimum {minimum:.4f}."
    else:
        baseline = scores.get(f"baseline_{name}")
        if value is not None and baseline is not None and not value < baseline:
            return (f"{label} {metric_text(name, value)} does not beat {metric_text(name, baseline)}, the "
                    f"{label} of a model that ignores the features (lower is better).")
    gate = next(iter(compare(candidate, champion, (name,))), None)
    allowed = thresholds.get("max_regression")
    if gate is not None and gate.delta is not None and allowed is not None:
        if higher_is_better(name) and gate.delta < -allowed:
            return (f"{label} {gate.candidate:.4f} trails {champion_label} ({gate.champion:.4f}) on {where} by "
                    f"{-gate.delta:.4f}, more than the allowed {allowed:.4f}.")
        # The gate holds an error to the champion's relatively (RMSE 10 → 11 is 10 % worse).
        worse = gate.delta / gate.champion if gate.champion > 0 else (0.0 if gate.delta <= 0 else float("inf"))
        if not higher_is_better(name) and worse > allowed:
            return (f"{label} {metric_text(name, gate.candidate)} is {percent(worse)} worse than {champion_label} "
                    f"({metric_text(name, gate.champion)}) on {where}, more than the {percent(allowed)} the gate "
                    "allows.")
    return decision.reasons[0] if decision.reasons else ""


def _metrics_table(rows: list[MetricRow], champion_label: str, baseline_rows: list[Baseline] = (),
                   target: str = "") -> str:
    with_champion = any(r.champion is not None for r in rows)
    head = ["metric", '<span class="num">candidate</span>']
    if with_champion:
        head += [f'<span class="num">{e(champion_label)}</span>', '<span class="num">Δ</span>']
    body, classes = [], []
    for r in rows:
        cells = [td(e(r.label)), td(metric_text(r.name, r.candidate), "num")]
        if with_champion:
            verdict = f" ({r.verdict})" if r.verdict in ("better", "worse") else ""
            cells += [td(metric_text(r.name, r.champion), "num"),
                      td(delta_text(r) + verdict, f"num {r.verdict}".strip())]
        body.append(cells)
        classes.append("")
    for b in baseline_rows:
        what = b.description if b.majority is None else f"always {target or 'class'} = {b.majority}"
        cells = [td(e(f"baseline: {what} ({METRIC_LABELS.get(b.metric, b.metric)})")),
                 td(metric_text(b.metric, b.value), "num")]
        if with_champion:
            cells += [td("", "num"), td("", "num")]
        body.append(cells)
        classes.append("baseline")
    lower = [r.label for r in rows if not higher_is_better(r.name)]
    note = f'<p class="note">Lower is better: {e(", ".join(lower))}.</p>' if lower else ""
    return table(head, body, row_classes=classes) + note


def _recent_section(decision: GateDecision, champion_label: str, task: str) -> list[str]:
    """A drift retrain's comparison on the newest rows, which decided the gate, comes first."""
    if decision.recent_candidate is None:
        return []
    return [f"<h2>On the {count(decision.n_recent)} most recent rows — the world as it is now; these decided</h2>",
            _metrics_table(_compare(decision.recent_candidate, decision.recent_champion, task), champion_label)]


def _context(report: EvaluationPage) -> str:
    """Class balance, the baseline's meaning, and precision/recall in words."""
    f, evaluation = report.facts, report.evaluation
    positives, total = class_balance(evaluation)
    if not total:
        return ""
    positive = f.classes[-1] if f.classes else "1"
    target = f"{f.target} = {positive}" if f.target else f"class {positive}"
    base, majority = baseline_accuracy(evaluation)
    (tn, fp), (fn, tp) = evaluation.confusion_matrix
    recall = tp / (tp + fn) if tp + fn else None
    precision = tp / (tp + fp) if tp + fp else None
    accuracy = evaluation.metrics.get("accuracy")
    lift = ""
    if accuracy is not None:
        lift = (f" The candidate's accuracy is {abs(accuracy - base):.4f} {'above' if accuracy >= base else 'below'} "
                "it.")
    return (f'<p>Class balance: {percent(positives / total)} of the holdout is {e(target)} ({count(positives)} of '
            f"{count(total)}). Always predicting the majority class scores {number(base)} accuracy.{lift} "
            f"At threshold {evaluation.threshold:.2f} the candidate finds <strong>{percent(recall, 0)}</strong> of "
            f"the positives (recall) and <strong>{percent(precision, 0)}</strong> of its positive calls are right "
            "(precision).</p>")


def _non_finite_note(evaluation: Evaluation) -> list[str]:
    left_out = non_finite_metrics(evaluation.metrics)
    if not left_out:
        return []
    return [f'<p class="note">Not a finite number, so left out of the dashboard\'s metrics: {e(", ".join(left_out))} '
            "(a holdout with one class has no ROC AUC).</p>"]


def _charts(report: EvaluationPage, champion_label: str) -> str:
    evaluations = [("candidate", report.evaluation, CANDIDATE_COLOUR, False)]
    if report.champion_evaluation is not None:
        evaluations.append((champion_label, report.champion_evaluation, CHAMPION_COLOUR, True))

    def score(evaluation: Evaluation, name: str, short: str) -> str:
        return f" — {short} {number(evaluation.metrics.get(name), 3)}"

    roc = [Series(label + score(ev, "roc_auc", "AUC"), ev.roc_curve.get("fpr", []), ev.roc_curve.get("tpr", []),
                  colour, dashed) for label, ev, colour, dashed in evaluations]
    pr = [Series(label + score(ev, "average_precision", "AP"), ev.pr_curve.get("recall", []),
                 ev.pr_curve.get("precision", []), colour, dashed)
          for label, ev, colour, dashed in evaluations if ev.pr_curve]
    positives, total = class_balance(report.evaluation)
    if pr and total:
        share = positives / total
        pr.append(Series(f"chance (positive share {percent(share)})", [0.0, 1.0], [share, share], "#8c959f", True))
    reliability = [Series(label + score(ev, "brier", "Brier"), ev.calibration_curve.get("predicted", []),
                          ev.calibration_curve.get("observed", []), colour, dashed, markers=True)
                   for label, ev, colour, dashed in evaluations]
    figures = [("ROC curve", unit_square_chart(roc, "false positive rate", "true positive rate",
                                               title="ROC curve"),
                "Dashed diagonal: a model that guesses.")]
    if pr:
        figures.append(("Precision–recall", unit_square_chart(pr, "recall", "precision", diagonal=False,
                                                              title="precision against recall"),
                        "Better models stay high further to the right."))
    figures.append(("Calibration (reliability)", unit_square_chart(
        reliability, "predicted probability", "observed share positive", title="reliability curve"),
        "On the diagonal, a predicted 30 % means 30 % are positive."))
    return '<div class="charts">' + "".join(
        f'<figure><figcaption>{e(caption)}</figcaption>{svg}<div class="note">{e(note)}</div></figure>'
        for caption, svg, note in figures) + "</div>"


def _confusion_matrices(report: EvaluationPage, champion_label: str) -> str:
    classes = (report.facts.classes if len(report.facts.classes) == 2
               else [str(c) for c in UNRECORDED_BINARY_CLASSES])
    blocks = [("candidate", report.evaluation)]
    if report.champion_evaluation is not None:
        blocks.append((champion_label, report.champion_evaluation))
    return '<div class="pair">' + "".join(
        f"<div><h3>{e(label)}</h3>{_confusion_table(ev.confusion_matrix, classes)}</div>" for label, ev in blocks
    ) + "</div>"


def _confusion_table(matrix: list[list[int]], classes: list[str]) -> str:
    """Counts with the share of their actual class (so the bottom-right cell's rate is the recall)."""
    (tn, fp), (fn, tp) = matrix

    def cell(n: int, of: int, good: bool, what: str) -> str:
        share = n / of if of else 0.0
        strength = 0.1 + 0.45 * share
        rgb = "26,127,55" if good else "207,34,46"
        return (f'<td style="background:rgba({rgb},{strength:.2f})"><strong>{count(n)}</strong> '
                f'<span class="rate">{percent(share if of else None)} of actual {e(what)}</span></td>')

    negatives, positives = tn + fp, fn + tp
    return (f'<table class="cm"><thead><tr><th></th><th>predicted {e(classes[0])}</th>'
            f"<th>predicted {e(classes[1])}</th></tr></thead><tbody>"
            f"<tr><th>actual {e(classes[0])}</th>{cell(tn, negatives, True, classes[0])}"
            f"{cell(fp, negatives, False, classes[0])}</tr>"
            f"<tr><th>actual {e(classes[1])}</th>{cell(fn, positives, False, classes[1])}"
            f"{cell(tp, positives, True, classes[1])}</tr></tbody></table>")


def _training_section(report: EvaluationPage) -> list[str]:
    out = []
    if report.strategies:
        metric = METRIC_LABELS.get(report.strategies[0].get("metric", ""), report.strategies[0].get("metric", ""))
        rows = [[td(e(f"×{s.get('live_weight', 0):g}"), "num"), td(e(s.get("reference_window", ""))),
                 td(count(s.get("training_rows")), "num"), td(metric_text(s.get("metric", ""), s.get("value")), "num"),
                 td("chosen" if s.get("chosen") else "")] for s in report.strategies]
        out += ["<h2>How the new world was weighed (drift retrain)</h2>",
                f'<p class="note">Each way of weighing live rows against the champion\'s training rows, fitted and '
                f"scored by {e(metric)} on the most recent rows; the best one was kept.</p>",
                table(["live rows weigh", "reference rows", '<span class="num">training rows</span>',
                       f'<span class="num">{e(metric)} on recent rows</span>', ""], rows,
                      row_classes=["chosen" if s.get("chosen") else "" for s in report.strategies])]
    if report.leaderboard:
        metric = report.leaderboard[0].get("metric", "")
        rows = [[td(e(c.get("estimator", "?"))), td(metric_text(c.get("metric", ""), c.get("value")), "num"),
                 td(number(c.get("fit_seconds"), 2), "num"), td("chosen" if c.get("chosen") else "")]
                for c in report.leaderboard]
        out += ["<h2>How the estimator was chosen (<code>auto</code>)</h2>",
                table(["estimator", f'<span class="num">validation {e(METRIC_LABELS.get(metric, metric))}</span>',
                       '<span class="num">fit seconds</span>', ""], rows,
                      row_classes=["chosen" if c.get("chosen") else "" for c in report.leaderboard])]
    return out
