"""Evaluation on a holdout and the promotion gate against the current champion."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from driftloop.data import DatasetSpec
from driftloop.errors import ConfigError

GATE_METRICS = ("roc_auc", "accuracy", "f1")
# Scores where a smaller value is the better model; for every other score, larger is better.
LOWER_IS_BETTER = frozenset({"log_loss", "brier"})
MAX_ROC_POINTS = 101


@dataclass
class Evaluation:
    """Holdout metrics, confusion matrix ``[[tn, fp], [fn, tp]]`` at ``threshold``, and thinned curves."""

    metrics: dict[str, float]
    confusion_matrix: list[list[int]]
    roc_curve: dict[str, list[float]]  # fpr, tpr, threshold
    # Reliability: per bin of predicted probability, the mean prediction, the share of positives, the rows.
    calibration_curve: dict[str, list[float]] = field(default_factory=dict)
    pr_curve: dict[str, list[float]] = field(default_factory=dict)  # recall, precision (empty before #13)
    threshold: float = 0.5  # a row is predicted positive when its probability reaches this

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate_model(model, holdout: pd.DataFrame, spec: DatasetSpec, threshold: float = 0.5) -> Evaluation:
    """Scores ``model`` on ``holdout`` (which carries the target column)."""
    # Imported here: the register and deploy steps use this module's dataclasses and should not pay
    # scikit-learn's import (seconds per pipeline task) for them.
    from sklearn import metrics as skm

    from driftloop.training import encode_target, predict_positive_proba

    y = encode_target(holdout, spec)
    proba = predict_positive_proba(model, holdout, spec)
    predicted = (proba >= threshold).astype(int)
    metrics = {**scores(y, proba, threshold), "n_holdout": float(len(y))}
    confusion = skm.confusion_matrix(y, predicted, labels=[0, 1]).tolist()
    fpr, tpr, thresholds = skm.roc_curve(y, proba)
    keep = _thin(len(fpr), MAX_ROC_POINTS)
    # sklearn's first threshold is +inf; KFP and JSON need a finite number.
    finite = np.where(np.isfinite(thresholds), thresholds, 1.0)
    roc = {"fpr": fpr[keep].tolist(), "tpr": tpr[keep].tolist(), "threshold": finite[keep].tolist()}
    return Evaluation({k: round(v, 6) for k, v in metrics.items()}, confusion, roc, reliability(y, proba),
                      precision_recall(y, proba), threshold)


def precision_recall(y: np.ndarray, proba: np.ndarray) -> dict[str, list[float]]:
    """The precision–recall curve, thinned like the ROC curve, from recall 0 to 1 (empty for a one-class holdout)."""
    from sklearn import metrics as skm

    if len(np.unique(y)) < 2:
        return {}
    precision, recall, _ = skm.precision_recall_curve(y, proba)
    precision, recall = precision[::-1], recall[::-1]  # sklearn lists them from recall 1 down to 0
    keep = _thin(len(recall), MAX_ROC_POINTS)
    return {"recall": [round(float(v), 6) for v in recall[keep]],
            "precision": [round(float(v), 6) for v in precision[keep]]}


CALIBRATION_BINS = 10


def reliability(y: np.ndarray, proba: np.ndarray, bins: int = CALIBRATION_BINS) -> dict[str, list[float]]:
    """The reliability curve: for each of ``bins`` equal-width probability bins that holds rows, the mean
    predicted probability, the observed share of positives and the row count (a calibrated model's points lie on
    the diagonal)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(proba, edges[1:-1]), 0, bins - 1)
    predicted, observed, counts = [], [], []
    for b in range(bins):
        mask = which == b
        if mask.any():
            predicted.append(round(float(proba[mask].mean()), 6))
            observed.append(round(float(y[mask].mean()), 6))
            counts.append(int(mask.sum()))
    return {"predicted": predicted, "observed": observed, "count": counts}


def scores(y: np.ndarray, proba: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Every quality score of positive-class probabilities against 0/1 labels (the gate's metrics among them)."""
    from sklearn import metrics as skm

    predicted = (proba >= threshold).astype(int)
    two_classes = len(np.unique(y)) == 2
    return {
        "roc_auc": float(skm.roc_auc_score(y, proba)) if two_classes else float("nan"),
        "average_precision": float(skm.average_precision_score(y, proba)) if two_classes else float("nan"),
        "accuracy": float(skm.accuracy_score(y, predicted)),
        "precision": float(skm.precision_score(y, predicted, zero_division=0)),
        "recall": float(skm.recall_score(y, predicted, zero_division=0)),
        "f1": float(skm.f1_score(y, predicted, zero_division=0)),
        "log_loss": float(skm.log_loss(y, np.clip(proba, 1e-15, 1 - 1e-15), labels=[0, 1])),
        "brier": float(np.mean((proba - y) ** 2)),
    }


def score_proba(metric: str, y: np.ndarray, proba: np.ndarray) -> float:
    """One score by name (what ``auto`` chooses an estimator by)."""
    return scores(y, proba)[metric]


def non_finite_metrics(metrics: dict) -> list[str]:
    """Names of metrics that are not finite numbers (a one-class holdout has no ROC AUC). JSON — and so KFP's
    Metrics artifacts — cannot carry them; reports show them as left out."""
    return sorted(k for k, v in metrics.items()
                  if not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)))


