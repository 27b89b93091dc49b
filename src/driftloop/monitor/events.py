"""Joining KServe payload-log CloudEvents (request + response, shared ``ce-id``) into scored rows."""

from __future__ import annotations

import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
import pandas as pd
from kserve.errors import InvalidInput

from driftloop.data import DatasetSpec
from driftloop.model_dir import VERSION_ANNOTATION
from driftloop.serving.payload import frame_from_payload
from driftloop.serving.payload_logger import REQUEST_TYPE, RESPONSE_TYPE

# A version number as events carry it: digits, few enough to be a version (int() of thousands of digits raises).
_VERSION_NUMBER = re.compile(r"[0-9]{1,9}")
# Columns every stored row carries besides the model's features.
META_COLUMNS = ("event_id", "row", "model", "version", "endpoint", "prediction", "received_at")


class EventError(ValueError):
    """An event that is not a KServe payload-log event or cannot be decoded."""


# An event's half waits at most this long, and the map holds at most this much, for its partner.
MAX_PENDING_EVENTS = 20_000
MAX_PENDING_BYTES = 64 * 1024 * 1024


@dataclass
class _Pending:
    first_seen: float
    headers: dict[str, str]
    bodies: dict[str, bytes] = field(default_factory=dict)  # "request" / "response" → the half's raw body

    @property
    def size(self) -> int:
        return sum(len(b) for b in self.bodies.values())


@dataclass
class EventJoiner:
    """Pairs request and response events by ``ce-id`` and turns each pair into rows.

    The version that answered comes from ``ce-modelversion`` (driftloop's gateway), else from the
    ``ce-annotations`` extension KServe's agent fills from ``logger.metadataAnnotations`` (driftloop's
    InferenceServices list the ``driftloop.io/model-version`` predictor annotation there), else — for a logger
    that sends neither — from the alias that serves ``ce-endpoint``.

    Args:
        spec_for: (model, version) → the version's DatasetSpec, to decode the request's features.
        version_for: (model, endpoint) → the version serving that endpoint, for events that name no version.
        endpoint_for: (model, version) → "canary" or "default", for events that name no endpoint (KServe's
            agent sends an empty one).
        max_age: Seconds an unpaired event waits for its partner before it is dropped and counted.
        max_pending, max_pending_bytes: How many unpaired events, and how many body bytes of them, wait at
            most; beyond that the oldest are dropped (a sender of lone halves cannot fill the memory).
        on_drop: Called with ("expired_pending" | "dropped_pending", count) for halves given up on.
    """

    spec_for: Callable[[str, int], DatasetSpec]
    version_for: Callable[[str, str], int | None]
    endpoint_for: Callable[[str, int], str] = lambda model, version: "default"
    max_age: float = 60.0
    max_pending: int = MAX_PENDING_EVENTS
    max_pending_bytes: int = MAX_PENDING_BYTES
    on_drop: Callable[[str, int], None] = lambda outcome, count: None
    orphaned: int = 0  # halves whose partner never came (expired or dropped)
    # In arrival order, so expiry and eviction look only at the front: O(1) per event, not a scan.
    _pending: OrderedDict[str, _Pending] = field(default_factory=OrderedDict)
    _pending_bytes: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, headers: dict[str, str], body: bytes, now: float | None = None) -> pd.DataFrame | None:
        """Takes one event; returns its rows once both halves have arrived."""
        now = time.time() if now is None else now
        headers = {k.lower(): v for k, v in headers.items()}
        event_id, event_type, payload = parse_event(headers, body)
        # The two halves of one event can arrive at once (the logger keeps several in flight and the
        # monitor decodes in worker threads): exactly one of them must complete the pair.
        with self._lock:
            self._expire(now)
            pending = self._pending.setdefault(event_id, _Pending(now, headers))
            half = "request" if event_type == REQUEST_TYPE else "response"
            self._pending_bytes += len(body) - len(pending.bodies.get(half, b""))
            pending.bodies[half] = body
            if len(pending.bodies) < 2:
                self._evict(event_id)
                return None
            self._remove(event_id)
        request = payload if half == "request" else orjson.loads(pending.bodies["request"])
        response = payload if half == "response" else orjson.loads(pending.bodies["response"])
        return self._rows(event_id, pending.headers, request, response, now)

    def pending_halves(self) -> list[tuple[dict[str, str], bytes, float]]:
        """Every half still waiting for its partner as (headers, body, first seen), oldest first: fed back
        through :meth:`add` (with ``now`` = first seen), they rebuild the map, e.g. after a restart."""
        with self._lock:
            return [({**event_headers(p.headers), "ce-id": event_id, "ce-type": REQUEST_TYPE if half == "request" else RESPONSE_TYPE},
                     body, p.first_seen)
                    for event_id, p in self._pending.items() for half, body in p.bodies.items()]

    @property
    def pending(self) -> tuple[int, int]:
        """Unpaired events waiting, and their body bytes."""
        return len(self._pending), self._pending_bytes

    def _remove(self, event_id: str) -> _Pending:
        pending = self._pending.pop(event_id)
        self._pending_bytes -= pending.size
        return pending

    def _expire(self, now: float) -> None:
        expired = 0
        while self._pending:
            oldest = next(iter(self._pending.values()))
            if now - oldest.first_seen <= self.max_age:
                break
            self._remove(next(iter(self._pending)))
            expired += 1
        self._given_up("expired_pending", expired)

    def _evict(self, newest: str) -> None:
        """Drops the oldest unpaired events while the map is over either cap (the newest last of all)."""
        dropped = 0
        while len(self._pending) > self.max_pending or self._pending_bytes > self.max_pending_bytes:
            oldest = next(iter(self._pending))
            if oldest == newest and len(self._pending) > 1:
                self._pending.move_to_end(oldest)
                continue
            self._remove(oldest)
            dropped += 1
            if oldest == newest:
                break
        self._given_up("dropped_pending", dropped)

    def _given_up(self, outcome: str, count: int) -> None:
        if count:
            self.orphaned += count
            self.on_drop(outcome, count)

    def _rows(self, event_id: str, headers: dict[str, str], request, response, now: float) -> pd.DataFrame:
        model = headers.get("ce-inferenceservicename", "")
        endpoint = headers.get("ce-endpoint") or ""
        number = logged_version(headers)
        if number is None:
            number = self.version_for(model, endpoint or "default")
            if number is None:
                raise EventError(f"event {event_id}: no version serves {model}/{endpoint or 'default'}")
        endpoint = endpoint or self.endpoint_for(model, number)
        spec = self.spec_for(model, number)
        try:
            frame = frame_from_payload(request, spec)
        except InvalidInput as exc:
            raise EventError(f"event {event_id}: request does not decode: {exc}") from None
        except (TypeError, ValueError, AttributeError, KeyError, IndexError) as exc:
            # A body of the wrong shape anywhere inside: the sender's mistake, never the monitor's failure.
            raise EventError(f"event {event_id}: request does not decode ({type(exc).__name__})") from None
        predictions = _predictions(response)
        if len(predictions) != len(frame):
            raise EventError(f"event {event_id}: {len(frame)} rows but {len(predictions)} predictions")
        frame = frame.assign(event_id=event_id, row=range(len(frame)), model=model, version=number,
                             endpoint=endpoint, prediction=predictions,
                             received_at=pd.Timestamp(now, unit="s", tz="UTC"))
        return frame


