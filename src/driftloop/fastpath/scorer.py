"""The fast scoring path: typed feature rows scored by a compiled graph in onnxruntime."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from driftloop.data import MISSING_CATEGORY, DatasetSpec

PROBABILITIES = "probabilities"  # a classifier graph's output of each class's probability (skl2onnx's name)
VALUES = "variable"  # a regressor graph's output of the predicted numbers, [n, 1] (skl2onnx's name)
NUMBERS, CATEGORIES = "numbers", "categories"


def graph_inputs(spec: DatasetSpec) -> list[tuple[str, list[str]]]:
    """The graph's inputs and the features each holds, in column order: ``numbers`` ([n, k] double: the numeric
    features, then the boolean ones, each in spec order) and ``categories`` ([n, c] text). Two inputs, not one
    per feature: onnxruntime's cost per call grows with the number of inputs."""
    numbers = spec.names_of("numeric") + spec.names_of("boolean")
    categories = spec.names_of("categorical")
    return [(name, features) for name, features in ((NUMBERS, numbers), (CATEGORIES, categories)) if features]


class OnnxScorer:
    """Scores the columns of typed rows (a DataFrame, or a dict of feature name → values) with one onnxruntime
    session with one thread per call: a model server scores one batch at a time on its worker (and small requests
    on its event loop), and more threads only spin.

    A classification graph answers what the Pipeline's ``predict_proba`` and ``predict`` answer (class indices
    into the spec's classes); a regression graph what its ``predict`` answers.

    The input form is :mod:`driftloop.fastpath.convert`'s: numbers and booleans as double (None → NaN, as
    ``numpy.asarray`` makes them, like the Pipeline's boolean step), categories as text with missing ones
    as the sentinel the Pipeline imputes.
    """

    def __init__(self, graph: bytes, spec: DatasetSpec) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        self._session = onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        self._inputs = graph_inputs(spec)
        names = [i.name for i in self._session.get_inputs()]
        if names != [name for name, _ in self._inputs]:
            raise ValueError(f"the graph's inputs {names} are not the fast path's {[n for n, _ in self._inputs]}")
        self.classifier = spec.is_classification
        self._output = PROBABILITIES if self.classifier else VALUES
        outputs = [o.name for o in self._session.get_outputs()]
        if self._output not in outputs:
            raise ValueError(f"the graph of a {spec.task} model has no output '{self._output}' (it has "
                             f"{', '.join(outputs)})")

    def _run(self, columns: Mapping[str, Sequence]) -> np.ndarray:
        feeds = {name: _categories(columns, features) if name == CATEGORIES else _numbers(columns, features)
                 for name, features in self._inputs}
        return self._session.run([self._output], feeds)[0]

    def predict_proba(self, columns: Mapping[str, Sequence]) -> np.ndarray:
        """Each class's probability per row, [n, k] in the spec's class order (what ``Pipeline.predict_proba``
        returns); raises ValueError for a regression graph."""
        if not self.classifier:
            raise ValueError("a regression model has no class probabilities")
        return self._run(columns)

    def predict(self, columns: Mapping[str, Sequence]) -> np.ndarray:
        """Class indices per row (int64), by scikit-learn's rule: the likelier class, the first on a tie; or a
        regression's predicted numbers (float64, as the Pipeline gives them)."""
        if self.classifier:
            return np.argmax(self._run(columns), axis=1)
        return np.asarray(self._run(columns), dtype=np.float64).reshape(-1)


def _numbers(columns: Mapping[str, Sequence], features: list[str]) -> np.ndarray:
    return np.stack([np.asarray(columns[name], dtype=np.float64) for name in features], axis=1)


def _categories(columns: Mapping[str, Sequence], features: list[str]) -> np.ndarray:
    return np.array([[v if isinstance(v, str) else MISSING_CATEGORY if _is_missing(v) else str(v)
                      for v in columns[name]] for name in features], dtype=object).T


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or type(value).__name__ == "NAType"
