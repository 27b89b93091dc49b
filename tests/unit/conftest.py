"""Fixtures for the unit tests: small synthetic churn tables, a validated spec and a fitted model.

Session-scoped fixtures are shared and must not be modified; tests that change a table take the
function-scoped ``churn_frame`` (a fresh copy) instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd
import pytest
from threadpoolctl import threadpool_limits

from driftloop import synthetic
from driftloop.data import DatasetSpec, coerce_to_spec, infer_spec
from driftloop.evaluation import Evaluation, evaluate_model
from driftloop.training import TrainResult, train_model
from driftloop.validation import validate_table

N_ROWS = 1200


@pytest.fixture(scope="session", autouse=True)
def _one_native_thread() -> Iterator[None]:
    """OpenMP pools spin-wait on a busy 2-core runner; one native thread keeps fits fast."""
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="session")
def _reference_frame() -> pd.DataFrame:
    return synthetic.generate(N_ROWS, seed=3)


@pytest.fixture
def churn_frame(_reference_frame: pd.DataFrame) -> pd.DataFrame:
    """A fresh copy of the reference-world churn table (safe to modify)."""
    return _reference_frame.copy()


@pytest.fixture(scope="session")
def churn_spec(_reference_frame: pd.DataFrame) -> DatasetSpec:
    """The inferred spec of the churn table (no target classes yet)."""
    return infer_spec(_reference_frame, synthetic.TARGET, synthetic.ID_COLUMN, synthetic.TIMESTAMP_COLUMN)


@dataclass(frozen=True)
class Validated:
    frame: pd.DataFrame
    spec: DatasetSpec


@pytest.fixture(scope="session")
def validated(_reference_frame: pd.DataFrame, churn_spec: DatasetSpec) -> Validated:
    """The churn table after validation: coerced, with the spec's target classes filled in."""
    frame, _, spec = validate_table(_reference_frame, churn_spec)
    return Validated(frame, spec)


@pytest.fixture(scope="session")
def trained_lr(validated: Validated) -> TrainResult:
    """A logistic-regression Pipeline fitted on the validated churn table."""
    return train_model(validated.frame, validated.spec, "logistic_regression", seed=1)


@pytest.fixture(scope="session")
def fresh_holdout(validated: Validated) -> pd.DataFrame:
    """1500 unseen reference-world rows, coerced like training data (enough for a long ROC curve)."""
    return coerce_to_spec(synthetic.generate(1500, seed=11), validated.spec)


@pytest.fixture(scope="session")
def lr_evaluation(trained_lr: TrainResult, validated: Validated, fresh_holdout: pd.DataFrame) -> Evaluation:
    return evaluate_model(trained_lr.model, fresh_holdout, validated.spec)
