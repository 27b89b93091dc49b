"""The verified fast scoring path: each estimator's compiled form answers what its Pipeline answers, for every
task, and a compiled form that does not is refused."""

from __future__ import annotations

import numpy as np
import onnx
import pandas as pd
import pytest
from onnx import numpy_helper

from driftloop.fastpath.agreement import ACCEPTED, REFUSED, RELATIVE_TOLERANCE, TOLERANCE, compile_fast_path
from driftloop.fastpath.convert import convertible, to_onnx
from driftloop.fastpath.scorer import OnnxScorer
from driftloop.tasks import MULTICLASS, REGRESSION
from driftloop.training import train_model

from ..task_tables import task_frame
from ..task_tables import trained as trained_for_task

ESTIMATORS = {  # the forest is smaller than the default: the same trees, a quicker test
    "logistic_regression": None, "random_forest": {"n_estimators": 40}, "gradient_boosting": None, "xgboost": None,
}


@pytest.fixture(scope="module")
def trained(validated) -> dict:
    return {name: train_model(validated.frame, validated.spec, name, params, seed=1)
            for name, params in ESTIMATORS.items()}


def _checked(result) -> dict[str, pd.DataFrame]:
    return {"holdout": result.holdout_frame, "reference_sample": result.train_frame.sample(300, random_state=0)}


def _served_rows(frame: pd.DataFrame, spec) -> pd.DataFrame:
    """Fresh rows typed as the request decoder types them, with missing values and categories never seen."""
    rows = frame[spec.feature_names].head(400).astype(object)
    rng = np.random.default_rng(0)
    for name in spec.feature_names:
        rows.loc[rng.random(len(rows)) < 0.1, name] = None
    for name in spec.names_of("categorical"):
        rows.loc[rng.random(len(rows)) < 0.05, name] = "a category never seen"
    numeric = spec.names_of("numeric")
    rows[numeric] = rows[numeric].astype(np.float64)
    return rows.reset_index(drop=True)


@pytest.mark.parametrize("estimator", list(ESTIMATORS))
def test_each_estimators_compiled_form_is_accepted_and_answers_what_the_pipeline_answers(
        estimator: str, trained, validated, fresh_holdout) -> None:
    pipeline, spec = trained[estimator].model, validated.spec
    rows = _served_rows(fresh_holdout, spec)
    before = pipeline.predict_proba(rows)
    graph, record = compile_fast_path(pipeline, spec, _checked(trained[estimator]))
    assert record.status == ACCEPTED, record.reason
    assert record.rows == sum(record.rows_checked.values()) > 600
    assert record.max_abs_diff <= TOLERANCE and record.label_disagreements == 0
    scorer = OnnxScorer(graph, spec)
    np.testing.assert_allclose(scorer.predict_proba(rows)[:, 1], before[:, 1], rtol=0, atol=TOLERANCE)
    labels = scorer.predict(rows)
    assert labels.dtype == pipeline.predict(rows).dtype and labels.tolist() == pipeline.predict(rows).tolist()
    # one row from a dict of columns, as a request is decoded
    one = {name: [rows.at[0, name]] for name in spec.feature_names}
    assert scorer.predict(one).tolist() == pipeline.predict(rows.head(1)).tolist()
    np.testing.assert_array_equal(pipeline.predict_proba(rows), before)  # compiling left the Pipeline as it was


def _tampered_scale(pipeline, spec) -> bytes:
    """The graph with the numeric features' standard deviations 1 % off: a subtly wrong conversion."""
    graph = onnx.load_from_string(to_onnx(pipeline, spec))
    divisor = next(node.input[1] for node in graph.graph.node if node.op_type == "Div")
    tensor = next(t for t in graph.graph.initializer if t.name == divisor)
    values = numpy_helper.to_array(tensor).copy()
    values *= 1.01
    tensor.CopyFrom(numpy_helper.from_array(values, divisor))
    return graph.SerializeToString()


def _skl2onnx_own_converter(pipeline, spec) -> bytes:
    """skl2onnx's stock converter for histogram gradient boosting (float32, as it takes it), which reads categorical
    splits as thresholds and knows nothing of the estimator's own re-encoding of categories."""
    from skl2onnx import convert_sklearn
    from skl2onnx.shape_calculators.imputer import calculate_sklearn_imputer_output_shapes
    from skl2onnx.sklapi import CastTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline

    from driftloop.fastpath.convert import OPSET, _convert_imputer, input_types

    twin = convertible(pipeline, spec)
    twin = Pipeline([twin.steps[0], ("float32", CastTransformer().fit(np.zeros((1, 1)))), twin.steps[1]])
    graph = convert_sklearn(twin, initial_types=input_types(spec), target_opset={"": OPSET, "ai.onnx.ml": 3},
                            options={type(twin.steps[-1][1]): {"zipmap": False}},
                            custom_conversion_functions={SimpleImputer: _convert_imputer},
                            custom_shape_calculators={SimpleImputer: calculate_sklearn_imputer_output_shapes})
    return graph.SerializeToString()


