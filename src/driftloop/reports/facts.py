"""What every report says about a run and how a candidate compares: shared by the HTML pages and the model card.

:class:`RunFacts` is the header (which model and version, which run, on what data, started by what, when);
:func:`compare` turns candidate and champion scores into rows with a direction-aware verdict, and
:func:`trailing_warning` says in words when a candidate that passed the gate is nonetheless the worse model.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from driftloop.evaluation import Evaluation, GateDecision
from driftloop.reports.html import BETTER, SAME, WORSE, amount, number, percent, signed
from driftloop.serving.labels import UNRECORDED_BINARY_CLASSES
from driftloop.tasks import BINARY, IN_TARGET_UNITS, MULTICLASS, REGRESSION, higher_is_better

# The words a person reads for each score.
METRIC_LABELS = {
    "roc_auc": "ROC AUC", "average_precision": "average precision (PR AUC)", "accuracy": "accuracy",
    "precision": "precision", "recall": "recall", "f1": "F1", "log_loss": "log loss", "brier": "Brier score",
    "f1_macro": "macro F1", "f1_weighted": "weighted F1", "recall_macro": "macro recall",
    "rmse": "RMSE", "mae": "MAE", "r2": "R²",
}
# The scores a report shows per task, in order.
REPORTED_METRICS: dict[str, tuple[str, ...]] = {
    BINARY: ("roc_auc", "average_precision", "accuracy", "precision", "recall", "f1", "log_loss", "brier"),
    MULTICLASS: ("f1_macro", "f1_weighted", "accuracy", "recall_macro", "log_loss"),
    REGRESSION: ("rmse", "mae", "r2"),
}
# The scores "worse on most metrics" counts. Binary precision and recall are at the evaluation's threshold; they
# trade against each other, so the count leaves them out.
OVERALL_METRICS: dict[str, tuple[str, ...]] = {
    BINARY: ("roc_auc", "average_precision", "accuracy", "f1", "log_loss", "brier"),
    MULTICLASS: ("f1_macro", "f1_weighted", "accuracy", "log_loss"),
    REGRESSION: ("rmse", "mae", "r2"),
}
# Differences below what four decimals show are no difference to a reader.
SAME_WITHIN = 5e-5


@dataclass
class RunFacts:
    """The header of a report: what was evaluated, from which run and data, started by what, and when.

    Attributes:
        model: Registered model name.
        version: Its version number once registered (None while it is a candidate).
        run_name, run_id: The pipeline run (names read better than ids; both kept).
        run_url: The run's page in the Kubeflow Pipelines UI, when known.
        data_uri: The training data; ``n_rows`` its validated rows.
        triggered_by: ``manual``, ``schedule:<name>`` or ``drift:<key>`` (the drift monitor's retrain).
        trigger_detail: The monitor's reason for a drift retrain, when the audit trail has it.
        at: When the report was made (ISO-8601 UTC).
        n_train: Rows the model was fitted on.
        champion_version: The production version it is compared with (its parent), if any.
        target: The target column; ``classes`` its class labels as text (binary: the positive one last; a
            regression's are unused — the evaluation's task says which pages to draw).
    """

    model: str
    version: int | None = None
    run_name: str = ""
    run_id: str = ""
    run_url: str = ""
    data_uri: str = ""
    n_rows: int | None = None
    triggered_by: str = "manual"
    trigger_detail: str = ""
    at: str = ""
    n_train: int | None = None
    champion_version: int | None = None
    target: str = ""
    classes: list[str] = field(default_factory=lambda: [str(c) for c in UNRECORDED_BINARY_CLASSES])

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RunFacts:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def title(self) -> str:
        """``churn v2``, or ``churn (candidate)`` before registration."""
        return f"{self.model} v{self.version}" if self.version is not None else f"{self.model} (candidate)"

    @property
    def when(self) -> str:
        """``2026-08-21 14:03 UTC`` from :attr:`at`."""
        return self.at[:16].replace("T", " ") + " UTC" if self.at else ""


def trigger_sentence(triggered_by: str, detail: str = "") -> str:
    """What started a run, as a plain sentence (``drift:<key>`` → a drift retrain, with the monitor's reason)."""
    kind, _, name = (triggered_by or "manual").partition(":")
    if kind == "manual":
        return "Started by hand (driftloop run or submit)."
    if kind == "schedule":
        return f"Started by the recurring run '{name}'."
    if kind == "drift":
        because = f" because {detail.rstrip('.')}" if detail else ""
        return (f"A drift retrain: the drift monitor started it{because} (retrain {name}); it was trained on the "
                f"champion's data plus labelled live traffic.")
    return f"Started by '{triggered_by}'."


@dataclass
class MetricRow:
    """One score of the candidate beside the champion's, with the difference and what it means.

    ``relative`` is the difference as a share of the champion's value, for errors in the target's units (which
    the gate compares relatively: RMSE 10 → 11 is 10 % worse).
    """

    name: str
    label: str
    candidate: float | None
    champion: float | None = None
    delta: float | None = None
    verdict: str = ""  # better | worse | same, from the candidate's side; "" without a champion
    relative: float | None = None


def compare(candidate: dict, champion: dict | None, names=tuple(METRIC_LABELS)) -> list[MetricRow]:
    """Candidate and champion scores side by side; the verdict knows that lower errors (log loss, Brier, RMSE,
    MAE) are better, and judges errors in the target's units relative to the champion's."""
    rows = []
    for name in names:
        value = _finite(candidate.get(name))
        if value is None and name not in candidate:
            continue
        other = _finite((champion or {}).get(name))
        row = MetricRow(name, METRIC_LABELS.get(name, name), value, other)
        if value is not None and other is not None:
            row.delta = value - other
            gain = row.delta if higher_is_better(name) else -row.delta
            if name in IN_TARGET_UNITS and other > 0:
                row.relative = row.delta / other
                gain = -row.relative
            row.verdict = SAME if abs(gain) < SAME_WITHIN else BETTER if gain > 0 else WORSE
        rows.append(row)
    return rows


def metric_text(name: str, value) -> str:
    """A score as a report shows it: four decimals, or four significant digits for an error in the target's
    units (an RMSE of 12 346 needs no decimals, one of 0.01234 does)."""
    return amount(value) if name in IN_TARGET_UNITS or name.removeprefix("baseline_") in IN_TARGET_UNITS \
        else number(value)


def delta_text(row: MetricRow) -> str:
    """The signed difference, with the relative change for an error in the target's units."""
    if row.name in IN_TARGET_UNITS:
        relative = f" ({signed(row.relative * 100, 1)} %)" if row.relative is not None else ""
        return amount(row.delta, sign=True, like=row.champion) + relative
    return signed(row.delta)


def decisive(decision: GateDecision) -> tuple[dict, dict | None, str]:
    """The scores the gate compared and where: the recent rows of a drift retrain, else the holdout."""
    if decision.recent_candidate is not None and decision.recent_champion is not None:
        return decision.recent_candidate, decision.recent_champion, f"the {decision.n_recent} most recent rows"
    candidate = decision.candidate if isinstance(decision.candidate, dict) else {}
    return candidate, decision.champion, "the holdout"


def allowance_text(decision: GateDecision) -> str | None:
    """How far the gate lets a candidate trail the champion, in words: ``a drop of up to 0.0100`` for a score,
    ``up to 1.0 % worse`` for an error (compared relatively)."""
    allowed = (decision.thresholds or {}).get("max_regression")
    if allowed is None:
        return None
    return f"up to {percent(allowed)} worse" if not higher_is_better(decision.metric) else f"a drop of up to {allowed:.4f}"


def trailing_warning(decision: GateDecision, task: str = BINARY) -> str | None:
    """A plain warning when the gate passed a candidate that is worse than the champion — on the gate metric
    (a drop within the allowance) or on most overall metrics; None when it is not worse or nothing compares."""
    candidate, champion, where = decisive(decision)
    if not decision.passed or not champion:
        return None
    rows = {r.name: r for r in compare(candidate, champion, OVERALL_METRICS.get(task, OVERALL_METRICS[BINARY]))}
    if decision.metric not in rows:
        rows.update({r.name: r for r in compare(candidate, champion, (decision.metric,))})
    judged = [r for r in rows.values() if r.verdict]
    worse = [r for r in judged if r.verdict == WORSE]
    gate = rows.get(decision.metric)
    label = f"champion v{decision.champion_version}" if decision.champion_version is not None else "the champion"
    allowance = allowance_text(decision)
    parts = []
    if gate is not None and gate.verdict == WORSE:
        because = f" because the gate allows {allowance}" if allowance else ""
        parts.append(f"The candidate is worse than {label} on the gate metric {gate.label} on {where} "
                     f"({metric_text(gate.name, gate.candidate)} against {metric_text(gate.name, gate.champion)}, "
                     f"Δ {delta_text(gate)}); it passed only{because}.")
    if judged and len(worse) * 2 > len(judged):
        subject = "It is worse" if parts else f"The candidate is worse than {label}"
        names = ", ".join(r.label for r in worse)
        parts.append(f"{subject} on {len(worse)} of {len(judged)} overall metrics on {where} ({names}).")
    if not parts:
        return None
    return " ".join(parts) + " Promoting it would replace a better model: find out why before it serves."


def holdout_rows(evaluation: Evaluation) -> int:
    """The rows an evaluation scored, whatever its task."""
    n = evaluation.metrics.get("n_holdout")
    if isinstance(n, (int, float)) and math.isfinite(n) and n > 0:
        return int(n)
    if evaluation.confusion_matrix:
        return int(sum(sum(row) for row in evaluation.confusion_matrix))
    return len(evaluation.residuals.get("actual", []))


def class_balance(evaluation: Evaluation) -> tuple[int, int]:
    """Positives and rows of a binary evaluation, from its 2×2 confusion matrix (no positives for other tasks)."""
    matrix = evaluation.confusion_matrix
    if evaluation.task != BINARY or len(matrix) != 2:
        return 0, holdout_rows(evaluation)
    (tn, fp), (fn, tp) = matrix
    return fn + tp, tn + fp + fn + tp


def class_labels(evaluation: Evaluation, fallback: list | None = None) -> list[str]:
    """The class labels of a classification evaluation as text, in the confusion matrix's order."""
    k = len(evaluation.confusion_matrix)
    for labels in (evaluation.classes, fallback or []):
        if labels and len(labels) == k:
            return [str(c) for c in labels]
    return [str(i) for i in range(k)]


def class_support(evaluation: Evaluation, fallback: list | None = None) -> dict[str, int]:
    """Rows per actual class (the confusion matrix's row sums), in the classes' order."""
    return {label: int(sum(row)) for label, row in zip(class_labels(evaluation, fallback),
                                                       evaluation.confusion_matrix)}


def baseline_accuracy(evaluation: Evaluation) -> tuple[float | None, int]:
    """The accuracy of always predicting the majority class, and that class's index."""
    support = [int(sum(row)) for row in evaluation.confusion_matrix]
    total = sum(support)
    if not total:
        return None, 0
    majority = max(range(len(support)), key=lambda i: (support[i], -i))  # a tie goes to the first class
    return support[majority] / total, majority


@dataclass
class Baseline:
    """A model that ignores the features, and its score: what the candidate must clearly beat.

    ``majority`` names the class a majority-class baseline always predicts (user data: renderers escape it).
    """

    description: str  # "always predicting the majority class", "the holdout's mean for every row"
    metric: str
    value: float
    majority: str | None = None


def baselines(evaluation: Evaluation, fallback_classes: list | None = None) -> list[Baseline]:
    """The baselines of an evaluation's task: the majority class's accuracy (classification), the class shares'
    log loss (multi-class), the mean's RMSE and the median's MAE (regression)."""
    out = []
    if evaluation.task == REGRESSION:
        for name, what in (("rmse", "the holdout's mean"), ("mae", "the holdout's median")):
            value = _finite(evaluation.metrics.get(f"baseline_{name}"))
            if value is not None:
                out.append(Baseline(f"{what} for every row", name, value))
        return out
    base, majority = baseline_accuracy(evaluation)
    if base is not None:
        out.append(Baseline("always predicting the majority class", "accuracy", base,
                            class_labels(evaluation, fallback_classes)[majority]))
    log_loss = _finite(evaluation.metrics.get("baseline_log_loss"))
    if log_loss is not None:
        out.append(Baseline("the holdout's class shares for every row", "log_loss", log_loss))
    return out


def _finite(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        else None
