"""A compact statistical profile of a reference table (normally the training data).

Validation uses it to judge new data (ranges, category sets, null rates); the drift monitor uses it,
with the reference sample stored beside it, as the baseline. It is JSON so it lives in the registry.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from driftloop.data import DatasetSpec
from driftloop.tasks import BINARY

MAX_CATEGORIES = 200


@dataclass
class FeatureProfile:
    """Summary of one feature column."""

    name: str
    kind: str
    null_rate: float
    minimum: float | None = None
    maximum: float | None = None
    mean: float | None = None
    std: float | None = None
    quantiles: dict[str, float] = field(default_factory=dict)
    categories: dict[str, float] = field(default_factory=dict)  # value -> share among non-null


@dataclass
class ReferenceProfile:
    """Per-feature summaries plus the row count and label balance of the reference table."""

    n_rows: int
    features: dict[str, FeatureProfile]
    positive_rate: float | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ReferenceProfile:
        data = json.loads(text)
        features = {name: FeatureProfile(**fp) for name, fp in data["features"].items()}
        return cls(n_rows=data["n_rows"], features=features, positive_rate=data.get("positive_rate"))


def build_profile(frame: pd.DataFrame, spec: DatasetSpec) -> ReferenceProfile:
    """Profiles ``frame`` (normally coerced to ``spec``; a table that failed validation is profiled as far as it
    goes: missing columns are left out, text in a numeric column counts as missing)."""
    features: dict[str, FeatureProfile] = {}
    for feature in spec.features:
        if feature.name not in frame.columns:
            continue
        column = frame[feature.name]
        if feature.kind == "numeric":
            column = pd.to_numeric(column, errors="coerce")
        null_rate = float(column.isna().mean())
        values = column.dropna()
        fp = FeatureProfile(feature.name, feature.kind, round(null_rate, 6))
        if feature.kind == "numeric" and not values.empty:
            numbers = values.astype(float).to_numpy()
            fp.minimum, fp.maximum = float(numbers.min()), float(numbers.max())
            fp.mean, fp.std = float(numbers.mean()), float(numbers.std())
            qs = np.quantile(numbers, [0.01, 0.25, 0.5, 0.75, 0.99])
            fp.quantiles = {k: float(v) for k, v in zip(("p01", "p25", "p50", "p75", "p99"), qs)}
        elif not values.empty:
            shares = values.astype(str).value_counts(normalize=True).head(MAX_CATEGORIES)
            fp.categories = {str(k): round(float(v), 6) for k, v in shares.items()}
        features[feature.name] = fp
    positive_rate = None
    if spec.target in frame.columns and spec.task == BINARY and spec.target_classes:
        positive_rate = float((frame[spec.target] == spec.target_classes[-1]).mean())
    return ReferenceProfile(len(frame), features, positive_rate)


def target_summary(frame: pd.DataFrame, spec: DatasetSpec) -> dict:
    """What the target looked like in a training table, for lineage and the model card: each class's share
    (classification) or the amount's mean, spread and range (regression)."""
    if spec.target not in frame.columns:
        return {}
    target = frame[spec.target].dropna()
    if spec.is_classification:
        shares = target.value_counts(normalize=True)
        return {"class_shares": {str(label): round(float(share), 6) for label, share in shares.items()}}
    numbers = pd.to_numeric(target, errors="coerce").dropna().astype(float)
    if numbers.empty:
        return {}
    return {"mean": round(float(numbers.mean()), 6), "std": round(float(numbers.std()), 6),
            "min": float(numbers.min()), "max": float(numbers.max())}
