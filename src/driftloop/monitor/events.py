"""Joining KServe payload-log CloudEvents (request + response, shared ``ce-id``) into scored rows.

Events arrive in CloudEvents' binary mode (one half per POST, attributes in ``ce-*`` headers: KServe's agent,
and driftloop's gateway by default), as a structured-mode batch (``application/cloudevents-batch+json``: a JSON
array of events, attributes as members, the body in ``data``; driftloop's gateway with batching on), or as
records of KServe's blob-storage logger (monitor/kserve_store.py). All become the same (headers, body) halves.
"""

from __future__ import annotations

import base64
import binascii
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
from kserve.errors import InvalidInput

from driftloop.data import DatasetSpec
from driftloop.model_dir import VERSION_ANNOTATION
from driftloop.monitor.rows import Rows
from driftloop.serving.payload import columns_from_payload, logged_request
from driftloop.serving.payload_logger import BATCH_CONTENT_TYPE, REQUEST_TYPE, RESPONSE_TYPE

# A version number as events carry it: digits, few enough to be a version (int() of thousands of digits raises).
_VERSION_NUMBER = re.compile(r"[0-9]{1,9}")
MAX_BATCH_EVENTS = 20_000  # events in one structured batch (the body limit bounds their bytes)
UNPARSED = object()  # "the body was not decoded yet"


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
    parsed: dict[str, object] = field(default_factory=dict)  # … and its decoded JSON

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

    def add(self, headers: dict[str, str], body: bytes, now: float | None = None,
            payload: object = UNPARSED) -> Rows | None:
        """Takes one event; returns its rows once both halves have arrived.

        ``payload`` is the body already decoded (the receiver checked it), so it is not parsed twice.
        """
        now = time.time() if now is None else now
        headers = {k.lower(): v for k, v in headers.items()}
        if payload is UNPARSED:
            event_id, event_type, payload = parse_event(headers, body)
        else:
            event_id, event_type = headers["ce-id"], headers["ce-type"]
        # The two halves of one event can arrive at once (the logger keeps several in flight and the
        # monitor decodes in worker threads): exactly one of them must complete the pair.
        with self._lock:
            self._expire(now)
            pending = self._pending.setdefault(event_id, _Pending(now, headers))
            half = "request" if event_type == REQUEST_TYPE else "response"
            self._pending_bytes += len(body) - len(pending.bodies.get(half, b""))
            pending.bodies[half] = body
            pending.parsed[half] = payload
            if len(pending.bodies) < 2:
                self._evict(event_id)
                return None
            self._remove(event_id)
        return self._rows(event_id, pending.headers, pending.parsed["request"], pending.parsed["response"], now)

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

    def _rows(self, event_id: str, headers: dict[str, str], request, response, now: float) -> Rows:
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
            if not isinstance(request, dict):
                raise InvalidInput("request body must be a JSON object")
            features = columns_from_payload(logged_request(request), spec)  # V1, or V2 as its REST JSON
        except InvalidInput as exc:
            raise EventError(f"event {event_id}: request does not decode: {exc}") from None
        except (TypeError, ValueError, AttributeError, KeyError, IndexError, OverflowError) as exc:
            # A body of the wrong shape anywhere inside: the sender's mistake, never the monitor's failure.
            raise EventError(f"event {event_id}: request does not decode ({type(exc).__name__})") from None
        predictions = _predictions(response)
        n_rows = len(next(iter(features.values()))) if features else 0
        if len(predictions) != n_rows:
            raise EventError(f"event {event_id}: {n_rows} rows but {len(predictions)} predictions")
        return Rows(model, number, endpoint, event_id, features, predictions, now)


def parse_event(headers: dict[str, str], body: bytes) -> tuple[str, str, object]:
    """The id, type and decoded body of a payload event (``headers`` lower-cased).

    Raises:
        EventError: it is not a KServe payload event, or its body is not JSON.
    """
    event_id, event_type = _attributes(headers)
    try:
        return event_id, event_type, orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise EventError(f"event {event_id}: body is not JSON ({exc})") from None


def parse_batch(body: bytes) -> list[tuple[dict[str, str], bytes, object]]:
    """The events of a structured-mode CloudEvents batch (``application/cloudevents-batch+json``) as
    binary-mode halves: (``ce-*`` headers, body bytes, decoded body). Nothing is taken unless all are good.

    Raises:
        EventError: the body is not a JSON array of KServe payload events with JSON data.
    """
    try:
        events = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise EventError(f"a {BATCH_CONTENT_TYPE} body must be a JSON array of events ({exc})") from None
    if not isinstance(events, list) or not events:
        raise EventError(f"a {BATCH_CONTENT_TYPE} body must be a non-empty JSON array of events")
    if len(events) > MAX_BATCH_EVENTS:
        raise EventError(f"batch of {len(events)} events is larger than the limit of {MAX_BATCH_EVENTS}")
    return [_structured(event, i) for i, event in enumerate(events)]


def _structured(event: object, index: int) -> tuple[dict[str, str], bytes, object]:
    if not isinstance(event, dict):
        raise EventError(f"batch event {index} is not a JSON object")
    headers = {}
    for name, value in event.items():
        if name in ("data", "data_base64", "datacontenttype"):
            continue
        if not isinstance(value, str | int | bool) or not name.isalnum():  # attribute names: [a-z0-9]
            raise EventError(f"batch event {index}: attribute {str(name)[:40]!r} is not a CloudEvents attribute")
        headers[f"ce-{name.lower()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    headers["content-type"] = str(event.get("datacontenttype") or "application/json")
    if "data" in event:
        payload = event["data"]
        body = orjson.dumps(payload)
    elif isinstance(event.get("data_base64"), str):
        try:
            body = base64.b64decode(event["data_base64"], validate=True)
        except (binascii.Error, ValueError):
            raise EventError(f"batch event {index}: data_base64 is not base64") from None
        payload = UNPARSED
    else:
        raise EventError(f"batch event {index} has no data")
    if payload is UNPARSED:
        payload = parse_event(headers, body)[2]
    else:
        _attributes(headers)
    return headers, body, payload


def _attributes(headers: dict[str, str]) -> tuple[str, str]:
    event_id, event_type = headers.get("ce-id"), headers.get("ce-type")
    if not event_id or event_type not in (REQUEST_TYPE, RESPONSE_TYPE):
        raise EventError(f"not a KServe payload event (ce-id {event_id!r}, ce-type {event_type!r})")
    return event_id, event_type


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
