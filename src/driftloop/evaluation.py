"""Evaluation on a holdout and the promotion gate against the current champion, in the task's terms.

Binary: ROC AUC and its curves, a 2×2 confusion matrix at the threshold, reliability. Multi-class: macro and
weighted F1, per-class precision/recall, multi-class log loss and a k×k confusion matrix. Regression: RMSE, MAE,
R², residuals and the error by decile of the prediction. Error metrics (RMSE, MAE, log loss) are held to a
baseline that knows nothing of the features — the holdout's mean, median or class shares — since a minimum in
[0, 1] means nothing in the target's units.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from driftloop.data import DatasetSpec
from driftloop.errors import ConfigError
from driftloop.tasks import (
    ALL_GATE_METRICS,
    BINARY,
    INFER,
    MULTICLASS,
    REGRESSION,
    class_label,
    higher_is_better,
)
from driftloop.tasks import (
    LOWER_IS_BETTER as LOWER_IS_BETTER,  # re-exported: the reports and console read it here
)

MAX_ROC_POINTS = 101
MAX_RESIDUAL_POINTS = 500  # predicted-vs-actual points kept for the report (an even sample of the holdout)
DECILES = 10


@dataclass
class Evaluation:
    """Holdout metrics and what the report draws, by task.

    Binary: confusion matrix ``[[tn, fp], [fn, tp]]`` at ``threshold`` and thinned ROC, PR and reliability
    curves. Multi-class: the k×k confusion matrix (rows: true class, columns: predicted, in ``classes`` order) and
    ``per_class`` scores. Regression: ``residuals`` (an even sample of predicted and actual values) and
    ``error_by_decile`` (per tenth of the predictions, sorted: their range, mean actual and predicted, MAE).
    """

    metrics: dict[str, float]
    confusion_matrix: list[list[int]]
    roc_curve: dict[str, list[float]]  # fpr, tpr, threshold
    # Reliability: per bin of predicted probability, the mean prediction, the share of positives, the rows.
    calibration_curve: dict[str, list[float]] = field(default_factory=dict)
    pr_curve: dict[str, list[float]] = field(default_factory=dict)  # recall, precision (empty before #13)
    threshold: float = 0.5  # a row is predicted positive when its probability reaches this
    task: str = BINARY
    classes: list = field(default_factory=list)  # class labels, in the model's index order
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)  # label -> precision, recall, f1, support
    residuals: dict[str, list[float]] = field(default_factory=dict)  # predicted, actual
    error_by_decile: list[dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Evaluation:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def evaluate_model(model, holdout: pd.DataFrame, spec: DatasetSpec, threshold: float = 0.5) -> Evaluation:
    """Scores ``model`` on ``holdout`` (which carries the target column) in the terms of the spec's task."""
    from driftloop.training import encode_target, model_output

    y = encode_target(holdout, spec)
    output = model_output(model, holdout, spec)
    if spec.task == REGRESSION:
        return _evaluate_regression(y, output)
    if spec.task == MULTICLASS:
        return _evaluate_multiclass(y, output, spec)
    return _evaluate_binary(y, output[:, 1], threshold)


def _evaluate_binary(y: np.ndarray, proba: np.ndarray, threshold: float) -> Evaluation:
    # Imported here: the register and deploy steps use this module's dataclasses and should not pay
    # scikit-learn's import (seconds per pipeline task) for them.
    from sklearn import metrics as skm

    predicted = (proba >= threshold).astype(int)
    metrics = {**scores(y, proba, threshold), "n_holdout": float(len(y))}
    confusion = skm.confusion_matrix(y, predicted, labels=[0, 1]).tolist()
    fpr, tpr, thresholds = skm.roc_curve(y, proba)
    keep = _thin(len(fpr), MAX_ROC_POINTS)
    # sklearn's first threshold is +inf; KFP and JSON need a finite number.
    finite = np.where(np.isfinite(thresholds), thresholds, 1.0)
    roc = {"fpr": fpr[keep].tolist(), "tpr": tpr[keep].tolist(), "threshold": finite[keep].tolist()}
    return Evaluation(_rounded(metrics), confusion, roc, reliability(y, proba), precision_recall(y, proba), threshold)


def _rounded(metrics: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 6) for k, v in metrics.items()}


