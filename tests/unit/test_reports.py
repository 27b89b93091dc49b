"""The report pages, rendered from real models on real (synthetic churn) data and read as a person reads them:
the evaluation page's verdict, Δ and warning, its header and charts; the model card; the validation page."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from driftloop import synthetic
from driftloop.data import DatasetSpec, FeatureSpec
from driftloop.errors import DataValidationError
from driftloop.evaluation import (
    Evaluation,
    GateDecision,
    GateThresholds,
    decide_gate,
    evaluate_model,
)
from driftloop.profile import build_profile
from driftloop.reports import (
    EvaluationPage,
    RunFacts,
    ValidationPage,
    evaluation_report_html,
    model_card,
    validation_report_html,
)
from driftloop.tasks import LOWER_IS_BETTER
from driftloop.training import train_model
from driftloop.validation import Check, ValidationReport, validate_table
from tests.report_pages import ReportPage, polylines, signed_number, svg_texts

EVIL = "<script>alert('x')</script>"
LENIENT = GateThresholds(min_value=0.5, max_regression=0.5)  # lets a clearly worse candidate through


@pytest.fixture(scope="module")
def weak_evaluation(validated, fresh_holdout) -> Evaluation:
    """A weaker real model: the same estimator fitted on 150 rows instead of 900."""
    few = validated.frame.sample(150, random_state=5)
    model = train_model(few, validated.spec, "logistic_regression", seed=1).model
    return evaluate_model(model, fresh_holdout, validated.spec)


def _grouped(n: int) -> str:
    """A count as the pages print it, read back with its (thin) separators as spaces."""
    return f"{n:,}".replace(",", " ")


def _facts(**overrides) -> RunFacts:
    values = dict(model="churn", version=7, run_name="driftloop-ct-20260821-140312", run_id="9065-0104",
                  run_url="https://kubeflow.example/pipeline/#/runs/details/9065-0104",
                  data_uri="s3://ml-data/churn/2026/08/churn.parquet", n_rows=6000, n_train=4500,
                  triggered_by="manual", at="2026-08-21T14:03:12.123+00:00", champion_version=3, target="churned",
                  classes=["0", "1"])
    return RunFacts(**{**values, **overrides})


def _page(candidate: Evaluation, champion: Evaluation | None, decision: GateDecision, **facts) -> ReportPage:
    document = evaluation_report_html(EvaluationPage(_facts(**facts), candidate, decision, champion))
    page = ReportPage(document)
    assert page.errors == [] and page.scripts == 0 and "src=" not in document
    return page


# -- evaluation page ------------------------------------------------------------------------------


def test_the_delta_column_is_candidate_minus_champion_coloured_by_direction(lr_evaluation, weak_evaluation) -> None:
    decision = decide_gate(weak_evaluation.metrics, lr_evaluation.metrics, LENIENT, 3)
    page = _page(weak_evaluation, lr_evaluation, decision)

    table = page.table_under("On the holdout")
    assert table.head[:4] == ["metric", "candidate", "champion v3", "Δ"]
    labels = {"ROC AUC": "roc_auc", "accuracy": "accuracy", "F1": "f1", "log loss": "log_loss",
              "Brier score": "brier", "recall": "recall"}
    for label, name in labels.items():
        row = table.row(label)
        mine, theirs = weak_evaluation.metrics[name], lr_evaluation.metrics[name]
        assert float(row[1].text) == pytest.approx(mine, abs=5e-5)
        assert float(row[2].text) == pytest.approx(theirs, abs=5e-5)
        assert signed_number(row[3].text) == pytest.approx(mine - theirs, abs=1e-4)
        better = mine < theirs if name in LOWER_IS_BETTER else mine > theirs
        if abs(mine - theirs) >= 5e-5:
            assert ("better" if better else "worse") in row[3].classes, (label, row[3])
            assert row[3].text.endswith("(better)" if better else "(worse)")
    # The weak model is worse on ROC AUC and log loss: a negative Δ is worse, a positive log-loss Δ is worse too.
    assert signed_number(table.row("ROC AUC")[3].text) < 0 and "worse" in table.row("ROC AUC")[3].classes
    assert signed_number(table.row("log loss")[3].text) > 0 and "worse" in table.row("log loss")[3].classes


def test_a_worse_candidate_that_passes_gets_a_clear_warning(lr_evaluation, weak_evaluation) -> None:
    decision = decide_gate(weak_evaluation.metrics, lr_evaluation.metrics, LENIENT, 3)
    assert decision.passed

    banner = _page(weak_evaluation, lr_evaluation, decision).banner

    assert banner.kind == "warn"
    assert banner.title == "Gate PASSED — but the candidate is worse than champion v3"
    delta = weak_evaluation.metrics["roc_auc"] - lr_evaluation.metrics["roc_auc"]
    assert f"Δ {delta:+.4f}".replace("-", "\u2212") in banner.detail
    assert "allows a drop of up to 0.5000" in banner.detail


def test_a_candidate_ahead_on_the_gate_metric_but_behind_on_most_others_is_flagged(lr_evaluation,
                                                                                    weak_evaluation) -> None:
    # The weak model's scores, but a hair ahead on ROC AUC: the gate is happy, the other metrics are not.
    candidate = {**weak_evaluation.metrics, "roc_auc": lr_evaluation.metrics["roc_auc"] + 0.001}
    decision = decide_gate(candidate, lr_evaluation.metrics, GateThresholds(), 3)

    banner = _page(weak_evaluation, lr_evaluation, decision).banner

    worse = re.match(r"The candidate is worse than champion v3 on (\d) of 6 overall metrics on the holdout",
                     banner.detail)
    assert decision.passed and banner.kind == "warn" and worse and int(worse.group(1)) > 3


def test_a_better_candidate_passes_without_a_warning(lr_evaluation, weak_evaluation) -> None:
    decision = decide_gate(lr_evaluation.metrics, weak_evaluation.metrics, GateThresholds(), 3)

    banner = _page(lr_evaluation, weak_evaluation, decision).banner

    assert (banner.kind, banner.title) == ("pass", "Gate PASSED — better than champion v3")


def test_a_failed_gate_says_which_condition_failed(lr_evaluation) -> None:
    decision = decide_gate(lr_evaluation.metrics, None, GateThresholds(min_value=0.99))

    page = _page(lr_evaluation, None, decision, version=None, champion_version=None)

    assert page.banner.kind == "fail" and page.banner.title == "Gate FAILED — the candidate is not registered"
    assert page.banner.detail == f"ROC AUC {lr_evaluation.metrics['roc_auc']:.4f} is below the minimum 0.9900."
    assert page.facts["Version"] == "none: the gate failed"
    assert page.table_under("On the holdout").head == ["metric", "candidate"]  # no champion, no Δ


def test_the_header_names_model_version_run_data_trigger_date_and_holdout(lr_evaluation, weak_evaluation) -> None:
    decision = decide_gate(lr_evaluation.metrics, weak_evaluation.metrics, GateThresholds(), 3)

    page = _page(lr_evaluation, weak_evaluation, decision, triggered_by="drift:churn-v3-0123456789ab",
                 trigger_detail="drift share 0.45 >= 0.30 in 2 consecutive windows")

    assert page.title == "Evaluation: churn v7" and page.headings[0] == ("h1", "Evaluation of churn v7")
    facts = page.facts
    assert facts["Model"] == "churn" and facts["Version"] == "v7"
    assert facts["Pipeline run"].startswith("driftloop-ct-20260821-140312")
    assert page.fact_links["Pipeline run"] == ["https://kubeflow.example/pipeline/#/runs/details/9065-0104"]
    assert facts["Data"] == "s3://ml-data/churn/2026/08/churn.parquet · 6 000 rows (4 500 trained on)"
    assert facts["Triggered by"].startswith("A drift retrain: the drift monitor started it because drift share 0.45")
    assert "churn-v3-0123456789ab" in facts["Triggered by"]
    assert facts["Evaluated"] == "2026-08-21 14:03 UTC"
    (tn, fp), (fn, tp) = lr_evaluation.confusion_matrix
    total = tn + fp + fn + tp
    assert facts["Holdout"] == f"{_grouped(total)} rows, {(fn + tp) / total * 100:.1f} % positive"
    assert facts["Compared with"] == "champion v3"


def test_baseline_class_balance_precision_and_recall_are_stated(lr_evaluation) -> None:
    decision = decide_gate(lr_evaluation.metrics, None, GateThresholds())
    page = _page(lr_evaluation, None, decision)
    (tn, fp), (fn, tp) = lr_evaluation.confusion_matrix
    total = tn + fp + fn + tp

    baseline = page.table_under("On the holdout").row("baseline: always churned = 0 (accuracy)")
    assert float(baseline[1].text) == pytest.approx((tn + fp) / total, abs=5e-5)  # most customers do not churn
    assert float(page.table_under("On the holdout").row("recall")[1].text) == pytest.approx(tp / (tp + fn), abs=5e-5)
    assert float(page.table_under("On the holdout").row("precision")[1].text) == pytest.approx(tp / (tp + fp),
                                                                                             abs=5e-5)
    text = " ".join(page.document.split())
    assert f"finds <strong>{tp / (tp + fn) * 100:.0f} %</strong> of the positives (recall)" in text


def test_curves_are_readable_with_ticks_and_the_auc_in_the_legend(lr_evaluation, weak_evaluation) -> None:
    decision = decide_gate(lr_evaluation.metrics, weak_evaluation.metrics, GateThresholds(), 3)
    roc, pr, reliability = _page(lr_evaluation, weak_evaluation, decision).svgs()[:3]

    for chart in (roc, pr, reliability):
        assert float(chart.get("width")) >= 360
        assert {"0.0", "0.2", "0.4", "0.6", "0.8", "1.0"} <= set(svg_texts(chart))
    legend = svg_texts(roc)
    assert f"candidate — AUC {lr_evaluation.metrics['roc_auc']:.3f}" in legend
    assert f"champion v3 — AUC {weak_evaluation.metrics['roc_auc']:.3f}" in legend
    candidate, champion = polylines(roc)
    assert len(candidate) == len(lr_evaluation.roc_curve["fpr"]) and len(champion) == len(weak_evaluation.roc_curve["fpr"])
    assert candidate[0][0] < candidate[-1][0] and candidate[0][1] > candidate[-1][1]  # (0,0) bottom-left → (1,1)
    assert f"candidate — AP {lr_evaluation.metrics['average_precision']:.3f}" in svg_texts(pr)
    assert f"candidate — Brier {lr_evaluation.metrics['brier']:.3f}" in svg_texts(reliability)


def test_both_confusion_matrices_show_counts_and_rates(lr_evaluation, weak_evaluation) -> None:
    decision = decide_gate(lr_evaluation.metrics, weak_evaluation.metrics, GateThresholds(), 3)
    page = _page(lr_evaluation, weak_evaluation, decision)

    matrices = [t for t in page.tables if t.heading in ("candidate", "champion v3")]
    assert [t.heading for t in matrices] == ["candidate", "champion v3"]
    for table, evaluation in zip(matrices, (lr_evaluation, weak_evaluation)):
        (tn, fp), (fn, tp) = evaluation.confusion_matrix
        positives = table.row("actual 1")
        assert positives[2].text == f"{_grouped(tp)} {tp / (tp + fn) * 100:.1f} % of actual 1"
        assert table.row("actual 0")[1].text.startswith(_grouped(tn))


def test_a_drift_retrains_recent_rows_come_first(lr_evaluation, weak_evaluation) -> None:
    decision = decide_gate(lr_evaluation.metrics, weak_evaluation.metrics, GateThresholds(), 3,
                           recent_candidate=weak_evaluation.metrics, recent_champion=lr_evaluation.metrics,
                           n_recent=400)

    page = _page(lr_evaluation, weak_evaluation, decision)

    assert page.heading_index("On the 400 most recent rows") < page.heading_index("On the holdout")
    recent = page.table_under("On the 400 most recent rows")
    assert "worse" in recent.row("ROC AUC")[3].classes
    assert not decision.passed and page.banner.kind == "fail"
    assert "on the 400 most recent rows" in page.banner.detail


def test_auto_leaderboard_and_weighting_strategies_are_small_tables(lr_evaluation) -> None:
    decision = decide_gate(lr_evaluation.metrics, None, GateThresholds())
    leaderboard = [{"estimator": "logistic_regression", "metric": "roc_auc", "value": 0.81, "fit_seconds": 0.2,
                    "chosen": True}, {"estimator": "xgboost", "metric": "roc_auc", "value": 0.79, "fit_seconds": 1.5,
                                      "chosen": False}]
    strategies = [{"live_weight": 3.0, "reference_window": "recent", "metric": "roc_auc", "value": 0.84,
                   "training_rows": 2400, "chosen": True}]
    page = ReportPage(evaluation_report_html(EvaluationPage(_facts(), lr_evaluation, decision, None, leaderboard,
                                                            strategies)))

    board = page.table_under("How the estimator was chosen")
    assert [r[0].text for r in board.rows] == ["logistic_regression", "xgboost"]
    assert "chosen" in board.row_classes[0] and board.rows[0][-1].text == "chosen"
    weighed = page.table_under("How the new world was weighed")
    assert [c.text for c in weighed.rows[0]] == ["×3", "recent", "2 400", "0.8400", "chosen"]


def test_user_text_stays_text_in_the_evaluation_page(lr_evaluation) -> None:
    decision = GateDecision(False, [f"reason with {EVIL}"], "roc_auc", lr_evaluation.metrics)

    document = evaluation_report_html(EvaluationPage(
        _facts(model=EVIL, run_name=EVIL, data_uri=f"s3://b/{EVIL}.csv", run_url="javascript:alert(1)",
               target=EVIL, classes=[EVIL, "1"], triggered_by=f"schedule:{EVIL}"), lr_evaluation, decision))
    page = ReportPage(document)

    assert page.scripts == 0 and page.errors == [] and EVIL not in document
    assert "javascript:" not in document and page.links == []  # an unsafe run link is shown as text, unlinked
    assert page.title == f"Evaluation: {EVIL} v7"  # escaped in the source, the same text to a reader
    assert page.facts["Pipeline run"].startswith(EVIL)
    assert f"reason with {EVIL}" in page.document.replace("&lt;", "<").replace("&gt;", ">").replace("&#x27;", "'")


# -- model card -----------------------------------------------------------------------------------

LINEAGE = {
    "estimator": "logistic_regression", "requested_estimator": "auto", "data_uri": "s3://data/churn.csv",
    "data_sha256": "ab" * 32, "run_id": "9065-0104", "run_name": "driftloop-ct-20260821-140312",
    "run_url": "https://kubeflow.example/pipeline/#/runs/details/9065-0104", "params": {"C": 0.5},
    "triggered_by": "drift:churn-v3-0123456789ab", "trigger_detail": "drift share 0.45 >= 0.30", "parent_version": 3,
    "training_data": {"rows": 6000, "positive_share": 0.203, "train_rows": 4500, "holdout_rows": 1500},
    "intended_use": "Rank customers by churn risk for the retention team.", "limitations": "Not tested on firms.",
    "code_version": {"package": "0.1.0", "git_commit": "81de02a" * 6}, "test_size": 0.25,
}


def _render(markdown: str) -> str:
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark").enable("table").render(markdown)


def test_model_card_names_its_version_trigger_parent_and_the_user_supplied_use(
        lr_evaluation, weak_evaluation, validated) -> None:
    decision = decide_gate(lr_evaluation.metrics, weak_evaluation.metrics, GateThresholds(), 3)

    card = model_card("churn", 4, validated.spec, lr_evaluation, decision, LINEAGE, "2026-08-21T14:03:12.123+00:00")
    page = ReportPage(_render(card))

    assert card.startswith("# Model card: churn v4\n") and "candidate" not in card.split("\n")[0]
    details = page.table_under("Model details")
    assert details.row("Model")[1].text == "churn, version 4"
    assert details.row("Registered")[1].text == "2026-08-21 14:03:12 UTC"
    assert details.row("Triggered by")[1].text == (
        "A drift retrain: the drift monitor started it because drift share 0.45 >= 0.30 (retrain "
        "churn-v3-0123456789ab); it was trained on the champion's data plus labelled live traffic.")
    assert details.row("Parent version")[1].text == "churn v3 (production when this run started)"
    assert details.row("Pipeline run")[1].text == "driftloop-ct-20260821-140312 (run id 9065-0104)"
    assert ("https://kubeflow.example/pipeline/#/runs/details/9065-0104", "driftloop-ct-20260821-140312") in page.links
    # Mitchell et al.'s sections, in their order.
    sections = [text for tag, text in page.headings if tag == "h2"]
    order = ["Model details", "Intended use", "Factors", "Metrics", "Evaluation data", "Training data",
             "Quantitative analyses", "Ethical considerations", "Caveats and recommendations"]
    assert [s for s in sections if s in order] == order
    assert "Rank customers by churn risk for the retention team." in page.document
    assert "Not tested on firms." in page.document
    training = page.table_under("Training data")
    assert training.row("Rows")[1].text == "6 000 validated: 4 500 trained on, 1 500 held out"
    assert training.row("Class balance")[1].text == "20.3 % churned = 1"


def test_model_card_compares_with_the_champion_by_direction(lr_evaluation, weak_evaluation, validated) -> None:
    decision = decide_gate(weak_evaluation.metrics, lr_evaluation.metrics, LENIENT, 3)

    card = model_card("churn", 5, validated.spec, weak_evaluation, decision, {}, "")
    page = ReportPage(_render(card))

    table = page.table_under("On the holdout")
    assert table.head == ["metric", "this model", "champion v3", "Δ"]
    auc = table.row("ROC AUC")
    assert signed_number(auc[3].text) == pytest.approx(
        weak_evaluation.metrics["roc_auc"] - lr_evaluation.metrics["roc_auc"], abs=1e-4)
    assert auc[3].text.endswith("▼ worse") and table.row("log loss")[3].text.endswith("▼ worse")
    assert "> **Warning:** The candidate is worse than champion v3" in card
    assert "_Not stated._ Set the CT parameter `intended_use`" in card  # where to supply it


def test_card_keeps_hostile_names_uris_and_user_text_as_text(lr_evaluation, validated) -> None:
    hostile_column = "a|b</td><script>alert(1)</script>"
    spec = DatasetSpec("y`<img src=x onerror=alert(2)>`", (FeatureSpec(hostile_column, "numeric"),
                                                             FeatureSpec("ok", "numeric")),
                       target_classes=("no", "yes"), ignored={"[x](javascript:alert(3))": "id\n# heading"})
    lineage = {"data_uri": "s3://b/k.csv\n| injected | row |", "run_id": "![t](http://evil.example/p.png)",
               "run_url": "javascript:alert(5)", "params": {"note": "```\n<script>alert(4)</script>"},
               "intended_use": "<img src=x onerror=alert(6)>\n# not a heading", "limitations": "[click](http://x.example)"}
    decision = decide_gate(lr_evaluation.metrics, None, GateThresholds(min_value=0.99))

    card = model_card("m", 1, spec, lr_evaluation, decision, lineage)
    page = _render(card)

    assert "<script" not in page and "<img" not in page and "<a " not in page
    parsed = ReportPage(page)
    training = parsed.table_under("Training data")
    assert training.row("Source")[1].text == "s3://b/k.csv | injected | row |"  # one cell, one row
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # shown, as text
    features = parsed.table_under("Factors")
    assert len(features.rows) == 2 and all(len(r) == 2 for r in features.rows)  # the | did not split the cell
    assert [t for t, text in parsed.headings if "not a heading" in text] == []
    assert '"note": "```\\n<script>' not in page and "&lt;script&gt;alert(4)" in page  # stays in its code block


# -- validation page -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def reference(validated):
    return build_profile(validated.frame, validated.spec)


def _shifted_batch(share: float = 0.407, rows: int = 600) -> pd.DataFrame:
    """A fresh batch whose positive share is far from the synthetic world's one in five."""
    fresh = synthetic.generate(3000, seed=31, id_offset=50_000)
    positives = fresh[fresh[synthetic.TARGET] == 1].head(int(rows * share))
    negatives = fresh[fresh[synthetic.TARGET] == 0].head(rows - len(positives))
    return pd.concat([positives, negatives]).reset_index(drop=True)


