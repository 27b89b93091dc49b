"""ONNX for scikit-learn's histogram gradient boosting — binary, multi-class and squared-error regression —
categorical splits included.

skl2onnx's own converter writes every split as ``x <= threshold``, so a split on a native categorical feature
(a set of category codes going left) becomes a meaningless threshold. This one writes the ensemble as ONNX-ML's
``TreeEnsemble`` (ai.onnx.ml opset 5), which has set membership, in double precision as scikit-learn predicts:

- numeric split: ``x <= num_threshold`` goes left; NaN goes where ``missing_go_to_left`` says;
- categorical split: scikit-learn sends the codes in the node's left bitset left, the other known codes
  right, and NaN and unknown codes the missing way. Membership is tested on the set that is *not* the missing
  way (the right set when missing goes left, the left set otherwise), so unknown codes and NaN, which are in
  no set, fall to the missing side with no list of every possible unknown code;
- raw score = baseline + the sum of the leaves, one score per tree of an iteration (one, or one per class);
- then the loss's inverse link, as scikit-learn's ``predict_proba`` / ``predict`` apply it: a binary model's
  probability = sigmoid(score), a multi-class model's = softmax(scores), label = argmax; a squared-error
  regression's prediction is the score itself.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from driftloop.fastpath.scorer import PROBABILITIES, VALUES

BRANCH_LEQ, BRANCH_MEMBER = 0, 6  # TreeEnsemble's nodes_modes
AGGREGATE_SUM, POST_TRANSFORM_NONE = 1, 0
ML_OPSET = 5
LABEL = "label"  # a classifier graph's output of class indices (skl2onnx's name)
BINARY_LOSS, MULTICLASS_LOSS, SQUARED_ERROR = "HalfBinomialLoss", "HalfMultinomialLoss", "HalfSquaredError"


class UnsupportedModel(ValueError):
    """The estimator has a form this converter does not write (another loss)."""


def append_classifier(graph, model) -> None:
    """Appends ``model`` (a fitted HistGradientBoostingClassifier) to ``graph``, whose one output is the
    [n, features] double matrix the model takes; the graph then outputs ``label`` (int64) and ``probabilities``
    ([n, k] double, one column per class), as skl2onnx's classifiers do."""
    loss = type(model._loss).__name__
    if loss not in (BINARY_LOSS, MULTICLASS_LOSS):
        raise UnsupportedModel(f"HistGradientBoostingClassifier with {loss} is not compiled")
    classes = len(model.classes_)
    nodes = _append_scores(graph, model)
    if loss == BINARY_LOSS:
        graph.graph.initializer.append(numpy_helper.from_array(np.array([[1.0]]), "hgb_one"))
        nodes += [
            helper.make_node("Sigmoid", ["hgb_score"], ["hgb_p1"], name="hgb_sigmoid"),
            helper.make_node("Sub", ["hgb_one", "hgb_p1"], ["hgb_p0"], name="hgb_complement"),
            helper.make_node("Concat", ["hgb_p0", "hgb_p1"], [PROBABILITIES], axis=1, name="hgb_probabilities"),
        ]
    else:
        nodes.append(helper.make_node("Softmax", ["hgb_score"], [PROBABILITIES], axis=1, name="hgb_softmax"))
    nodes.append(helper.make_node("ArgMax", [PROBABILITIES], [LABEL], axis=1, keepdims=0, name="hgb_label"))
    _set_outputs(graph, nodes, [helper.make_tensor_value_info(LABEL, TensorProto.INT64, [None]),
                                helper.make_tensor_value_info(PROBABILITIES, TensorProto.DOUBLE, [None, classes])])