def _evaluate_multiclass(y: np.ndarray, proba: np.ndarray, spec: DatasetSpec) -> Evaluation:
    from sklearn import metrics as skm

    k = proba.shape[1]
    predicted = np.argmax(proba, axis=1)
    metrics = {**multiclass_scores(y, proba), "n_holdout": float(len(y))}
    confusion = skm.confusion_matrix(y, predicted, labels=list(range(k))).tolist()
    precision, recall, f1, support = skm.precision_recall_fscore_support(y, predicted, labels=list(range(k)),
                                                                         zero_division=0)
    classes = [_jsonable(c) for c in spec.target_classes]
    per_class = {str(class_label(i, classes)): {"precision": round(float(precision[i]), 6),
                                                "recall": round(float(recall[i]), 6),
                                                "f1": round(float(f1[i]), 6), "support": int(support[i])}
                 for i in range(k)}
    return Evaluation(_rounded(metrics), confusion, {}, task=MULTICLASS, classes=classes, per_class=per_class)


def _evaluate_regression(y: np.ndarray, predicted: np.ndarray) -> Evaluation:
    metrics = {**regression_scores(y, predicted), "n_holdout": float(len(y))}
    keep = _thin(len(y), MAX_RESIDUAL_POINTS)
    residuals = {"predicted": [round(float(v), 6) for v in predicted[keep]],
                 "actual": [round(float(v), 6) for v in y[keep]]}
    return Evaluation(_rounded(metrics), [], {}, task=REGRESSION, residuals=residuals,
                      error_by_decile=error_by_decile(y, predicted))


def error_by_decile(y: np.ndarray, predicted: np.ndarray, bins: int = DECILES) -> list[dict[str, float]]:
    """Per tenth of the rows sorted by prediction: the predictions' range, the mean actual and predicted value,
    the MAE and the rows — where a regression is wrong (its largest predictions too low, say) at a glance."""
    order = np.argsort(predicted, kind="stable")
    out = []
    for i, part in enumerate(np.array_split(order, min(bins, len(order)))):
        if len(part) == 0:
            continue
        p, a = predicted[part], y[part]
        out.append({"decile": i + 1, "low": round(float(p.min()), 6), "high": round(float(p.max()), 6),
                    "mean_actual": round(float(a.mean()), 6), "mean_predicted": round(float(p.mean()), 6),
                    "mae": round(float(np.abs(a - p).mean()), 6), "count": int(len(part))})
    return out


def _jsonable(value):
    return value.item() if hasattr(value, "item") else value


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
        # what a model that knows only the positive share scores (the floor the gate holds log loss to)
        "baseline_log_loss": float(skm.log_loss(y, np.full(len(y), np.clip(y.mean(), 1e-15, 1 - 1e-15)),
                                                labels=[0, 1])),
    }


