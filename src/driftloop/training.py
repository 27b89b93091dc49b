"""Training: a scikit-learn Pipeline that owns its preprocessing, with a choice of estimator — or ``auto``.

The saved artifact is one ``model.joblib`` holding the whole Pipeline (ColumnTransformer + estimator),
built only from scikit-learn and XGBoost classes, so a DataFrame made from dict instances predicts correctly.

``auto`` (the default) fits a small fixed set of candidates — a linear model, scikit-learn's histogram
gradient boosting (categoricals natively, early stopping) and XGBoost (early stopping on a validation split) —
on the training part, picks the best by the gate's metric on a validation split carved from the training part
(the holdout stays untouched for the gate), refits the winner on the whole training part, and reports the
leaderboard. Every candidate is seeded: the same data and seed give the same choice and the same model.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, OrdinalEncoder, StandardScaler

from driftloop.ct_params import AUTO, default_of
from driftloop.data import MISSING_CATEGORY, DatasetSpec
from driftloop.errors import ConfigError, DataValidationError
from driftloop.model_dir import MODEL_FILENAME
from driftloop.tasks import (
    BINARY,
    INFER,
    REGRESSION,
    estimator_mismatch,
    gate_metric_for,
    higher_is_better,
    is_classification,
)


def _logistic_regression(seed: int, task: str) -> Any:
    return LogisticRegression(max_iter=2000, random_state=seed)


def _ridge(seed: int, task: str) -> Any:
    return Ridge(alpha=1.0, random_state=seed)


def _random_forest(seed: int, task: str) -> Any:
    kind = RandomForestClassifier if is_classification(task) else RandomForestRegressor
    return kind(n_estimators=200, min_samples_leaf=3, random_state=seed, n_jobs=1)


def _gradient_boosting(seed: int, task: str) -> Any:
    # Early stopping on its own 10 % of whatever it is fitted on; up to 300 rounds.
    kind = HistGradientBoostingClassifier if is_classification(task) else HistGradientBoostingRegressor
    return kind(max_iter=300, early_stopping=True, validation_fraction=0.1, n_iter_no_change=15, random_state=seed)


def _xgboost(seed: int, task: str) -> Any:
    from xgboost import XGBClassifier, XGBRegressor

    # One thread and the exact 'hist' method keep training bit-for-bit repeatable.
    kind = XGBClassifier if is_classification(task) else XGBRegressor
    return kind(n_estimators=200, max_depth=4, learning_rate=0.1, tree_method="hist", random_state=seed, n_jobs=1)


# Each factory builds the task's estimator (tasks.TASK_ONLY_ESTIMATORS says which fit only some tasks).
ESTIMATORS: dict[str, Callable[[int, str], Any]] = {
    "logistic_regression": _logistic_regression,
    "ridge": _ridge,
    "random_forest": _random_forest,
    "gradient_boosting": _gradient_boosting,
    "xgboost": _xgboost,
}


def estimators_for(task: str) -> tuple[str, ...]:
    """The estimator names that fit ``task``."""
    return tuple(name for name in ESTIMATORS if estimator_mismatch(name, task) is None)


def make_estimator(name: str, params: dict[str, Any] | None, seed: int, task: str = BINARY) -> Any:
    """Builds the ``task``'s estimator by name, with user parameters over the defaults.

    Raises:
        ConfigError: unknown estimator or parameter, or an estimator that does not fit the task.
    """
    if name not in ESTIMATORS:
        raise ConfigError(f"unknown estimator '{name}'; choose one of {', '.join(ESTIMATORS)}")
    mismatch = estimator_mismatch(name, task)
    if mismatch:
        raise ConfigError(mismatch)
    estimator = ESTIMATORS[name](seed, task)
    params = dict(params or {})
    unknown = sorted(set(params) - set(estimator.get_params()))
    if unknown:
        raise ConfigError(f"estimator '{name}' has no parameter(s) {', '.join(unknown)}")
    defaults = estimator.get_params()
    params = {key: _restore_int(key, value, defaults[key]) for key, value in params.items()}
    try:
        estimator.set_params(**params)
        if hasattr(estimator, "_parameter_constraints"):
            # scikit-learn checks values only at fit; check them now so a bad value fails before a run.
            estimator._validate_params()
    except (TypeError, ValueError) as exc:  # InvalidParameterError is a ValueError
        raise ConfigError(f"invalid parameters for '{name}': {_first_line(exc)}") from None
    return estimator


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


# Parameters that default to None but take whole numbers when set.
_INT_WHEN_SET = {"max_depth", "max_leaf_nodes", "random_state", "n_jobs", "max_bin", "max_iter"}


def _restore_int(key: str, value: Any, default: Any) -> Any:
    """KFP passes dict parameters as a protobuf Struct, where every number is a float: 60 → 60.0.
    Give integer-typed parameters their integers back."""
    if isinstance(value, float) and value.is_integer():
        is_int_param = isinstance(default, int) and not isinstance(default, bool)
        if is_int_param or (default is None and key in _INT_WHEN_SET):
            return int(value)
    return value


def build_pipeline(spec: DatasetSpec, estimator_name: str, params: dict[str, Any] | None, seed: int) -> Pipeline:
    """The preprocessing + estimator Pipeline for ``spec``.

    Numeric: median imputation and scaling. Categorical: missing values become their own category, then
    one-hot encoding that ignores values never seen in training — except for histogram gradient boosting,
    which takes categories natively (ordinal codes, unseen values as missing). Boolean: 0/1 with missing
    values set to the most frequent one.
    """
    native = estimator_name == "gradient_boosting"
    transformers = []
    numeric = spec.names_of("numeric")
    if numeric:
        transformers.append(
            ("numeric", Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]), numeric)
        )
    categorical = spec.names_of("categorical")
    if categorical:
        transformers.append(("categorical", _categorical_encoder(ordinal=native), categorical))
    boolean = spec.names_of("boolean")
    if boolean:
        transformers.append(("boolean", _boolean_encoder(), boolean))
    preprocess = ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=False)
    model = make_estimator(estimator_name, params, seed, spec.task)
    if native and categorical:
        mask = [False] * len(numeric) + [True] * len(categorical) + [False] * len(boolean)
        model.set_params(categorical_features=mask)
    return Pipeline([("preprocess", preprocess), ("model", model)])


def _categorical_encoder(ordinal: bool = False) -> Pipeline:
    """Imputes both spellings of "missing" (NaN from pandas, None from JSON null), then encodes: one-hot, or
    ordinal codes for an estimator that takes categories natively (at most 250 kept; rarer ones share a code,
    unseen ones count as missing).

    One imputer per spelling: scikit-learn's imputer matches one marker, and the encoder would
    otherwise treat None and NaN as two different categories.
    """
    encode = (OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan, max_categories=250)
              if ordinal else OneHotEncoder(handle_unknown="ignore", sparse_output=False))
    return Pipeline([
        ("impute_nan", SimpleImputer(missing_values=np.nan, strategy="constant", fill_value=MISSING_CATEGORY)),
        ("impute_none", SimpleImputer(missing_values=None, strategy="constant", fill_value=MISSING_CATEGORY)),
        ("ordinal" if ordinal else "onehot", encode),
    ])


def _boolean_encoder() -> Pipeline:
    """True/False (bool dtype from JSON or Parquet, or objects with None/NaN) as 1.0/0.0/NaN, imputed.

    ``numpy.asarray`` does the cast so the saved Pipeline needs nothing beyond numpy and scikit-learn.
    """
    return Pipeline([
        ("as_float", FunctionTransformer(np.asarray, kw_args={"dtype": np.float64}, feature_names_out="one-to-one")),
        ("impute", SimpleImputer(strategy="most_frequent")),
    ])


def encode_target(frame: pd.DataFrame, spec: DatasetSpec) -> np.ndarray:
    """What the model is fitted on: class indices into the spec's classes (binary: 1 is the positive, second
    class), or a regression target's numbers. A label the spec does not know becomes -1 (never a class)."""
    if spec.task == REGRESSION:
        return pd.to_numeric(frame[spec.target], errors="coerce").to_numpy(dtype=float)
    if len(spec.target_classes) < 2:
        raise DataValidationError(spec.target, "spec has no target classes; validate the data first")
    index = {label: i for i, label in enumerate(spec.target_classes)}
    return frame[spec.target].map(index).fillna(-1).to_numpy().astype(int)


