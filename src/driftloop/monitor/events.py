"""Joining KServe payload-log CloudEvents (request + response, shared ``ce-id``) into scored rows."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
import pandas as pd
from kserve.errors import InvalidInput

from driftloop.data import DatasetSpec
from driftloop.serving.payload import frame_from_payload
from driftloop.serving.payload_logger import REQUEST_TYPE, RESPONSE_TYPE

# Columns every stored row carries besides the model's features.
META_COLUMNS = ("event_id", "row", "model", "version", "endpoint", "prediction", "received_at")


class EventError(ValueError):
    """An event that is not a KServe payload-log event or cannot be decoded."""


@dataclass
class _Pending:
    first_seen: float
    headers: dict[str, str]
    request: dict | None = None
    response: dict | None = None


@dataclass
class EventJoiner:
    """Pairs request and response events by ``ce-id`` and turns each pair into rows.

    Args:
        spec_for: (model, version) → the version's DatasetSpec, to decode the request's features.
        version_for: (model, endpoint) → the version serving that endpoint, for events without a
            ``ce-modelversion`` extension (KServe's own logger does not send one).
        max_age: Seconds an unpaired event waits for its partner before it is dropped and counted.
    """

    spec_for: Callable[[str, int], DatasetSpec]
    version_for: Callable[[str, str], int | None]
    max_age: float = 60.0
    orphaned: int = 0
    _pending: dict[str, _Pending] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, headers: dict[str, str], body: bytes, now: float | None = None) -> pd.DataFrame | None:
        """Takes one event; returns its rows once both halves have arrived."""
        now = time.time() if now is None else now
        headers = {k.lower(): v for k, v in headers.items()}
        event_id, event_type = headers.get("ce-id"), headers.get("ce-type")
        if not event_id or event_type not in (REQUEST_TYPE, RESPONSE_TYPE):
            raise EventError(f"not a KServe payload event (ce-id {event_id!r}, ce-type {event_type!r})")
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise EventError(f"event {event_id}: body is not JSON ({exc})") from None
        # The two halves of one event can arrive at once (the logger keeps several in flight and the
        # monitor decodes in worker threads): exactly one of them must complete the pair.
        with self._lock:
            pending = self._pending.setdefault(event_id, _Pending(now, headers))
            if event_type == REQUEST_TYPE:
                pending.request = payload
            else:
                pending.response = payload
            self._expire(now)
            if pending.request is None or pending.response is None:
                return None
            del self._pending[event_id]
        return self._rows(event_id, pending, now)

    def _expire(self, now: float) -> None:
        stale = [key for key, p in self._pending.items() if now - p.first_seen > self.max_age]
        for key in stale:
            del self._pending[key]
        self.orphaned += len(stale)

    def _rows(self, event_id: str, pending: _Pending, now: float) -> pd.DataFrame:
        headers = pending.headers
        model = headers.get("ce-inferenceservicename", "")
        endpoint = headers.get("ce-endpoint", "default")
        version = headers.get("ce-modelversion")
        number = int(version) if version and version.isdigit() else self.version_for(model, endpoint)
        if number is None:
            raise EventError(f"event {event_id}: no version serves {model}/{endpoint}")
        spec = self.spec_for(model, number)
        try:
            frame = frame_from_payload(pending.request, spec)
        except InvalidInput as exc:
            raise EventError(f"event {event_id}: request does not decode: {exc}") from None
        predictions = _predictions(pending.response)
        if len(predictions) != len(frame):
            raise EventError(f"event {event_id}: {len(frame)} rows but {len(predictions)} predictions")
        frame = frame.assign(event_id=event_id, row=range(len(frame)), model=model, version=number,
                             endpoint=endpoint, prediction=predictions,
                             received_at=pd.Timestamp(now, unit="s", tz="UTC"))
        return frame


def _predictions(response: dict) -> list:
    if "predictions" in response:
        return list(response["predictions"])
    outputs = response.get("outputs") or []
    if outputs:
        return list(outputs[0].get("data") or [])
    raise EventError("response has neither predictions (V1) nor outputs (V2)")