@pytest.mark.parametrize(("estimator", "convert"), [("logistic_regression", _tampered_scale),
                                                    ("gradient_boosting", _skl2onnx_own_converter)])
def test_a_compiled_form_that_disagrees_is_refused_with_its_figures(estimator, convert, trained, validated) -> None:
    graph, record = compile_fast_path(trained[estimator].model, validated.spec, _checked(trained[estimator]),
                                      convert=convert)
    assert graph is None and record.status == REFUSED and record.file is None
    assert record.reason.startswith("disagrees with the Pipeline: max |dp|")
    assert record.max_abs_diff > TOLERANCE and record.rows == sum(record.rows_checked.values())


def test_a_model_that_does_not_compile_is_refused_with_the_reason(validated) -> None:
    calibrated = train_model(validated.frame, validated.spec, "logistic_regression", seed=1, calibration="sigmoid")
    graph, record = compile_fast_path(calibrated.model, validated.spec, _checked(calibrated))
    assert graph is None and record.status == REFUSED
    assert record.reason == "not compiled: calibrated models (CalibratedClassifierCV) are not compiled"


def test_a_graph_not_checked_on_both_the_holdout_and_the_reference_sample_is_refused(trained, validated) -> None:
    result = trained["logistic_regression"]
    graph, record = compile_fast_path(result.model, validated.spec,
                                      {"holdout": None, "reference_sample": _checked(result)["reference_sample"]})
    assert graph is None and record.status == REFUSED
    assert record.reason == "not checked: no holdout rows to check the compiled form against"


def test_histogram_gradient_boosting_keeps_the_encoders_shared_code_for_rare_categories(validated) -> None:
    """Over 250 categories in a column: the Pipeline's encoder gives the rare ones one shared code, and the graph
    must too (skl2onnx's own ordinal converter loses the grouping on a multi-column input)."""
    frame = validated.frame.copy()
    frame["region"] = [f"r{x}" for x in np.random.default_rng(0).integers(0, 600, len(frame))]
    result = train_model(frame, validated.spec, "gradient_boosting", seed=1)
    encoder = result.model.named_steps["preprocess"].named_transformers_["categorical"].steps[-1][1]
    rare = {c for group in encoder.infrequent_categories_ if group is not None for c in group}
    assert result.holdout_frame["region"].isin(rare).sum() > 20  # the check sees rows with a shared code
    graph, record = compile_fast_path(result.model, validated.spec, _checked(result))
    assert record.status == ACCEPTED, record.reason
    assert record.max_abs_diff <= TOLERANCE and record.label_disagreements == 0


TASK_ESTIMATORS = [(MULTICLASS, name) for name in ("logistic_regression", "random_forest", "gradient_boosting",
                                                   "xgboost")] + \
                  [(REGRESSION, name) for name in ("ridge", "random_forest", "gradient_boosting", "xgboost")]


@pytest.mark.parametrize(("task", "estimator"), TASK_ESTIMATORS)
def test_multiclass_and_regression_graphs_are_accepted_and_answer_what_the_pipeline_answers(task, estimator) -> None:
    model = trained_for_task(task, estimator)
    spec, pipeline = model.spec, model.model
    rows = _served_rows(task_frame(task, 400, seed=12), spec)
    graph, record = compile_fast_path(pipeline, spec, model.checked_rows())
    assert record.status == ACCEPTED, record.reason
    scorer = OnnxScorer(graph, spec)
    if task == MULTICLASS:  # every class's probability, in the spec's order, and the same labels
        assert record.max_abs_diff <= TOLERANCE and record.label_disagreements == 0 and record.max_rel_diff is None
        expected = pipeline.predict_proba(rows)
        assert scorer.predict_proba(rows).shape == expected.shape == (len(rows), 4)
        np.testing.assert_allclose(scorer.predict_proba(rows), expected, rtol=0, atol=TOLERANCE)
        assert scorer.predict(rows).tolist() == pipeline.predict(rows).tolist()
    else:  # the numbers, to the relative tolerance
        assert record.max_rel_diff <= RELATIVE_TOLERANCE == record.tolerance
        assert record.reason.startswith("agrees with the Pipeline: max relative |dy|")
        np.testing.assert_allclose(scorer.predict(rows), pipeline.predict(rows), rtol=RELATIVE_TOLERANCE)
        with pytest.raises(ValueError, match="regression model has no class probabilities"):
            scorer.predict_proba(rows)


@pytest.mark.parametrize(("task", "estimator"), [(MULTICLASS, "logistic_regression"), (REGRESSION, "ridge")])
def test_a_multiclass_or_regression_graph_that_disagrees_is_refused_with_its_figures(task, estimator) -> None:
    model = trained_for_task(task, estimator)
    graph, record = compile_fast_path(model.model, model.spec, model.checked_rows(), convert=_tampered_scale)
    assert graph is None and record.status == REFUSED
    if task == MULTICLASS:
        assert record.reason.startswith("disagrees with the Pipeline: max |dp|") and record.max_abs_diff > TOLERANCE
    else:
        assert record.reason.startswith("disagrees with the Pipeline: max relative |dy|")
        assert record.max_rel_diff > RELATIVE_TOLERANCE
