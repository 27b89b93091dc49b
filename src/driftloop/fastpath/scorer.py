"""The fast scoring path: typed feature rows scored by a compiled graph in onnxruntime."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from driftloop.data import MISSING_CATEGORY, DatasetSpec

PROBABILITIES = "probabilities"  # the graph's output of both class probabilities (skl2onnx's name)


class OnnxScorer:
    """Scores the columns of typed rows (a DataFrame, or a dict of feature name → values) with one onnxruntime
    session on one thread: the scoring worker already runs one batch at a time, and more threads only spin.

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
        names = [i.name for i in self._session.get_inputs()]
        if names != spec.feature_names:
            raise ValueError(f"the graph's inputs {names} are not the spec's features {spec.feature_names}")
        self._features = [(f.name, f.kind == "categorical") for f in spec.features]

    def predict_proba(self, columns: Mapping[str, Sequence]) -> np.ndarray:
        """Both class probabilities per row, [n, 2] (what ``Pipeline.predict_proba`` returns)."""
        feeds = {name: _categories(columns[name]) if categorical
                 else np.asarray(columns[name], dtype=np.float64).reshape(-1, 1)
                 for name, categorical in self._features}
        return self._session.run([PROBABILITIES], feeds)[0]

    def predict(self, columns: Mapping[str, Sequence]) -> np.ndarray:
        """Class indices per row (int64), by scikit-learn's rule: the likelier class, the first on a tie."""
        return np.argmax(self.predict_proba(columns), axis=1)


def _categories(values: Sequence) -> np.ndarray:
    return np.array([v if isinstance(v, str) else MISSING_CATEGORY if _is_missing(v) else str(v) for v in values],
                    dtype=object).reshape(-1, 1)


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or type(value).__name__ == "NAType"
