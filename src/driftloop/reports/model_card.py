"""The model card: Markdown a person can hand to a reviewer.

Sections follow *Model Cards for Model Reporting* (Mitchell et al., 2019): model details, intended use, factors,
metrics, evaluation data, training data, quantitative analyses, ethical considerations, caveats and
recommendations. It renders in the Kubeflow dashboard's Markdown viewer (markdown-to-jsx with raw HTML off:
GitHub-style tables, links, block quotes) and anywhere else Markdown is read.

Every copy names its version: the register step renders it once the number is known (see
:func:`driftloop.steps.register`). Everything it says comes from the version's lineage record, so a card can be
rendered again from the registry alone.
"""

from __future__ import annotations

import json
import re
from urllib.parse import quote

from driftloop.data import DatasetSpec
from driftloop.evaluation import Evaluation, GateDecision
from driftloop.reports.facts import (
    METRIC_LABELS,
    REPORTED_METRICS,
    MetricRow,
    baselines,
    class_balance,
    class_labels,
    class_support,
    compare,
    delta_text,
    holdout_rows,
    metric_text,
    trailing_warning,
    trigger_sentence,
)
from driftloop.reports.html import amount, count, number, percent, safe_url
from driftloop.serving.labels import served_classes
from driftloop.tasks import BINARY, MULTICLASS, REGRESSION, higher_is_better

# What the model is, by task, for the card's first line.
KIND = {BINARY: "Binary classifier", MULTICLASS: "Multi-class classifier", REGRESSION: "Regression model"}

NOT_STATED = ("_Not stated._ Set the CT parameter `{param}` (`--{flag}` on `driftloop run`, or the pipeline "
              "parameter) so reviewers know {what}.")


def model_card(name: str, version: int | None, spec: DatasetSpec, evaluation: Evaluation, decision: GateDecision,
               lineage: dict, registered_at: str = "") -> str:
    """The Markdown card of one model version.

    Args:
        version: The version number (None only for a card of a candidate that was never registered).
        lineage: The version's lineage record (run, data, trigger, parent, estimator, training data, intended use
            and limitations, code and library versions).
        registered_at: ISO-8601 UTC time of registration.
    """
    title = f"{name} v{version}" if version is not None else f"{name} (candidate, not registered)"
    parent = lineage.get("parent_version", decision.champion_version)
    champion_label = f"champion v{decision.champion_version}" if decision.champion_version is not None else "champion"
    lines = [f"# Model card: {_md(title)}", ""]
    summary = [f"{KIND.get(spec.task, spec.task)} of {_code(spec.target)}{_classes_text(spec)}",
               _md(_when(registered_at) or "")]
    lines += [" · ".join(s for s in summary if s) + ".", ""]
    warning = trailing_warning(decision, spec.task)
    if warning:
        lines += [f"> **Warning:** {_md(warning)}", ""]
    lines += _model_details(name, version, lineage, decision, parent, registered_at)
    lines += ["## Intended use", "", _user_text(lineage.get("intended_use"), "intended_use", "intended-use",
                                                "what it is for, for whom, and what it must not be used for"), ""]
    lines += _factors(spec)
    lines += _metrics(decision, evaluation)
    lines += _evaluation_data(evaluation, decision, lineage, spec)
    lines += _training_data(spec, lineage)
    lines += _quantitative(evaluation, decision, champion_label, spec, lineage)
    lines += ["## Ethical considerations", "",
              "driftloop does not know which features are sensitive or stand in for a protected attribute, and it "
              "reports quality on the whole holdout only. Review the features above and, where it matters, "
              "evaluate per group before this model decides about people.", ""]
    lines += ["## Caveats and recommendations", "", _user_text(lineage.get("limitations"), "limitations", "limitations",
                                                              "where it is known to fail"), ""]
    lines += [f"- {_md(c)}" for c in _caveats(evaluation, decision, lineage, spec)]
    params = lineage.get("params") or {}
    if params:
        lines += ["", "## Estimator parameters", "", *_fenced(json.dumps(params, indent=2, sort_keys=True,
                                                                          default=str), "json")]
    return "\n".join(lines).rstrip() + "\n"


