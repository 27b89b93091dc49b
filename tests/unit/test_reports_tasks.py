"""The report pages, model cards and CLI tables of a multi-class and a regression model, rendered from real models
fitted on small generated tables and read as a person reads them. One class label is hostile markup."""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest

from driftloop.console import metrics_table
from driftloop.data import coerce_to_spec, infer_spec
from driftloop.evaluation import Evaluation, GateThresholds, decide_gate, evaluate_model
from driftloop.profile import build_profile
from driftloop.reports import (
    EvaluationPage,
    RunFacts,
    ValidationPage,
    evaluation_report_html,
    model_card,
    validation_report_html,
)
from driftloop.tables import print_table
from driftloop.training import train_model
from driftloop.validation import validate_table
from tests.report_pages import SVG_NS, ReportPage

EVIL = "<script>alert('x')</script>"
QUEUES = ("billing", "tech", EVIL)


def _table(task: str, n: int, seed: int) -> pd.DataFrame:
    """Two numeric features and a category; a queue (3 classes) or an amount that follows them, with noise."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    c = rng.choice(["a", "b"], size=n)
    frame = pd.DataFrame({"x1": x1, "x2": x2, "c": c})
    if task == "multiclass":
        scores = np.stack([x1, x2, -x1 - x2 + 0.4 * (c == "a")], axis=1) + rng.normal(scale=0.6, size=(n, 3))
        frame["queue"] = np.array(QUEUES, dtype=object)[scores.argmax(axis=1)]
    else:
        frame["amount"] = 100 + 8 * x1 - 5 * x2 + 3 * (c == "a") + rng.normal(scale=2.0, size=n)
    return frame


class Fitted:
    """A validated table, a good and a weak model's holdout evaluations, and the holdout."""

    def __init__(self, task: str, target: str, estimator: str) -> None:
        frame, self.spec = _validated(_table(task, 900, seed=1), target)
        self.holdout = coerce_to_spec(_table(task, 600, seed=2), self.spec)
        good = train_model(frame, self.spec, estimator, seed=1).model
        weak = train_model(frame.iloc[:40], self.spec, estimator, seed=1).model
        self.good: Evaluation = evaluate_model(good, self.holdout, self.spec)
        self.weak: Evaluation = evaluate_model(weak, self.holdout, self.spec)
        self.frame = frame


def _validated(frame: pd.DataFrame, target: str):
    clean, _, spec = validate_table(frame, infer_spec(frame, target))
    return clean, spec


@pytest.fixture(scope="module")
def multiclass() -> Fitted:
    return Fitted("multiclass", "queue", "logistic_regression")


@pytest.fixture(scope="module")
def regression() -> Fitted:
    return Fitted("regression", "amount", "ridge")


def _page(fitted: Fitted, candidate: Evaluation, champion: Evaluation | None, decision) -> tuple[ReportPage, str]:
    facts = RunFacts("tickets", 4, run_name="run-1", target=fitted.spec.target, champion_version=3,
                     classes=[str(c) for c in fitted.spec.target_classes])
    document = evaluation_report_html(EvaluationPage(facts, candidate, decision, champion))
    page = ReportPage(document)
    assert page.errors == [] and page.scripts == 0 and "src=" not in document
    return page, document


def _svg(document: str, label: str) -> ET.Element:
    svgs = [ET.fromstring(m) for m in re.findall(r"<svg.*?</svg>", document, re.S)]
    return next(s for s in svgs if s.get("aria-label") == label)


def _cell_number(text: str) -> float:
    return float(text.split()[0].replace("\u202f", "").replace("\u2212", "-"))


# -- multi-class -----------------------------------------------------------------------------------


