"""Compiling a trained driftloop Pipeline to ONNX: the graph of the fast scoring path.

The graph takes :func:`~driftloop.fastpath.scorer.graph_inputs`: the numeric and boolean features as one double
matrix (missing = NaN), the categories as one text matrix (missing = :data:`~driftloop.data.MISSING_CATEGORY`),
which is what :class:`~driftloop.fastpath.scorer.OnnxScorer` feeds it. Its steps are the Pipeline's own fitted steps,
converted by skl2onnx (XGBoost by onnxmltools), with these differences, each keeping the arithmetic the same:

- steps the input form already performs are left out: the boolean cast (``numpy.asarray`` to float) and both
  imputers of a missing category (the input sends the sentinel they would write);
- median / most-frequent imputation runs in double (``IsNaN`` + ``Where``), since ONNX-ML's ``Imputer`` takes
  only float;
- estimators that compare float32 in the Pipeline (scikit-learn's forests, XGBoost) get the same float32 cast
  in front, so their thresholds see the same numbers; the rest stays double;
- a classifier's graph outputs ``probabilities`` ([n, k], the spec's class order), a regressor's ``variable``
  ([n, 1]), the names :class:`~driftloop.fastpath.scorer.OnnxScorer` reads;
- histogram gradient boosting (classifier and regressor) gets :mod:`driftloop.fastpath.hist_gradient_boosting`'s
  converter, which keeps its categorical splits (skl2onnx's reads them as numeric thresholds);
- its ordinal encoder gets driftloop's converter too: one lookup per column of each category's code, taken from
  the fitted encoder itself, so categories it groups as infrequent (more than 250 in a column) share their code
  (skl2onnx 1.20's converter looks a column's grouping up by input, not by column, and loses it).

Nothing here decides that the graph is right: :mod:`driftloop.fastpath.agreement` checks it against the
Pipeline before it is accepted.
"""

from __future__ import annotations

import copy

import numpy as np

from driftloop.data import MISSING_CATEGORY, DatasetSpec
from driftloop.errors import DriftloopError
from driftloop.fastpath.scorer import CATEGORIES, graph_inputs

OPSET = 17  # the default ONNX domain; ai.onnx.ml is 3, or 5 where a TreeEnsemble is written
# Estimators that compare float32(x) with their thresholds.
FLOAT32_ESTIMATORS = ("RandomForestClassifier", "RandomForestRegressor", "XGBClassifier", "XGBRegressor")


class NotCompilable(DriftloopError):
    """The model has a form the fast path does not compile; the message says which."""


def to_onnx(pipeline, spec: DatasetSpec) -> bytes:
    """The ONNX graph (serialized) that scores ``pipeline``'s rows from per-feature inputs.

    Raises:
        NotCompilable: the model is not a driftloop preprocess + estimator Pipeline, or a converter refused it.
    """
    from skl2onnx import convert_sklearn
    from skl2onnx.shape_calculators.imputer import calculate_sklearn_imputer_output_shapes
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import OrdinalEncoder

    from driftloop.fastpath import hist_gradient_boosting

    twin = convertible(pipeline, spec)
    estimator = twin.steps[-1][1]
    native_trees = isinstance(estimator, (HistGradientBoostingClassifier, HistGradientBoostingRegressor))
    if spec.is_classification != hasattr(estimator, "predict_proba"):
        raise NotCompilable(f"a {type(estimator).__name__} does not serve a {spec.task} spec")
    _register_xgboost()
    try:
        graph = convert_sklearn(
            twin[:-1] if native_trees else twin,  # histogram gradient boosting is appended below
            initial_types=input_types(spec), target_opset={"": OPSET, "ai.onnx.ml": 3},
            # a classifier's probabilities as one [n, k] tensor, not a list of maps (regressors have no such option)
            options={type(estimator): {"zipmap": False}} if spec.is_classification and not native_trees else {},
            custom_conversion_functions={SimpleImputer: _convert_imputer, OrdinalEncoder: _convert_ordinal_encoder},
            custom_shape_calculators={SimpleImputer: calculate_sklearn_imputer_output_shapes},
        )
        if native_trees:
            (hist_gradient_boosting.append_classifier if spec.is_classification
             else hist_gradient_boosting.append_regressor)(graph, estimator)
    except (RuntimeError, ValueError, TypeError, NotImplementedError, KeyError, AttributeError, NameError) as exc:
        raise NotCompilable(f"{type(exc).__name__}: {first_line(exc)}") from None
    graph.doc_string = f"driftloop fast path of a {type(estimator).__name__} Pipeline"
    return graph.SerializeToString()


