"""Validation of a table against its spec and a reference profile, as a user meets it: from a file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from driftloop import synthetic
from driftloop.data import DatasetSpec, load_table
from driftloop.errors import DataValidationError
from driftloop.profile import ReferenceProfile, build_profile
from driftloop.validation import ValidationPolicy, validate_table

TARGET = synthetic.TARGET


@pytest.fixture(scope="module")
def reference_profile(validated) -> ReferenceProfile:
    return build_profile(validated.frame, validated.spec)


@pytest.fixture
def new_batch() -> pd.DataFrame:
    """Fresh data from the reference world, as a retrain would receive it."""
    return synthetic.generate(500, seed=21, id_offset=10_000)


def _through_csv(frame: pd.DataFrame, tmp_path: Path) -> pd.DataFrame:
    path = tmp_path / "batch.csv"
    frame.to_csv(path, index=False)
    return load_table(str(path))[0]


def _fail(frame: pd.DataFrame, spec: DatasetSpec, reference: ReferenceProfile | None = None,
          policy: ValidationPolicy = ValidationPolicy()) -> DataValidationError:
    with pytest.raises(DataValidationError) as caught:
        validate_table(frame, spec, reference, policy)
    return caught.value


# -- clean data ----------------------------------------------------------------------------------


def test_clean_csv_passes_and_comes_back_typed(churn_frame, churn_spec, tmp_path: Path) -> None:
    frame = _through_csv(churn_frame, tmp_path)

    clean, report, spec = validate_table(frame, churn_spec)

    assert report.failures == []
    assert report.n_rows == report.n_rows_used == len(churn_frame)
    assert spec.target_classes == (0, 1)
    assert clean["age"].dtype == float
    assert set(clean["has_autopay"].dropna()) == {True, False}
    assert clean["region"].map(type).eq(str).all()
    statuses = {(c.column, c.check): c.status for c in report.checks}
    assert statuses[(TARGET, "target")] == "pass"
    assert statuses[("age", "schema")] == "pass"


def test_new_batch_passes_against_the_reference(new_batch, validated, reference_profile) -> None:
    _, report, spec = validate_table(new_batch, validated.spec, reference_profile)

    assert report.failures == []
    assert spec.target_classes == validated.spec.target_classes
    checked = {c.check for c in report.checks}
    assert {"schema", "target", "nulls", "range", "categories"} <= checked


def test_extra_columns_are_a_warning_not_a_failure(new_batch, validated) -> None:
    new_batch["notes"] = "hello"

    _, report, _ = validate_table(new_batch, validated.spec)

    assert any("notes" in w.detail for w in report.warnings)
    assert report.failures == []


# -- bad tables ----------------------------------------------------------------------------------


def test_missing_target_column(churn_frame, churn_spec) -> None:
    error = _fail(churn_frame.drop(columns=[TARGET]), churn_spec)

    assert error.column == TARGET
    assert "target column is missing" in str(error)


def test_missing_feature_column(churn_frame, churn_spec) -> None:
    error = _fail(churn_frame.drop(columns=["tenure_months"]), churn_spec)

    assert error.column == "tenure_months"
    assert "column is missing" in str(error)


def test_all_null_feature_column(churn_frame, churn_spec, tmp_path: Path) -> None:
    churn_frame["credit_score"] = np.nan
    frame = _through_csv(churn_frame, tmp_path)

    error = _fail(frame, churn_spec)

    assert error.column == "credit_score"
    assert "entirely null" in str(error)


def test_text_in_a_numeric_column_names_column_and_value(churn_frame, churn_spec, tmp_path: Path) -> None:
    churn_frame["income"] = churn_frame["income"].astype(object)
    churn_frame.loc[6, "income"] = "unknown"
    frame = _through_csv(churn_frame, tmp_path)

    error = _fail(frame, churn_spec)

    assert error.column == "income"
    assert "text in a numeric column" in str(error)
    assert "'unknown'" in str(error)
    assert "row 7" in str(error)
    # The failure carries every check run so far, the failing one among them, for the validation report.
    failed = [c for c in error.report.checks if c.status == "fail"]
    assert [(c.column, c.check) for c in failed] == [("income", "schema")]
    assert error.report.checks[0].check == "schema" and len(error.report.checks) > len(churn_spec.features)


def test_target_with_one_class(churn_frame, churn_spec, tmp_path: Path) -> None:
    churn_frame[TARGET] = 0
    error = _fail(_through_csv(churn_frame, tmp_path), churn_spec)

    assert error.column == TARGET
    assert "single class" in str(error)


def test_target_with_three_classes(churn_frame, churn_spec, tmp_path: Path) -> None:
    churn_frame.loc[::10, TARGET] = 2
    error = _fail(_through_csv(churn_frame, tmp_path), churn_spec)

    assert error.column == TARGET
    assert "3 classes" in str(error)


def test_target_classes_other_than_the_specs(churn_frame, validated) -> None:
    churn_frame[TARGET] = churn_frame[TARGET].map({0: "stayed", 1: "left"})

    error = _fail(churn_frame, validated.spec)  # the spec says 0/1

    assert error.column == TARGET
    assert "differ from the spec" in str(error)


def test_text_target_classes_are_sorted_negative_first(churn_frame, churn_spec) -> None:
    churn_frame[TARGET] = churn_frame[TARGET].map({0: "no", 1: "yes"})

    _, _, spec = validate_table(churn_frame, churn_spec)

    assert spec.target_classes == ("no", "yes")


def test_too_few_rows(churn_frame, churn_spec) -> None:
    error = _fail(churn_frame.head(10), churn_spec)

    assert "only 10 labeled rows" in str(error)


def test_unlabeled_rows_are_dropped_with_a_warning(churn_frame, churn_spec, tmp_path: Path) -> None:
    churn_frame[TARGET] = churn_frame[TARGET].astype(float)
    churn_frame.loc[:59, TARGET] = np.nan  # 60 of 1200 rows: 5%
    frame = _through_csv(churn_frame, tmp_path)

    clean, report, spec = validate_table(frame, churn_spec)

    assert len(clean) == report.n_rows_used == len(churn_frame) - 60
    assert report.n_rows == len(churn_frame)
    assert clean[TARGET].notna().all()
    assert not set(clean[synthetic.ID_COLUMN]) & set(churn_frame.loc[:59, synthetic.ID_COLUMN])
    assert [w.detail for w in report.warnings if w.column == TARGET] == ["dropped 60 unlabeled rows"]
    assert set(spec.target_classes) == {0, 1}


def test_too_many_unlabeled_rows_fail(churn_frame, churn_spec) -> None:
    churn_frame[TARGET] = churn_frame[TARGET].astype(float)
    churn_frame.loc[:359, TARGET] = np.nan  # 30%

    error = _fail(churn_frame, churn_spec)

    assert error.column == TARGET
    assert "30.0% of rows have no label" in str(error)


# -- against the reference profile ---------------------------------------------------------------


def test_values_far_outside_the_reference_range_fail(new_batch, validated, reference_profile) -> None:
    new_batch.loc[: len(new_batch) // 20 - 1, "age"] = 400.0  # 5% of rows

    error = _fail(new_batch, validated.spec, reference_profile)

    assert error.column == "age"
    assert "5.0% of values outside the reference range" in str(error)


def test_a_few_outliers_within_the_allowed_share_pass(new_batch, validated, reference_profile) -> None:
    new_batch.loc[:1, "age"] = 400.0  # 2 of 500 rows = 0.4%, under the 1% limit

    _, report, _ = validate_table(new_batch, validated.spec, reference_profile)

    age_range = next(c for c in report.checks if c.column == "age" and c.check == "range")
    assert age_range.status == "pass"
    assert age_range.detail.startswith("0.4%")


def test_values_within_the_widened_range_pass(new_batch, validated, reference_profile) -> None:
    ref = reference_profile.features["credit_score"]
    new_batch["credit_score"] = ref.maximum + 0.4 * (ref.maximum - ref.minimum)  # inside the 50% margin

    _, report, _ = validate_table(new_batch, validated.spec, reference_profile)

    assert report.failures == []


def test_unseen_categories_fail_and_are_named(new_batch, validated, reference_profile) -> None:
    new_batch.loc[: len(new_batch) // 10 - 1, "region"] = "atlantis"

    error = _fail(new_batch, validated.spec, reference_profile)

    assert error.column == "region"
    assert "10.0% of values are categories unseen in the reference" in str(error)
    assert "'atlantis'" in str(error)


def test_null_rate_increase_fails(new_batch, validated, reference_profile) -> None:
    new_batch["income"] = new_batch["income"].fillna(50_000.0)
    new_batch.loc[: int(len(new_batch) * 0.4) - 1, "income"] = np.nan

    error = _fail(new_batch, validated.spec, reference_profile)

    assert error.column == "income"
    reference_rate = reference_profile.features["income"].null_rate
    assert f"null rate 40.0% is above the reference {reference_rate:.1%}" in str(error)


def test_the_same_null_rate_without_a_reference_passes(new_batch, validated) -> None:
    new_batch.loc[: int(len(new_batch) * 0.4) - 1, "income"] = np.nan

    _, report, _ = validate_table(new_batch, validated.spec)

    assert report.failures == []


def test_stricter_policy_turns_a_pass_into_a_failure(new_batch, validated, reference_profile) -> None:
    new_batch.loc[:1, "age"] = 400.0
    strict = ValidationPolicy(max_out_of_range_share=0.001)

    error = _fail(new_batch, validated.spec, reference_profile, strict)

    assert error.column == "age"


def test_profile_json_round_trip(reference_profile: ReferenceProfile, validated) -> None:
    back = ReferenceProfile.from_json(reference_profile.to_json())

    assert back == reference_profile
    assert back.n_rows == len(validated.frame)
    assert back.features["age"].minimum <= back.features["age"].quantiles["p50"] <= back.features["age"].maximum
    assert set(back.features["region"].categories) == set(synthetic.REGIONS)
    assert back.positive_rate == pytest.approx(validated.frame[TARGET].mean())


def _with_positive_share(frame: pd.DataFrame, share: float, rows: int = 600) -> pd.DataFrame:
    """``rows`` rows of ``frame`` of which ``share`` are positive (a label that flipped, a sampling bug)."""
    positives = frame[frame[TARGET] == 1].sample(int(rows * share), replace=True, random_state=0)
    negatives = frame[frame[TARGET] == 0].sample(rows - len(positives), random_state=0)
    return pd.concat([positives, negatives]).reset_index(drop=True)


def test_a_positive_share_far_from_the_references_is_a_warning(new_batch, validated, reference_profile) -> None:
    assert 0.1 < reference_profile.positive_rate < 0.3  # the synthetic world: about one in five churns
    shifted = _with_positive_share(new_batch, 0.407)

    _, report, _ = validate_table(shifted, validated.spec, reference_profile)

    balance = next(c for c in report.checks if c.check == "balance")
    assert balance.status == "warn" and balance.column == TARGET
    assert "positive share 40.7%" in balance.detail and f"{reference_profile.positive_rate:.1%}" in balance.detail
    assert report.failures == []  # a real shift may be what a retrain must learn: it warns, it does not stop
    _, lenient, _ = validate_table(shifted, validated.spec, reference_profile,
                                   ValidationPolicy(max_positive_share_change=0.25))
    assert next(c for c in lenient.checks if c.check == "balance").status == "pass"


def test_a_positive_share_like_the_references_passes(new_batch, validated, reference_profile) -> None:
    _, report, _ = validate_table(new_batch, validated.spec, reference_profile)

    assert next(c for c in report.checks if c.check == "balance").status == "pass"
