"""Multi-class and regression models for the serving, fast-path and batch tests, trained on the synthetic
generator's tables of those tasks (``retention_offer``: four text labels; ``next_month_spend``: an amount).

Training is shared by the whole test session (:func:`trained`, cached): the results must not be modified."""

from __future__ import annotations

import functools
import io
import uuid
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from threadpoolctl import threadpool_limits

from driftloop import synthetic
from driftloop.data import DatasetSpec, infer_spec

CLASSES = tuple(sorted(synthetic.OFFERS))  # the multi-class spec's class order
TRAIN_ROWS = 1200
SMALL_FOREST = {"n_estimators": 40}  # the same kind of trees as the default forest, a quicker test


def task_frame(task: str, n_rows: int, seed: int) -> pd.DataFrame:
    """The synthetic table of ``task`` (its target in ``synthetic.TARGETS[task]``)."""
    return synthetic.generate(n_rows, seed=seed, task=task)


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
    spec = infer_spec(frame, synthetic.TARGETS[task], synthetic.ID_COLUMN, synthetic.TIMESTAMP_COLUMN)
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
