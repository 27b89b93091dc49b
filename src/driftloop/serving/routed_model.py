"""One served model name: production ("default") and, during a rollout, a canary, as a kserve.Model."""

from __future__ import annotations

import json
import time
import uuid

from kserve import Model
from kserve.errors import InferenceError, InvalidInput
from kserve.protocol.infer_type import InferRequest, InferResponse

from driftloop.serving.answers import logged_response, predict_response
from driftloop.serving.metrics import GatewayMetrics
from driftloop.serving.payload_logger import PayloadLogger
from driftloop.serving.scoring import ModelFailed, ScoringWorker
from driftloop.serving.split import TrafficSplit
from driftloop.serving.versions import ServedVersion

VERSION_HEADER = "x-driftloop-model-version"
ENDPOINT_HEADER = "x-driftloop-endpoint"


class RoutedModel(Model):
    """Routes each request to the stable or the canary version by the canary's traffic percent.

    Versions are swapped by :meth:`set_versions` between requests: a request that has started keeps
    the version it picked, so a promotion or rollback never fails an in-flight request. Decoding and the
    model run where the :class:`ScoringWorker` (shared by every model of a server) says: on its thread, or
    on the loop for a small request on a fast path; metrics, response headers and the payload log stay on
    the event loop.
    """

    def __init__(self, name: str, stable: ServedVersion, metrics: GatewayMetrics,
                 payload_logger: PayloadLogger | None = None, scoring: ScoringWorker | None = None) -> None:
        super().__init__(name, return_response_headers=True)
        self.scoring = scoring or ScoringWorker()  # where decoding and the model run
        self.stable = stable
        self.canary: ServedVersion | None = None
        self.split = TrafficSplit(0)
        self.metrics = metrics
        self.payload_logger = payload_logger
        self.ready = True
        self._children: dict[tuple[int, str], tuple] = {}
        self._publish_gauges()

    def set_versions(self, stable: ServedVersion, canary: ServedVersion | None, percent: int) -> None:
        """Points the endpoints at new versions and sets the canary's share, all at once."""
        self.stable, self.canary = stable, canary
        self.split.percent = percent if canary is not None else 0
        self._publish_gauges()

    def _served_metrics(self, version: int, endpoint: str) -> tuple:
        """The latency histogram and the ``ok`` counter of one version and endpoint (looked up once: a labelled
        child costs microseconds to find, on every request)."""
        key = (version, endpoint)
        children = self._children.get(key)
        if children is None:
            labels = (self.name, str(version), endpoint)
            children = self._children[key] = (self.metrics.latency.labels(*labels),
                                              self.metrics.requests.labels(*labels, "ok"))
        return children

    def _publish_gauges(self) -> None:
        self.metrics.canary_percent.labels(self.name).set(self.split.percent)
        self.metrics.serving_version.labels(self.name, "default").set(self.stable.version)
        self.metrics.serving_version.labels(self.name, "canary").set(self.canary.version if self.canary else 0)
        self.metrics.fast_path.labels(self.name, "default").set(self.stable.fast is not None)
        self.metrics.fast_path.labels(self.name, "canary").set(self.canary is not None and self.canary.fast is not None)

    def load(self) -> bool:
        return self.ready

    def preprocess(self, payload, headers: dict | None = None):
        """KServe leaves bodies sent without a JSON content type (``curl -d``) as bytes; parse them."""
        if isinstance(payload, (bytes, str)):
            try:
                return json.loads(payload)
            except (ValueError, UnicodeDecodeError) as exc:
                raise InvalidInput(f"invalid JSON body: {exc}") from None
        return payload

    async def predict(self, payload: dict | InferRequest, headers: dict | None = None,
                      response_headers: dict | None = None) -> dict | InferResponse:
        canary = self.canary
        if canary is not None and self.split.to_canary():
            target, endpoint = canary, "canary"
        else:
            target, endpoint = self.stable, "default"
        started = time.perf_counter()
        try:
            scores = await self.scoring.score(target, payload)
        except InvalidInput:
            self.metrics.requests.labels(self.name, str(target.version), endpoint, "invalid").inc()
            raise
        except ModelFailed as exc:  # the model itself failed: a server-side error of this version
            self.metrics.requests.labels(self.name, str(target.version), endpoint, "error").inc()
            raise InferenceError(f"{self.name} v{target.version} failed to predict: {exc}") from None
        latency, served = self._served_metrics(target.version, endpoint)
        latency.observe(time.perf_counter() - started)
        served.inc()
        if response_headers is not None:
            response_headers[VERSION_HEADER] = str(target.version)
            response_headers[ENDPOINT_HEADER] = endpoint
        response = predict_response(payload, scores, target, self.name)
        if self.payload_logger is not None:
            event_id = (headers or {}).get("x-request-id") or str(uuid.uuid4())
            self.payload_logger.log(event_id, self.name, target.version, endpoint,
                                    _request_json(payload), logged_response(response))
        return response


def _request_json(message) -> dict:
    if isinstance(message, InferRequest):
        body, _ = message.to_rest()
        return body
    return message
