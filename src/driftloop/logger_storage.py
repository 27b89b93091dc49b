"""Where KServe's payload logger writes to object storage (``spec.predictor.logger.url: s3://…`` with
``logger.storage``), defined once for the three parties: the InferenceService builder
(:mod:`driftloop.deploy.inference_service`), the drift monitor that reads the objects
(:mod:`driftloop.monitor.kserve_store`) and the loopback emulation of KServe's agent (tests/cluster).

KServe's agent (kserve ``pkg/logger/store.go`` ``BlobStore.getObjectKey``, v0.16 … v0.20) names each object after
the first record of its batch::

    <url path>/<namespace>/<inference service>/<component>/<storage.path>/<ce-id>-<request|response>.<ext>

joined with Go's ``path.Join`` (empty parts left out, ``//`` and a leading ``/`` of ``storage.path`` cleaned).
The agent only writes to the store when ``storage.path`` is not empty (``cmd/agent/main.go`` ``startLogger``),
so driftloop always sets it (:data:`STORE_PATH`). The monitor reads every object under the URL, so the
``logger_storage`` CT parameter and the monitor's ``kserve_store.uri`` are the same URI.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlparse

# storage.parameters.format values (pkg/constants LoggerFormatKey "format"; cmd/agent --log-store-format):
# json since v0.16, csv and parquet since v0.17 (the embedded marshaller server).
FORMATS = ("json", "parquet", "csv")
STORE_PATH = "logger"  # storage.path: the key segment after the component (KServe's own tests use "/logger")
# storage.key: required by the webhook (component.go validateLogger) but read by nothing that writes: the
# agent's credentials come from the storage ServiceAccount's Secrets (agent_injector.go). KServe's default.
STORE_KEY = "credentials"
BATCH_INTERVAL = "5s"  # batchInterval with batchSize > 1: a partial batch is written after at most this long
COMPONENT = "predictor"  # the only component driftloop's InferenceServices have
_KINDS = ("request", "response")  # the tail of ce-type: org.kubeflow.serving.inference.<kind>


def check_uri(uri: str) -> str | None:
    """What is wrong with a store URI (``s3://bucket`` or ``s3://bucket/prefix``), or None."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc or parsed.query or parsed.fragment:
        return f"must be an s3://bucket/prefix URI, got '{uri}'"
    # The agent cleans the path as Go's path.Join does; the monitor lists it as written. Where the two would
    # differ ("a//b", "./a", "a/../b"), logs would be written and never read.
    prefix = parsed.path.removeprefix("/").rstrip("/")  # one slash after the bucket, and a trailing one, are fine
    segments = prefix.split("/") if prefix else []
    if any(segment in ("", ".", "..") for segment in segments):
        return f"must be an s3://bucket/prefix URI whose prefix has no empty, '.' or '..' segments, got '{uri}'"
    return None


def list_prefix(uri: str) -> str:
    """The key prefix that holds everything the agent writes for logger url ``uri``: its path and the ``/``
    ``path.Join`` puts after it ("" for a bare bucket), so a listing never reaches a sibling such as
    ``payload-logs-old/``."""
    path = urlparse(uri).path.strip("/")
    return f"{path}/" if path else ""


def object_prefix(uri: str, namespace: str, inference_service: str) -> str:
    """The key prefix (no bucket) under which one InferenceService's predictor writes (``getObjectPrefix``)."""
    return "/".join(p for p in (list_prefix(uri).rstrip("/"), namespace, inference_service, COMPONENT, STORE_PATH)
                    if p)


@dataclass(frozen=True)
class LogObject:
    """One object the agent wrote, named by its batch's first record."""

    prefix: str  # up to and including storage.path
    event_id: str  # the record's ce-id
    kind: str  # "request" or "response"
    extension: str  # the format: json, parquet or csv

    @property
    def key(self) -> str:
        return f"{self.prefix}/{self.event_id}-{self.kind}.{self.extension}"


def object_key(uri: str, namespace: str, inference_service: str, event_id: str, req_type: str, extension: str) -> str:
    """The object key (no bucket) of a batch whose first record has ``event_id`` and ``req_type`` (the
    CloudEvent type; its part after the last ``.`` names the half)."""
    kind = req_type.rsplit(".", 1)[-1]
    return LogObject(object_prefix(uri, namespace, inference_service), event_id, kind, extension).key


def parse_key(key: str) -> LogObject | None:
    """The parts of an object key in the agent's layout; None for a key it would never write."""
    prefix, _, name = key.rpartition("/")
    stem, dot, extension = name.rpartition(".")
    event_id, _, kind = stem.rpartition("-")
    if not (dot and event_id and kind in _KINDS and extension in FORMATS):
        return None
    return LogObject(prefix, event_id, kind, extension)


__all__ = ["BATCH_INTERVAL", "COMPONENT", "FORMATS", "STORE_KEY", "STORE_PATH", "LogObject", "check_uri",
           "list_prefix", "object_key", "object_prefix", "parse_key"]
