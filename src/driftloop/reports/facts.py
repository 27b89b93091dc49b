"""What every report says about a run and how a candidate compares: shared by the HTML pages and the model card.

:class:`RunFacts` is the header (which model and version, which run, on what data, started by what, when);
:func:`compare` turns candidate and champion scores into rows with a direction-aware verdict, and
:func:`trailing_warning` says in words when a candidate that passed the gate is nonetheless the worse model.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from driftloop.evaluation import LOWER_IS_BETTER, Evaluation, GateDecision
from driftloop.reports.html import BETTER, SAME, WORSE, signed

# The scores a report shows, in order, with the words a person reads. Precision and recall are at the
# evaluation's threshold; they trade against each other, so the "worse on most metrics" count leaves them out.
METRIC_LABELS = {
    "roc_auc": "ROC AUC", "average_precision": "average precision (PR AUC)", "accuracy": "accuracy",
    "precision": "precision", "recall": "recall", "f1": "F1", "log_loss": "log loss", "brier": "Brier score",
}
OVERALL_METRICS = ("roc_auc", "average_precision", "accuracy", "f1", "log_loss", "brier")
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
        target: The label column; ``classes`` its two values as text, the positive one last.
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
    classes: list[str] = field(default_factory=lambda: ["0", "1"])

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
    """One score of the candidate beside the champion's, with the difference and what it means."""

    name: str
    label: str
    candidate: float | None
    champion: float | None = None
    delta: float | None = None
    verdict: str = ""  # better | worse | same, from the candidate's side; "" without a champion


def compare(candidate: dict, champion: dict | None, names=tuple(METRIC_LABELS)) -> list[MetricRow]:
    """Candidate and champion scores side by side; the verdict knows that lower log loss and Brier are better."""
    rows = []
    for name in names:
        value = _finite(candidate.get(name))
        if value is None and name not in candidate:
            continue
        other = _finite((champion or {}).get(name))
        row = MetricRow(name, METRIC_LABELS.get(name, name), value, other)
        if value is not None and other is not None:
            row.delta = value - other
            gain = -row.delta if name in LOWER_IS_BETTER else row.delta
            row.verdict = SAME if abs(gain) < SAME_WITHIN else BETTER if gain > 0 else WORSE
        rows.append(row)
    return rows


def decisive(decision: GateDecision) -> tuple[dict, dict | None, str]:
    """The scores the gate compared and where: the recent rows of a drift retrain, else the holdout."""
    if decision.recent_candidate is not None and decision.recent_champion is not None:
        return decision.recent_candidate, decision.recent_champion, f"the {decision.n_recent} most recent rows"
    candidate = decision.candidate if isinstance(decision.candidate, dict) else {}
    return candidate, decision.champion, "the holdout"


def trailing_warning(decision: GateDecision) -> str | None:
    """A plain warning when the gate passed a candidate that is worse than the champion — on the gate metric
    (a drop within the allowance) or on most overall metrics; None when it is not worse or nothing compares."""
    candidate, champion, where = decisive(decision)
    if not decision.passed or not champion:
        return None
    rows = {r.name: r for r in compare(candidate, champion, OVERALL_METRICS)}
    judged = [r for r in rows.values() if r.verdict]
    worse = [r for r in judged if r.verdict == WORSE]
    gate = rows.get(decision.metric)
    label = f"champion v{decision.champion_version}" if decision.champion_version is not None else "the champion"
    allowed = (decision.thresholds or {}).get("max_regression")
    parts = []
    if gate is not None and gate.verdict == WORSE:
        allowance = f" because the gate allows a drop of up to {allowed:.4f}" if allowed is not None else ""
        parts.append(f"The candidate is worse than {label} on the gate metric {gate.label} on {where} "
                     f"({gate.candidate:.4f} against {gate.champion:.4f}, Δ {signed(gate.delta)}); it passed "
                     f"only{allowance}.")
    if judged and len(worse) * 2 > len(judged):
        subject = "It is worse" if parts else f"The candidate is worse than {label}"
        names = ", ".join(r.label for r in worse)
        parts.append(f"{subject} on {len(worse)} of {len(judged)} overall metrics on {where} ({names}).")
    if not parts:
        return None
    return " ".join(parts) + " Promoting it would replace a better model: find out why before it serves."


def class_balance(evaluation: Evaluation) -> tuple[int, int]:
    """Positives and rows of the evaluated data, from the confusion matrix."""
    (tn, fp), (fn, tp) = evaluation.confusion_matrix
    return fn + tp, tn + fp + fn + tp


def baseline_accuracy(evaluation: Evaluation) -> tuple[float | None, int]:
    """The accuracy of always predicting the majority class, and that class (0 or 1)."""
    positives, total = class_balance(evaluation)
    if not total:
        return None, 0
    majority = 1 if positives * 2 > total else 0
    return (positives if majority else total - positives) / total, majority


def _finite(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
        else None