def _classes_text(spec: DatasetSpec, most: int = 12) -> str:
    """`` (3 classes: `hi`, `lo`, `mid`)`` for a multi-class target, ``""`` otherwise."""
    if spec.task != MULTICLASS or not spec.target_classes:
        return ""
    classes = list(spec.target_classes)
    named = ", ".join(_code(c) for c in classes[:most]) + (", …" if len(classes) > most else "")
    return f" ({len(classes)} classes: {named})"


def _when(at: str) -> str:
    return f"registered {at[:16].replace('T', ' ')} UTC" if at else ""


def _model_details(name: str, version: int | None, lineage: dict, decision: GateDecision, parent,
                   registered_at: str) -> list[str]:
    estimator = lineage.get("estimator") or "?"
    requested = lineage.get("requested_estimator")
    chosen = " (chosen by `auto`)" if requested == "auto" and estimator != "auto" else ""
    run = _run(lineage)
    code = lineage.get("code_version") or {}
    commit = code.get("git_commit")
    libraries = ", ".join(f"{_md(k)} {_md(v)}" for k, v in sorted((lineage.get("libraries") or {}).items()) if v)
    gate = "passed" if decision.passed else "failed"
    rows = [
        ("Model", f"{_md(name)}, version {version}" if version is not None else f"{_md(name)} (candidate)"),
        ("Registered", _md(registered_at[:19].replace("T", " ") + " UTC") if registered_at else "–"),
        ("Triggered by", _md(trigger_sentence(lineage.get("triggered_by") or "manual",
                                               lineage.get("trigger_detail") or ""))),
        ("Parent version", f"{_md(name)} v{parent} (production when this run started)" if parent is not None
         else "none: the first version of this model"),
        ("Pipeline run", run),
        ("Estimator", f"{_code(estimator)}{chosen}"),
        ("Model format", f"{_md(lineage.get('model_format', 'sklearn'))} (served by driftloop's KServe runtime)"),
        ("Gate", f"**{gate}** on {_md(METRIC_LABELS.get(decision.metric, decision.metric))}"
                 + ("" if higher_is_better(decision.metric) else " (lower is better)")),
        ("Code", f"driftloop {_md(code.get('package', '?'))}" + (f", commit {_code(str(commit)[:12])}" if commit
                                                                  else "")),
    ]
    if libraries:
        rows.append(("Libraries", libraries))
    return ["## Model details", "", "| | |", "|---|---|", *[f"| {k} | {v} |" for k, v in rows], ""]


def _run(lineage: dict) -> str:
    name = str(lineage.get("run_name") or "")
    run_id = str(lineage.get("run_id") or "")
    shown = name or run_id or "–"
    url = safe_url(lineage.get("run_url") or "")
    text = f"[{_md(shown)}]({_url(url)})" if url else _code(shown)
    if name and run_id and run_id != name:
        text += f" (run id {_code(run_id)})"
    return text


def _user_text(value, param: str, flag: str, what: str) -> str:
    """A user-supplied paragraph as inert Markdown, or how to supply it."""
    text = str(value or "").strip()
    return _md(text) if text else NOT_STATED.format(param=param, flag=flag, what=what)


def _factors(spec: DatasetSpec) -> list[str]:
    lines = ["## Factors", "", f"The model sees {len(spec.features)} features; quality is measured on the "
             "holdout as a whole, not per group.", "", "| feature | kind |", "|---|---|"]
    lines += [f"| {_md(f.name)} | {f.kind} |" for f in spec.features]
    if spec.ignored:
        lines += ["", "Left out: " + "; ".join(f"{_code(k)} ({_md(v)})" for k, v in spec.ignored.items())]
    return [*lines, ""]


def _metrics(decision: GateDecision, evaluation: Evaluation) -> list[str]:
    thresholds = decision.thresholds or {}
    metric = METRIC_LABELS.get(decision.metric, decision.metric)
    rules = []
    if higher_is_better(decision.metric):
        if "min_value" in thresholds:
            rules.append(f"it must reach {thresholds['min_value']:.4f}")
    else:
        rules.append("it must beat a model that ignores the features (lower is better)")
    allowed = thresholds.get("max_regression")
    if allowed is not None:
        rules.append(f"may trail the champion by at most {allowed:.4f}" if higher_is_better(decision.metric)
                     else f"may be at most {percent(allowed)} worse than the champion's")
    rule = f"The gate judges **{_md(metric)}**" + (": " + " and ".join(rules) if rules else "") + "."
    return ["## Metrics", "", rule, _METRICS_MEANING[evaluation.task].format(threshold=evaluation.threshold), ""]