def parse_event(headers: dict[str, str], body: bytes) -> tuple[str, str, object]:
    """The id, type and decoded body of a payload event (``headers`` lower-cased).

    Raises:
        EventError: it is not a KServe payload event, or its body is not JSON.
    """
    event_id, event_type = headers.get("ce-id"), headers.get("ce-type")
    if not event_id or event_type not in (REQUEST_TYPE, RESPONSE_TYPE):
        raise EventError(f"not a KServe payload event (ce-id {event_id!r}, ce-type {event_type!r})")
    try:
        return event_id, event_type, orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise EventError(f"event {event_id}: body is not JSON ({exc})") from None


def event_headers(headers: dict[str, str]) -> dict[str, str]:
    """The CloudEvent headers of an event (``ce-*``, lower-cased): all the joiner reads, and all that is
    kept of a request's headers (never its credentials)."""
    return {k.lower(): v for k, v in headers.items() if k.lower().startswith("ce-")}


def logged_version(headers: dict[str, str]) -> int | None:
    """The model version an event names: ``ce-modelversion``, else the version annotation in ``ce-annotations``."""
    version = headers.get("ce-modelversion")
    if version and _VERSION_NUMBER.fullmatch(version):
        return int(version)
    raw = headers.get("ce-annotations")
    if not raw:
        return None
    try:
        annotations = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise EventError(f"ce-annotations is not JSON: {raw[:80]!r}") from None
    value = annotations.get(VERSION_ANNOTATION) if isinstance(annotations, dict) else None
    if value is None:
        return None
    if not _VERSION_NUMBER.fullmatch(str(value)):
        raise EventError(f"ce-annotations names version {str(value)[:20]!r}, which is not a version number")
    return int(value)


def _predictions(response) -> list:
    """The predictions of a V1 (``predictions``) or V2 (the first output's ``data``) response body."""
    if isinstance(response, dict) and isinstance(response.get("predictions"), list):
        return response["predictions"]
    outputs = response.get("outputs") if isinstance(response, dict) else None
    if isinstance(outputs, list) and outputs and isinstance(outputs[0], dict) and isinstance(outputs[0].get("data"), list):
        return outputs[0]["data"]
    raise EventError("response has neither a list of predictions (V1) nor outputs with data (V2)")
