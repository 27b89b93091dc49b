"""KServe's agent as payload logger: every request and (HTTP 200) response as a binary-mode CloudEvent.

Follows kserve ``pkg/logger/handler.go`` (``ServeHTTP``: ``ce-id`` from the incoming ``Ce-Id`` header or a new
UUID, shared by both events; metadata = the request headers whose Go-canonical names are listed in
``metadataHeaders``; the request event queued on arrival, the response event only for status 200; both carry the
*request's* Content-Type), ``pkg/logger/worker.go`` (``sendHttpCloudEvent``: CloudEvents 1.0 binary mode,
extensions ``inferenceservicename``, ``namespace``, ``component``, ``endpoint``, ``metadata`` (JSON),
``annotations`` (JSON, only when non-empty), ``recordedtime``) and ``pkg/webhook/admission/pod/agent_injector.go``
(the agent's flags from the pod annotations: ``--source-uri`` = pod name, ``--log-url``, ``--log-mode``,
``--metadata-headers``, ``--metadata-annotations`` = the listed keys' values from the pod's annotations, missing
keys skipped; ``--endpoint`` from the pod label ``endpoint``, which nothing sets). Sending is asynchronous
(the agent's worker pool): a slow or dead sink never delays the proxied request.

The blob store (``logger.url`` not http(s), with ``logger.storage``; ``blob_store.py``) follows ``cmd/agent/main.go``
``startLogger`` and ``pkg/logger`` ``dispatcher.go``, ``batch_*.go``, ``store.go``, ``marshaller_*.go``.
"""

from __future__ import annotations

import json
import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

import urllib3

from driftloop.storage import S3Settings

from .blob_store import BlobStore, StoreFlags, is_blob_url
from .runtimes import LOGGER_ANNOTATIONS

REQUEST_TYPE = "org.kubeflow.serving.inference.request"
RESPONSE_TYPE = "org.kubeflow.serving.inference.response"
DEFAULT_URL = "http://default-broker"  # ConfigMap inferenceservice-config logger.defaultUrl
_log = logging.getLogger(__name__)


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_header(name: str) -> str:
    """Go's ``textproto.CanonicalMIMEHeaderKey``: ``x-request-id`` -> ``X-Request-Id``."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


@dataclass(frozen=True)
class AgentConfig:
    """The agent container's flags, as the pod webhook derives them from the pod."""

    url: str
    mode: str
    source: str
    inference_service: str
    namespace: str
    component: str
    endpoint: str
    metadata_headers: tuple[str, ...]
    annotations: dict[str, str]
    store: StoreFlags = StoreFlags()

    @classmethod
    def from_pod(cls, pod_name: str, namespace: str, isvc: str, annotations: dict, labels: dict,
                 logger_spec: dict | None = None) -> AgentConfig | None:
        """None when the pod carries no ``internal.serving.kserve.io/logger: "true"``.

        ``logger_spec`` is the InferenceService's ``spec.predictor.logger``: the webhook reads ``storage`` and the
        batch settings from there (agent_injector.go ``getLoggerConfigs``), not from the pod's annotations.
        """
        if annotations.get(LOGGER_ANNOTATIONS["logger"]) != "true":
            return None
        keys = [k for k in annotations.get(LOGGER_ANNOTATIONS["metadataAnnotations"], "").split(",") if k]
        headers = tuple(h for h in annotations.get(LOGGER_ANNOTATIONS["metadataHeaders"], "").split(",") if h)
        return cls(url=annotations.get(LOGGER_ANNOTATIONS["url"]) or DEFAULT_URL,
                   mode=annotations.get(LOGGER_ANNOTATIONS["mode"], "all"), source=pod_name,
                   inference_service=isvc, namespace=namespace, component=labels.get("component", "predictor"),
                   endpoint=labels.get("endpoint", ""), metadata_headers=headers,
                   annotations={k: annotations[k] for k in keys if k in annotations},
                   store=StoreFlags.from_logger_spec(logger_spec or {}))


class LoggerAgent:
    """Posts events for one pod; ``exchange()`` is called by the ingress after each proxied request."""

    def __init__(self, config: AgentConfig, pool: ThreadPoolExecutor, http: urllib3.PoolManager,
                 s3: S3Settings | None = None) -> None:
        self.config, self._pool, self._http = config, pool, http
        # dispatcher.go: records for a non-HTTP url go to the batcher and the blob store (None without a store
        # path: "Logger store not configured", every batch dropped); http(s) ones to the worker pool.
        self._blob = BlobStore(config.url, config.store, pool, s3) if is_blob_url(config.url) else None

    def exchange(self, request_headers: dict[str, str], request_body: bytes, arrived: datetime, status: int,
                 response_body: bytes, completed: datetime) -> None:
        """Queues the request event and, for a 200, the response event."""
        event_id = next((v for k, v in request_headers.items() if k.lower() == "ce-id"), "") or str(uuid.uuid4())
        metadata: dict[str, list[str]] = {}
        for name, value in request_headers.items():
            if canonical_header(name) in self.config.metadata_headers:
                metadata.setdefault(canonical_header(name), []).append(value)
        content_type = next((v for k, v in request_headers.items() if k.lower() == "content-type"), "")
        if self.config.mode in ("all", "request"):
            self._queue(REQUEST_TYPE, event_id, arrived, content_type, request_body, metadata)
        if status == 200 and self.config.mode in ("all", "response"):
            self._queue(RESPONSE_TYPE, event_id, completed, content_type, response_body, metadata)

    def _queue(self, ce_type: str, event_id: str, occurred: datetime, content_type: str, body: bytes,
               metadata: dict) -> None:
        if self._blob is not None:
            self._blob.add({"url": self.config.url, "bytes": body, "contentType": content_type, "reqType": ce_type,
                            "id": event_id, "sourceUri": self.config.source,
                            "inferenceService": self.config.inference_service, "namespace": self.config.namespace,
                            "component": self.config.component, "endpoint": self.config.endpoint,
                            "metadata": metadata, "annotations": dict(self.config.annotations),
                            "occurrenceTime": occurred})
            return
        headers = {"Ce-Specversion": "1.0", "Ce-Id": event_id, "Ce-Type": ce_type, "Ce-Source": self.config.source,
                   "Ce-Time": _rfc3339(occurred), "Ce-Inferenceservicename": self.config.inference_service,
                   "Ce-Namespace": self.config.namespace, "Ce-Component": self.config.component,
                   "Ce-Endpoint": self.config.endpoint,
                   "Ce-Metadata": json.dumps(metadata, separators=(",", ":"), sort_keys=True)}
        if self.config.annotations:
            headers["Ce-Annotations"] = json.dumps(self.config.annotations, separators=(",", ":"), sort_keys=True)
        if content_type:
            headers["Content-Type"] = content_type
        self._pool.submit(self._send, headers, body)

    def _send(self, headers: dict, body: bytes) -> None:
        headers = {**headers, "Ce-Recordedtime": _rfc3339(datetime.now(UTC))}
        try:
            response = self._http.request("POST", self.config.url, body=body, headers=headers,
                                          timeout=urllib3.Timeout(connect=2, read=10), retries=False)
            if response.status >= 300:
                _log.info("logger sink %s answered %s", self.config.url, response.status)
        except urllib3.exceptions.HTTPError as exc:  # the agent logs and drops
            _log.info("logger sink %s unreachable: %s", self.config.url, exc)
