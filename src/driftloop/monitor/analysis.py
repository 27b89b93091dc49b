"""What a closed window is compared with, and the comparison itself.

The reference is the serving version's own: its spec, the sample of its training data stored in the
registry (``reference_sample.parquet``) and that sample scored by the version's model (for prediction
drift), plus the value of the task's quality metric it is held to (accuracy, or RMSE for regression). Model
files are verified against the registry's checksums before they are loaded, as in serving.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import pandas as pd

from driftloop.data import DatasetSpec, coerce_to_spec
from driftloop.drift import DriftConfig, check_drift, compare_column
from driftloop.errors import DriftloopError
from driftloop.monitor.labels import normalise_label
from driftloop.monitor.windows import WindowRecord
from driftloop.registry import ModelRegistry
from driftloop.serving.versions import ServedVersion
from driftloop.tasks import QUALITY_METRIC, class_label

PREDICTION = "prediction"


@dataclass(frozen=True)
class Reference:
    """One registry version's reference for drift and quality."""

    model: str
    version: int
    spec: DatasetSpec
    sample: pd.DataFrame  # features, plus the model's predictions (class labels or numbers) in PREDICTION
    quality: float | None  # the value of QUALITY_METRIC[task] the version is held to

    @property
    def task(self) -> str:
        return self.spec.task

    @property
    def quality_metric(self) -> str:
        return QUALITY_METRIC[self.spec.task]

    @classmethod
    def load(cls, registry: ModelRegistry, model: str, version: int) -> Reference:
        served = ServedVersion.load(registry, model, version)
        spec = served.spec
        sample = coerce_to_spec(pd.read_parquet(io.BytesIO(registry.read_file(model, version,
                                                                                "reference_sample.parquet"))), spec)
        sample = sample[spec.feature_names].copy()
        # The Pipeline's own output (class indices by the model contract), whatever serving turns it into.
        output = served.pipeline.predict(sample)
        sample[PREDICTION] = (class_values((class_label(i, spec.target_classes) for i in output), spec)
                              if spec.is_classification else pd.Series(output, dtype=float).tolist())
        return cls(model, version, spec, sample, expected_quality(registry, model, version, QUALITY_METRIC[spec.task]))


def expected_quality(registry: ModelRegistry, model: str, version: int, metric: str) -> float | None:
    """The value of ``metric`` a version's realised quality is held to: for a drift retrain, what it scored on the
    recent rows its gate judged it on (the world it serves; its holdout is drawn from the old one), else its
    holdout's."""
    try:
        decision = json.loads(registry.read_file(model, version, "evaluation.json")).get("decision") or {}
    except (DriftloopError, ValueError):  # a version from before evaluation.json, or a damaged one: the holdout's
        decision = {}
    recent = (decision.get("recent_candidate") or {}).get(metric)
    value = recent if recent is not None else registry.get_version(model, version).metrics.get(metric)
    return None if value is None else float(value)


def class_values(predictions: Iterable, spec: DatasetSpec) -> list[str]:
    """Predicted classes as the labels they stand for (normalised text, as labels are).

    Serving answers with class labels; rows logged before it did carry class indices. A value that is one of the
    spec's labels is that label; else a whole number below the class count is an index (a legacy row of integer
    labels that are also indices, e.g. classes 1 and 2, is read as the label).
    """
    classes = [normalise_label(c) for c in spec.target_classes]
    known, seen = set(classes), {}
    out = []
    for p in predictions:
        label = normalise_label(p)
        if label not in seen:
            index = int(label) if label.isdigit() else None
            seen[label] = (label if label in known or index is None or index >= len(classes) else classes[index])
        out.append(seen[label])
    return out


def prediction_values(predictions: Iterable, spec: DatasetSpec) -> list:
    """Served predictions as the monitor compares them: class labels (:func:`class_values`) for classification,
    numbers for regression (a value that is not one is missing)."""
    if spec.is_classification:
        return class_values(predictions, spec)
    return pd.to_numeric(pd.Series(list(predictions), dtype=object), errors="coerce").astype(float).tolist()


def analyse(record: WindowRecord, rows: pd.DataFrame, reference: Reference, config: DriftConfig) -> None:
    """Fills the window's drift verdict (per-feature scores, dataset drift, prediction drift) and the quality its
    reference version is held to."""
    result = check_drift(reference.sample, rows, reference.spec, config)
    record.drift_share, record.dataset_drift = result.drift_share, result.dataset_drift
    record.drifted_features = result.drifted_features
    record.feature_scores = {f.column: f.score for f in result.features}
    record.feature_tests = [asdict(f) for f in result.features]
    record.drift_threshold, record.reference_rows = config.drift_share, result.n_reference
    # Classification: the shares of the predicted classes; regression: the predicted amounts' distribution.
    kind = "categorical" if reference.spec.is_classification else "numeric"
    current = pd.Series(record.predictions, name=PREDICTION, dtype=object if kind == "categorical" else float)
    prediction = compare_column(reference.sample[PREDICTION], current, kind, config)
    record.prediction_drift = {"method": prediction.method, "score": prediction.score,
                               "threshold": prediction.threshold, "drifted": prediction.drifted}
    record.reference_quality = reference.quality