_METRICS_MEANING = {
    BINARY: ("Accuracy, precision, recall and F1 count a row as positive when its probability reaches "
             "{threshold:.2f}; ROC AUC and average precision are threshold-free; log loss and the Brier score judge "
             "the probabilities themselves (lower is better)."),
    MULTICLASS: ("Each row is predicted as its most probable class. Macro F1 and macro recall weigh every class "
                 "alike (a neglected small class pulls them down); weighted F1 weighs classes by their rows; log "
                 "loss judges the probabilities themselves (lower is better)."),
    REGRESSION: ("RMSE and MAE are errors in the target's own units (lower is better; RMSE weighs large misses "
                 "more); R² is the share of the target's variance the model explains (0: no better than the "
                 "mean, 1: perfect)."),
}


def _evaluation_data(evaluation: Evaluation, decision: GateDecision, lineage: dict, spec: DatasetSpec) -> list[str]:
    total = holdout_rows(evaluation)
    test_size = lineage.get("test_size")
    share = f" ({percent(test_size, 0)} of the validated rows, seeded split)" if isinstance(test_size, (int, float)) else ""
    line = f"- Holdout: {count(total)} rows never trained on{share}"
    if evaluation.task == BINARY:
        positives, _ = class_balance(evaluation)
        line += f"; {percent(positives / total if total else None)} positive."
    elif evaluation.task == MULTICLASS:
        support = class_support(evaluation, list(spec.target_classes))
        line += "; " + ", ".join(f"{_code(label)} {percent(n / total if total else None)}"
                                 for label, n in support.items()) + "."
    else:
        actual = evaluation.residuals.get("actual") or []
        if actual:
            sample = "its rows" if len(actual) >= total else f"an even sample of {count(len(actual))} of its rows"
            line += f"; {_code(spec.target)} from {amount(min(actual))} to {amount(max(actual))} in {sample}."
        else:
            line += "."
    lines = ["## Evaluation data", "", line]
    if decision.n_recent:
        lines.append(f"- The {count(decision.n_recent)} most recent labelled rows of live traffic, held back by "
                     "the drift monitor and never trained on; the comparison with the champion was made there.")
    return [*lines, ""]


def _training_data(spec: DatasetSpec, lineage: dict) -> list[str]:
    data = lineage.get("training_data") or {}
    sha = str(lineage.get("data_sha256") or "")
    positive = spec.target_classes[-1] if spec.target_classes else "?"
    lines = ["## Training data", "", "| | |", "|---|---|",
             f"| Source | {_code(lineage.get('data_uri', '?'))} |"]
    if sha:
        lines.append(f"| sha256 | {_code(sha[:16])}… |")
    if data.get("rows") is not None:
        split = (f": {count(data['train_rows'])} trained on, {count(data['holdout_rows'])} held out"
                 if data.get("train_rows") is not None and data.get("holdout_rows") is not None else "")
        lines.append(f"| Rows | {count(data['rows'])} validated{split} |")
    if data.get("positive_share") is not None:
        lines.append(f"| Class balance | {percent(data['positive_share'])} {_code(spec.target)} = "
                     f"{_code(positive)} |")
    if data.get("live_rows"):
        lines.append(f"| Live rows | {count(data['live_rows'])} labelled rows of live traffic among them |")
    if lineage.get("reference_sample"):
        lines.append(f"| Drift baseline | a sample of the {_md(lineage['reference_sample'])} |")
    return [*lines, ""]


