"""Payload logging exactly like KServe's logger: binary-mode CloudEvents over HTTP, off the hot path.

For every prediction two events go to the receiver (the drift monitor): the request and the
response, sharing one ``ce-id``. Events wait in a bounded queue and background senders post them,
so a slow or dead receiver never slows or fails a prediction; what cannot be queued or delivered is
dropped and counted in ``driftloop_payload_log_dropped_total``.

By default each event is one binary-mode POST, exactly as KServe's agent sends it; ``senders`` of them are in
flight at once, each on its own kept-alive connection (:mod:`driftloop.serving.http_post`), since the monitor
acknowledges an event only once it is on disk and answers many concurrent ones with one fsync. With ``batch`` > 0
(``driftloop serve --payload-log-batch N``; only driftloop's monitor takes it) the senders post whatever is
queued, up to ``batch`` events, as one CloudEvents JSON batch (``application/cloudevents-batch+json``, each
event in structured mode with its body in ``data``); the monitor answers once the whole batch is on disk. With a
token (the monitor's events token, ``DRIFTLOOP_EVENTS_TOKEN``) every event carries ``Authorization: Bearer …``;
KServe's own agent cannot, which is why a cluster admits its events by network identity instead.

The request path only queues the bodies as they are; the senders serialise them and write the headers, which
are encoded once per model, version, endpoint and event type.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from dataclasses import dataclass

import orjson  # KServe's own JSON library

from driftloop.errors import ConfigError
from driftloop.http_guard import DEFAULT_MAX_BODY_BYTES, bearer
from driftloop.serving.http_post import HttpPost, ReceiverError, check_url
from driftloop.serving.metrics import GatewayMetrics

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
# CloudEvents' JSON batch format (structured mode): one POST, a JSON array of events, each with its body in "data".
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"
# A batch stays well under the receiver's default body limit (a larger one would be refused whole with 413).
BATCH_MAX_BYTES = DEFAULT_MAX_BODY_BYTES // 2
log = logging.getLogger(__name__)


# Receivers posted to at once in binary mode (one kept-alive connection each): the monitor answers an event once it
# is on disk, and concurrent events share one fsync, so delivery grows with them.
BINARY_SENDERS = 16
BATCH_SENDERS = 4
# How long a POST may take before its events count as dropped (receiver_unreachable). A batch is answered once all
# of it is on disk, which takes longer than one event on a loaded receiver.
BINARY_TIMEOUT_SECONDS = 2.0
BATCH_TIMEOUT_SECONDS = 10.0
# A request id (``x-request-id``) becomes the events' ce-id; one that could not be a header value as sent is
# replaced by a new id.
_HEADER_SAFE_ID = re.compile(r"[\x21-\x7e]{1,200}")


@dataclass(frozen=True)
class LoggedEvent:
    """One CloudEvent: its attributes and its JSON body (bytes, or the object the sender serialises)."""

    event_id: str
    event_type: str
    model: str
    endpoint: str  # "default" | "canary"
    body: bytes | dict | list
    version: int

    def data(self) -> bytes:
        """The body as JSON; raises TypeError or orjson.JSONEncodeError when it cannot be."""
        if isinstance(self.body, bytes):
            return self.body
        return orjson.dumps(self.body, default=_jsonable, option=orjson.OPT_SERIALIZE_NUMPY)

    def headers(self, namespace: str, source: str) -> dict[str, str]:
        return {
            "ce-specversion": "1.0",
            "ce-id": self.event_id,
            "ce-type": self.event_type,
            "ce-source": source,
            "ce-inferenceservicename": self.model,
            "ce-namespace": namespace,
            "ce-component": "predictor",
            "ce-endpoint": self.endpoint,
            "ce-modelversion": str(self.version),
            "content-type": "application/json",
        }

    def structured(self, namespace: str, source: str) -> bytes:
        """The event in CloudEvents' JSON format (the body, already JSON, is embedded as ``data``)."""
        attributes = {"specversion": "1.0", "id": self.event_id, "type": self.event_type, "source": source,
                      "inferenceservicename": self.model, "namespace": namespace, "component": "predictor",
                      "endpoint": self.endpoint, "modelversion": str(self.version),
                      "datacontenttype": "application/json"}
        return orjson.dumps(attributes)[:-1] + b',"data":' + self.data() + b"}"


def gateway_source(model: str) -> str:
    """The ``ce-source`` of the gateway's events for ``model``."""
    return f"http://driftloop-gateway/v1/models/{model}"