def stratify_by(y: np.ndarray, spec: DatasetSpec) -> np.ndarray | None:
    """What a split stratifies on: the class when every class has two rows, else nothing (regression too)."""
    if not spec.is_classification:
        return None
    return y if np.bincount(y[y >= 0]).min() >= 2 else None


@dataclass(frozen=True)
class Candidate:
    """One estimator ``auto`` tried: its validation score by the gate metric and its fit time."""

    estimator: str
    metric: str
    value: float
    fit_seconds: float
    chosen: bool = False


@dataclass
class TrainResult:
    """A fitted Pipeline, the rows it was fitted and held out on, and how the estimator was chosen."""

    model: Pipeline
    train_frame: pd.DataFrame
    holdout_frame: pd.DataFrame
    estimator: str = ""  # the one fitted (what ``auto`` chose)
    leaderboard: list[Candidate] = field(default_factory=list)

    def leaderboard_dicts(self) -> list[dict]:
        return [asdict(c) for c in self.leaderboard]


# What ``auto`` tries, in order of preference on a tie (simplest first), and its validation share.
AUTO_CANDIDATES = ("logistic_regression", "gradient_boosting", "xgboost")
REGRESSION_AUTO_CANDIDATES = ("ridge", "gradient_boosting", "xgboost")
AUTO_VALIDATION_SHARE = 0.2
XGBOOST_MAX_ROUNDS, XGBOOST_PATIENCE = 600, 30  # auto's XGBoost: early stopping on the validation split