def multiclass_scores(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """Every quality score of class probabilities ([n, k]) against class indices, and the log loss of a baseline
    that predicts the holdout's class shares for every row (what an error metric's gate floor is)."""
    from sklearn import metrics as skm

    k = proba.shape[1]
    predicted = np.argmax(proba, axis=1)
    labels = list(range(k))
    shares = np.bincount(y, minlength=k) / max(len(y), 1)
    return {
        "accuracy": float(skm.accuracy_score(y, predicted)),
        "f1_macro": float(skm.f1_score(y, predicted, labels=labels, average="macro", zero_division=0)),
        "f1_weighted": float(skm.f1_score(y, predicted, labels=labels, average="weighted", zero_division=0)),
        "recall_macro": float(skm.recall_score(y, predicted, labels=labels, average="macro", zero_division=0)),
        "log_loss": float(skm.log_loss(y, np.clip(proba, 1e-15, 1), labels=labels)),
        "baseline_log_loss": float(skm.log_loss(y, np.tile(np.clip(shares, 1e-15, 1), (len(y), 1)), labels=labels)),
    }


def regression_scores(y: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """RMSE, MAE and R² of predictions, and the same errors of baselines that ignore the features (the mean and
    the median of the rows scored)."""
    error = predicted - y
    variance = float(np.mean((y - y.mean()) ** 2))
    return {
        "rmse": float(np.sqrt(np.mean(error ** 2))),
        "mae": float(np.mean(np.abs(error))),
        "r2": float(1 - np.mean(error ** 2) / variance) if variance > 0 else float("nan"),
        "baseline_rmse": float(np.sqrt(variance)),
        "baseline_mae": float(np.mean(np.abs(y - np.median(y)))),
    }


def task_scores(task: str, y: np.ndarray, output: np.ndarray) -> dict[str, float]:
    """Every score of ``task`` for a model's output (:func:`driftloop.training.model_output`) against ``y``."""
    if task == REGRESSION:
        return regression_scores(y, output)
    if task == MULTICLASS:
        return multiclass_scores(y, output)
    return scores(y, output[:, 1])


def score_model(metric: str, model, frame: pd.DataFrame, spec: DatasetSpec) -> float:
    """One score by name of ``model`` on ``frame`` (what ``auto`` and the recency weighting choose by)."""
    from driftloop.training import encode_target, model_output

    return task_scores(spec.task, encode_target(frame, spec), model_output(model, frame, spec))[metric]


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
        metric: The metric the gate judges (one of the task's, :data:`driftloop.tasks.GATE_METRICS`).
        min_value: A score (higher is better) must reach this; an error metric (RMSE, MAE, log loss) must
            instead beat the baseline that ignores the features.
        max_regression: The candidate may trail the champion's score by at most this much; for an error metric,
            a fraction of the champion's error (0.01: at most 1 % worse).
    """

    metric: str = "roc_auc"
    min_value: float = 0.6
    max_regression: float = 0.01

    def __post_init__(self) -> None:
        if self.metric not in (INFER, *ALL_GATE_METRICS):
            raise ConfigError(f"gate metric must be one of {', '.join(ALL_GATE_METRICS)}, got '{self.metric}'")
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
    passed = _reaches_floor(name, value, candidate, thresholds, reasons)
    label = f"champion v{champion_version}" if champion_version is not None else "champion"
    if champion is None:
        reasons.append("no champion in production: nothing to compare against")
        if recent_candidate is not None:
            reasons.append(f"recent rows ({n_recent}): {name} {recent_candidate[name]:.4g}")
    elif recent_candidate is not None and recent_champion is not None:
        passed = _compare(recent_candidate[name], recent_champion[name], f"on the {n_recent} most recent rows",
                          name, label, thresholds, reasons) and passed
        reasons.append(f"holdout (old and new rows mixed): {name} {value:.4g} vs {label} {champion[name]:.4g}, "
                       f"Δ {value - champion[name]:+.4g} (reported; the recent rows decide)")
    else:
        passed = _compare(value, champion[name], "on the holdout", name, label, thresholds, reasons) and passed
    return GateDecision(passed, reasons, name, candidate, champion, champion_version, asdict(thresholds),
                        recent_candidate, recent_champion, n_recent)


def _reaches_floor(name: str, value: float, candidate: dict[str, float], thresholds: GateThresholds,
                   reasons: list[str]) -> bool:
    """A score must reach the minimum; an error metric must beat its baseline (when the candidate has one)."""
    if higher_is_better(name):
        if not value >= thresholds.min_value:  # also catches NaN
            reasons.append(f"{name} {value:.4f} is below the minimum {thresholds.min_value:.4f}")
            return False
        reasons.append(f"{name} {value:.4f} reaches the minimum {thresholds.min_value:.4f}")
        return True
    baseline = candidate.get(f"baseline_{name}")
    if baseline is None:
        if not math.isfinite(value):
            reasons.append(f"{name} is not a finite number")
            return False
        reasons.append(f"{name} {value:.4g} (no baseline to hold it to)")
        return True
    if not value < baseline:  # also catches NaN
        reasons.append(f"{name} {value:.4g} does not beat the baseline {baseline:.4g} of a model that ignores "
                       "the features")
        return False
    reasons.append(f"{name} {value:.4g} beats the baseline {baseline:.4g} of a model that ignores the features")
    return True


def _compare(value: float, champion: float, where: str, name: str, label: str, thresholds: GateThresholds,
             reasons: list[str]) -> bool:
    if not higher_is_better(name):
        worse = (value - champion) / champion if champion > 0 else (0.0 if value <= champion else float("inf"))
        if worse > thresholds.max_regression:
            reasons.append(f"{where}: {name} {value:.4g} is {worse:.1%} worse than {label} ({champion:.4g}), "
                           f"more than the allowed {thresholds.max_regression:.1%}")
            return False
        change = f"{worse:.1%} worse" if worse > 0 else f"{-worse:.1%} better"
        reasons.append(f"{where}: {name} {value:.4g} vs {label} {champion:.4g}: {change}, within the allowed "
                       f"{thresholds.max_regression:.1%} worse")
        return True
    delta = value - champion
    if delta < -thresholds.max_regression:
        reasons.append(f"{where}: {name} {value:.4f} trails {label} ({champion:.4f}) by {-delta:.4f}, "
                       f"more than the allowed {thresholds.max_regression:.4f}")
        return False
    reasons.append(f"{where}: {name} {value:.4f} vs {label} {champion:.4f}: Δ {delta:+.4f}, "
                   f"within the allowed drop of {thresholds.max_regression:.4f}")
    return True