def test_validation_page_has_a_verdict_a_short_title_and_the_balance_warning(validated, reference) -> None:
    batch = _shifted_batch()
    uri = "s3://ml-data/" + "a-long-prefix/" * 8 + "churn-2026-08.parquet"
    clean, report, spec = validate_table(batch, validated.spec, reference)
    document = validation_report_html(ValidationPage(uri, report, spec, build_profile(clean, spec), reference, 3,
                                                     "churn"))
    page = ReportPage(document)

    assert page.errors == [] and page.scripts == 0
    assert page.title == "Data validation: churn-2026-08.parquet" and len(page.title) < 60
    assert page.banner.kind == "warn" and page.banner.title == "Validation PASSED with 1 warning"
    assert "positive share 40.7%" in page.banner.detail
    assert page.facts["Positive share"] == f"40.7 % (reference {reference.positive_rate * 100:.1f} %)"
    assert page.facts["Reference"] == f"production v3 ({_grouped(reference.n_rows)} rows)"
    balance = [b for b in page.banners if b.title == "The positive share moved"]
    assert balance and balance[0].kind == "warn"


def test_validation_page_compares_every_feature_with_the_reference(validated, reference) -> None:
    batch = synthetic.generate(800, seed=41, covariate_shift=0.6)
    clean, report, spec = validate_table(batch, validated.spec, reference)
    current = build_profile(clean, spec)

    page = ReportPage(validation_report_html(ValidationPage("data/batch.csv", report, spec, current, reference, 3)))

    table = page.table_under("Features against the reference")
    assert [r[0].text for r in table.rows] == list(spec.feature_names)
    age = table.row("age")
    assert age[3].text.startswith(f"mean {current.features['age'].mean:.4g} median {current.features['age'].quantiles['p50']:.4g}")
    assert age[4].text.startswith(f"mean {reference.features['age'].mean:.4g}")
    region = table.row("region")
    top = max(current.features["region"].categories.items(), key=lambda kv: kv[1])
    assert region[3].text.startswith(f"{top[0]} {top[1] * 100:.1f} %")
    boxes = [svg for svg in page.svgs() if svg.get("aria-label") == "distribution against the reference"]
    bars = [svg for svg in page.svgs() if svg.get("aria-label") == "category shares against the reference"]
    assert len(boxes) == sum(f.kind == "numeric" for f in spec.features)
    assert len(bars) == sum(f.kind != "numeric" for f in spec.features)
    assert all(len(svg.findall("{http://www.w3.org/2000/svg}rect")) == 2 for svg in boxes)  # reference and current