def _quantitative(evaluation: Evaluation, decision: GateDecision, champion_label: str, spec: DatasetSpec,
                  lineage: dict) -> list[str]:
    names = REPORTED_METRICS.get(evaluation.task, REPORTED_METRICS[BINARY])
    lines = ["## Quantitative analyses", ""]
    if decision.recent_candidate is not None:
        lines += [f"### On the {count(decision.n_recent)} most recent rows (these decided)", "",
                  *_metric_table(compare(decision.recent_candidate, decision.recent_champion, names), champion_label),
                  ""]
    lines += ["### On the holdout", "", *_metric_table(compare(evaluation.metrics, decision.champion, names),
                                                       champion_label)]
    for b in baselines(evaluation, list(spec.target_classes)):
        what = _md(b.description) if b.majority is None else \
            f"always predicting {_code(spec.target)} = {_code(b.majority)}"
        lines += ["", f"Baseline: {what} scores {metric_text(b.metric, b.value)} "
                      f"{_md(METRIC_LABELS.get(b.metric, b.metric))}."]
    lines.append("")
    if evaluation.task == BINARY:
        lines += _binary_confusion(evaluation, spec)
    elif evaluation.task == MULTICLASS:
        lines += _per_class(evaluation, spec)
    else:
        lines += _deciles(evaluation)
    strategies = lineage.get("drift_strategy") or []
    if strategies:
        metric = METRIC_LABELS.get(strategies[0].get("metric", ""), strategies[0].get("metric", ""))
        lines += ["### How the new world was weighed (drift retrain)", "",
                  f"| live rows weigh | reference rows | training rows | {_md(metric)} on recent rows | |",
                  "|---:|---|---:|---:|---|"]
        lines += [f"| ×{s.get('live_weight', 0):g} | {_md(s.get('reference_window', ''))} | "
                  f"{count(s.get('training_rows'))} | {metric_text(s.get('metric', ''), s.get('value'))} | {'**chosen**' if s.get('chosen') else ''} |"
                  for s in strategies]
        lines.append("")
    leaderboard = lineage.get("leaderboard") or []
    if leaderboard:
        metric = METRIC_LABELS.get(leaderboard[0].get("metric", ""), leaderboard[0].get("metric", ""))
        lines += ["### Estimator chosen by `auto`", "", f"| estimator | validation {_md(metric)} | fit seconds | |",
                  "|---|---:|---:|---|"]
        lines += [f"| {_md(c.get('estimator', '?'))} | {metric_text(c.get('metric', ''), c.get('value'))} | {number(c.get('fit_seconds'), 2)} | "
                  f"{'**chosen**' if c.get('chosen') else ''} |" for c in leaderboard]
        lines.append("")
    lines += ["### Gate decision", "", *[f"- {_md(reason)}" for reason in decision.reasons], ""]
    return lines


def _binary_confusion(evaluation: Evaluation, spec: DatasetSpec) -> list[str]:
    (tn, fp), (fn, tp) = evaluation.confusion_matrix
    classes = [str(c) for c in served_classes(spec)]
    negatives, positives = tn + fp, fn + tp
    return [f"### Confusion matrix (threshold {evaluation.threshold:.2f})", "",
            f"| | predicted {_md(classes[0])} | predicted {_md(classes[1])} |", "|---|---:|---:|",
            f"| actual {_md(classes[0])} | {count(tn)} ({_rate(tn, negatives)}) | {count(fp)} "
            f"({_rate(fp, negatives)}) |",
            f"| actual {_md(classes[1])} | {count(fn)} ({_rate(fn, positives)}) | {count(tp)} "
            f"({_rate(tp, positives)}) |", "",
            "Rates are shares of the actual class: the bottom-right one is the recall.", ""]


def _per_class(evaluation: Evaluation, spec: DatasetSpec) -> list[str]:
    labels = class_labels(evaluation, list(spec.target_classes))
    support = class_support(evaluation, list(spec.target_classes))
    lines = ["### Per class", "", "| class | rows | precision | recall | F1 |", "|---|---:|---:|---:|---:|"]
    for label in labels:
        scores = evaluation.per_class.get(label, {})
        lines.append(f"| {_md(label)} | {count(support.get(label))} | {number(scores.get('precision'))} | "
                     f"{number(scores.get('recall'))} | {number(scores.get('f1'))} |")
    lines += ["", "### Confusion matrix", "",
              "| actual \\ predicted | " + " | ".join(_md(label) for label in labels) + " |",
              "|---|" + "---:|" * len(labels)]
    for label, row in zip(labels, evaluation.confusion_matrix):
        of = sum(row)
        lines.append(f"| {_md(label)} | " + " | ".join(f"{count(n)} ({_rate(n, of)})" for n in row) + " |")
    return [*lines, "", "Rates are shares of the actual class (the row): the diagonal holds each class's recall.", ""]


