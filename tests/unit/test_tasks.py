"""Multi-class and regression through the core: the task a target implies, validation, every estimator, the task's
metrics and the gate in the task's terms."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from driftloop import training
from driftloop.ct_params import CTParams
from driftloop.data import DatasetSpec, infer_spec
from driftloop.errors import ConfigError, DataValidationError
from driftloop.evaluation import GateThresholds, decide_gate, evaluate_model
from driftloop.tasks import BINARY, MULTICLASS, REGRESSION, infer_task, quality_drop
from driftloop.validation import validate_table

QUEUES = ("billing", "outage", "sales", "<b>vip</b>")


def _features(n: int, seed: int) -> tuple[pd.DataFrame, np.random.Generator]:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"x1": rng.normal(size=n), "x2": rng.normal(size=n),
                          "plan": rng.choice(["basic", "pro", "team"], n)})
    return frame, rng


def multiclass_frame(n: int = 1200, seed: int = 0) -> pd.DataFrame:
    """Four ticket queues a model can learn from the features (one label looks like markup)."""
    frame, rng = _features(n, seed)
    score = np.stack([frame.x1, -frame.x1, frame.x2, (frame.plan == "team") * 1.5], axis=1)
    frame["queue"] = np.array(QUEUES)[np.argmax(score + rng.normal(scale=0.4, size=score.shape), axis=1)]
    return frame


def regression_frame(n: int = 1200, seed: int = 0) -> pd.DataFrame:
    frame, rng = _features(n, seed)
    frame["spend"] = (100 + 12 * frame.x1 - 7 * frame.x2 + 20 * (frame.plan == "pro")
                      + rng.normal(scale=4, size=n)).round(2)
    return frame


def _validated(frame: pd.DataFrame, target: str, task: str = "auto"):
    clean, _, spec = validate_table(frame, infer_spec(frame, target, task=task))
    return clean, spec


@pytest.fixture(scope="module")
def multiclass() -> tuple[pd.DataFrame, DatasetSpec]:
    return _validated(multiclass_frame(), "queue")


@pytest.fixture(scope="module")
def regression() -> tuple[pd.DataFrame, DatasetSpec]:
    return _validated(regression_frame(), "spend")


@pytest.mark.parametrize(("values", "task", "noted"), [
    (["yes", "no", "no"], BINARY, False),
    (["a", "b", "c", "a"], MULTICLASS, False),
    ([0, 1, 1, 0], BINARY, False),
    ([1, 2, 3, 1, 2], MULTICLASS, True),  # whole numbers, few: labels, but they might be amounts
    ([12.5, 3.0, 7.25, 1.0], REGRESSION, False),
    (list(range(50)), REGRESSION, False),
])
def test_the_target_decides_the_task_and_says_when_it_guessed(values, task, noted) -> None:
    inferred, note = infer_task(values)
    assert inferred == task
    assert (note is not None) == noted
    if noted:
        assert "--task regression" in note


def test_the_spec_carries_its_task_and_old_specs_are_binary(multiclass, regression) -> None:
    _, spec = multiclass
    assert spec.task == MULTICLASS and spec.target_classes == tuple(sorted(QUEUES))
    assert DatasetSpec.from_json(spec.to_json()) == spec
    _, spec = regression
    assert spec.task == REGRESSION and spec.target_classes == ()
    legacy = spec.to_dict()
    del legacy["task"]
    assert DatasetSpec.from_dict(legacy).task == BINARY


def test_a_regression_target_holding_text_fails_naming_the_row() -> None:
    frame = regression_frame(200).astype({"spend": object})
    frame.loc[7, "spend"] = "n/a"
    with pytest.raises(DataValidationError) as caught:
        validate_table(frame, infer_spec(frame, "spend", task=REGRESSION))
    message = str(caught.value)
    assert "'spend'" in message and "text in a regression target" in message and "'n/a' in row 8" in message


def test_a_binary_spec_refuses_a_third_class_and_says_how_to_declare_it() -> None:
    frame = multiclass_frame(300)
    with pytest.raises(DataValidationError, match=r"4 classes but the spec's task is binary.*--task multiclass"):
        validate_table(frame, infer_spec(frame, "queue", task=BINARY))


def test_a_multiclass_retrain_learns_a_new_class_with_a_warning(multiclass) -> None:
    _, spec = multiclass
    frame = multiclass_frame(400, seed=5)
    frame.loc[:40, "queue"] = "fraud"
    _, report, new_spec = validate_table(frame, spec)
    assert "fraud" in new_spec.target_classes and len(new_spec.target_classes) == 5
    assert any(c.status == "warn" and "differ from the spec's" in c.detail for c in report.checks)


@pytest.mark.parametrize("estimator", training.estimators_for(MULTICLASS))
def test_every_multiclass_estimator_gives_a_probability_per_class(estimator, multiclass) -> None:
    frame, spec = multiclass
    result = training.train_model(frame, spec, estimator, seed=1)
    proba = training.model_output(result.model, result.holdout_frame, spec)
    assert proba.shape == (len(result.holdout_frame), 4)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    evaluation = evaluate_model(result.model, result.holdout_frame, spec)
    assert evaluation.metrics["f1_macro"] > 0.6  # learnable: chance is 0.25
    assert evaluation.metrics["log_loss"] < evaluation.metrics["baseline_log_loss"]


@pytest.mark.parametrize("estimator", training.estimators_for(REGRESSION))
def test_every_regression_estimator_beats_the_mean(estimator, regression) -> None:
    frame, spec = regression
    result = training.train_model(frame, spec, estimator, seed=1)
    evaluation = evaluate_model(result.model, result.holdout_frame, spec)
    assert evaluation.metrics["rmse"] < 0.5 * evaluation.metrics["baseline_rmse"]
    assert evaluation.metrics["r2"] > 0.75


def test_estimators_that_do_not_fit_the_task_are_refused_in_one_line(regression) -> None:
    frame, spec = regression
    with pytest.raises(ConfigError, match="estimator 'logistic_regression' does not fit a regression target; its "
                                          "linear model is ridge"):
        training.train_model(frame, spec, "logistic_regression")
    with pytest.raises(ConfigError, match="gate metric 'roc_auc' does not fit a regression target"):
        training.train_model(frame, spec, gate_metric="roc_auc")
    with pytest.raises(ConfigError, match="does not fit a multiclass target"):
        CTParams(data_uri="t.csv", target="queue", task=MULTICLASS, gate_metric="rmse")


def test_auto_chooses_by_the_tasks_metric(regression) -> None:
    frame, spec = regression
    result = training.train_model(frame, spec, "auto", seed=2)
    board = {c.estimator: c for c in result.leaderboard}
    assert set(board) == set(training.auto_candidates(REGRESSION)) and {c.metric for c in board.values()} == {"rmse"}
    chosen = next(c for c in result.leaderboard if c.chosen)
    assert chosen.value == min(c.value for c in result.leaderboard)  # rmse: lower is better


def test_a_multiclass_evaluation_has_the_matrix_and_per_class_scores(multiclass) -> None:
    frame, spec = multiclass
    result = training.train_model(frame, spec, "logistic_regression", seed=1)
    evaluation = evaluate_model(result.model, result.holdout_frame, spec)
    matrix = np.array(evaluation.confusion_matrix)
    assert matrix.shape == (4, 4) and matrix.sum() == len(result.holdout_frame)
    assert evaluation.classes == list(spec.target_classes)
    truth = result.holdout_frame["queue"].value_counts()
    for i, label in enumerate(evaluation.classes):  # row i is the rows whose true class is label i
        assert matrix[i].sum() == truth[label] == evaluation.per_class[label]["support"]
        assert evaluation.per_class[label]["recall"] == pytest.approx(matrix[i, i] / matrix[i].sum(), abs=1e-6)


def test_a_regression_evaluation_shows_where_it_errs(regression) -> None:
    frame, spec = regression
    result = training.train_model(frame, spec, "ridge", seed=1)
    evaluation = evaluate_model(result.model, result.holdout_frame, spec)
    assert len(evaluation.residuals["predicted"]) == len(evaluation.residuals["actual"]) == len(result.holdout_frame)
    deciles = evaluation.error_by_decile
    assert len(deciles) == 10 and sum(d["count"] for d in deciles) == len(result.holdout_frame)
    assert [d["low"] for d in deciles] == sorted(d["low"] for d in deciles)
    assert deciles[0]["mean_actual"] < deciles[-1]["mean_actual"]  # a good model's top decile is truly higher


def test_the_gate_holds_an_error_metric_to_the_baseline_and_compares_relatively() -> None:
    thresholds = GateThresholds("rmse", 0.6, 0.05)
    worse_than_guessing = decide_gate({"rmse": 21.0, "baseline_rmse": 20.0}, None, thresholds)
    assert not worse_than_guessing.passed and "does not beat the baseline 20" in worse_than_guessing.reasons[0]
    within = decide_gate({"rmse": 10.4, "baseline_rmse": 20.0}, {"rmse": 10.0}, thresholds, champion_version=3)
    assert within.passed and "4.0% worse, within the allowed 5.0% worse" in within.reasons[-1]
    beyond = decide_gate({"rmse": 10.6, "baseline_rmse": 20.0}, {"rmse": 10.0}, thresholds, champion_version=3)
    assert not beyond.passed and "6.0% worse than champion v3" in beyond.reasons[-1]


def test_quality_drop_is_absolute_for_scores_and_relative_for_errors() -> None:
    assert quality_drop("accuracy", 0.90, 0.84) == pytest.approx(0.06)
    assert quality_drop("rmse", 10.0, 12.5) == pytest.approx(0.25)
    assert quality_drop("rmse", 10.0, 9.0) < 0  # better than expected


def test_a_class_too_rare_to_learn_and_judge_is_one_line_naming_it() -> None:
    frame = multiclass_frame(400)
    frame.loc[:1, "queue"] = "legal"  # two rows
    with pytest.raises(DataValidationError, match=r"1 class\(es\) with fewer than 5 rows: 'legal' \(2\)"):
        validate_table(frame, infer_spec(frame, "queue"))


def test_a_new_class_in_the_recent_slice_is_left_out_of_the_judging(tmp_path, multiclass) -> None:
    from driftloop import steps

    data, recent = tmp_path / "tickets.csv", tmp_path / "recent.csv"
    multiclass_frame(600, seed=1).to_csv(data, index=False)
    newest = multiclass_frame(120, seed=2)
    newest.loc[:9, "queue"] = "fraud"  # a class the monitor kept from labels; nothing trains on it yet
    newest.to_csv(recent, index=False)
    result = steps.load_and_validate(str(data), "queue", str(tmp_path / "registry"), "tickets",
                                     str(tmp_path / "dataset.parquet"), str(tmp_path / "report.html"),
                                     recent_uri=str(recent), recent_path=str(tmp_path / "recent.parquet"))
    kept = pd.read_parquet(tmp_path / "recent.parquet")
    assert "fraud" not in result.spec.target_classes and len(kept) == 110
    assert set(kept["queue"]) <= set(result.spec.target_classes)


def test_a_recent_slice_with_rare_classes_or_a_missing_column_does_not_fail_the_retrain(tmp_path, multiclass) -> None:
    from driftloop import steps

    data = tmp_path / "tickets.csv"
    multiclass_frame(600, seed=1).to_csv(data, index=False)
    newest = multiclass_frame(120, seed=2)
    known, other = QUEUES[0], QUEUES[1]
    newest.loc[newest.index[newest["queue"] == known][3:], "queue"] = other  # a known class: three rows
    newest.loc[newest.index[newest["queue"] == other][:2], "queue"] = "fraud"  # a new class: two rows
    recent = tmp_path / "recent.csv"
    newest.to_csv(recent, index=False)

    def validate(recent_file):
        return steps.load_and_validate(str(data), "queue", str(tmp_path / "registry"), "tickets",
                                       str(tmp_path / "dataset.parquet"), str(tmp_path / "report.html"),
                                       recent_uri=str(recent_file), recent_path=str(tmp_path / "recent.parquet"))

    result = validate(recent)
    kept = pd.read_parquet(tmp_path / "recent.parquet")
    assert result.problem == "" and (kept["queue"] == known).sum() == 3 and "fraud" not in set(kept["queue"])
    broken = tmp_path / "broken.csv"
    newest.drop(columns=[newest.columns[0]]).to_csv(broken, index=False)
    result = validate(broken)
    assert result.problem == "" and pd.read_parquet(tmp_path / "recent.parquet").empty
    assert any(c.check == "recent rows" and c.status == "warn" for c in result.report.checks)


def test_binary_log_loss_is_held_to_the_positive_share() -> None:
    from driftloop.evaluation import scores

    y = np.array([0, 1] * 50)
    always_wrong = np.where(y == 1, 0.1, 0.9)
    metrics = scores(y, always_wrong)
    assert metrics["log_loss"] > metrics["baseline_log_loss"] == pytest.approx(np.log(2))
    decision = decide_gate(metrics, None, GateThresholds("log_loss"))
    assert not decision.passed and "does not beat the baseline" in decision.reasons[0]


def test_a_declared_positive_class_keeps_its_place() -> None:
    frame = multiclass_frame(300)
    frame["queue"] = np.where(frame["queue"] == "billing", "stay", "churn")
    spec = infer_spec(frame, "queue", task=BINARY).with_target_classes(("stay", "churn"))
    _, _, validated = validate_table(frame, spec)
    assert validated.target_classes == ("stay", "churn")  # churn is the positive class, as declared
    assert training.encode_target(frame, validated).mean() == pytest.approx((frame["queue"] == "churn").mean())


def test_the_dashboard_gets_each_class_recall_under_its_own_name() -> None:
    from driftloop.evaluation import Evaluation
    from driftloop.steps import EvaluateResult, dashboard_confusion, dashboard_metrics

    per_class = {label: {"precision": 1.0, "recall": r, "f1": 1.0, "support": 3}
                 for label, r in (("macro", 0.1), ("a-b", 0.25), ("a_b", 0.75))}  # class "macro": not the average
    evaluation = Evaluation({"accuracy": 0.9, "recall_macro": 0.5}, [[3, 0, 0], [0, 3, 0], [0, 0, 3]], {},
                            task=MULTICLASS, classes=["macro", "a-b", "a_b"], per_class=per_class)
    result = EvaluateResult(evaluation, decide_gate({"f1_macro": 0.9}, None, GateThresholds("f1_macro")), None)
    scalars, roc = dashboard_metrics(result)
    assert roc is None and scalars["recall_macro"] == 0.5  # the macro average is not overwritten by class "macro"
    assert sorted(v for k, v in scalars.items() if k.startswith("class_recall_")) == [0.1, 0.25, 0.75]
    assert dashboard_confusion(result) == (["macro", "a-b", "a_b"], evaluation.confusion_matrix)
