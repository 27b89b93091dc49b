"""Multi-class and regression models for the serving, fast-path and batch tests, trained on tables made from the
synthetic churn table's features: a support queue (four text labels) and next month's bill (an amount), each a
noisy function of the features so a model has something to learn.

Training is shared by the whole test session (:func:`trained`, cached): the results must not be modified."""

from __future__ import annotations

import functools
import io
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from driftloop import synthetic
from driftloop.data import DatasetSpec, infer_spec
from driftloop.tasks import MULTICLASS, REGRESSION

QUEUE, BILL = "queue", "bill"
QUEUES = ("billing", "cancellations", "retention", "tech")  # sorted: the spec's class order
TARGETS = {MULTICLASS: QUEUE, REGRESSION: BILL}
TRAIN_ROWS = 1200
SMALL_FOREST = {"n_estimators": 40}  # the same kind of trees as the default forest, a quicker test


def multiclass_frame(n_rows: int, seed: int) -> pd.DataFrame:
    """The churn features and ``queue``, the team a customer's ticket goes to (four text labels)."""
    frame = synthetic.generate(n_rows, seed=seed).drop(columns=[synthetic.TARGET])
    rng = np.random.default_rng(seed + 1000)
    scores = np.stack([
        0.03 * (frame["monthly_spend"] - 70) + 0.8 * (frame["plan"] == "basic"),  # billing
        0.5 * (frame["support_calls"] - 1.2) - 0.02 * (frame["tenure_months"] - 28),  # cancellations
        0.02 * (frame["tenure_months"] - 28) + 0.6 * frame["is_promo"],  # retention
        0.04 * (frame["days_since_login"].fillna(9) - 9) + 0.7 * (frame["channel"] == "app"),  # tech
    ], axis=1) + rng.gumbel(size=(n_rows, len(QUEUES)))
    frame[QUEUE] = np.asarray(QUEUES, dtype=object)[np.argmax(scores, axis=1)]
    return frame


def regression_frame(n_rows: int, seed: int) -> pd.DataFrame:
    """The churn features and ``bill``, next month's bill in currency units (an amount)."""
    frame = synthetic.generate(n_rows, seed=seed).drop(columns=[synthetic.TARGET])
    rng = np.random.default_rng(seed + 2000)
    bill = (1.1 * frame["monthly_spend"] + 4.0 * frame["num_products"] + 3.0 * frame["support_calls"]
            + np.select([frame["plan"] == "premium", frame["plan"] == "basic"], [25.0, -10.0], 0.0)
            - 6.0 * frame["has_autopay"] + rng.normal(0, 5, n_rows))
    frame[BILL] = bill.round(2)
    return frame


FRAMES = {MULTICLASS: multiclass_frame, REGRESSION: regression_frame}


def task_frame(task: str, n_rows: int, seed: int) -> pd.DataFrame:
    """A table of ``task``'s target (see the module)."""
    return FRAMES[task](n_rows, seed)


@dataclass(frozen=True)
class Trained:
    """A validated table, its spec and a model trained on it (``result`` is training's TrainResult)."""

    frame: pd.DataFrame
    spec: DatasetSpec
    result: object

    @property
    def model(self):
        return self.result.model

    def checked_rows(self) -> dict[str, pd.DataFrame]:
        """The rows registration checks a fast path on."""
        return {"holdout": self.result.holdout_frame,
                "reference_sample": self.result.train_frame.sample(300, random_state=0)}


@functools.cache
def validated(task: str) -> tuple[pd.DataFrame, DatasetSpec]:
    from driftloop.validation import validate_table

    frame = task_frame(task, TRAIN_ROWS, seed=3)
    spec = infer_spec(frame, TARGETS[task], synthetic.ID_COLUMN, synthetic.TIMESTAMP_COLUMN)
    assert spec.task == task, spec.task
    frame, _, spec = validate_table(frame, spec)
    return frame, spec


@functools.cache
def trained(task: str, estimator: str) -> Trained:
    """``estimator`` trained on ``task``'s table (one native thread: fits stay quick on a busy runner)."""
    from driftloop.training import train_model

    frame, spec = validated(task)
    with threadpool_limits(limits=1):
        result = train_model(frame, spec, estimator, SMALL_FOREST if estimator == "random_forest" else None,
                             seed=1)
    return Trained(frame, spec, result)


def register(registry, workdir: Path, name: str, model: Trained, fast_path: bool = True) -> int:
    """Registers ``model`` as ``name`` with its spec and reference sample and, with ``fast_path``, the graph and
    record registration compiles (so the version serves its fast path when it was accepted); returns the
    version number."""
    from driftloop.fastpath.agreement import compile_fast_path
    from driftloop.model_dir import FAST_PATH_KEY, ONNX_FILENAME
    from driftloop.training import save_model

    directory = workdir / f"{name}-{uuid.uuid4().hex[:8]}"
    save_model(model.model, directory)
    lineage = {}
    if fast_path:
        graph, record = compile_fast_path(model.model, model.spec, model.checked_rows())
        assert record.accepted, record.reason
        (directory / ONNX_FILENAME).write_bytes(graph)
        lineage[FAST_PATH_KEY] = record.to_dict()
    sample = io.BytesIO()
    model.frame.sample(n=min(len(model.frame), 1000), random_state=0).to_parquet(sample, index=False)
    version = registry.register(name, directory, model_format="sklearn", lineage=lineage, metrics={},
                                attachments={"spec.json": model.spec.to_json().encode(),
                                             "reference_sample.parquet": sample.getvalue()}, actor="test")
    return version.version
