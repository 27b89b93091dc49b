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
    # The target column in the task's terms: class shares (``categories``) for classification, the distribution
    # (range, mean, quantiles) for regression. None in profiles written before #14.
    target: FeatureProfile | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ReferenceProfile:
        data = json.loads(text)
        features = {name: FeatureProfile(**fp) for name, fp in data["features"].items()}
        target = data.get("target")
        return cls(n_rows=data["n_rows"], features=features, positive_rate=data.get("positive_rate"),
                   target=FeatureProfile(**target) if target else None)


def build_profile(frame: pd.DataFrame, spec: DatasetSpec) -> ReferenceProfile:
    """Profiles ``frame`` (normally coerced to ``spec``; a table that failed validation is profiled as far as it
    goes: missing columns are left out, text in a numeric column counts as missing)."""
    features = {f.name: column_profile(frame[f.name], f.name, f.kind) for f in spec.features if f.name in frame.columns}
    positive_rate = target = None
    if spec.target in frame.columns:
        target = column_profile(frame[spec.target], spec.target, "categorical" if spec.is_classification else "numeric")
        if spec.task == BINARY and spec.target_classes:
            positive_rate = float((frame[spec.target] == spec.target_classes[-1]).mean())
    return ReferenceProfile(len(frame), features, positive_rate, target)


def column_profile(column: pd.Series, name: str, kind: str) -> FeatureProfile:
    """The summary of one column: range, moments and quantiles of a numeric one, value shares of any other."""
    if kind == "numeric":
        column = pd.to_numeric(column, errors="coerce")
    values = column.dropna()
    fp = FeatureProfile(name, kind, round(float(column.isna().mean()), 6))
    if kind == "numeric" and not values.empty:
        numbers = values.astype(float).to_numpy()
        fp.minimum, fp.maximum = float(numbers.min()), float(numbers.max())
        fp.mean, fp.std = float(numbers.mean()), float(numbers.std())
        qs = np.quantile(numbers, [0.01, 0.25, 0.5, 0.75, 0.99])
        fp.quantiles = {k: float(v) for k, v in zip(("p01", "p25", "p50", "p75", "p99"), qs)}
    elif not values.empty:
        shares = values.astype(str).value_counts(normalize=True).head(MAX_CATEGORIES)
        fp.categories = {str(k): round(float(v), 6) for k, v in shares.items()}
    return fp