def append_regressor(graph, model) -> None:
    """Appends ``model`` (a fitted squared-error HistGradientBoostingRegressor) to ``graph`` as
    :func:`append_classifier` does; the graph then outputs ``variable`` ([n, 1] double), as skl2onnx's
    regressors do."""
    loss = type(model._loss).__name__
    if loss != SQUARED_ERROR:  # other losses have other inverse links (exp for poisson and gamma), not written
        raise UnsupportedModel(f"HistGradientBoostingRegressor with {loss} is not compiled")
    nodes = _append_scores(graph, model)
    nodes.append(helper.make_node("Identity", ["hgb_score"], [VALUES], name="hgb_prediction"))
    _set_outputs(graph, nodes, [helper.make_tensor_value_info(VALUES, TensorProto.DOUBLE, [None, 1])])


def _append_scores(graph, model) -> list:
    """The baseline and the nodes up to ``hgb_score``, the raw scores [n, trees per iteration]."""
    for name in (VALUES, PROBABILITIES, LABEL):  # names skl2onnx may have given the preprocessing's tensors
        _rename(graph, name, f"hgb_input_{name}")
    (features,) = [output.name for output in graph.graph.output]
    baseline = np.asarray(model._baseline_prediction, dtype=np.float64).reshape(1, -1)
    graph.graph.initializer.append(numpy_helper.from_array(baseline, "hgb_baseline"))
    return [
        helper.make_node("TreeEnsemble", [features], ["hgb_raw"], domain="ai.onnx.ml", name="hgb_trees",
                         **_ensemble_attributes(model)),
        helper.make_node("Add", ["hgb_raw", "hgb_baseline"], ["hgb_score"], name="hgb_add_baseline"),
    ]


def _rename(graph, old: str, new: str) -> None:
    """Renames the tensor ``old`` wherever the graph makes, takes or outputs it."""
    for node in graph.graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]
    for output in graph.graph.output:
        if output.name == old:
            output.name = new


def _set_outputs(graph, nodes: list, outputs: list) -> None:
    graph.graph.node.extend(nodes)
    del graph.graph.output[:]
    graph.graph.output.extend(outputs)
    for opset in graph.opset_import:
        if opset.domain == "ai.onnx.ml":
            opset.version = ML_OPSET
            break
    else:
        graph.opset_import.append(helper.make_opsetid("ai.onnx.ml", ML_OPSET))