def _thin(n: int, most: int) -> np.ndarray:
    if n <= most:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, most).round().astype(int))


@dataclass(frozen=True)
class GateThresholds:
    """When a candidate may replace the champion.

    Attributes:
        metric: The metric the gate judges ("roc_auc", "accuracy" or "f1").
        min_value: The candidate's metric must reach this.
        max_regression: The candidate may trail the champion's metric by at most this much.
    """

    metric: str = "roc_auc"
    min_value: float = 0.6
    max_regression: float = 0.01

    def __post_init__(self) -> None:
        if self.metric not in GATE_METRICS:
            raise ConfigError(f"gate metric must be one of {', '.join(GATE_METRICS)}, got '{self.metric}'")
        if not 0.0 <= self.min_value <= 1.0:
            raise ConfigError(f"gate minimum must be within [0, 1], got {self.min_value}")
        if not self.max_regression >= 0:  # also refuses NaN, which would pass every comparison
            raise ConfigError(f"max regression must be >= 0, got {self.max_regression}")


@dataclass
class GateDecision:
    """The gate's verdict with the reasons a person reads."""

    passed: bool
    reasons: list[str]
    metric: str
    candidate: dict[str, float]
    champion: dict[str, float] | None = None
    champion_version: int | None = None
    thresholds: dict = field(default_factory=dict)
    recent_candidate: dict[str, float] | None = None  # on the newest labelled rows, when a drift retrain has them
    recent_champion: dict[str, float] | None = None
    n_recent: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def decide_gate(
    candidate: dict[str, float],
    champion: dict[str, float] | None,
    thresholds: GateThresholds,
    champion_version: int | None = None,
    recent_candidate: dict[str, float] | None = None,
    recent_champion: dict[str, float] | None = None,
    n_recent: int = 0,
) -> GateDecision:
    """Passes the candidate when it reaches the minimum on the holdout and does not regress beyond the limit.

    With a recent slice (the newest labelled rows a drift retrain held back, never trained on) the comparison
    with the champion is made there — the world as it is now — and the holdout's, a random sample of old and new
    rows, is reported beside it; the reasons name both.
    """
    name = thresholds.metric
    value = candidate[name]
    reasons: list[str] = []
    passed = True
    if not value >= thresholds.min_value:  # also catches NaN
        passed = False
        reasons.append(f"{name} {value:.4f} is below the minimum {thresholds.min_value:.4f}")
    else:
        reasons.append(f"{name} {value:.4f} reaches the minimum {thresholds.min_value:.4f}")
    label = f"champion v{champion_version}" if champion_version is not None else "champion"
    if champion is None:
        reasons.append("no champion in production: nothing to compare against")
        if recent_candidate is not None:
            reasons.append(f"recent rows ({n_recent}): {name} {recent_candidate[name]:.4f}")
    elif recent_candidate is not None and recent_champion is not None:
        passed = _compare(recent_candidate[name], recent_champion[name], f"on the {n_recent} most recent rows",
                          name, label, thresholds, reasons) and passed
        delta = value - champion[name]
        reasons.append(f"holdout (old and new rows mixed): {name} {value:.4f} vs {label} {champion[name]:.4f}, "
                       f"Δ {delta:+.4f} (reported; the recent rows decide)")
    else:
        passed = _compare(value, champion[name], "on the holdout", name, label, thresholds, reasons) and passed
    return GateDecision(passed, reasons, name, candidate, champion, champion_version, asdict(thresholds),
                        recent_candidate, recent_champion, n_recent)


def _compare(value: float, champion: float, where: str, name: str, label: str, thresholds: GateThresholds,
             reasons: list[str]) -> bool:
    delta = value - champion
    if delta < -thresholds.max_regression:
        reasons.append(f"{where}: {name} {value:.4f} trails {label} ({champion:.4f}) by {-delta:.4f}, "
                       f"more than the allowed {thresholds.max_regression:.4f}")
        return False
    reasons.append(f"{where}: {name} {value:.4f} vs {label} {champion:.4f}: Δ {delta:+.4f}, "
                   f"within the allowed drop of {thresholds.max_regression:.4f}")
    return True
