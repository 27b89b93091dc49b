"""The Markdown model card and the self-contained HTML reports."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest

from driftloop.data import DatasetSpec, FeatureSpec
from driftloop.evaluation import Evaluation, GateDecision, GateThresholds, decide_gate
from driftloop.reports import evaluation_report_html, model_card, validation_report_html
from driftloop.validation import Check, ValidationReport

EVIL = "<script>alert('x')</script>"


@pytest.fixture(scope="module")
def champion_metrics() -> dict[str, float]:
    return {"roc_auc": 0.7012, "accuracy": 0.8, "f1": 0.3, "log_loss": 0.45, "n_holdout": 1500.0}


@pytest.fixture(scope="module")
def passed(lr_evaluation: Evaluation, champion_metrics) -> GateDecision:
    return decide_gate(lr_evaluation.metrics, champion_metrics, GateThresholds(), champion_version=3)


@pytest.fixture(scope="module")
def failed(lr_evaluation: Evaluation) -> GateDecision:
    return decide_gate(lr_evaluation.metrics, None, GateThresholds(min_value=0.99))


LINEAGE = {
    "estimator": "logistic_regression",
    "data_uri": "s3://data/churn.csv",
    "data_sha256": "ab" * 32,
    "run_id": "run-42",
    "params": {"C": 0.5},
}


# -- model card ----------------------------------------------------------------------------------


def test_model_card_states_metrics_champion_and_gate_reasons(lr_evaluation, passed, validated) -> None:
    card = model_card("churn", 4, validated.spec, lr_evaluation, passed, LINEAGE)

    assert card.startswith("# Model card: churn v4\n")
    m = lr_evaluation.metrics
    assert f"| roc_auc | {m['roc_auc']:.4f} | 0.7012 |" in card
    assert f"| accuracy | {m['accuracy']:.4f} | 0.8000 |" in card
    assert f"| f1 | {m['f1']:.4f} | 0.3000 |" in card
    assert f"| log_loss | {m['log_loss']:.4f} | 0.4500 |" in card
    assert "| Gate | **passed** on roc_auc |" in card
    for reason in passed.reasons:
        assert f"- {reason}" in card
    assert "champion v3" in card
    (tn, fp), (fn, tp) = lr_evaluation.confusion_matrix
    assert f"| actual 0 | {tn} | {fp} |" in card and f"| actual 1 | {fn} | {tp} |" in card
    assert "| `logistic_regression` |" in card and "`s3://data/churn.csv`" in card and "`run-42`" in card
    assert "| has_autopay | boolean |" in card and "| region | categorical |" in card
    assert "Target: `churned` (positive class `1`)." in card
    assert '"C": 0.5' in card


def test_candidate_card_without_champion_says_so(lr_evaluation, failed, validated) -> None:
    card = model_card("churn", None, validated.spec, lr_evaluation, failed, {})

    assert card.startswith("# Model card: churn (candidate)\n")
    assert "| Gate | **failed** on roc_auc |" in card
    assert f"| roc_auc | {lr_evaluation.metrics['roc_auc']:.4f} | – |" in card
    assert "is below the minimum 0.9900" in card
    assert "- no champion in production: nothing to compare against" in card
    assert "## Parameters" not in card


def test_card_lists_left_out_columns(lr_evaluation, failed) -> None:
    spec = DatasetSpec("y", (FeatureSpec("x", "numeric"),), target_classes=("no", "yes"),
                       ignored={"user": "looks like an identifier"})

    card = model_card("m", 1, spec, lr_evaluation, failed, {})

    assert "Left out: `user` (looks like an identifier)" in card
    assert "positive class `yes`" in card


def test_card_keeps_hostile_names_and_uris_as_text(lr_evaluation, failed) -> None:
    from markdown_it import MarkdownIt

    hostile_column = "a|b</td><script>alert(1)</script>"
    spec = DatasetSpec("y`<img src=x onerror=alert(2)>`", (FeatureSpec(hostile_column, "numeric"),
                                                             FeatureSpec("ok", "numeric")),
                       target_classes=("no", "yes"), ignored={"[x](javascript:alert(3))": "id\n# heading"})
    lineage = {"data_uri": "s3://b/k.csv\n| injected | row |", "run_id": "![t](http://evil.example/p.png)",
               "params": {"note": "```\n<script>alert(4)</script>"}}

    card = model_card("m", 1, spec, lr_evaluation, failed, lineage)
    page = MarkdownIt("commonmark").enable("table").render(card)

    assert "<script" not in page and "<img" not in page and "<a " not in page
    facts = page.split("<table>")[1].split("</table>")[0]
    assert facts.count("<tr>") == 7 and "<td>s3://b/k.csv | injected | row |</td>" in facts  # one cell, one row
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # shown, as text
    features = page.split("<th>feature</th>")[1].split("</table>")[0]
    assert features.count("<tr>") == 2 and features.count("<td>") == 4  # the | did not split the cell
    assert "<h1>" not in page.split("Left out")[1]  # a line break in a reason starts no heading
    assert '"note": "```\\n<script>' not in page and "&lt;script&gt;alert(4)" in page  # stays in its code block


# -- HTML ----------------------------------------------------------------------------------------


class _Structure(HTMLParser):
    """Collects tags and checks that every opened non-void element is closed in order."""

    VOID = {"meta", "br", "img", "input", "link", "hr", "rect", "line", "polyline"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.tags: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.append(tag)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs) -> None:
        self.tags.append(tag)

    def handle_endtag(self, tag) -> None:
        if tag in self.VOID:
            return
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(f"unexpected </{tag}>")


def _parse(page: str) -> _Structure:
    parser = _Structure()
    parser.feed(page)
    parser.close()
    return parser


def _svg(page: str) -> ET.Element:
    match = re.search(r"<svg.*?</svg>", page, re.S)
    assert match, "no <svg> in the page"
    return ET.fromstring(match.group(0))


def _validation_report() -> ValidationReport:
    return ValidationReport(
        n_rows=1000, n_rows_used=990,
        checks=[
            Check("age", "range", "pass", "0.0% of values outside the reference range"),
            Check(EVIL, "categories", "fail", f"10.0% of values are categories unseen in the reference ({EVIL!r})"),
            Check("churned", "target", "warn", "dropped 10 unlabeled rows"),
        ],
    )


def test_evaluation_report_is_a_full_html_document(lr_evaluation, passed) -> None:
    page = evaluation_report_html("Evaluation: churn candidate", lr_evaluation, passed, _validation_report())
    structure = _parse(page)

    assert page.lstrip().lower().startswith("<!doctype html>")
    assert page.rstrip().endswith("</html>")
    assert structure.errors == [] and structure.stack == []
    assert {"html", "head", "title", "body", "svg", "table"} <= set(structure.tags)
    assert "<script" not in page and "src=" not in page  # self-contained, no scripts
    assert "Gate PASSED" in page
    assert f"<td>roc_auc</td><td>{lr_evaluation.metrics['roc_auc']:.4f}</td>" in page
    assert "Data validation (990 of 1000 rows used)" in page


def test_evaluation_report_draws_the_roc_curve(lr_evaluation, passed) -> None:
    svg = _svg(evaluation_report_html("t", lr_evaluation, passed))
    ns = {"svg": "http://www.w3.org/2000/svg"}

    polylines = svg.findall("svg:polyline", ns)
    assert len(polylines) == 1
    points = [tuple(map(float, p.split(","))) for p in polylines[0].get("points").split()]
    assert len(points) == len(lr_evaluation.roc_curve["fpr"])
    size = float(svg.get("width"))
    assert all(0 <= x <= size and 0 <= y <= size for x, y in points)
    # Starts bottom-left (fpr 0, tpr 0) and ends top-right (fpr 1, tpr 1).
    assert points[0][0] < points[-1][0] and points[0][1] > points[-1][1]


def test_evaluation_report_with_a_champion_draws_both_curves(lr_evaluation, passed) -> None:
    page = evaluation_report_html("t", lr_evaluation, passed, champion_evaluation=lr_evaluation)

    assert len(_svg(page).findall("{http://www.w3.org/2000/svg}polyline")) == 2
    assert "champion v3" in page
    assert "<th>champion</th>" in page


def test_failed_gate_is_shown(lr_evaluation, failed) -> None:
    page = evaluation_report_html("t", lr_evaluation, failed)

    assert "Gate FAILED" in page
    assert "is below the minimum 0.9900" in page


def test_evaluation_report_escapes_html_in_names(lr_evaluation, passed) -> None:
    decision = GateDecision(False, [f"reason with {EVIL}"], "roc_auc", lr_evaluation.metrics)

    page = evaluation_report_html(f"Evaluation: {EVIL}", lr_evaluation, decision, _validation_report())

    assert EVIL not in page
    assert "<script" not in page
    assert "<title>Evaluation: &lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;</title>" in page
    assert "reason with &lt;script&gt;" in page
    assert _parse(page).errors == []


def test_validation_report_escapes_and_lists_the_spec() -> None:
    spec = DatasetSpec(
        "churned", (FeatureSpec("age", "numeric"), FeatureSpec(EVIL, "categorical")),
        target_classes=(0, 1), ignored={"<b>user</b>": "looks like an identifier"},
    )

    page = validation_report_html(f"Validation {EVIL}", _validation_report(), spec)

    assert "<script" not in page and "<b>user</b>" not in page
    assert "&lt;b&gt;user&lt;/b&gt;" in page
    assert "990 of 1000 rows used; 1 warnings." in page
    assert '<tr class="fail">' in page and '<tr class="warn">' in page
    assert "<td>age</td><td>numeric</td>" in page
    structure = _parse(page)
    assert structure.errors == [] and structure.stack == []
