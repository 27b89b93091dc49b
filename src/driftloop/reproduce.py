"""Retrain a registered version from its lineage and say whether the result matches."""

from __future__ import annotations

import math
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from driftloop.data import DatasetSpec, load_table
from driftloop.evaluation import evaluate_model
from driftloop.registry import ModelRegistry
from driftloop.training import load_model, model_output, train_model
from driftloop.validation import validate_table

METRIC_TOLERANCE = 1e-9
PREDICTION_TOLERANCE = 1e-9


@dataclass
class Reproduction:
    """The outcome of a reproduction attempt."""

    name: str
    version: int
    data_uri: str
    data_matches: bool
    metrics: dict[str, tuple[float, float]] = field(default_factory=dict)  # name -> (registered, reproduced)
    max_prediction_diff: float | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def reproduced(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return asdict(self) | {"reproduced": self.reproduced}


def reproduce(registry: ModelRegistry, name: str, version: int) -> Reproduction:
    """Reloads the training data named in the lineage, retrains with the recorded spec, estimator,
    parameters and seed, and compares holdout metrics and predictions with the registered model."""
    mv = registry.get_version(name, version)
    lineage = mv.lineage
    data_uri = lineage.get("data_uri", "")
    result = Reproduction(name, version, data_uri, data_matches=False)
    frame, sha = load_table(data_uri)
    result.data_matches = sha == lineage.get("data_sha256")
    if not result.data_matches:
        result.problems.append(f"the data at {data_uri} changed since training (sha256 differs)")
    spec = DatasetSpec.from_json(registry.read_file(name, version, "spec.json").decode())
    clean, _, spec = validate_table(frame, spec)
    trained = train_model(clean, spec, lineage.get("estimator", "logistic_regression"), lineage.get("params") or {},
                          float(lineage.get("test_size", 0.25)), int(lineage.get("seed", 42)))
    evaluation = evaluate_model(trained.model, trained.holdout_frame, spec)
    for metric, registered in mv.metrics.items():
        again = evaluation.metrics.get(metric)
        result.metrics[metric] = (registered, again)
        if again is None or not math.isclose(registered, again, rel_tol=0, abs_tol=METRIC_TOLERANCE):
            result.problems.append(f"{metric}: registered {registered} but reproduced {again}")
    with tempfile.TemporaryDirectory() as tmp:
        original = load_model(registry.fetch_model(name, version, Path(tmp)))
    diff = np.abs(model_output(original, trained.holdout_frame, spec)
                  - model_output(trained.model, trained.holdout_frame, spec))
    result.max_prediction_diff = float(diff.max()) if len(diff) else 0.0
    if result.max_prediction_diff > PREDICTION_TOLERANCE:
        result.problems.append(f"predictions differ by up to {result.max_prediction_diff:.3g}")
    return result
