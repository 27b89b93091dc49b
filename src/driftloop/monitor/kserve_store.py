"""Payload logs that KServe's agent wrote to object storage (``spec.predictor.logger.url: s3://…`` with
``logger.storage``), read by polling instead of received over HTTP.

What the agent writes (kserve ``pkg/logger/store.go``, ``marshaller_{json,parquet,csv,record}.go``, ``types.go``,
``cmd/agent/main.go``; v0.15 … v0.20): one object per batch of ``LogRequest`` records (``--log-batch-size``,
default 1), named after the batch's first record in the layout :mod:`driftloop.logger_storage` defines (the
InferenceService builder and the emulated agent use the same definition). A record is one event half: ``id`` (the pair's ``ce-id``), ``reqType``
(``org.kubeflow.serving.inference.request|response``), ``bytes`` (the body, base64), ``contentType``,
``inferenceService``, ``namespace``, ``component``, ``endpoint``, ``sourceUri``, ``metadata`` (headers listed in
``metadataHeaders``) and ``annotations`` (the pod annotations listed in ``metadataAnnotations``; driftloop's
InferenceServices list ``driftloop.io/model-version`` there). Formats, by ``storage.parameters.format``:

* ``json`` — one record as a JSON object, or several as an array. Since v0.17 the members are camelCase
  (``reqType``); v0.15–v0.16 wrote Go's field names (``ReqType``) and one record per object.
* ``parquet`` and ``csv`` (v0.17+) — one row per record, every column a string: ``annotations`` and
  ``metadata`` as JSON text, ``bytes`` base64, ``tlsSkipVerify`` a boolean.

Each new object becomes one record of the ingest log (an :class:`~driftloop.monitor.ingest.EventBatch` naming
the object), so its halves join like HTTP events — the request and the response usually sit in different
objects — and the log and its checkpoints remember which objects were taken: each is taken exactly once,
across restarts. Objects last modified more than ``forget_after_seconds`` before the newest one seen are not
looked at again (their keys are forgotten; an object must appear in listings within that time).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import csv
import io
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

from driftloop.errors import ConfigError, DataError
from driftloop.logger_storage import list_prefix, parse_key
from driftloop.monitor.config import KServeStoreConfig
from driftloop.monitor.ingest import EventBatch, EventHalf, Ingest
from driftloop.storage import S3Settings, split_s3_uri

log = logging.getLogger(__name__)

# The record's fields, as v0.17+ names them (JSON members and Parquet/CSV columns) → the event header each
# becomes. v0.15–v0.16 JSON used Go's field names: the same with a capital first letter.
_HEADERS = {"id": "ce-id", "reqType": "ce-type", "inferenceService": "ce-inferenceservicename",
            "namespace": "ce-namespace", "component": "ce-component", "endpoint": "ce-endpoint",
            "contentType": "content-type"}


MAX_READ_TRIES = 5  # passes an unreadable object is tried before it is taken as empty (and counted refused)

class RecordError(DataError):
    """An object that does not hold KServe logger records."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    modified: float  # last-modified, seconds since the epoch
    size: int


def records_to_halves(data: bytes, key: str, at: float) -> list[EventHalf]:
    """The event halves in one object the agent wrote, by its extension.

    Raises:
        RecordError: the object is not in a format the agent writes, or a record is malformed.
    """
    parsed = parse_key(key)
    if parsed is None:
        raise RecordError(f"{key}: not a KServe logger object (<id>-<request|response>.<json|parquet|csv>)")
    extension = parsed.extension
    if extension == "json":
        records = _json_records(data, key)
    elif extension == "parquet":
        records = _parquet_records(data, key)
    else:
        records = _csv_records(data, key)
    return [_half(record, key, i, at) for i, record in enumerate(records)]


def _json_records(data: bytes, key: str) -> list[dict]:
    try:
        value = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RecordError(f"{key}: not JSON ({exc})") from None
    records = value if isinstance(value, list) else [value]
    if not all(isinstance(r, dict) for r in records):
        raise RecordError(f"{key}: expected a logger record or a list of them")
    # v0.15/v0.16 wrote Go's field names (``ReqType``); v0.17+ writes the json tags (``reqType``).
    return [{k[:1].lower() + k[1:]: v for k, v in r.items()} for r in records]


def _parquet_records(data: bytes, key: str) -> list[dict]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(io.BytesIO(data)).to_pylist()
    except (pa.ArrowException, OSError) as exc:
        raise RecordError(f"{key}: not a Parquet file ({exc})") from None


def _csv_records(data: bytes, key: str) -> list[dict]:
    try:
        return list(csv.DictReader(io.StringIO(data.decode())))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise RecordError(f"{key}: not CSV ({exc})") from None


