"""Batch scoring's one pass for labels and probabilities gives the labels the gateway's ``predict`` gives."""

from __future__ import annotations

import numpy as np
import pytest

from driftloop.serving.versions import ServedVersion
from driftloop.training import train_model


@pytest.mark.parametrize("estimator", ["logistic_regression", "gradient_boosting", "random_forest"])
def test_labels_and_probabilities_in_one_pass_are_predicts_and_predict_probas(validated, fresh_holdout,
                                                                             estimator: str) -> None:
    model = train_model(validated.frame, validated.spec, estimator, seed=1).model
    served = ServedVersion("churn", 1, validated.spec, model)
    labels, probabilities = served.predict_with_probabilities(fresh_holdout)
    np.testing.assert_array_equal(labels, served.predict(fresh_holdout))
    np.testing.assert_array_equal(probabilities, model.predict_proba(fresh_holdout[validated.spec.feature_names]))