def test_a_failed_validation_still_gets_a_page_with_the_failure(churn_frame, validated, reference) -> None:
    churn_frame["income"] = churn_frame["income"].astype(object)
    churn_frame.loc[6, "income"] = "unknown"
    with pytest.raises(DataValidationError) as caught:
        validate_table(churn_frame, validated.spec, reference)
    failure = caught.value

    page = ReportPage(validation_report_html(ValidationPage(
        "data/churn.csv", failure.report, validated.spec, build_profile(failure.frame, validated.spec), reference, 3,
        error=str(failure))))

    assert page.banner.kind == "fail" and page.banner.title == "Validation FAILED — the run stops here"
    assert "column 'income': text in a numeric column" in page.banner.detail
    problems = page.table_under("Problems")
    assert [c.text for c in problems.rows[0]][:3] == ["income", "schema", "fail"]
    assert "fail" in page.table_under("Features against the reference").row_classes[
        list(validated.spec.feature_names).index("income")]


def test_validation_page_escapes_names_values_and_uris() -> None:
    spec = DatasetSpec("churned", (FeatureSpec("age", "numeric"), FeatureSpec(EVIL, "categorical")),
                       target_classes=(0, 1), ignored={"<b>user</b>": "looks like an identifier"})
    report = ValidationReport(1000, 990, [
        Check("age", "range", "pass", "0.0% of values outside the reference range"),
        Check(EVIL, "categories", "fail", f"10.0% of values are categories unseen in the reference ({EVIL!r})")])
    frame = pd.DataFrame({"age": [30.0, 40.0], EVIL: [EVIL, "b"], "churned": [0, 1]})

    document = validation_report_html(ValidationPage(f"s3://b/{EVIL}/x.csv", report, spec, build_profile(frame, spec),
                                                     error=f"data validation failed: column '{EVIL}'"))
    page = ReportPage(document)

    assert page.scripts == 0 and page.errors == [] and EVIL not in document and "<b>user</b>" not in document
    assert "&lt;b&gt;user&lt;/b&gt;" in document
    assert page.banner.kind == "fail"
    assert [r[0].text for r in page.table_under("Features").rows] == ["age", EVIL]