def split_holdout(frame: pd.DataFrame, spec: DatasetSpec, test_size: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A seeded, stratified train/holdout split."""
    if not 0.05 <= test_size <= 0.5:
        raise ConfigError(f"test_size must be between 0.05 and 0.5, got {test_size}")
    stratify = stratify_by(encode_target(frame, spec), spec)
    train, holdout = train_test_split(frame, test_size=test_size, random_state=seed, stratify=stratify)
    return train.reset_index(drop=True), holdout.reset_index(drop=True)


def train_model(
    frame: pd.DataFrame,
    spec: DatasetSpec,
    estimator: str = default_of("estimator"),
    params: dict[str, Any] | None = None,
    test_size: float = 0.25,
    seed: int = 42,
    gate_metric: str = INFER,
    weights: pd.Series | None = None,
    calibration: str = default_of("calibration"),
) -> TrainResult:
    """Splits ``frame`` and fits the Pipeline on the training part.

    Args:
        estimator: A name from :data:`ESTIMATORS`, or ``auto`` to choose among :data:`AUTO_CANDIDATES`.
        gate_metric: What ``auto`` chooses by (the gate judges the same metric); ``auto``: the task's default.
        weights: Optional sample weight per row of ``frame`` (index-aligned), e.g. recent rows weighing more.
        calibration: "none", "sigmoid" or "isotonic": calibrate the final model's probabilities.
    """
    gate_metric = gate_metric_for(spec.task, gate_metric)
    if calibration != "none" and not spec.is_classification:
        raise ConfigError("calibration is for classifiers' probabilities; a regression takes 'none'")
    if weights is not None:
        frame = frame.assign(_driftloop_weight=weights.to_numpy())
    train, holdout = split_holdout(frame, spec, test_size, seed)
    leaderboard: list[Candidate] = []
    if estimator == AUTO:
        if params:
            raise ConfigError("estimator parameters need a pinned estimator, not 'auto'")
        estimator, params, leaderboard = choose_estimator(train, spec, seed, gate_metric)
    pipeline = fit_pipeline(train, spec, estimator, params, seed, calibration=calibration)
    drop = ["_driftloop_weight"] if weights is not None else []
    return TrainResult(pipeline, train.drop(columns=drop), holdout.drop(columns=drop), estimator, leaderboard)


def choose_estimator(train: pd.DataFrame, spec: DatasetSpec, seed: int, metric: str
                     ) -> tuple[str, dict[str, Any], list[Candidate]]:
    """Fits every ``auto`` candidate on part of ``train`` and scores it on the rest (stratified, seeded).

    Returns:
        The winner, the parameters its refit takes (XGBoost: the rounds early stopping found), the leaderboard.
    """
    from driftloop.evaluation import score_model

    metric = gate_metric_for(spec.task, metric)
    stratify = stratify_by(encode_target(train, spec), spec)
    fit_part, validation = train_test_split(train, test_size=AUTO_VALIDATION_SHARE, random_state=seed,
                                            stratify=stratify)
    candidates, refit = [], {}
    for name in auto_candidates(spec.task):
        started = time.perf_counter()
        model = fit_pipeline(fit_part, spec, name, None, seed, validation=validation)
        value = score_model(metric, model, validation, spec)
        candidates.append(Candidate(name, metric, round(float(value), 6), round(time.perf_counter() - started, 3)))
        if name == "xgboost":
            refit[name] = {"n_estimators": int(model.named_steps["model"].best_iteration) + 1}
    sign = 1 if higher_is_better(metric) else -1
    best = max(candidates, key=lambda c: sign * c.value)  # first wins a tie
    leaderboard = [Candidate(**{**asdict(c), "chosen": c is best}) for c in candidates]
    return best.estimator, refit.get(best.estimator, {}), leaderboard


def fit_pipeline(train: pd.DataFrame, spec: DatasetSpec, estimator: str, params: dict[str, Any] | None, seed: int,
                 validation: pd.DataFrame | None = None, calibration: str = "none") -> Pipeline:
    """Fits one Pipeline; XGBoost stops early on ``validation`` when one is given (an ``auto`` candidate).

    With ``calibration`` "sigmoid" or "isotonic" the probabilities are calibrated (scikit-learn's
    ``CalibratedClassifierCV``, 3 folds, one final model refitted on every row): the fit costs four times more.
    """
    pipeline = build_pipeline(spec, estimator, params, seed)
    y = encode_target(train, spec)
    if spec.is_classification and len(np.unique(y)) < 2:
        raise DataValidationError(spec.target, "the training split has a single class; add data")
    if spec.is_classification and (y < 0).any():
        raise DataValidationError(spec.target, "the training rows hold a label the spec's classes do not; "
                                  "validate the data first")
    fit_params = {}
    weight = train["_driftloop_weight"].to_numpy() if "_driftloop_weight" in train.columns else None
    if calibration != "none":
        from sklearn.calibration import CalibratedClassifierCV

        calibrated = CalibratedClassifierCV(pipeline, method=calibration, cv=3, ensemble=False)
        return calibrated.fit(train[spec.feature_names], y, sample_weight=weight)
    if weight is not None:
        fit_params["model__sample_weight"] = weight
    if estimator == "xgboost" and validation is not None:
        pre = pipeline[:-1].fit(train[spec.feature_names])
        pipeline.named_steps["model"].set_params(n_estimators=XGBOOST_MAX_ROUNDS, early_stopping_rounds=XGBOOST_PATIENCE)
        fit_params["model__eval_set"] = [(pre.transform(validation[spec.feature_names]), encode_target(validation, spec))]
        fit_params["model__verbose"] = False
    try:
        pipeline.fit(train[spec.feature_names], y, **fit_params)
    except Exception as exc:
        # XGBoost validates its parameters only inside fit, with its own error type.
        if type(exc).__name__ == "XGBoostError":
            raise ConfigError(f"invalid parameters for '{estimator}': {_first_line(exc)}") from None
        raise
    return pipeline


def save_model(model: Pipeline, directory: str | Path) -> Path:
    """Writes the one model file KServe's sklearn runtime loads; nothing else goes in ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / MODEL_FILENAME
    joblib.dump(model, path)
    return path


def load_model(directory: str | Path) -> Pipeline:
    """Loads the Pipeline from a model directory (checksums are the registry's job, before this)."""
    return joblib.load(Path(directory) / MODEL_FILENAME)


def auto_candidates(task: str) -> tuple[str, ...]:
    """What ``auto`` tries for ``task``."""
    return AUTO_CANDIDATES if is_classification(task) else REGRESSION_AUTO_CANDIDATES


def predict_positive_proba(model: Pipeline, frame: pd.DataFrame, spec: DatasetSpec) -> np.ndarray:
    """Probability of the positive class for each row (binary)."""
    return model.predict_proba(frame[spec.feature_names])[:, 1]


def model_output(model: Pipeline, frame: pd.DataFrame, spec: DatasetSpec) -> np.ndarray:
    """What the task's metrics are computed from: a probability per class ([n, k], the spec's class order) for a
    classifier, the predicted numbers for a regression."""
    if spec.is_classification:
        return model.predict_proba(frame[spec.feature_names])
    return np.asarray(model.predict(frame[spec.feature_names]), dtype=float)
