"""What a closed window is compared with, and the comparison itself.

The reference is the serving version's own: its spec, the sample of its training data stored in the
registry (``reference_sample.parquet``) and that sample scored by the version's model (for prediction
drift), plus its holdout accuracy (the bar realised quality is held to). Model files are verified
against the registry's checksums before they are loaded, as in serving.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass

import pandas as pd

from driftloop.data import DatasetSpec, coerce_to_spec
from driftloop.drift import DriftConfig, check_drift, compare_column
from driftloop.errors import DriftloopError
from driftloop.monitor.labels import normalise_label
from driftloop.monitor.windows import WindowRecord
from driftloop.registry import ModelRegistry
from driftloop.serving.versions import ServedVersion

PREDICTION = "prediction"


@dataclass(frozen=True)
class Reference:
    """One registry version's reference for drift and quality."""

    model: str
    version: int
    spec: DatasetSpec
    sample: pd.DataFrame  # features, plus the model's predictions (class values) in PREDICTION
    accuracy: float | None

    @classmethod
    def load(cls, registry: ModelRegistry, model: str, version: int) -> Reference:
        served = ServedVersion.load(registry, model, version)
        sample = coerce_to_spec(pd.read_parquet(io.BytesIO(registry.read_file(model, version,
                                                                                "reference_sample.parquet"))),
                                served.spec)
        sample = sample[served.spec.feature_names].copy()
        sample[PREDICTION] = class_values(served.predict(sample), served.spec)
        accuracy = expected_accuracy(registry, model, version)
        return cls(model, version, served.spec, sample, accuracy)


def expected_accuracy(registry: ModelRegistry, model: str, version: int) -> float | None:
    """The accuracy a version's realised quality is held to: for a drift retrain, what it scored on the recent rows
    its gate judged it on (the world it serves; its holdout is drawn from the old one), else its holdout accuracy."""
    try:
        decision = json.loads(registry.read_file(model, version, "evaluation.json")).get("decision") or {}
    except (DriftloopError, ValueError):  # a version from before evaluation.json, or a damaged one: the holdout's
        decision = {}
    recent = (decision.get("recent_candidate") or {}).get("accuracy")
    accuracy = recent if recent is not None else registry.get_version(model, version).metrics.get("accuracy")
    return None if accuracy is None else float(accuracy)


def class_values(predictions, spec: DatasetSpec) -> list[str]:
    """Predicted class indices as the label values they stand for (normalised text, as labels are)."""
    classes = [normalise_label(c) for c in spec.target_classes]
    out = []
    for p in predictions:
        label = normalise_label(p)
        index = int(label) if label.isdigit() else None
        out.append(classes[index] if classes and index is not None and index < len(classes) else label)
    return out


def analyse(record: WindowRecord, rows: pd.DataFrame, reference: Reference, config: DriftConfig) -> None:
    """Fills the window's drift verdict: per-feature scores, dataset drift and prediction drift."""
    result = check_drift(reference.sample, rows, reference.spec, config)
    record.drift_share, record.dataset_drift = result.drift_share, result.dataset_drift
    record.drifted_features = result.drifted_features
    record.feature_scores = {f.column: f.score for f in result.features}
    record.feature_tests = [asdict(f) for f in result.features]
    record.drift_threshold, record.reference_rows = config.drift_share, result.n_reference
    current = pd.Series(record.predictions, name=PREDICTION)
    prediction = compare_column(reference.sample[PREDICTION], current, "categorical", config)
    record.prediction_drift = {"method": prediction.method, "score": prediction.score,
                               "threshold": prediction.threshold, "drifted": prediction.drifted}
    record.reference_accuracy = reference.accuracy
