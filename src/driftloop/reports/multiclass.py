"""The multi-class sections of the evaluation report: class balance against the majority-class baseline,
precision, recall and F1 per class (with the champion's recall beside the candidate's, as bars too), and both
k×k confusion matrices as heat-maps."""

from __future__ import annotations

from driftloop.evaluation import Evaluation
from driftloop.reports.facts import baseline_accuracy, class_labels, class_support
from driftloop.reports.html import (
    CANDIDATE_COLOUR,
    CHAMPION_COLOUR,
    count,
    e,
    number,
    percent,
    signed,
    table,
    td,
)
from driftloop.reports.svg import Bars, bar_chart


def sections(evaluation: Evaluation, champion: Evaluation | None, champion_label: str, target: str) -> list[str]:
    """The page's multi-class part, after the scores."""
    labels = class_labels(evaluation)
    out = [_context(evaluation, target), "<h2>Per class</h2>", _per_class_table(evaluation, champion, champion_label)]
    series = [Bars("candidate", [_score(evaluation, label, "recall") for label in labels], CANDIDATE_COLOUR)]
    if champion is not None:
        series.append(Bars(champion_label, [_score(champion, label, "recall") for label in labels], CHAMPION_COLOUR))
    out.append('<figure class="wide"><figcaption>Recall per class</figcaption>'
               + bar_chart(labels, series, maximum=1.0, value_text=lambda v: percent(v, 0), title="recall per class")
               + '<div class="note">The share of each actual class the model names correctly.</div></figure>')
    blocks = [("candidate", evaluation)] + ([(champion_label, champion)] if champion is not None else [])
    out += ["<h2>Confusion matrices</h2>",
            '<p class="note">Rows: the actual class; columns: the predicted one. Each cell counts rows and gives '
            "their share of the actual class, so the diagonal holds each class's recall; the darker a cell, the "
            "larger its share.</p>",
            '<div class="pair">' + "".join(
                f'<div><h3>{e(label)}</h3><div class="scroll">{heat_map(ev.confusion_matrix, class_labels(ev))}'
                "</div></div>" for label, ev in blocks) + "</div>"]
    return out


def _context(evaluation: Evaluation, target: str) -> str:
    support = class_support(evaluation)
    total = sum(support.values())
    if not total:
        return ""
    largest = max(support, key=support.get)
    smallest = min(support, key=support.get)
    base, _ = baseline_accuracy(evaluation)
    accuracy = evaluation.metrics.get("accuracy")
    named = f"{target} = " if target else ""
    text = (f"{len(support)} classes. The largest, {e(named + largest)}, is {percent(support[largest] / total)} "
            f"of the holdout ({count(support[largest])} rows); the smallest, {e(named + smallest)}, "
            f"{percent(support[smallest] / total)} ({count(support[smallest])}). Always predicting the largest "
            f"class scores {number(base)} accuracy")
    if isinstance(accuracy, (int, float)):
        text += f"; the candidate's is {number(accuracy)}"
    recalls = {label: _score(evaluation, label, "recall") for label in support}
    known = {label: r for label, r in recalls.items() if r is not None}
    weakest = min(known, key=known.get) if known else None
    if weakest is not None:
        text += f". Its weakest class is {e(named + weakest)}: it finds <strong>{percent(known[weakest], 0)}</strong> of it"
    return (f"<p>{text}. Macro F1 weighs every class alike, so a neglected small class pulls it down; weighted F1 "
            "weighs classes by their rows.</p>")


def _per_class_table(evaluation: Evaluation, champion: Evaluation | None, champion_label: str) -> str:
    head = ["class", '<span class="num">rows</span>', '<span class="num">precision</span>',
            '<span class="num">recall</span>', '<span class="num">F1</span>']
    if champion is not None:
        head += [f'<span class="num">{e(champion_label)} recall</span>', '<span class="num">Δ recall</span>']
    support = class_support(evaluation)
    rows = []
    for label in class_labels(evaluation):
        scores = evaluation.per_class.get(label, {})
        cells = [td(e(label)), td(count(scores.get("support", support.get(label))), "num"),
                 td(number(scores.get("precision")), "num"), td(number(scores.get("recall")), "num"),
                 td(number(scores.get("f1")), "num")]
        if champion is not None:
            mine, theirs = scores.get("recall"), _score(champion, label, "recall")
            delta = mine - theirs if mine is not None and theirs is not None else None
            verdict = "" if delta is None else "same" if abs(delta) < 5e-5 else "better" if delta > 0 else "worse"
            cells += [td(number(theirs), "num"), td(signed(delta), f"num {verdict}".strip())]
        rows.append(cells)
    return table(head, rows)


def heat_map(matrix: list[list[int]], labels: list[str]) -> str:
    """A k×k confusion matrix as a table whose cells are shaded by their share of the actual class: green on
    the diagonal (right), red off it (wrong)."""
    head = "".join(f"<th>predicted {e(label)}</th>" for label in labels)
    rows = []
    for i, (actual, row) in enumerate(zip(labels, matrix)):
        of = sum(row)
        cells = []
        for j, (predicted, n) in enumerate(zip(labels, row)):
            share = n / of if of else 0.0
            rgb = "26,127,55" if i == j else "207,34,46"
            cells.append(f'<td style="background:rgba({rgb},{0.04 + 0.6 * share:.2f})" '
                         f'title="{e(f"actual {actual}, predicted {predicted}: {n}")}"><strong>{count(n)}</strong> '
                         f'<span class="rate">{percent(share if of else None, 0)}</span></td>')
        rows.append(f"<tr><th>actual {e(actual)}</th>{''.join(cells)}</tr>")
    return (f'<table class="cm heat"><thead><tr><th></th>{head}</tr></thead><tbody>{"".join(rows)}</tbody>'
            "</table>")


def _score(evaluation: Evaluation, label: str, name: str) -> float | None:
    value = evaluation.per_class.get(label, {}).get(name)
    return float(value) if isinstance(value, (int, float)) else None