def _ensemble_attributes(model) -> dict:
    known, feature_to_bitset = model._bin_mapper.make_known_categories_bitsets()
    column_of, category_value = _input_space(model)
    nodes: dict[str, list] = {k: [] for k in ("feature", "split", "mode", "true", "true_leaf", "false", "false_leaf",
                                              "missing_true")}
    membership: list[float] = []
    leaf_weights: list[float] = []
    leaf_targets: list[int] = []
    roots: list[int] = []
    # An iteration holds one tree per target: one for a binary classifier or a regressor, one per class else.
    for target, predictor in ((t, p) for predictors in model._predictors for t, p in enumerate(predictors)):
        tree = predictor.nodes
        left_sets = predictor.raw_left_cat_bitsets
        interior = [i for i in range(len(tree)) if not tree[i]["is_leaf"]]
        leaves = [i for i in range(len(tree)) if tree[i]["is_leaf"]]
        # Where each node of this tree lands: (index among the interior nodes, 0) or (index among the leaves, 1).
        ref = {i: (len(nodes["feature"]) + k, 0) for k, i in enumerate(interior)}
        ref.update({i: (len(leaf_weights) + k, 1) for k, i in enumerate(leaves)})
        leaf_weights += [float(tree[i]["value"]) for i in leaves]
        leaf_targets += [target] * len(leaves)
        if not interior:  # a tree that is one leaf: a split whose both sides lead to it
            roots.append(len(nodes["feature"]))
            _add(nodes, 0, 0.0, BRANCH_LEQ, ref[0], ref[0], False)
            continue
        roots.append(ref[0][0])
        for i in interior:
            node = tree[i]
            left, right = ref[int(node["left"])], ref[int(node["right"])]
            missing_left = bool(node["missing_go_to_left"])
            feature = int(node["feature_idx"])
            if not node["is_categorical"]:
                _add(nodes, column_of[feature], float(node["num_threshold"]), BRANCH_LEQ, left, right, missing_left)
                continue
            left_codes = _codes(left_sets[node["bitset_idx"]])
            if missing_left:  # test "goes right"; NaN and unknown codes are in neither set and go left
                codes, true, false = _codes(known[feature_to_bitset[feature]]) - left_codes, right, left
            else:
                codes, true, false = left_codes, left, right
            membership += sorted(category_value[feature][c] for c in codes) + [np.nan]
            _add(nodes, column_of[feature], 0.0, BRANCH_MEMBER, true, false, False)
    attributes = {
        "n_targets": int(model.n_trees_per_iteration_),
        "aggregate_function": AGGREGATE_SUM,
        "post_transform": POST_TRANSFORM_NONE,
        "tree_roots": roots,
        "nodes_featureids": nodes["feature"],
        "nodes_splits": numpy_helper.from_array(np.asarray(nodes["split"], dtype=np.float64)),
        "nodes_modes": numpy_helper.from_array(np.asarray(nodes["mode"], dtype=np.uint8)),
        "nodes_truenodeids": nodes["true"],
        "nodes_trueleafs": nodes["true_leaf"],
        "nodes_falsenodeids": nodes["false"],
        "nodes_falseleafs": nodes["false_leaf"],
        "nodes_missing_value_tracks_true": nodes["missing_true"],
        "leaf_targetids": leaf_targets,
        "leaf_weights": numpy_helper.from_array(np.asarray(leaf_weights, dtype=np.float64)),
    }
    if membership:  # one NaN-terminated set per membership split, in node order
        attributes["membership_values"] = numpy_helper.from_array(np.asarray(membership, dtype=np.float64))
    return attributes


def _input_space(model) -> tuple[list[int], dict[int, list[float]]]:
    """Where the trees' features and category codes come from in the estimator's own input.

    With categorical features the estimator first runs its private preprocessor (a ColumnTransformer that puts
    the categorical columns first and re-encodes their values 0…k-1, unknown values as NaN); its trees split on
    that. Returns each tree feature's column in the input, and per categorical tree feature the input value
    each code stands for.
    """
    preprocessor = getattr(model, "_preprocessor", None)
    n_features = int(model.n_features_in_)
    if preprocessor is None:
        return list(range(n_features)), {}
    column_of: list[int] = []
    category_value: dict[int, list[float]] = {}
    for name, transformer, columns in preprocessor.transformers_:
        taken = np.arange(n_features)[columns].tolist()
        if name == "remainder" and not taken:
            continue
        if name == "encoder":
            for k, categories in enumerate(transformer.categories_):
                category_value[len(column_of) + k] = [float(v) for v in categories if not np.isnan(v)]
        elif name != "numerical":
            raise UnsupportedModel(f"unexpected step '{name}' in the estimator's own preprocessing")
        column_of += taken
    if sorted(column_of) != list(range(n_features)):
        raise UnsupportedModel("the estimator's own preprocessing does not take every feature once")
    return column_of, category_value


def _add(nodes: dict[str, list], feature: int, split: float, mode: int, true: tuple[int, int],
         false: tuple[int, int], missing_true: bool) -> None:
    for key, value in (("feature", feature), ("split", split), ("mode", mode), ("true", true[0]),
                       ("true_leaf", true[1]), ("false", false[0]), ("false_leaf", false[1]),
                       ("missing_true", int(missing_true))):
        nodes[key].append(value)


def _codes(bitset: np.ndarray) -> set[int]:
    """The category codes a scikit-learn bitset (8 × uint32, bit ``c % 32`` of word ``c // 32``) holds."""
    return {32 * word + bit for word, value in enumerate(bitset.tolist()) for bit in range(32) if (value >> bit) & 1}