def test_multiclass_page_shows_per_class_recall_and_both_confusion_matrices(multiclass) -> None:
    candidate, champion = multiclass.good, multiclass.weak
    decision = decide_gate(candidate.metrics, champion.metrics, GateThresholds(metric="f1_macro"), 3)
    page, document = _page(multiclass, candidate, champion, decision)
    labels = [str(c) for c in multiclass.spec.target_classes]

    assert EVIL not in document  # the hostile label is shown as text, never markup
    assert page.facts["Task"] == f"queue · multiclass (3 classes: {', '.join(labels)})"
    assert page.banner.title == "Gate PASSED — better than champion v3"
    scores = page.table_under("On the holdout")
    assert [r[0].text for r in scores.rows][:3] == ["macro F1", "weighted F1", "accuracy"]
    assert float(scores.row("macro F1")[1].text) == pytest.approx(candidate.metrics["f1_macro"], abs=5e-5)
    shares = scores.row("baseline: the holdout's class shares for every row (log loss)")
    assert float(shares[1].text) == pytest.approx(candidate.metrics["baseline_log_loss"], abs=5e-5)

    per_class = page.table_under("Per class")
    assert per_class.head == ["class", "rows", "precision", "recall", "F1", "champion v3 recall", "Δ recall"]
    for label in labels:
        row = per_class.row(label)
        assert float(row[3].text) == pytest.approx(candidate.per_class[label]["recall"], abs=5e-5)
        assert float(row[5].text) == pytest.approx(champion.per_class[label]["recall"], abs=5e-5)
    bars = _svg(document, "recall per class")
    written = [t.text for t in bars.iter(f"{{{SVG_NS['svg']}}}text")]
    for label in labels:
        assert (label if len(label) <= 14 else label[:13] + "…") in written
        assert f"{candidate.per_class[label]['recall'] * 100:.0f} %" in written

    matrices = [t for t in page.tables if t.heading in ("candidate", "champion v3")]
    assert [t.heading for t in matrices] == ["candidate", "champion v3"]
    for table, evaluation in zip(matrices, (candidate, champion)):
        assert table.head == [""] + [f"predicted {label}" for label in labels]
        assert [r[0].text for r in table.rows] == [f"actual {label}" for label in labels]
        assert [[_cell_number(c.text) for c in r[1:]] for r in table.rows] == evaluation.confusion_matrix


def test_multiclass_model_card_names_the_classes_and_scores_each(multiclass) -> None:
    from markdown_it import MarkdownIt

    decision = decide_gate(multiclass.good.metrics, None, GateThresholds(metric="f1_macro"))
    card = model_card("tickets", 1, multiclass.spec, multiclass.good, decision, {}, "")
    html = MarkdownIt("commonmark").enable("table").render(card)
    page = ReportPage(html)

    assert "<script" not in html and page.scripts == 0
    assert card.startswith("# Model card: tickets v1\n\nMulti-class classifier of `queue` (3 classes: ")
    assert "The gate judges **macro F1**" in card
    per_class = page.table_under("Per class")
    assert sorted(r[0].text for r in per_class.rows) == sorted(str(c) for c in multiclass.spec.target_classes)
    matrix = page.table_under("Confusion matrix")
    assert [[_cell_number(c.text) for c in r[1:]] for r in matrix.rows] == multiclass.good.confusion_matrix


# -- regression ------------------------------------------------------------------------------------


def test_regression_page_plots_every_sampled_point_and_names_the_baseline(regression) -> None:
    candidate, champion = regression.weak, regression.good
    decision = decide_gate(candidate.metrics, champion.metrics, GateThresholds(metric="rmse"), 3)
    page, document = _page(regression, candidate, champion, decision)

    assert page.facts["Task"] == "amount · regression"
    # The weak model's RMSE is more than 1 % above the champion's: the gate fails, and says so relatively.
    worse = (candidate.metrics["rmse"] - champion.metrics["rmse"]) / champion.metrics["rmse"]
    assert not decision.passed and page.banner.kind == "fail"
    assert f"is {worse * 100:.1f} % worse than champion v3" in page.banner.detail
    assert "more than the 1.0 % the gate allows" in page.banner.detail
    scores = page.table_under("On the holdout")
    assert [r[0].text for r in scores.rows][:3] == ["RMSE", "MAE", "R²"]
    assert "worse" in scores.row("RMSE")[3].classes  # a higher error is worse
    baseline = scores.row("baseline: the holdout's mean for every row (RMSE)")
    assert _cell_number(baseline[1].text) == pytest.approx(candidate.metrics["baseline_rmse"], rel=1e-3)

    sampled = len(candidate.residuals["predicted"])
    assert sampled == min(len(regression.holdout), 500)
    for label in ("predicted against actual", "residuals"):
        chart = _svg(document, label)
        assert len(chart.findall("svg:circle", SVG_NS)) == sampled
        assert chart.findall("svg:line[@stroke-dasharray]", SVG_NS)  # the diagonal, the zero line

    deciles = page.table_under("Error by decile")
    assert len(deciles.rows) == 10
    assert [_cell_number(r[5].text) for r in deciles.rows] == pytest.approx(
        [d["mae"] for d in candidate.error_by_decile], rel=1e-3)
    assert sum(int(_cell_number(r[6].text)) for r in deciles.rows) == len(regression.holdout)