# --- the drift monitor's index ------------------------------------------------------------------------------

def test_drift_index_marks_promotions_and_rollbacks_between_the_windows_they_fell_between() -> None:
    from driftloop.reports.drift_index import Event, IndexPage, drift_index_html

    def window(i: int, version: int, share: float) -> dict:
        return {"id": i, "model": "churn", "opened_at": 1000.0 * i, "closed_at": 1000.0 * i + 900, "n_rows": 500,
                "reference_version": version, "rows_by_version": {str(version): 500}, "drift_share": share,
                "drift_threshold": 0.3, "feature_tests": [{"column": "age", "drifted": share >= 0.3}] * 4,
                "drifted_features": ["age"] * round(share * 4), "prediction_drift": None, "error": None,
                "quality": {"labelled": 0, "accuracy": None, "by_version": {}}, "decision": {"action": "quiet"},
                "report": f"window-{i:06d}.html"}

    windows = [window(1, 1, 0.0), window(2, 1, 0.5), window(3, 2, 0.25)]
    events = [Event("promotion", "v1 promoted", 10.0),  # before the first window: not on the chart
              Event("trigger", "retrain", 2950.0, window=2), Event("promotion", "v2 promoted", 2950.0),
              Event("rollback", "v2 rolled back", 3950.0)]
    page = ReportPage(drift_index_html(IndexPage("churn", windows, events, {"window-000001.html"})))
    chart = next(svg for svg in page.svgs() if "Drift share" in svg.get("aria-label", ""))
    ns = "{http://www.w3.org/2000/svg}"
    centres = {t.text: float(t.get("x")) for t in chart.iter(f"{ns}text") if t.text in ("1", "2", "3")}
    marks = {t.text: float(t.get("x")) - 3 for t in chart.iter(f"{ns}text") if t.get("fill") in
             ("#bc4c00", "#1a7f37", "#cf222e")}
    assert set(marks) == {"retrain", "v2 promoted", "v2 rolled back"}
    assert marks["retrain"] == pytest.approx(centres["2"], abs=0.1)  # on the window that triggered
    assert marks["v2 promoted"] == pytest.approx((centres["2"] + centres["3"]) / 2, abs=0.1)
    assert marks["v2 rolled back"] > centres["3"]  # after the last window
    table = page.table_under("Windows")
    assert [r[0].text for r in table.rows] == ["#3", "#2", "#1"]
    assert [href for href, _ in page.links] == ["window-000001.html"]  # only pages that still exist are linked
