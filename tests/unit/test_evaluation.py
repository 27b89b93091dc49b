"""Holdout evaluation (metrics, confusion matrix, thinned ROC) and the promotion gate."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn import metrics as skm

from driftloop import synthetic
from driftloop.errors import ConfigError
from driftloop.evaluation import MAX_ROC_POINTS, GateThresholds, decide_gate, evaluate_model
from driftloop.training import predict_positive_proba

# -- evaluate_model ------------------------------------------------------------------------------


def test_metrics_are_in_range_and_agree_with_sklearn(lr_evaluation, trained_lr, validated, fresh_holdout) -> None:
    m = lr_evaluation.metrics
    y = fresh_holdout[synthetic.TARGET].to_numpy()
    proba = predict_positive_proba(trained_lr.model, fresh_holdout, validated.spec)

    for name in ("roc_auc", "accuracy", "f1"):
        assert 0.0 <= m[name] <= 1.0
    assert m["log_loss"] > 0
    assert m["n_holdout"] == len(fresh_holdout)
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba), abs=1e-6)
    assert m["roc_auc"] > 0.7


def test_confusion_matrix_counts_every_holdout_row(lr_evaluation, fresh_holdout) -> None:
    (tn, fp), (fn, tp) = lr_evaluation.confusion_matrix
    positives = int(fresh_holdout[synthetic.TARGET].sum())

    assert tn + fp + fn + tp == len(fresh_holdout)
    assert fn + tp == positives
    assert lr_evaluation.metrics["accuracy"] == pytest.approx((tn + tp) / len(fresh_holdout), abs=1e-6)


def test_roc_curve_is_thinned_finite_and_spans_the_square(lr_evaluation, trained_lr, validated, fresh_holdout) -> None:
    y = fresh_holdout[synthetic.TARGET].to_numpy()
    full_fpr, _, _ = skm.roc_curve(y, predict_positive_proba(trained_lr.model, fresh_holdout, validated.spec))
    assert len(full_fpr) > MAX_ROC_POINTS  # so thinning had work to do

    roc = lr_evaluation.roc_curve
    fpr, tpr, thresholds = (np.asarray(roc[k]) for k in ("fpr", "tpr", "threshold"))

    assert 2 <= len(fpr) <= MAX_ROC_POINTS
    assert len(fpr) == len(tpr) == len(thresholds)
    assert np.all(np.isfinite(thresholds))
    assert (fpr[0], tpr[0]) == (0.0, 0.0)
    assert (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert np.all(np.diff(thresholds) <= 0)
    json.dumps(lr_evaluation.to_dict(), allow_nan=False)  # KFP metadata and reports need strict JSON


def test_short_roc_curve_is_kept_whole(trained_lr, validated) -> None:
    small = trained_lr.holdout_frame.head(40)
    full_fpr, _, _ = skm.roc_curve(
        small[synthetic.TARGET], predict_positive_proba(trained_lr.model, small, validated.spec)
    )

    evaluation = evaluate_model(trained_lr.model, small, validated.spec)

    assert len(evaluation.roc_curve["fpr"]) == len(full_fpr)
    assert all(math.isfinite(t) for t in evaluation.roc_curve["threshold"])


def test_threshold_moves_predictions(trained_lr, validated) -> None:
    holdout = trained_lr.holdout_frame
    positives = int(holdout[synthetic.TARGET].sum())

    everyone = evaluate_model(trained_lr.model, holdout, validated.spec, threshold=0.0)
    nobody = evaluate_model(trained_lr.model, holdout, validated.spec, threshold=1.01)

    assert everyone.confusion_matrix == [[0, len(holdout) - positives], [0, positives]]
    assert nobody.confusion_matrix == [[len(holdout) - positives, 0], [positives, 0]]
    assert nobody.metrics["f1"] == 0.0


# -- decide_gate ---------------------------------------------------------------------------------


def test_gate_passes_without_a_champion() -> None:
    decision = decide_gate({"roc_auc": 0.75}, None, GateThresholds(min_value=0.6))

    assert decision.passed
    assert decision.reasons == [
        "roc_auc 0.7500 reaches the minimum 0.6000",
        "no champion in production: nothing to compare against",
    ]
    assert decision.champion is None


def test_gate_fails_below_the_minimum() -> None:
    decision = decide_gate({"roc_auc": 0.55}, None, GateThresholds(min_value=0.6))

    assert not decision.passed
    assert decision.reasons[0] == "roc_auc 0.5500 is below the minimum 0.6000"


def test_gate_fails_on_nan_metric() -> None:
    decision = decide_gate({"roc_auc": float("nan")}, None, GateThresholds())

    assert not decision.passed
    assert "below the minimum" in decision.reasons[0]


def test_gate_fails_on_regression_beyond_the_limit() -> None:
    decision = decide_gate(
        {"roc_auc": 0.77}, {"roc_auc": 0.80}, GateThresholds(min_value=0.6, max_regression=0.01), champion_version=3
    )

    assert not decision.passed
    assert decision.reasons[0].startswith("roc_auc 0.7700 reaches the minimum")
    assert decision.reasons[1] == (
        "on the holdout: roc_auc 0.7700 trails champion v3 (0.8000) by 0.0300, more than the allowed 0.0100"
    )
    assert decision.champion_version == 3


def test_with_recent_rows_the_comparison_with_the_champion_is_made_there() -> None:
    # After drift the mixed holdout can favour the stale champion; the newest rows are the world as it is now.
    thresholds = GateThresholds(min_value=0.6, max_regression=0.01)
    decision = decide_gate({"roc_auc": 0.80}, {"roc_auc": 0.83}, thresholds, 1, recent_candidate={"roc_auc": 0.90},
                           recent_champion={"roc_auc": 0.84}, n_recent=400)
    assert decision.passed
    assert decision.reasons[1].startswith("on the 400 most recent rows: roc_auc 0.9000 vs champion v1 0.8400")
    assert "holdout (old and new rows mixed)" in decision.reasons[2] and "the recent rows decide" in decision.reasons[2]
    worse = decide_gate({"roc_auc": 0.86}, {"roc_auc": 0.80}, thresholds, 1, recent_candidate={"roc_auc": 0.70},
                        recent_champion={"roc_auc": 0.78}, n_recent=400)
    assert not worse.passed and "trails champion v1 (0.7800) by 0.0800" in worse.reasons[1]


def test_gate_passes_a_small_regression_within_the_limit() -> None:
    decision = decide_gate({"roc_auc": 0.795}, {"roc_auc": 0.80}, GateThresholds(max_regression=0.01), 3)

    assert decision.passed
    assert "within the allowed drop of 0.0100" in decision.reasons[1]
    assert "Δ -0.0050" in decision.reasons[1]


def test_gate_can_fail_for_both_reasons_at_once() -> None:
    decision = decide_gate({"roc_auc": 0.5}, {"roc_auc": 0.8}, GateThresholds(min_value=0.6), 1)

    assert not decision.passed
    assert "below the minimum" in decision.reasons[0]
    assert "trails champion v1" in decision.reasons[1]


def test_gate_judges_the_configured_metric() -> None:
    candidate = {"roc_auc": 0.95, "f1": 0.30}

    decision = decide_gate(candidate, {"roc_auc": 0.5, "f1": 0.40}, GateThresholds(metric="f1", min_value=0.2), 2)

    assert not decision.passed
    assert decision.metric == "f1"
    assert "f1 0.3000 trails champion v2 (0.4000)" in decision.reasons[1]


def test_gate_decision_is_json(lr_evaluation) -> None:
    decision = decide_gate(lr_evaluation.metrics, None, GateThresholds())

    data = json.loads(json.dumps(decision.to_dict()))
    assert data["passed"] is True
    assert data["thresholds"] == {"metric": "roc_auc", "min_value": 0.6, "max_regression": 0.01}


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"metric": "precision"}, "gate metric must be one of roc_auc, accuracy, f1"),
        ({"metric": "brier"}, "gate metric must be one of"),
        ({"min_value": 1.5}, "gate minimum must be within [0, 1], got 1.5"),
        ({"min_value": -0.1}, "gate minimum must be within [0, 1]"),
        ({"min_value": float("nan")}, "gate minimum must be within [0, 1]"),
        ({"max_regression": -0.01}, "max regression must be >= 0, got -0.01"),
    ],
)
def test_gate_thresholds_reject_bad_settings(kwargs: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        GateThresholds(**kwargs)
    assert expected in str(caught.value)


def test_gate_thresholds_reject_nan_max_regression() -> None:
    with pytest.raises(ConfigError):
        GateThresholds(max_regression=float("nan"))
