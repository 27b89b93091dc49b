"""A trigger's retrain: assemble the training table, and judge how the new version's rollout ended.

The table is the serving version's training data plus the most recent labelled live traffic,
validated against the version's spec and profile like any other training data: poisoned or
out-of-range traffic blocks the retrain with the checker's reason instead of reaching a model.
The CT run itself starts through a runner (:mod:`driftloop.runners`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from driftloop import storage
from driftloop.data import LIVE, REFERENCE, SOURCE_COLUMN, DatasetSpec, coerce_to_spec, load_table
from driftloop.errors import ConfigError, DataError
from driftloop.monitor.config import RetrainConfig
from driftloop.monitor.labels import LabelStore, normalise_label, row_key
from driftloop.monitor.store import RowStore
from driftloop.profile import ReferenceProfile
from driftloop.registry import CANARY, PRODUCTION, ModelRegistry, approvals
from driftloop.validation import validate_table


@dataclass
class TrainingTable:
    uri: str
    n_reference: int
    n_recent: int  # labelled live rows trained on
    reference_uri: str
    recent_uri: str = ""  # the newest labelled rows, held back (empty: none)
    n_holdback: int = 0


def assemble_training_data(registry: ModelRegistry, store: RowStore, labels: LabelStore, model: str, version: int,
                           config: RetrainConfig, key: str, default_dir: Path,
                           since: pd.Timestamp | None = None) -> TrainingTable:
    """Reference data + recent labelled traffic (received at or after ``since``), validated, written as
    Parquet; returns where. Rows are marked by where they came from (``driftloop_source``: reference | live), and
    the newest labelled rows are held back in a table of their own (the recent slice; see
    :class:`~driftloop.monitor.config.RetrainConfig`), which the pipeline never trains on.

    Raises:
        DataValidationError: the recent traffic fails validation (the retrain is blocked).
        DataError: no labelled traffic yet, or the reference data cannot be read.
    """
    spec = DatasetSpec.from_json(registry.read_file(model, version, "spec.json").decode())
    profile = ReferenceProfile.from_json(registry.read_file(model, version, "profile.json").decode())
    reference_uri = config.reference_uri or registry.get_version(model, version).lineage.get("data_uri", "")
    if not reference_uri:
        raise ConfigError(f"{model} v{version} records no training data URI; set retrain.reference_uri")
    reference, _ = load_table(reference_uri)
    if config.reference_rows is not None and len(reference) > config.reference_rows:
        reference = reference.sample(n=config.reference_rows, random_state=0)
    recent = recent_labelled_rows(store, labels, model, spec, config.recent_rows, since)
    if recent.empty:
        raise DataError("no labelled live traffic yet: post labels to the monitor's /feedback before retraining")
    # The same checks as the pipeline's first step, against the serving version's profile.
    recent, _, _ = validate_table(recent, spec, profile)
    columns = [c for c in [spec.id_column, spec.timestamp_column, *spec.feature_names, spec.target] if c]
    holdback = min(config.holdback_rows, len(recent) // 3)
    if holdback < config.min_holdback_rows:
        holdback = 0  # too few rows to judge anything on: a plain retrain
    live, held = recent.iloc[:len(recent) - holdback], recent.iloc[len(recent) - holdback:]  # oldest first
    combined = pd.concat([_bookkeeping(coerce_to_spec(reference, spec), spec)[columns].assign(**{SOURCE_COLUMN: REFERENCE}),
                          _bookkeeping(live, spec)[columns].assign(**{SOURCE_COLUMN: LIVE})], ignore_index=True)
    base = config.data_dir.rstrip("/") if config.data_dir else str(default_dir)
    uri = storage.write_bytes(f"{base}/{model}/retrain-{key}.parquet", _parquet(combined))
    recent_uri = ""
    if holdback:
        recent_uri = storage.write_bytes(f"{base}/{model}/retrain-{key}-recent.parquet",
                                         _parquet(_bookkeeping(held, spec)[columns]))
    return TrainingTable(uri, len(reference), len(live), reference_uri, recent_uri, holdback)


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def _bookkeeping(frame: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """Ids as text and times as UTC timestamps, so file rows and logged rows share one column type."""
    frame = frame.copy()
    if spec.id_column:
        frame[spec.id_column] = frame[spec.id_column].astype(str)
    if spec.timestamp_column:
        frame[spec.timestamp_column] = pd.to_datetime(frame[spec.timestamp_column], utc=True, errors="coerce")
    return frame


def recent_labelled_rows(store: RowStore, labels: LabelStore, model: str, spec: DatasetSpec, limit: int,
                         since: pd.Timestamp | None = None) -> pd.DataFrame:
    """The newest ``limit`` logged rows of ``model`` that have a label, shaped like training data."""
    rows = store.read(model, since)  # parts and rows not yet written (they are safe in the ingest log)
    if rows.empty or limit == 0:
        return pd.DataFrame()
    rows = rows.sort_values("received_at")
    keys = pd.Series([row_key(e, r) for e, r in zip(rows["event_id"], rows["row"], strict=True)], index=rows.index)
    truth = labels.lookup(keys)
    if not spec.is_classification:  # amounts; a label that is no number (checked against another model) is left out
        truth = pd.to_numeric(truth, errors="coerce")
    rows = rows[truth.notna()].tail(limit)
    if rows.empty:
        return pd.DataFrame()
    out = rows[spec.feature_names].copy()
    out[spec.target] = (_as_classes(truth[rows.index], spec) if spec.is_classification
                        else truth[rows.index].astype(float))
    if spec.id_column:  # the request id, as the caller knows it (with the row for batch requests)
        out[spec.id_column] = [e if r == 0 else f"{e}:{r}" for e, r in zip(rows["event_id"], rows["row"], strict=True)]
    if spec.timestamp_column:
        out[spec.timestamp_column] = rows["received_at"]
    return out[out[spec.target].notna()].reset_index(drop=True)


def _as_classes(labels: pd.Series, spec: DatasetSpec) -> pd.Series:
    """Normalised label text as the values the spec's classes hold; a class the version never learned keeps the
    classes' type (a number among numbers), so the retrain's table has one type per column; text among numeric
    classes becomes None and its row is left out."""
    classes = {normalise_label(c): c for c in spec.target_classes}
    numeric = bool(classes) and all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in classes.values())

    def as_class(label: str):
        if label in classes or not numeric:
            return classes.get(label, label)
        try:
            number = float(label)
        except ValueError:  # text among numeric classes: no value of the column's type can hold it
            return None
        return int(number) if number.is_integer() else number

    return labels.map(as_class)


PROMOTED, CANARY_SERVING, ROLLED_BACK, NOT_DEPLOYED = "promoted", "canary", "rolled-back", "not-deployed"
# A version that passed its canary analysis and waits for a person (the approval policy).
PENDING_APPROVAL = approvals.PENDING_APPROVAL
# Entries that take a canary out of service: aborted by analysis, failed to start, rejected, approval timed out.
TAKEN_OUT = ("rollout-abort", "rollout-failed", approvals.REJECT, approvals.APPROVAL_EXPIRED)


def rollout_outcome(registry: ModelRegistry, model: str, version: int) -> str:
    """How a registered version's rollout ended, from the registry: promoted (production now, or before a
    later version replaced it), pending-approval (its canary waits for a person), canary (still serving its
    share), rolled-back (aborted, failed to start, rejected or expired), or not-deployed."""
    state = registry.state(model)
    if state.aliases.get(PRODUCTION) == version:
        return PROMOTED
    if state.pending_approval is not None and state.pending_approval.version == version:
        return PENDING_APPROVAL
    if state.aliases.get(CANARY) == version:
        return CANARY_SERVING
    for entry in reversed(registry.history(model)):
        if entry.action in TAKEN_OUT and version in (entry.from_version, entry.to_version):
            return ROLLED_BACK
        if entry.action == "promote" and entry.to_version == version:
            return PROMOTED
    return NOT_DEPLOYED