def input_types(spec: DatasetSpec) -> list:
    """skl2onnx's types of :func:`~driftloop.fastpath.scorer.graph_inputs`."""
    from skl2onnx.common.data_types import DoubleTensorType, StringTensorType

    return [(name, (StringTensorType if name == CATEGORIES else DoubleTensorType)([None, len(features)]))
            for name, features in graph_inputs(spec)]


def convertible(pipeline, spec: DatasetSpec):
    """A Pipeline that shares ``pipeline``'s fitted steps, without the ones the input form performs, with its
    columns named by their place in the graph's inputs, and with the float32 cast of estimators that compare in
    float32. ``pipeline`` itself is not changed."""
    from skl2onnx.sklapi import CastTransformer
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    if type(pipeline).__name__ == "CalibratedClassifierCV":
        raise NotCompilable("calibrated models (CalibratedClassifierCV) are not compiled")
    names = [name for name, _ in getattr(pipeline, "steps", [])]
    if names != ["preprocess", "model"] or not isinstance(pipeline.steps[0][1], ColumnTransformer):
        raise NotCompilable(f"not a driftloop preprocess + model Pipeline ({type(pipeline).__name__} {names})")
    # skl2onnx numbers the columns of several inputs one after the other
    place = {feature: i for i, feature in enumerate(f for _, features in graph_inputs(spec) for f in features)}
    preprocess = copy.copy(pipeline.named_steps["preprocess"])  # shallow: the fitted steps are shared, unchanged
    try:
        preprocess.transformers_ = [(name, _without_input_steps(name, step), [place[c] for c in columns])
                                    for name, step, columns in preprocess.transformers_]
    except (KeyError, TypeError):
        raise NotCompilable("the Pipeline's columns are not the spec's features") from None
    estimator = pipeline.named_steps["model"]
    steps = [("preprocess", preprocess)]
    if type(estimator).__name__ in FLOAT32_ESTIMATORS:
        steps.append(("float32", CastTransformer(dtype=np.float32).fit(np.zeros((1, 1)))))
    return Pipeline([*steps, ("model", estimator)])


def _without_input_steps(name: str, step):
    """A ColumnTransformer branch without the steps the fast path's input form performs (checked, not assumed)."""
    if name not in ("categorical", "boolean"):
        return step
    kept = list(getattr(step, "steps", []))
    if name == "categorical":
        imputers = kept[:2]
        if len(kept) != 3 or any(getattr(s, "fill_value", None) != MISSING_CATEGORY for _, s in imputers):
            raise NotCompilable("the categorical branch is not (impute NaN, impute None, encode)")
        return kept[2][1]
    if len(kept) != 2 or getattr(kept[0][1], "func", None) is not np.asarray:
        raise NotCompilable("the boolean branch is not (numpy.asarray to float, impute)")
    return kept[1][1]


def _convert_imputer(scope, operator, container) -> None:
    """SimpleImputer on doubles as ``Where(IsNaN(x), statistics, x)``; other inputs go to skl2onnx's converter."""
    from skl2onnx.common.data_types import DoubleTensorType
    from skl2onnx.operator_converters.imputer_op import convert_sklearn_imputer

    imputer = operator.raw_operator
    if not isinstance(operator.inputs[0].type, DoubleTensorType):
        return convert_sklearn_imputer(scope, operator, container)
    if not (isinstance(imputer.missing_values, float) and np.isnan(imputer.missing_values)):
        raise NotCompilable(f"SimpleImputer(missing_values={imputer.missing_values!r}) on numbers")
    source = operator.inputs[0].onnx_name
    fill, is_nan = scope.get_unique_variable_name("fill"), scope.get_unique_variable_name("is_nan")
    statistics = np.asarray(imputer.statistics_, dtype=np.float64)
    container.add_initializer(fill, 11, [1, len(statistics)], statistics.tolist())
    container.add_node("IsNaN", [source], [is_nan], name=scope.get_unique_operator_name("IsNaN"))
    container.add_node("Where", [is_nan, fill, source], [operator.outputs[0].onnx_name],
                       name=scope.get_unique_operator_name("Where"))
    return None