def _half(record: dict, key: str, index: int, at: float) -> EventHalf:
    headers = {header: str(record[field]) for field, header in _HEADERS.items() if record.get(field) is not None}
    annotations = record.get("annotations")
    if isinstance(annotations, str) and annotations:  # Parquet and CSV carry it as JSON text
        try:
            annotations = json.loads(annotations)
        except json.JSONDecodeError:
            raise RecordError(f"{key}: record {index}: annotations are not JSON") from None
    if isinstance(annotations, dict) and annotations:
        headers["ce-annotations"] = json.dumps(annotations, separators=(",", ":"), sort_keys=True)
    source = record.get("sourceUri")
    if isinstance(source, str) and source:  # v0.15/v0.16 JSON wrote a url.URL struct: left out
        headers["ce-source"] = source
    try:
        body = base64.b64decode(record.get("bytes") or "", validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise RecordError(f"{key}: record {index}: bytes is not base64") from None
    return EventHalf(headers, body, at)


class KServeStoreSource:
    """Polls a prefix of KServe logger objects and puts each new one through the ingest log.

    Args:
        config: Where the agent writes (``uri``) and how often to look.
        ingest: The monitor's durable ingestion; it remembers which objects were taken.
        s3: How to reach the store (default: from the environment, as for every s3:// URI).
    """

    def __init__(self, config: KServeStoreConfig, ingest: Ingest, s3: S3Settings | None = None) -> None:
        self.config = config
        self.ingest = ingest
        self.bucket = split_s3_uri(config.uri)[0]
        self.prefix = list_prefix(config.uri)
        self.s3 = s3
        self.objects_taken = self.objects_refused = 0
        self._read_failures: dict[str, int] = {}  # key -> failed reads so far (an object is tried MAX_READ_TRIES times)
        self.newest_seen = 0.0

    def _client(self):
        if self.s3 is None:
            self.s3 = S3Settings.from_env()
        return self.s3.client()

    def list_new(self) -> list[StoredObject]:
        """Objects under the prefix not taken yet, oldest first."""
        found = []
        for item in self._list():
            if item.modified > self.newest_seen:
                self.newest_seen = item.modified
            if not self.ingest.taken(item.key, item.modified):
                found.append(item)
        return sorted(found, key=lambda o: (o.modified, o.key))

    def _list(self) -> Iterator[StoredObject]:
        for obj in self._client().list_objects(self.bucket, prefix=self.prefix, recursive=True):
            if obj.is_dir or obj.object_name.endswith("/"):
                continue
            yield StoredObject(obj.object_name, obj.last_modified.timestamp(), obj.size or 0)

    def read(self, item: StoredObject) -> bytes:
        response = self._client().get_object(self.bucket, item.key)
        try:
            return response.read()
        finally:
            response.close()
            response.release_conn()

    async def poll(self) -> int:
        """One pass: every new object's records go into the ingest log (one record per object, acknowledged
        once on disk). Returns how many objects were taken."""
        taken = 0
        for item in await asyncio.to_thread(self.list_new):
            at = time.time()
            try:
                data = await asyncio.to_thread(self.read, item)
                halves = records_to_halves(data, item.key, at)
            except RecordError as exc:  # taken as empty: looked at once, never again
                log.warning("monitor: %s", exc)
                halves = []
                self.objects_refused += 1
            except Exception as exc:  # noqa: BLE001 - one unreadable object must not hold back the newer ones
                failures = self._read_failures[item.key] = self._read_failures.get(item.key, 0) + 1
                log.warning("monitor: cannot read %s (try %d of %d): %s: %s", item.key, failures, MAX_READ_TRIES,
                            type(exc).__name__, str(exc).splitlines()[0][:200] if str(exc) else "")
                if failures < MAX_READ_TRIES:
                    continue  # tried again next pass
                halves = []  # given up: taken as empty, so it is not read for ever
                self.objects_refused += 1
            self._read_failures.pop(item.key, None)
            result = await self.ingest.submit_batch(EventBatch(halves, at, item.key, item.modified))
            for reason in result.rejected:
                log.info("monitor: %s: %s", item.key, reason)
            taken += 1
        self.objects_taken += taken
        if self.newest_seen:
            self.ingest.forget_sources(self.newest_seen - self.config.forget_after_seconds)
        return taken

    async def run_forever(self) -> None:
        while True:
            try:
                await self.poll()
            except (DataError, ConfigError) as exc:
                log.warning("monitor: reading %s: %s", self.config.uri, exc)
            except Exception as exc:  # noqa: BLE001 - an unreachable store must not stop the monitor
                log.warning("monitor: reading %s failed (%s: %s); trying again", self.config.uri,
                            type(exc).__name__, exc)
            await asyncio.sleep(self.config.poll_seconds)

    def status(self) -> dict:
        return {"uri": self.config.uri, "objects_taken": self.objects_taken, "objects_refused": self.objects_refused}


__all__ = ["KServeStoreSource", "RecordError", "records_to_halves"]
