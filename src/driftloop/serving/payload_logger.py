"""Payload logging exactly like KServe's logger: binary-mode CloudEvents over HTTP, off the hot path.

For every prediction two events go to the receiver (the drift monitor): the request and the
response, sharing one ``ce-id``. Events wait in a bounded queue and a background task posts them,
so a slow or dead receiver never slows or fails a prediction; what cannot be queued or delivered is
dropped and counted in ``driftloop_payload_log_dropped_total``.

By default each event is one binary-mode POST, exactly as KServe's agent sends it. With ``batch`` > 0
(``driftloop serve --payload-log-batch N``; only driftloop's monitor takes it) the senders post whatever is
queued, up to ``batch`` events, as one CloudEvents JSON batch (``application/cloudevents-batch+json``, each
event in structured mode with its body in ``data``); the monitor answers once the whole batch is on disk. With a token (the monitor's events token,
``DRIFTLOOP_EVENTS_TOKEN``) every event carries ``Authorization: Bearer …``; KServe's own agent cannot, which
is why a cluster admits its events by network identity instead.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import aiohttp
import orjson  # KServe's own JSON library: the hot path serialises every request twice

from driftloop.http_guard import DEFAULT_MAX_BODY_BYTES, bearer
from driftloop.serving.metrics import GatewayMetrics

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
# CloudEvents' JSON batch format (structured mode): one POST, a JSON array of events, each with its body in "data".
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json"
# A batch stays well under the receiver's default body limit (a larger one would be refused whole with 413).
BATCH_MAX_BYTES = DEFAULT_MAX_BODY_BYTES // 2
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoggedEvent:
    """One CloudEvent: its attributes and its JSON body."""

    event_id: str
    event_type: str
    model: str
    endpoint: str  # "default" | "canary"
    body: bytes
    version: int

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
        return orjson.dumps(attributes)[:-1] + b',"data":' + self.body + b"}"


class PayloadLogger:
    """Queues events and delivers them in the background."""

    def __init__(self, url: str, metrics: GatewayMetrics, namespace: str = "local", queue_size: int = 10_000,
                 timeout: float = 2.0, senders: int = 4, token: str | None = None, batch: int = 0) -> None:
        self.url = url
        self._auth = bearer(token)  # the monitor's events token (http_guard.EVENTS); never logged
        self.namespace = namespace
        self.metrics = metrics
        self.timeout = timeout
        self._queue: asyncio.Queue[LoggedEvent] = asyncio.Queue(maxsize=queue_size)
        self.senders = senders
        self.batch = batch  # events per POST at most; 0: one binary-mode event per POST
        self._tasks: list[asyncio.Task] = []
        self._client: aiohttp.ClientSession | None = None

    def start(self) -> None:
        # aiohttp rather than httpx: every prediction costs two POSTs here, and aiohttp's client needs
        # a fraction of httpx's CPU per request, which the gateway shares with the model.
        self._client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        # Several events in flight: one at a time caps delivery at one receiver round trip per event,
        # far below what the gateway serves (the queue then fills and events are dropped).
        loop = asyncio.get_running_loop()
        deliver = self._deliver_batches_forever if self.batch > 0 else self._deliver_forever
        self._tasks = [loop.create_task(deliver()) for _ in range(self.senders)]

    @property
    def queued(self) -> int:
        """Events waiting to be sent."""
        return self._queue.qsize()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._client:
            await self._client.close()

    def log(self, event_id: str, model: str, version: int, endpoint: str, request: dict, response: dict) -> None:
        """Queues the request and response events; never blocks and never raises."""
        for event_type, body in ((REQUEST_TYPE, request), (RESPONSE_TYPE, response)):
            try:
                data = orjson.dumps(body, default=_jsonable, option=orjson.OPT_SERIALIZE_NUMPY)
                self._queue.put_nowait(LoggedEvent(event_id, event_type, model, endpoint, data, version))
            except asyncio.QueueFull:
                self.metrics.payload_log_dropped.labels("queue_full").inc()
            except (TypeError, ValueError, orjson.JSONEncodeError):
                self.metrics.payload_log_dropped.labels("unserialisable").inc()

    async def _deliver_forever(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                headers = event.headers(self.namespace, f"http://driftloop-gateway/v1/models/{event.model}") | self._auth
                async with self._client.post(self.url, data=event.body, headers=headers) as response:
                    await response.read()
                    if response.status >= 300:
                        self.metrics.payload_log_dropped.labels("receiver_error").inc()
                    else:
                        self.metrics.payload_log_sent.inc()
            except (TimeoutError, aiohttp.ClientError):
                self.metrics.payload_log_dropped.labels("receiver_unreachable").inc()
            except Exception:  # noqa: BLE001 - the logger must outlive anything a receiver does
                log.exception("payload logger: unexpected error")
                self.metrics.payload_log_dropped.labels("internal").inc()


    def _encode(self, event) -> bytes:
        return event.structured(self.namespace, f"http://driftloop-gateway/v1/models/{event.model}")

    async def _deliver_batches_forever(self) -> None:
        carried: tuple[object, bytes] | None = None  # an event that did not fit the last batch's byte budget
        while True:
            event = carried[0] if carried else await self._queue.get()
            encoded = [carried[1] if carried else self._encode(event)]
            events, carried = [event], None
            size = len(encoded[0])
            while len(events) < self.batch and not self._queue.empty():  # what is queued now; no waiting
                event = self._queue.get_nowait()
                item = self._encode(event)
                if size + len(item) + 1 > BATCH_MAX_BYTES:  # stay under the receiver's body limit
                    carried = (event, item)
                    break
                events.append(event)
                encoded.append(item)
                size += len(item) + 1
            try:
                body = b"[" + b",".join(encoded) + b"]"
                headers = {"content-type": BATCH_CONTENT_TYPE} | self._auth
                async with self._client.post(self.url, data=body, headers=headers) as response:
                    answer = await response.read()
                    if response.status >= 300:
                        self.metrics.payload_log_dropped.labels("receiver_error").inc(len(events))
                        continue
                accepted = _accepted(answer, len(events))
                self.metrics.payload_log_sent.inc(accepted)
                if accepted < len(events):  # halves the receiver could not decode
                    self.metrics.payload_log_dropped.labels("receiver_rejected").inc(len(events) - accepted)
            except (TimeoutError, aiohttp.ClientError):
                self.metrics.payload_log_dropped.labels("receiver_unreachable").inc(len(events))
            except Exception:  # noqa: BLE001 - the logger must outlive anything a receiver does
                log.exception("payload logger: unexpected error")
                self.metrics.payload_log_dropped.labels("internal").inc(len(events))


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
