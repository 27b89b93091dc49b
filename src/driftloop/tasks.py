"""The three tabular tasks — binary, multi-class, regression — and every fact that varies with the task.

Everything downstream (training, the gate, serving, the monitor, the reports) asks this module what a task
means rather than testing names itself, so a metric's direction, a task's default gate metric or the rule that
tells a label column from an amount lives in one place. The module imports nothing heavy: the CLI and the
monitor read it.

The model contract per task:

* classification (binary, multi-class): the Pipeline is fitted on class *indices* — the position of each label in
  ``DatasetSpec.target_classes`` (sorted) — so ``predict`` gives indices and ``predict_proba`` one column per
  class in that order. Whatever faces a user (responses, tables, reports) turns indices back into labels with
  :func:`class_label`.
* regression: the Pipeline predicts the target in its own units; ``target_classes`` is empty.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

BINARY, MULTICLASS, REGRESSION = "binary", "multiclass", "regression"
TASKS: tuple[str, ...] = (BINARY, MULTICLASS, REGRESSION)
INFER = "auto"  # the CT parameter's value that lets the target decide

# A numeric target with at most this many distinct whole numbers is read as class labels; more, as an amount.
MAX_INTEGER_CLASSES = 20
# A classification target with more labels than this is refused: it is an identifier or an amount, not a class.
MAX_CLASSES = 100
# Rows each class needs: the holdout and auto's validation split are stratified, and each must hold every class
# at least once with rows left to train on.
MIN_CLASS_ROWS = 5

# The gate's metrics per task, the task's default first.
GATE_METRICS: dict[str, tuple[str, ...]] = {
    BINARY: ("roc_auc", "accuracy", "f1", "average_precision", "log_loss"),
    MULTICLASS: ("f1_macro", "accuracy", "f1_weighted", "log_loss"),
    REGRESSION: ("rmse", "mae", "r2"),
}
ALL_GATE_METRICS: tuple[str, ...] = tuple(dict.fromkeys(m for ms in GATE_METRICS.values() for m in ms))
# Scores where a smaller value is the better model; for every other score, larger is better.
LOWER_IS_BETTER = frozenset({"log_loss", "brier", "rmse", "mae"})
# Errors in the target's own units: read to a few significant digits and best compared relatively (RMSE 10 → 11
# is 10 % worse), where scores in [0, 1] are compared by their difference.
IN_TARGET_UNITS = frozenset({"rmse", "mae"})

# Realised quality from delayed labels: the metric the monitor's trigger and the canary's check judge, and the
# ones reported beside it.
QUALITY_METRIC: dict[str, str] = {BINARY: "accuracy", MULTICLASS: "accuracy", REGRESSION: "rmse"}
QUALITY_REPORTED: dict[str, tuple[str, ...]] = {
    BINARY: ("accuracy",), MULTICLASS: ("accuracy", "f1_macro"), REGRESSION: ("rmse", "mae"),
}


# Estimators that fit only some tasks (the linear model of each); every other estimator has a classifier and a
# regressor.
TASK_ONLY_ESTIMATORS: dict[str, tuple[str, ...]] = {
    "logistic_regression": (BINARY, MULTICLASS),
    "ridge": (REGRESSION,),
}


def estimator_mismatch(estimator: str, task: str) -> str | None:
    """Why ``estimator`` cannot fit a ``task`` target, or None when it can."""
    if task in TASK_ONLY_ESTIMATORS.get(estimator, TASKS):
        return None
    linear = next(name for name, tasks in TASK_ONLY_ESTIMATORS.items() if task in tasks)
    return f"estimator '{estimator}' does not fit a {task} target; its linear model is {linear}"


def is_classification(task: str) -> bool:
    return task in (BINARY, MULTICLASS)


def default_gate_metric(task: str) -> str:
    return GATE_METRICS[task][0]


def higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER


def check_task(task: str) -> str:
    """``task`` when it is one of :data:`TASKS`; raises ConfigError naming the choices."""
    if task not in TASKS:
        from driftloop.errors import ConfigError

        raise ConfigError(f"task must be one of {', '.join(TASKS)}, got '{task}'")
    return task


def gate_metric_for(task: str, metric: str) -> str:
    """The gate metric a run judges: ``metric``, or the task's default for :data:`INFER` / empty.

    Raises:
        ConfigError: the metric does not fit the task (``roc_auc`` on a regression target).
    """
    if metric in ("", INFER):
        return default_gate_metric(task)
    if metric not in GATE_METRICS[task]:
        from driftloop.errors import ConfigError

        raise ConfigError(f"gate metric '{metric}' does not fit a {task} target; use one of "
                          f"{', '.join(GATE_METRICS[task])}")
    return metric


def quality_drop(metric: str, expected: float, realised: float) -> float:
    """How much worse ``realised`` is than ``expected``, in the metric's own terms: an absolute drop for scores
    in [0, 1] (accuracy 0.90 → 0.84 is 0.06), a relative rise for error metrics (RMSE 10 → 12 is 0.2)."""
    if higher_is_better(metric):
        return expected - realised
    return (realised - expected) / expected if expected > 0 else (float("inf") if realised > 0 else 0.0)


def drop_text(metric: str, drop: float) -> str:
    """A :func:`quality_drop` as a reader says it: "0.071 below" for a score, "25% above" for an error metric."""
    return f"{drop:.3f} below" if higher_is_better(metric) else f"{drop:.0%} above"


def infer_task(values: Sequence[Any]) -> tuple[str, str | None]:
    """The task a target column implies, and a note when the rule had to guess.

    Text, booleans and categories are labels (two → binary, more → multi-class). Numbers are labels when they
    are whole and few (at most :data:`MAX_INTEGER_CLASSES` distinct values), else an amount (regression).
    """
    import pandas as pd

    column = pd.Series(values).dropna()
    distinct = column.nunique()
    numeric = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
    if numeric:
        whole = bool((column == column.round()).all())
        if not whole or distinct > MAX_INTEGER_CLASSES:
            return REGRESSION, None
        if distinct > 2:
            return MULTICLASS, (f"{distinct} distinct whole numbers: taken as class labels; declare the task "
                                "regression (--task regression) if they are amounts")
    return (BINARY if distinct <= 2 else MULTICLASS), None


def class_label(index: Any, classes: Sequence[Any]) -> Any:
    """The label a class index stands for (the index itself when the spec has no classes, as old specs may)."""
    try:
        position = int(index)
    except (TypeError, ValueError):
        return index
    return classes[position] if 0 <= position < len(classes) else index


# The task in words, as reports, model cards and the CLI's tables name it.
TASK_LABELS: dict[str, str] = {
    BINARY: "binary classification", MULTICLASS: "multi-class classification", REGRESSION: "regression",
}


def describe_task(task: str, classes: Sequence[Any] = (), most: int = 6) -> str:
    """The task with its classes, for a table row: ``multiclass (3 classes: hi, lo, mid)``, ``binary (no, yes)``,
    ``regression``; at most ``most`` classes are named."""
    if not is_classification(task) or not classes:
        return task
    named = ", ".join(str(c) for c in list(classes)[:most]) + (", …" if len(classes) > most else "")
    return f"{task} ({named})" if task == BINARY else f"{task} ({len(classes)} classes: {named})"
