"""Realised quality: logged predictions against the delayed labels that have arrived, in the task's terms.

Classification is judged by accuracy (and, for multi-class, macro-F1 over the classes seen among the labelled
rows); regression by RMSE and MAE (:data:`driftloop.tasks.QUALITY_REPORTED`). A classification label naming a
class the row's version never learned is kept: it counts as a wrong prediction and is reported per label
(``unseen_classes``), since it means the world has a class the model cannot predict.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping

import numpy as np
import pandas as pd

from driftloop.monitor.labels import LabelStore
from driftloop.rollout.quality import STDERR_SUFFIX
from driftloop.tasks import IN_TARGET_UNITS, QUALITY_METRIC, QUALITY_REPORTED, REGRESSION


def realised_quality(rows: pd.DataFrame, labels: LabelStore, task: str,
                     classes: Mapping[int, Collection[str]] | None = None) -> dict:
    """The task's quality of predictions against the labels that have arrived, overall and per version.

    Args:
        rows: Columns ``key``, ``version`` and ``prediction`` (class labels as normalised text, or numbers).
        task: The served model's task.
        classes: Per version, the class labels it learned (normalised text); labels outside them are reported
            as ``unseen_classes``. Versions not named are not checked.

    Returns:
        ``{"metric": QUALITY_METRIC[task], "labelled": n, <each reported metric>: value | None,
        "by_version": {"<v>": {"labelled": n, <metric>: value, ...}}}``, plus ``unseen_classes``
        ({label: rows}) when a label names a class its version never learned.
    """
    reported = QUALITY_REPORTED[task]
    empty = {"metric": QUALITY_METRIC[task], "labelled": 0, **dict.fromkeys(reported), "by_version": {}}
    if rows.empty:
        return empty
    truth = labels.lookup(rows["key"])
    if task == REGRESSION:
        truth = pd.to_numeric(truth, errors="coerce")
        predicted = pd.to_numeric(rows["prediction"], errors="coerce")
        known = truth.notna() & predicted.notna()
        scored = pd.DataFrame({"version": rows["version"][known], "true": truth[known].astype(float),
                               "predicted": predicted[known].astype(float)})
        score = _regression
    else:
        known = truth.notna()
        scored = pd.DataFrame({"version": rows["version"][known], "true": truth[known],
                               "predicted": rows["prediction"][known].astype(str)})
        score = _classification
    if scored.empty:
        return empty
    out = {"metric": QUALITY_METRIC[task], "labelled": len(scored), **score(scored, task, with_stderr=False)}
    out["by_version"] = {str(int(version)): {"labelled": len(group), **score(group, task, with_stderr=True)}
                         for version, group in scored.groupby("version")}
    unseen = _unseen(scored, classes or {}) if task != REGRESSION else {}
    return out | ({"unseen_classes": unseen} if unseen else {})


def _classification(scored: pd.DataFrame, task: str, with_stderr: bool) -> dict:
    correct = scored["predicted"].to_numpy() == scored["true"].to_numpy()
    out = {"accuracy": _round("accuracy", correct.mean())}
    if "f1_macro" in QUALITY_REPORTED[task]:
        out["f1_macro"] = _round("f1_macro", macro_f1(scored["true"], scored["predicted"]))
    return out


def macro_f1(true: pd.Series, predicted: pd.Series) -> float:
    """The mean F1 over every class seen among ``true`` and ``predicted`` (a class never predicted and never
    true on these rows has no F1 here)."""
    hits = true[true.to_numpy() == predicted.to_numpy()].value_counts()
    counts = true.value_counts().add(predicted.value_counts(), fill_value=0)
    return float((2 * hits.reindex(counts.index, fill_value=0) / counts).mean())


def _regression(scored: pd.DataFrame, task: str, with_stderr: bool) -> dict:
    error = scored["predicted"].to_numpy() - scored["true"].to_numpy()
    squared = error ** 2
    rmse = float(np.sqrt(squared.mean()))
    out = {"rmse": _round("rmse", rmse), "mae": _round("mae", np.abs(error).mean())}
    if with_stderr:  # what the canary check weighs RMSE's noise by; the delta method, se(RMSE) = se(MSE) / (2 RMSE); one row is as uncertain as its error
        se_mse = float(squared.std(ddof=1)) / math.sqrt(len(squared)) if len(squared) > 1 else 2 * rmse ** 2
        out["rmse" + STDERR_SUFFIX] = _round("rmse", se_mse / (2 * rmse)) if rmse > 0 else 0.0
    return out


def _unseen(scored: pd.DataFrame, classes: Mapping[int, Collection[str]]) -> dict[str, int]:
    learned = scored["version"].map(lambda v: classes.get(int(v)))
    outside = [label for label, known in zip(scored["true"], learned, strict=True) if known and label not in known]
    return {str(k): int(v) for k, v in pd.Series(outside, dtype=object).value_counts().sort_index().items()}


def _round(metric: str, value: float) -> float:
    """Scores in [0, 1] to four decimals; error metrics (in the target's units) to six significant digits."""
    value = float(value)
    if not math.isfinite(value):
        return value
    return float(f"{value:.6g}") if metric in IN_TARGET_UNITS else round(value, 4)