class PayloadLogger:
    """Queues events and delivers them in the background."""

    def __init__(self, url: str, metrics: GatewayMetrics, namespace: str = "local", queue_size: int = 10_000,
                 timeout: float | None = None, senders: int | None = None, token: str | None = None,
                 batch: int = 0) -> None:
        check_url(url)
        if not _HEADER_SAFE_ID.fullmatch(namespace):
            raise ConfigError(f"the payload log's namespace must be printable ASCII without spaces, got {namespace!r}")
        self.url = url
        self._auth = bearer(token)  # the monitor's events token (http_guard.EVENTS); never logged
        self.namespace = namespace
        self.metrics = metrics
        self.timeout = timeout or (BATCH_TIMEOUT_SECONDS if batch > 0 else BINARY_TIMEOUT_SECONDS)
        self._queue: asyncio.Queue[LoggedEvent] = asyncio.Queue(maxsize=queue_size)
        self.batch = batch  # events per POST at most; 0: one binary-mode event per POST
        self.senders = senders or (BATCH_SENDERS if batch > 0 else BINARY_SENDERS)
        self._tasks: list[asyncio.Task] = []
        self._connections: list[HttpPost] = []
        self._header_lines: dict[tuple, bytes] = {}

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        deliver = self._deliver_batches_forever if self.batch > 0 else self._deliver_forever
        self._connections = [HttpPost(self.url, self.timeout) for _ in range(self.senders)]
        self._tasks = [loop.create_task(deliver(connection)) for connection in self._connections]

    @property
    def queued(self) -> int:
        """Events waiting to be sent."""
        return self._queue.qsize()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for connection in self._connections:
            connection.close()

    def log(self, event_id: str, model: str, version: int, endpoint: str, request: dict, response: dict) -> None:
        """Queues the request and response events, both or neither (half a pair is no row to the monitor, only
        memory it holds until it gives the half up); never blocks and never raises. The bodies are serialised by
        the senders, so they must not change once handed over (the model server's are not: it has answered)."""
        if self._queue.maxsize - self._queue.qsize() < 2:
            self.metrics.payload_log_dropped.labels("queue_full").inc(2)
            return
        self._queue.put_nowait(LoggedEvent(event_id, REQUEST_TYPE, model, endpoint, request, version))
        self._queue.put_nowait(LoggedEvent(event_id, RESPONSE_TYPE, model, endpoint, response, version))

    def _binary_headers(self, event: LoggedEvent) -> bytes:
        """The event's header lines for a binary-mode POST: those of :meth:`LoggedEvent.headers` (and the token),
        encoded once per kind of event; its ce-id, a header-safe one."""
        key = (event.event_type, event.model, event.endpoint, event.version)
        lines = self._header_lines.get(key)
        if lines is None:
            headers = event.headers(self.namespace, gateway_source(event.model)) | self._auth
            del headers["ce-id"]
            lines = self._header_lines[key] = "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode("latin-1")
        event_id = event.event_id if _HEADER_SAFE_ID.fullmatch(event.event_id) else str(uuid.uuid4())
        return b"ce-id: %s\r\n%s" % (event_id.encode("ascii"), lines)

    async def _deliver_forever(self, connection: HttpPost) -> None:
        while True:
            # What is queued is taken without a coroutine: at two events per prediction, Queue.get's cost counts.
            event = self._queue.get_nowait() if not self._queue.empty() else await self._queue.get()
            try:
                body = event.data()
            except (TypeError, ValueError, orjson.JSONEncodeError):
                self.metrics.payload_log_dropped.labels("unserialisable").inc()
                continue
            try:
                status, _ = await connection.post(self._binary_headers(event), body)
            except ReceiverError:
                self.metrics.payload_log_dropped.labels("receiver_unreachable").inc()
                continue
            except Exception:  # noqa: BLE001 - the logger must outlive anything a receiver does
                log.exception("payload logger: unexpected error")
                self.metrics.payload_log_dropped.labels("internal").inc()
                continue
            if status >= 300:
                self.metrics.payload_log_dropped.labels("receiver_error").inc()
            else:
                self.metrics.payload_log_sent.inc()

    def _encode(self, event: LoggedEvent) -> bytes | None:
        """The event in structured mode; None (counted as dropped) when its body cannot be serialised."""
        try:
            return event.structured(self.namespace, gateway_source(event.model))
        except (TypeError, ValueError, orjson.JSONEncodeError):
            self.metrics.payload_log_dropped.labels("unserialisable").inc()
            return None

    async def _deliver_batches_forever(self, connection: HttpPost) -> None:
        batch_headers = "".join(f"{k}: {v}\r\n" for k, v in
                                ({"content-type": BATCH_CONTENT_TYPE} | self._auth).items()).encode("latin-1")
        carried: tuple[LoggedEvent, bytes] | None = None  # an event that did not fit the last batch's byte budget
        while True:
            if carried is None:
                event = await self._queue.get()
                item = self._encode(event)
                if item is None:
                    continue
                carried = (event, item)
            events, encoded = [carried[0]], [carried[1]]
            size, carried = len(encoded[0]), None
            while len(events) < self.batch and not self._queue.empty():  # what is queued now; no waiting
                event = self._queue.get_nowait()
                item = self._encode(event)
                if item is None:
                    continue
                if size + len(item) + 1 > BATCH_MAX_BYTES:  # stay under the receiver's body limit
                    carried = (event, item)
                    break
                events.append(event)
                encoded.append(item)
                size += len(item) + 1
            try:
                status, answer = await connection.post(batch_headers, b"[" + b",".join(encoded) + b"]")
            except ReceiverError:
                self.metrics.payload_log_dropped.labels("receiver_unreachable").inc(len(events))
                continue
            except Exception:  # noqa: BLE001 - the logger must outlive anything a receiver does
                log.exception("payload logger: unexpected error")
                self.metrics.payload_log_dropped.labels("internal").inc(len(events))
                continue
            if status >= 300:
                self.metrics.payload_log_dropped.labels("receiver_error").inc(len(events))
                continue
            accepted = _accepted(answer, len(events))
            self.metrics.payload_log_sent.inc(accepted)
            if accepted < len(events):  # halves the receiver could not decode
                self.metrics.payload_log_dropped.labels("receiver_rejected").inc(len(events) - accepted)


def _accepted(answer: bytes, sent: int) -> int:
    """How many events of a batch the monitor took (its 202 says ``{"accepted": N, ...}``)."""
    try:
        accepted = orjson.loads(answer).get("accepted", sent)
    except (orjson.JSONDecodeError, AttributeError):
        return sent
    return accepted if isinstance(accepted, int) and 0 <= accepted <= sent else sent


def _jsonable(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    return str(value)