def test_regression_model_card_speaks_errors_and_deciles(regression) -> None:
    decision = decide_gate(regression.good.metrics, regression.weak.metrics, GateThresholds(metric="rmse"), 3)
    card = model_card("spend", 2, regression.spec, regression.good, decision, {}, "")

    assert card.startswith("# Model card: spend v2\n\nRegression model of `amount`.")
    assert "| Gate | **passed** on RMSE (lower is better) |" in card
    assert "it must beat a model that ignores the features" in card
    relative = (regression.good.metrics["rmse"] - regression.weak.metrics["rmse"]) / regression.weak.metrics["rmse"]
    assert re.search(rf"\| RMSE \| [\d.]+ \| [\d.]+ \| −[\d.]+ \({relative * 100:.1f} %\)".replace("-", "−")
                     + r" ▲ better \|", card)
    assert "Baseline: the holdout's mean for every row scores" in card
    assert "### Error by decile of the prediction" in card and "| 10 |" in card


# -- validation page and CLI tables ------------------------------------------------------------------


def test_validation_page_summarises_the_target_in_the_tasks_terms(multiclass, regression) -> None:
    reference = build_profile(multiclass.frame, multiclass.spec)
    current = build_profile(multiclass.holdout, multiclass.spec)
    report = validate_table(multiclass.holdout, multiclass.spec, reference)[1]
    document = validation_report_html(ValidationPage("s3://b/tickets.csv", report, multiclass.spec, current, reference, 3))
    page = ReportPage(document)
    assert EVIL not in document and page.scripts == 0
    assert page.facts["Task"] == "multi-class classification"
    shares = page.table_under("Target classes (3)")
    for label, share in multiclass.holdout["queue"].value_counts(normalize=True).items():
        row = shares.row(label)
        assert row[1].text == f"{share * 100:.1f} %"
        assert row[2].text == f"{(multiclass.frame['queue'] == label).mean() * 100:.1f} %"

    profile = build_profile(regression.frame, regression.spec)
    report = validate_table(regression.frame, regression.spec)[1]
    page = ReportPage(validation_report_html(ValidationPage("amounts.csv", report, regression.spec, profile)))
    assert page.facts["Task"] == "regression"
    distribution = page.table_under("Target distribution")
    assert float(distribution.row("median")[1].text) == pytest.approx(regression.frame["amount"].median(), rel=1e-3)


def test_run_summary_marks_errors_lower_is_better_and_keeps_baselines_out_of_the_comparison(regression) -> None:
    candidate, champion = regression.good.metrics, regression.weak.metrics
    out = io.StringIO()
    print_table(metrics_table(candidate, champion, "candidate", "champion"), out, width=120)
    lines = {line.split()[0] + (" ↓" if " ↓ " in line else ""): line for line in out.getvalue().splitlines()[2:]}

    rmse = lines["rmse ↓"]
    relative = (candidate["rmse"] - champion["rmse"]) / champion["rmse"]
    assert rmse.rstrip().endswith("better") and f"({relative:+.1%})" in rmse
    assert lines["r2"].rstrip().endswith("better")
    baseline = lines["baseline_rmse"]
    assert float(baseline.split()[1]) == pytest.approx(candidate["baseline_rmse"], abs=5e-5)
    assert not baseline.rstrip().endswith(("better", "worse", "same"))  # the same holdout's: nothing to compare
