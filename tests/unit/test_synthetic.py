"""The seeded customer generator: determinism, shape, and that its drift knobs really drift, for each task."""

from __future__ import annotations

import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from driftloop import synthetic
from driftloop.data import DatasetSpec, coerce_to_spec, infer_spec
from driftloop.errors import ConfigError
from driftloop.evaluation import task_scores
from driftloop.tasks import BINARY, MULTICLASS, REGRESSION, TASKS, default_gate_metric
from driftloop.training import TrainResult, encode_target, model_output, predict_positive_proba, train_model
from driftloop.validation import validate_table

FEATURES_AND_IDS = [c for c in synthetic.generate(1).columns if c != synthetic.TARGET]


def test_same_seed_gives_the_same_table() -> None:
    pd.testing.assert_frame_equal(synthetic.generate(600, seed=5), synthetic.generate(600, seed=5))


def test_another_seed_gives_another_table() -> None:
    a, b = synthetic.generate(600, seed=5), synthetic.generate(600, seed=6)

    assert not a["age"].equals(b["age"])
    assert not a[synthetic.TARGET].equals(b[synthetic.TARGET])


def test_table_shape_ids_times_and_missing_values() -> None:
    frame = synthetic.generate(1000, seed=2, id_offset=500, missing_rate=0.1)

    assert len(frame) == 1000
    assert frame[synthetic.ID_COLUMN].iloc[0] == "c00000500"
    assert frame[synthetic.ID_COLUMN].is_unique
    gaps = frame[synthetic.TIMESTAMP_COLUMN].diff().dropna().unique()
    assert list(gaps) == [pd.Timedelta(minutes=1)]
    assert set(frame[synthetic.TARGET].unique()) == {0, 1}
    null_rates = frame.isna().mean()
    for column in ("income", "days_since_login", "channel"):
        assert 0.06 < null_rates[column] < 0.14
    assert null_rates.drop(["income", "days_since_login", "channel"]).max() == 0.0
    assert set(frame["region"]) <= set(synthetic.REGIONS)
    assert set(frame["plan"]) <= set(synthetic.PLANS)


def test_non_positive_row_count_and_unknown_task_are_rejected() -> None:
    with pytest.raises(ValueError, match="n_rows"):
        synthetic.generate(0)
    with pytest.raises(ConfigError, match="task must be one of binary, multiclass, regression"):
        synthetic.generate(10, task="ranking")


def test_covariate_shift_moves_feature_distributions() -> None:
    reference = synthetic.generate(1500, seed=1)
    half = synthetic.generate(1500, seed=1, covariate_shift=0.5)
    shifted = synthetic.generate(1500, seed=1, covariate_shift=1.0)

    calls = [f["support_calls"].mean() for f in (reference, half, shifted)]
    assert calls[0] < calls[1] < calls[2]
    assert calls[2] - calls[0] > 1.5  # Poisson mean 1.2 -> 3.7
    assert shifted["age"].mean() - reference["age"].mean() > 6
    assert shifted["income"].median() < reference["income"].median()
    south = [(f["region"] == "south").mean() for f in (reference, shifted)]
    assert south[1] - south[0] > 0.15


def test_concept_shift_keeps_inputs_and_changes_labels() -> None:
    reference = synthetic.generate(1500, seed=4)
    shifted = synthetic.generate(1500, seed=4, concept_shift=1.0)

    pd.testing.assert_frame_equal(reference[FEATURES_AND_IDS], shifted[FEATURES_AND_IDS])
    assert (reference[synthetic.TARGET] != shifted[synthetic.TARGET]).mean() > 0.1


def _auc(result: TrainResult, frame: pd.DataFrame, spec: DatasetSpec) -> float:
    coerced = coerce_to_spec(frame, spec)
    return float(roc_auc_score(coerced[synthetic.TARGET], predict_positive_proba(result.model, coerced, spec)))


