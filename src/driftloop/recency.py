"""Drift-aware retraining: how much the new world weighs, decided on the newest rows.

A drift retrain's table holds the serving version's training data (``driftloop_source`` = ``reference``) and the
labelled live traffic since the drift (``live``); the monitor also holds back the very newest labelled rows as
a *recent slice*, never trained on. Trained on the plain mixture, the new world is drowned by the old one. So a
small fixed set of strategies is tried — live rows weighted ×1, ×3 or ×10, with all reference rows or only the
most recent ones (as many as twice the live rows) — each fitted on the training part with the same estimator,
scored by the gate metric on the recent slice, and the best kept. With no recent slice (a manual run) nothing
changes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd

from driftloop.data import LIVE, SOURCE_COLUMN, DatasetSpec
from driftloop.tasks import gate_metric_for, higher_is_better
from driftloop.training import TrainResult, choose_estimator, fit_pipeline, split_holdout

LIVE_WEIGHTS = (1.0, 3.0, 10.0)
REFERENCE_WINDOWS = ("all", "recent")  # every reference row, or the newest 2 × (live rows) of them
RECENT_WINDOW_FACTOR = 2


@dataclass(frozen=True)
class Strategy:
    """One way of weighing the new world, scored on the recent slice."""

    live_weight: float
    reference_window: str
    metric: str
    value: float
    training_rows: int
    chosen: bool = False


def train_for_recent(frame: pd.DataFrame, spec: DatasetSpec, recent: pd.DataFrame, estimator: str,
                     params: dict | None, test_size: float, seed: int, gate_metric: str, calibration: str = "none"
                     ) -> tuple[TrainResult, list[Strategy]]:
    """Fits the model the recent slice prefers: the strategies of :data:`LIVE_WEIGHTS` × :data:`REFERENCE_WINDOWS`.

    The holdout is split first from the reference rows only, and never used here: the few live rows are all
    trained on (the recent slice judges the new world). ``auto`` chooses its estimator on the plain training
    part, then the strategies vary only what the rows weigh.
    """
    from driftloop.evaluation import score_model

    gate_metric = gate_metric_for(spec.task, gate_metric)
    live = frame[SOURCE_COLUMN] == LIVE
    reference_train, holdout = split_holdout(frame[~live].reset_index(drop=True), spec, test_size, seed)
    train = pd.concat([reference_train, frame[live]], ignore_index=True)
    leaderboard = []
    if estimator == "auto":
        estimator, params, leaderboard = choose_estimator(train, spec, seed, gate_metric)
    tried: list[tuple[Strategy, object]] = []
    for window in REFERENCE_WINDOWS:
        rows = _window(train, spec, window)
        for weight in LIVE_WEIGHTS:
            weighted = rows.assign(_driftloop_weight=(rows[SOURCE_COLUMN] == LIVE).map({True: weight, False: 1.0}))
            model = fit_pipeline(weighted, spec, estimator, params, seed)
            value = score_model(gate_metric, model, recent, spec)
            tried.append((Strategy(weight, window, gate_metric, round(float(value), 6), len(rows)), model))
    sign = 1 if higher_is_better(gate_metric) else -1
    best_strategy, best_model = max(tried, key=lambda t: sign * t[0].value)  # first wins a tie
    strategies = [Strategy(**{**asdict(s), "chosen": s is best_strategy}) for s, _ in tried]
    if calibration != "none":
        rows = _window(train, spec, best_strategy.reference_window)
        weighted = rows.assign(_driftloop_weight=(rows[SOURCE_COLUMN] == LIVE).map(
            {True: best_strategy.live_weight, False: 1.0}))
        best_model = fit_pipeline(weighted, spec, estimator, params, seed, calibration=calibration)
    return TrainResult(best_model, train, holdout, estimator, leaderboard), strategies


def _window(train: pd.DataFrame, spec: DatasetSpec, window: str) -> pd.DataFrame:
    """All training rows, or the live ones plus only the newest reference rows (by timestamp when there is one)."""
    if window == "all":
        return train
    live = train[train[SOURCE_COLUMN] == LIVE]
    reference = train[train[SOURCE_COLUMN] != LIVE]
    if spec.timestamp_column and spec.timestamp_column in reference.columns:
        reference = reference.sort_values(spec.timestamp_column)
    keep = reference.tail(RECENT_WINDOW_FACTOR * len(live))
    return pd.concat([keep, live]).reset_index(drop=True)
