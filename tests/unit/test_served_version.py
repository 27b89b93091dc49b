"""What a served version answers, per task: a classifier's labels (and, on request, its probabilities in one
pass, equal to the Pipeline's own), a regression's numbers — and no class probabilities from a regression."""

from __future__ import annotations

import numpy as np
import pytest

from driftloop.serving.versions import NoClassProbabilities, ServedVersion
from driftloop.tasks import MULTICLASS, REGRESSION
from driftloop.training import train_model

from ..task_tables import CLASSES, task_frame, trained


@pytest.mark.parametrize("estimator", ["logistic_regression", "gradient_boosting", "random_forest"])
def test_binary_labels_and_probabilities_in_one_pass_are_predicts_and_predict_probas(validated, fresh_holdout,
                                                                                    estimator: str) -> None:
    model = train_model(validated.frame, validated.spec, estimator, seed=1).model
    served = ServedVersion("churn", 1, validated.spec, model)
    scores = served.score(fresh_holdout, probabilities=True)
    np.testing.assert_array_equal(scores.predictions, served.predict(fresh_holdout))
    assert scores.predictions.dtype == np.int64 and set(scores.predictions.tolist()) == {0, 1}  # 0/1 stay 0/1
    np.testing.assert_array_equal(scores.probabilities, model.predict_proba(fresh_holdout[validated.spec.feature_names]))


@pytest.mark.parametrize("estimator", ["logistic_regression", "gradient_boosting", "random_forest"])
def test_a_multiclass_version_answers_the_labels_its_class_indices_stand_for(estimator: str) -> None:
    model = trained(MULTICLASS, estimator)
    rows = task_frame(MULTICLASS, 400, seed=11)
    served = ServedVersion("tickets", 1, model.spec, model.model)
    indices = model.model.predict(rows[model.spec.feature_names])
    scores = served.score(rows, probabilities=True)
    assert model.spec.target_classes == served.classes == CLASSES
    assert scores.predictions.tolist() == [CLASSES[i] for i in indices] == served.predict(rows).tolist()
    assert len(set(scores.predictions.tolist())) > 2
    np.testing.assert_array_equal(scores.probabilities, model.model.predict_proba(rows[model.spec.feature_names]))


def test_a_regression_version_answers_numbers_and_refuses_class_probabilities() -> None:
    model = trained(REGRESSION, "xgboost")  # XGBoost predicts float32: users get float64 like the others
    rows = task_frame(REGRESSION, 200, seed=11)
    served = ServedVersion("bills", 1, model.spec, model.model)
    predictions = served.predict(rows)
    assert predictions.dtype == np.float64 and served.classes == ()
    np.testing.assert_array_equal(predictions, model.model.predict(rows[model.spec.feature_names]))
    with pytest.raises(NoClassProbabilities, match="bills v1 is a regression model: a regression model has no "
                                                   "class probabilities"):
        served.score(rows, probabilities=True)