def _convert_ordinal_encoder(scope, operator, container) -> None:
    """OrdinalEncoder on the one text input as a ``LabelEncoder`` per column, category → the code the fitted
    encoder gives it (an infrequent one: the shared code), anything else → its ``unknown_value``; float, as
    skl2onnx's shape calculator declares it."""
    from onnx import TensorProto
    from skl2onnx.common.data_types import StringTensorType

    encoder = operator.raw_operator
    source = operator.inputs[0]
    if len(operator.inputs) != 1 or not isinstance(source.type, StringTensorType) \
            or encoder.handle_unknown != "use_encoded_value":
        raise NotCompilable("the ordinal encoder does not take the one text input with unknown categories encoded")
    columns = []
    for j, codes in enumerate(_ordinal_codes(encoder)):
        categories = encoder.categories_[j]
        if not all(isinstance(c, str) for c in categories):
            raise NotCompilable("the ordinal encoder has a category that is not text")
        index, column = scope.get_unique_variable_name("column_index"), scope.get_unique_variable_name("column")
        coded, shaped = scope.get_unique_variable_name("coded"), scope.get_unique_variable_name("coded_column")
        shape = scope.get_unique_variable_name("column_shape")
        container.add_initializer(index, TensorProto.INT64, [], [j])
        container.add_initializer(shape, TensorProto.INT64, [2], [-1, 1])
        container.add_node("ArrayFeatureExtractor", [source.onnx_name, index], [column], op_domain="ai.onnx.ml",
                           name=scope.get_unique_operator_name("ArrayFeatureExtractor"))
        container.add_node("LabelEncoder", [column], [coded], op_domain="ai.onnx.ml", op_version=2,
                           name=scope.get_unique_operator_name("LabelEncoder"),
                           keys_strings=[c.encode("utf-8") for c in categories],
                           values_floats=[float(c) for c in codes], default_float=float(encoder.unknown_value))
        container.add_node("Reshape", [coded, shape], [shaped], name=scope.get_unique_operator_name("Reshape"))
        columns.append(shaped)
    container.add_node("Concat", columns, [operator.outputs[0].onnx_name], axis=1,
                       name=scope.get_unique_operator_name("Concat"))


def _ordinal_codes(encoder) -> list[np.ndarray]:
    """Per column, the code the fitted encoder gives each of its categories, asked of the encoder itself."""
    import pandas as pd

    firsts = [categories[0] for categories in encoder.categories_]
    codes = []
    for j, categories in enumerate(encoder.categories_):
        rows = np.array([firsts] * len(categories), dtype=object)
        rows[:, j] = categories
        names = getattr(encoder, "feature_names_in_", None)
        codes.append(np.asarray(encoder.transform(pd.DataFrame(rows, columns=names) if names is not None else rows),
                                dtype=np.float64)[:, j])
    return codes


def _register_xgboost() -> None:
    """Teaches skl2onnx XGBoost's converters (onnxmltools'), as onnxmltools documents; a no-op without XGBoost."""
    try:
        from xgboost import XGBClassifier, XGBRegressor
    except ImportError:
        return
    from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    update_registered_converter(XGBClassifier, "XGBoostXGBClassifier", calculate_linear_classifier_output_shapes,
                                convert_xgboost, options={"nocl": [True, False], "zipmap": [True, False, "columns"]})
    update_registered_converter(XGBRegressor, "XGBoostXGBRegressor", calculate_linear_regressor_output_shapes,
                                convert_xgboost)


def first_line(exc: Exception) -> str:
    """The first line of an exception's message, at most 300 characters."""
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else ""