def _deciles(evaluation: Evaluation) -> list[str]:
    if not evaluation.error_by_decile:
        return []
    lines = ["### Error by decile of the prediction", "",
             "| decile | predictions | mean predicted | mean actual | MAE | rows |", "|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {d['decile']} | {amount(d['low'])} – {amount(d['high'])} | {amount(d['mean_predicted'])} | "
              f"{amount(d['mean_actual'])} | {amount(d['mae'])} | {count(d['count'])} |"
              for d in evaluation.error_by_decile]
    return [*lines, "", "The holdout sorted by prediction and cut in ten: where the error lies.", ""]


def _metric_table(rows: list[MetricRow], champion_label: str) -> list[str]:
    if not any(r.champion is not None for r in rows):
        return ["| metric | this model |", "|---|---:|",
                *[f"| {r.label} | {metric_text(r.name, r.candidate)} |" for r in rows]]
    marks = {"better": " ▲ better", "worse": " ▼ worse", "same": ""}
    return [f"| metric | this model | {_md(champion_label)} | Δ |", "|---|---:|---:|---:|",
            *[f"| {r.label} | {metric_text(r.name, r.candidate)} | {metric_text(r.name, r.champion)} | "
              f"{delta_text(r)}{marks.get(r.verdict, '')} |" for r in rows]]


def _caveats(evaluation: Evaluation, decision: GateDecision, lineage: dict, spec: DatasetSpec) -> list[str]:
    """What the numbers themselves say a reader should keep in mind."""
    caveats = []
    if evaluation.task == BINARY:
        positives, total = class_balance(evaluation)
        if total and min(positives, total - positives) < 50:
            caveats.append(f"The holdout holds only {min(positives, total - positives)} rows of its rarer class; "
                           "its scores are uncertain to about the second decimal.")
        (tn, fp), (fn, tp) = evaluation.confusion_matrix
        if tp + fn and tp / (tp + fn) < 0.5:
            caveats.append(f"At threshold {evaluation.threshold:.2f} the model finds only {tp / (tp + fn):.0%} of "
                           "the positives; choose a lower threshold where missing one costs more than a false alarm.")
    elif evaluation.task == MULTICLASS:
        support = class_support(evaluation, list(spec.target_classes))
        rare = [label for label, n in support.items() if n < 50]
        if rare:
            caveats.append(f"The holdout holds fewer than 50 rows of {len(rare)} class(es) ({', '.join(rare[:6])}); "
                           "their scores are uncertain.")
        weak = [label for label in support if (evaluation.per_class.get(label, {}).get("recall") or 0) < 0.5]
        if weak:
            caveats.append(f"The model finds fewer than half of the rows of {', '.join(weak[:6])}; do not rely on "
                           "it for those classes.")
    else:
        worst = max(evaluation.error_by_decile, key=lambda d: d["mae"], default=None)
        if worst is not None and len(evaluation.error_by_decile) > 1:
            caveats.append(f"Its error is largest where it predicts {amount(worst['low'])} to {amount(worst['high'])} "
                           f"(decile {worst['decile']}: MAE {amount(worst['mae'])}).")
    if str(lineage.get("triggered_by", "")).startswith("drift:"):
        caveats.append("Trained after drift: its data mixes the old world with recent live traffic; watch the "
                       "drift monitor's realised quality once it serves.")
    return caveats


def _rate(n: int, of: int) -> str:
    return percent(n / of if of else None)


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


def _url(url: str) -> str:
    """A link target that cannot end the link early (parentheses, spaces and angle brackets encoded)."""
    return quote(url, safe=":/?#@!$&'*+,;=%-._~")


def _fenced(text: str, info: str) -> list[str]:
    """A fenced code block whose fence no backtick run inside ``text`` can close."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + info, text, fence]
