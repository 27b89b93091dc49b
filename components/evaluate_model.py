"""Component: evaluate the candidate against the production champion and apply the gate."""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, ClassificationMetrics, Dataset, Input, Metrics, Model, Output

from driftloop.image import PROJECT_IMAGE


@dsl.component(base_image=PROJECT_IMAGE, install_kfp_package=False)
def evaluate_model(
    model: Input[Model],
    holdout: Input[Dataset],
    recent: Input[Dataset],
    spec_json: str,
    registry_uri: str,
    model_name: str,
    metrics: Output[Metrics],
    classification: Output[ClassificationMetrics],
    report: Output[HTML],
    data_uri: str,
    triggered_by: str,
    run_id: str,
    run_name: str,
    gate_metric: str = "auto",
    min_gate_value: float = 0.6,
    max_regression: float = 0.01,
) -> NamedTuple("EvaluateOutputs", passed=bool, outcome_json=str):
    """Scores candidate and champion on the same holdout; the gate decides whether to deploy.

    Returns:
        metrics: The task's scores — binary: ROC AUC, average precision, accuracy, precision, recall, F1, log loss,
            Brier; multi-class: accuracy, macro and weighted F1, macro recall, log loss and per-class recall;
            regression: RMSE, MAE, R² — and the champion's, prefixed ``champion_``; a metric that is not a finite
            number (ROC AUC of a one-class holdout) is left out, as the report says.
        classification: Confusion matrix (and the ROC curve, binary) for the dashboard; empty for a regression.
        report: The decision page: run and data, verdict (with a warning when the candidate is worse than the
            champion but passes), candidate and champion side by side with their difference, curves, confusion matrices.
        passed: The gate's decision.
        outcome_json: Evaluation, decision and the report's content as JSON, for registration.
    """
    from driftloop import steps
    from driftloop.evaluation import GateThresholds

    result = steps.evaluate(
        model.path, holdout.path, spec_json, registry_uri, model_name, report.path,
        GateThresholds(gate_metric, min_gate_value, max_regression), recent.path,
        facts=steps.run_facts(model_name, run_id, run_name, data_uri, triggered_by), trained=model.metadata,
    )
    scalars, roc = steps.dashboard_metrics(result)
    for name, value in scalars.items():
        metrics.log_metric(name, value)
    if roc is not None:
        classification.log_roc_curve(roc["fpr"], roc["tpr"], roc["threshold"])
    confusion = steps.dashboard_confusion(result)
    if confusion is not None:
        classification.log_confusion_matrix(*confusion)
    return (result.decision.passed, result.outcome_json())
