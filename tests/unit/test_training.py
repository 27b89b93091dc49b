"""Training: every estimator fits, training is repeatable, and the saved file serves like KServe does."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from driftloop import synthetic, training
from driftloop.errors import ConfigError, DataValidationError

# What KServe's sklearn runtime does with dict instances, in a process that never imports driftloop.
SERVE_SCRIPT = """
import json, sys
import joblib, pandas as pd
request = json.load(sys.stdin)
out = {}
for name, path in request["models"].items():
    model = joblib.load(path)
    out[name] = model.predict_proba(pd.DataFrame(request["instances"]))[:, 1].tolist()
out["driftloop_imported"] = any(m.split(".")[0] == "driftloop" for m in sys.modules)
print(json.dumps(out))
"""


LR = "logistic_regression"  # pinned where the estimator is not the point: auto fits several


def _instance(row: pd.Series) -> dict:
    """A JSON-ready dict instance: missing values become null, as they arrive over HTTP."""
    return {k: (None if pd.isna(v) else v) for k, v in row.items()}


@pytest.mark.parametrize("estimator", training.estimators_for("binary"))
def test_each_estimator_fits_and_predicts(estimator: str, validated, fresh_holdout) -> None:
    result = training.train_model(validated.frame, validated.spec, estimator, seed=3)

    proba = result.model.predict_proba(fresh_holdout[validated.spec.feature_names])
    assert proba.shape == (len(fresh_holdout), 2)
    assert np.all((proba >= 0) & (proba <= 1))
    assert np.allclose(proba.sum(axis=1), 1.0)
    assert set(np.unique(result.model.predict(fresh_holdout[validated.spec.feature_names]))) <= {0, 1}
    positive = training.predict_positive_proba(result.model, fresh_holdout, validated.spec)
    assert roc_auc_score(fresh_holdout[synthetic.TARGET], positive) > 0.65  # it learned the rule


def test_split_is_a_stratified_partition(validated) -> None:
    result = training.train_model(validated.frame, validated.spec, LR, test_size=0.25, seed=5)
    train_ids = set(result.train_frame[synthetic.ID_COLUMN])
    holdout_ids = set(result.holdout_frame[synthetic.ID_COLUMN])

    assert len(result.holdout_frame) == len(validated.frame) // 4
    assert not train_ids & holdout_ids
    assert train_ids | holdout_ids == set(validated.frame[synthetic.ID_COLUMN])
    rates = [f[synthetic.TARGET].mean() for f in (result.train_frame, result.holdout_frame)]
    assert rates[0] == pytest.approx(rates[1], abs=0.01)


@pytest.mark.parametrize("estimator", ["logistic_regression", "xgboost"])
def test_same_seed_gives_identical_predictions(estimator: str, validated, fresh_holdout) -> None:
    features = fresh_holdout[validated.spec.feature_names]
    first = training.train_model(validated.frame, validated.spec, estimator, seed=7)
    second = training.train_model(validated.frame, validated.spec, estimator, seed=7)

    assert np.array_equal(first.model.predict_proba(features), second.model.predict_proba(features))
    pd.testing.assert_frame_equal(first.holdout_frame, second.holdout_frame)


def test_another_seed_gives_another_split(validated) -> None:
    a = training.train_model(validated.frame, validated.spec, LR, seed=7)
    b = training.train_model(validated.frame, validated.spec, LR, seed=8)

    assert set(a.holdout_frame[synthetic.ID_COLUMN]) != set(b.holdout_frame[synthetic.ID_COLUMN])


def test_user_parameters_reach_the_estimator(validated) -> None:
    result = training.train_model(validated.frame, validated.spec, "random_forest", {"n_estimators": 7}, seed=1)

    assert len(result.model.named_steps["model"].estimators_) == 7


def test_saved_model_serves_dict_instances_without_driftloop(tmp_path: Path, validated) -> None:
    holdout = None
    paths = {}
    for estimator in ("logistic_regression", "xgboost"):
        result = training.train_model(validated.frame, validated.spec, estimator, seed=2)
        holdout = result.holdout_frame
        paths[estimator] = training.save_model(result.model, tmp_path / estimator)
        assert sorted(p.name for p in (tmp_path / estimator).iterdir()) == [training.MODEL_FILENAME]

    rows = holdout[validated.spec.feature_names].head(4)
    instances = [_instance(row) for _, row in rows.iterrows()]
    instances[1]["income"] = None
    instances[2]["channel"] = None
    instances[3]["region"] = "atlantis"  # never seen in training
    instances[3]["plan"] = "platinum"

    completed = subprocess.run(
        [sys.executable, "-c", SERVE_SCRIPT],
        input=json.dumps({"models": {k: str(v) for k, v in paths.items()}, "instances": instances}),
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert completed.returncode == 0, completed.stderr
    served = json.loads(completed.stdout)

    assert served["driftloop_imported"] is False
    for estimator, path in paths.items():
        model = joblib.load(path)
        assert len(served[estimator]) == 4
        assert all(0.0 < p < 1.0 and math.isfinite(p) for p in served[estimator])
        # The untouched first row scores exactly as it does on the training-side table.
        expected = model.predict_proba(rows.head(1))[0, 1]
        assert served[estimator][0] == pytest.approx(expected, rel=1e-6)
        assert training.load_model(path.parent).predict_proba(pd.DataFrame(instances))[:, 1] == pytest.approx(
            served[estimator], rel=1e-6
        )


def test_served_null_category_scores_like_missing_in_training(trained_lr, validated) -> None:
    """Training tables spell a missing category NaN; KServe spells JSON null None. Both mean 'missing'."""
    holdout = trained_lr.holdout_frame
    row = holdout[holdout["channel"].isna()][validated.spec.feature_names].head(1)
    assert len(row) == 1
    as_trained = trained_lr.model.predict_proba(row)[0, 1]

    as_served = trained_lr.model.predict_proba(pd.DataFrame([_instance(row.iloc[0])]))[0, 1]

    assert as_served == pytest.approx(as_trained, rel=1e-9)


def test_whole_number_floats_become_int_parameters(validated) -> None:
    # KFP hands dict parameters over as a protobuf Struct, where 7 arrives as 7.0.
    params = {"n_estimators": 7.0, "max_depth": 3.0, "min_samples_leaf": 2.0}

    result = training.train_model(validated.frame, validated.spec, "random_forest", params, seed=1)

    forest = result.model.named_steps["model"]
    assert len(forest.estimators_) == 7
    assert (forest.max_depth, forest.min_samples_leaf) == (3, 2)
    assert all(isinstance(v, int) for v in (forest.n_estimators, forest.max_depth, forest.min_samples_leaf))


def test_unknown_estimator_raises_config_error(validated) -> None:
    with pytest.raises(ConfigError, match="unknown estimator 'svm'; choose one of logistic_regression"):
        training.train_model(validated.frame, validated.spec, "svm")


def test_unknown_parameter_raises_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match="'xgboost' has no parameter\\(s\\) max_deep"):
        training.make_estimator("xgboost", {"max_deep": 3}, seed=0)


@pytest.mark.parametrize(
    ("estimator", "params"),
    [("logistic_regression", {"C": -1.0}), ("random_forest", {"n_estimators": 0}), ("xgboost", {"max_depth": -3})],
)
def test_invalid_parameter_value_raises_config_error(estimator: str, params: dict, validated) -> None:
    with pytest.raises(ConfigError):
        training.train_model(validated.frame, validated.spec, estimator, params)


@pytest.mark.parametrize("test_size", [0.0, 0.01, 0.6, 1.0])
def test_test_size_out_of_range_raises_config_error(test_size: float, validated) -> None:
    with pytest.raises(ConfigError, match="test_size must be between 0.05 and 0.5"):
        training.train_model(validated.frame, validated.spec, LR, test_size=test_size)


def test_training_needs_target_classes(validated, churn_spec) -> None:
    # churn_spec has not been through validation, so it does not know the target classes yet.
    with pytest.raises(DataValidationError, match="validate the data first"):
        training.train_model(validated.frame, churn_spec, LR)


def _two_worlds(n: int, seed: int) -> tuple[pd.DataFrame, object]:
    """A table where the label is an interaction of two features: a linear model cannot learn it, trees can."""
    from driftloop.data import infer_spec
    from driftloop.validation import validate_table

    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    frame = pd.DataFrame({"x1": x1, "x2": x2, "noise": rng.normal(size=n),
                          "label": ((x1 * x2 > 0) ^ (rng.random(n) < 0.05)).astype(int)})
    clean, _, spec = validate_table(frame, infer_spec(frame, "label"))
    return clean, spec


def test_auto_picks_the_candidate_that_is_clearly_better_and_reports_the_leaderboard() -> None:
    frame, spec = _two_worlds(1200, seed=0)
    result = training.train_model(frame, spec, "auto", seed=1, gate_metric="roc_auc")
    board = {c.estimator: c for c in result.leaderboard}
    assert set(board) == set(training.AUTO_CANDIDATES)
    assert board["logistic_regression"].value < 0.6 < board[result.estimator].value  # XOR defeats a linear model
    assert result.estimator in ("gradient_boosting", "xgboost") and board[result.estimator].chosen
    assert sum(c.chosen for c in result.leaderboard) == 1 and all(c.fit_seconds > 0 for c in result.leaderboard)
    best = max(c.value for c in result.leaderboard)
    assert board[result.estimator].value == best
    # The refit is the winner on every training row, and it is what the holdout then judges.
    holdout_auc = roc_auc_score(result.holdout_frame["label"],
                                training.predict_positive_proba(result.model, result.holdout_frame, spec))
    assert holdout_auc > 0.85


def test_auto_never_sees_the_holdout_and_is_reproducible() -> None:
    frame, spec = _two_worlds(800, seed=3)
    first = training.train_model(frame, spec, "auto", seed=5)
    second = training.train_model(frame, spec, "auto", seed=5)
    assert first.estimator == second.estimator and first.leaderboard_dicts() == [
        {**c, "fit_seconds": c["fit_seconds"]} for c in first.leaderboard_dicts()]
    assert [c.value for c in first.leaderboard] == [c.value for c in second.leaderboard]
    features = first.holdout_frame[spec.feature_names]
    assert np.array_equal(first.model.predict_proba(features), second.model.predict_proba(features))
    # Same split as a pinned estimator: the holdout the gate uses does not depend on auto.
    pinned = training.train_model(frame, spec, LR, seed=5)
    pd.testing.assert_frame_equal(first.holdout_frame, pinned.holdout_frame)


def test_gradient_boosting_takes_categories_natively() -> None:
    from driftloop.data import infer_spec
    from driftloop.validation import validate_table

    rng = np.random.default_rng(0)
    codes = rng.integers(0, 40, 1500)
    frame = pd.DataFrame({"code": pd.Categorical(codes), "x": rng.normal(size=1500),
                          "label": (np.isin(codes, [3, 7, 11, 19, 23, 31]) | (rng.random(1500) < 0.03)).astype(int)})
    clean, _, spec = validate_table(frame, infer_spec(frame, "label"))
    assert spec.names_of("categorical") == ["code"]
    result = training.train_model(clean, spec, "gradient_boosting", seed=0)
    model = result.model.named_steps["model"]
    assert list(model.is_categorical_) == [False, True]  # x numeric, code categorical
    auc = roc_auc_score(result.holdout_frame["label"],
                        training.predict_positive_proba(result.model, result.holdout_frame, spec))
    assert auc > 0.9  # the 3 % label noise caps it near 0.93


def test_auto_with_estimator_parameters_is_refused(validated) -> None:
    with pytest.raises(ConfigError, match="pinned estimator"):
        training.train_model(validated.frame, validated.spec, "auto", {"max_iter": 5})