def test_a_model_from_the_reference_world_scores_worse_after_concept_shift(trained_lr, validated) -> None:
    # Same seed: the inputs are identical, only the label rule differs.
    fresh = synthetic.generate(1500, seed=11)
    concept_shifted = synthetic.generate(1500, seed=11, concept_shift=1.0)

    auc_fresh = _auc(trained_lr, fresh, validated.spec)
    auc_shifted = _auc(trained_lr, concept_shifted, validated.spec)

    assert auc_fresh > 0.7
    assert auc_shifted < auc_fresh - 0.05


def test_label_rule_survives_pure_covariate_shift(trained_lr, validated) -> None:
    # The rule is the same, so the reference model keeps ranking customers well on shifted inputs.
    shifted = synthetic.generate(1500, seed=11, covariate_shift=1.0)

    assert _auc(trained_lr, shifted, validated.spec) > 0.7
    # ... while churn itself rises, because shifted customers call support more.
    assert shifted[synthetic.TARGET].mean() > validated.frame[synthetic.TARGET].mean() + 0.2


# --- the other tasks: the same customers, another target --------------------------------------------------

OTHER_TASKS = [t for t in TASKS if t != BINARY]


@pytest.mark.parametrize("task", OTHER_TASKS)
def test_each_task_is_seeded_and_shares_the_customers_of_the_churn_table(task) -> None:
    table = synthetic.generate(600, seed=5, task=task)
    target = synthetic.TARGETS[task]

    pd.testing.assert_frame_equal(table, synthetic.generate(600, seed=5, task=task))
    assert not table[target].equals(synthetic.generate(600, seed=6, task=task)[target])
    churn = synthetic.generate(600, seed=5)
    # The same features, ids, times and missing values; only the target column differs.
    pd.testing.assert_frame_equal(table.drop(columns=target), churn.drop(columns=synthetic.TARGET))
    assert infer_spec(table, target, synthetic.ID_COLUMN, synthetic.TIMESTAMP_COLUMN).task == task


def test_retention_offers_are_four_imbalanced_classes() -> None:
    shares = synthetic.generate(4000, seed=2, task=MULTICLASS)["retention_offer"].value_counts(normalize=True)

    assert set(shares.index) == set(synthetic.OFFERS)
    assert shares.idxmax() == "no_offer" and shares.idxmin() == "callback"
    assert shares.max() < 0.6 and shares.min() > 0.05


def test_next_month_spend_is_an_amount_near_this_months() -> None:
    table = synthetic.generate(4000, seed=2, task=REGRESSION)
    spend = table["next_month_spend"]

    assert spend.min() >= 0 and (spend == spend.round(2)).all()
    assert 40 < spend.mean() < 100
    assert spend.corr(table["monthly_spend"]) > 0.7


@pytest.fixture(scope="module", params=OTHER_TASKS)
def reference_model(request):
    """A linear model of the task fitted on the reference world, and its spec."""
    task = request.param
    table = synthetic.generate(2000, seed=1, task=task)
    spec = infer_spec(table, synthetic.TARGETS[task], synthetic.ID_COLUMN, synthetic.TIMESTAMP_COLUMN)
    frame, _, spec = validate_table(table, spec)
    estimator = "logistic_regression" if task == MULTICLASS else "ridge"
    return train_model(frame, spec, estimator=estimator).model, spec


def _task_metric(model, spec: DatasetSpec, table: pd.DataFrame) -> float:
    """The task's default gate metric (macro-F1, RMSE) of ``model`` on ``table``."""
    frame = coerce_to_spec(table, spec)
    return task_scores(spec.task, encode_target(frame, spec), model_output(model, frame, spec))[
        default_gate_metric(spec.task)]


def test_concept_shift_costs_a_reference_model_its_quality_and_covariate_shift_does_not(reference_model) -> None:
    model, spec = reference_model
    fresh, covariate, concept = (_task_metric(model, spec, synthetic.generate(1500, seed=11, task=spec.task, **shift))
                                 for shift in ({}, {"covariate_shift": 1.0}, {"concept_shift": 1.0}))

    if spec.task == MULTICLASS:  # macro-F1: higher is better
        assert fresh > 0.5
        assert concept < fresh - 0.15
        assert covariate > concept + 0.1
    else:  # RMSE: lower is better
        assert fresh < 10
        assert concept > 1.5 * fresh
        assert covariate < 1.2 * fresh
