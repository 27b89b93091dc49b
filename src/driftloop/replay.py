"""Replay a table as live traffic: rows to the gateway in timestamp order at a set rate, and their
labels to the monitor after a delay — a backtest of the whole loop on history a user already has.

Each row is one V1 request whose ``x-request-id`` is the row's id, so the label posted later (same id)
joins the logged prediction. Every column except the id, timestamp and label columns is sent as a
feature unless ``features`` names them.
"""

from __future__ import annotations

import heapq
import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import httpx
import pandas as pd

from driftloop.data import load_table
from driftloop.errors import ConfigError, DataError
from driftloop.http_guard import bearer

LABEL_BATCH = 200
FAIL_FAST_AFTER = 10


@dataclass
class ReplaySummary:
    sent: int = 0
    ok: int = 0
    errors: int = 0
    labels_posted: int = 0
    label_errors: int = 0
    seconds: float = 0.0
    first_error: str = ""

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict:
        return asdict(self) | {"rate": round(self.rate, 1)}


@dataclass(frozen=True)
class ReplayPlan:
    """What to send: the ordered feature rows, their ids and (optionally) their labels."""

    rows: list[dict]
    ids: list[str]
    labels: list | None

    @classmethod
    def from_tables(cls, data: pd.DataFrame, labels: pd.DataFrame | None = None, id_column: str | None = None,
                    label_column: str | None = None, timestamp_column: str | None = None,
                    features: list[str] | None = None) -> ReplayPlan:
        for column in (id_column, timestamp_column):
            if column and column not in data.columns:
                raise DataError(f"column '{column}' is not in the data (columns: {', '.join(map(str, data.columns))})")
        if timestamp_column:
            order = pd.to_datetime(data[timestamp_column], errors="coerce", utc=True)
            if order.isna().all():
                raise DataError(f"timestamp column '{timestamp_column}' holds no parseable times")
            data = data.assign(_order=order).sort_values("_order", kind="stable").drop(columns="_order")
        truth = None
        if labels is not None or (label_column and label_column in data.columns):
            if not id_column:
                raise ConfigError("labels need --id-column to join them to the rows")
            if not label_column:
                raise ConfigError("labels need --label-column (the label's column name)")
            source = labels if labels is not None else data
            for column in (id_column, label_column):
                if column not in source.columns:
                    raise DataError(f"column '{column}' is not in the labels")
            by_id = source.drop_duplicates(id_column, keep="last").set_index(id_column)[label_column]
            truth = data[id_column].map(by_id).tolist()
        excluded = {c for c in (id_column, timestamp_column, label_column) if c}
        names = features or [c for c in data.columns if c not in excluded]
        unknown = [c for c in names if c not in data.columns]
        if unknown:
            raise DataError(f"feature column(s) not in the data: {', '.join(unknown)}")
        ids = data[id_column].astype(str).tolist() if id_column else [f"replay-{i}" for i in range(len(data))]
        rows = json.loads(data[names].to_json(orient="records"))  # NaN → null, numpy → JSON types
        return cls(rows, ids, truth)


def replay(
    plan: ReplayPlan,
    gateway_url: str,
    model: str,
    rate: float,
    monitor_url: str | None = None,
    label_delay: float = 5.0,
    on_progress: Callable[[ReplaySummary], None] | None = None,
    stop: threading.Event | None = None,
    labels_token: str | None = None,
) -> ReplaySummary:
    """Sends the plan's rows at ``rate`` rows per second; posts labels ``label_delay`` seconds later,
    presenting ``labels_token`` (the monitor's labels token) when given."""
    if rate <= 0:
        raise ConfigError(f"rate must be > 0 rows per second, got {rate}")
    if plan.labels is not None and not monitor_url:
        raise ConfigError("labels need --monitor (the drift monitor's URL) to be posted to")
    summary = ReplaySummary()
    pending: list[tuple[float, int]] = []  # (due time, row index) of labels not yet posted
    url = f"{gateway_url.rstrip('/')}/v1/models/{model}:predict"
    started = time.monotonic()
    with httpx.Client(timeout=30) as client:
        for i, row in enumerate(plan.rows):
            if stop is not None and stop.is_set():
                break
            delay = started + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            served = _send(client, url, plan.ids[i], row, summary)
            if served and plan.labels is not None and not _missing(plan.labels[i]):
                heapq.heappush(pending, (time.monotonic() + label_delay, i))
            _post_due_labels(client, monitor_url, model, plan, pending, summary, labels_token)
            if on_progress and (i + 1) % max(1, int(rate)) == 0:
                summary.seconds = time.monotonic() - started
                on_progress(summary)
        while pending and not (stop is not None and stop.is_set()):
            time.sleep(max(0.0, min(pending[0][0] - time.monotonic(), 1.0)))
            _post_due_labels(client, monitor_url, model, plan, pending, summary, labels_token)
    summary.seconds = round(time.monotonic() - started, 2)
    return summary


def _send(client: httpx.Client, url: str, request_id: str, row: dict, summary: ReplaySummary) -> bool:
    """Sends one row; True when it was served (only then is its label worth posting)."""
    summary.sent += 1
    try:
        response = client.post(url, json={"instances": [row]}, headers={"x-request-id": request_id})
    except httpx.HTTPError as exc:
        _failed(summary, f"cannot reach {url}: {type(exc).__name__}")
        return False
    if response.status_code == 200:
        summary.ok += 1
        return True
    _failed(summary, f"{url} answered {response.status_code}: {response.text[:200]}")
    return False


def _failed(summary: ReplaySummary, error: str) -> None:
    summary.errors += 1
    summary.first_error = summary.first_error or error
    if summary.ok == 0 and summary.errors >= FAIL_FAST_AFTER:
        # Nothing has ever worked: the gateway is not there or the rows do not fit the model.
        raise ConfigError(summary.first_error)


def _post_due_labels(client: httpx.Client, monitor_url: str | None, model: str, plan: ReplayPlan,
                     pending: list[tuple[float, int]], summary: ReplaySummary, token: str | None) -> None:
    now = time.monotonic()
    due = []
    while pending and pending[0][0] <= now and len(due) < LABEL_BATCH:
        due.append(heapq.heappop(pending)[1])
    if not due:
        return
    body = [{"id": plan.ids[i], "label": _jsonable(plan.labels[i])} for i in due]
    url = f"{monitor_url.rstrip('/')}/feedback"
    try:
        response = client.post(url, json=body, params={"model": model}, headers=bearer(token))
        error = None if response.status_code == 200 else f"{url} answered {response.status_code}: {response.text[:200]}"
    except httpx.HTTPError as exc:
        error = f"cannot reach {url}: {type(exc).__name__}"
    if error is None:
        summary.labels_posted += len(due)
    else:
        summary.label_errors += len(due)
        summary.first_error = summary.first_error or error


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _jsonable(value):
    return value.item() if hasattr(value, "item") else value


def load_plan(data_uri: str, labels_uri: str | None = None, **columns) -> ReplayPlan:
    """Reads the data (and labels) table from a path or s3:// URI and plans the replay."""
    data, _ = load_table(data_uri)
    labels = load_table(labels_uri)[0] if labels_uri else None
    return ReplayPlan.from_tables(data, labels, **columns)
