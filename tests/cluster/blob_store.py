"""KServe's agent writing payload logs to object storage (``logger.url: s3://…`` with ``logger.storage``).

Follows kserve (``aaac4e294dae``, v0.20): the webhook's flags from the InferenceService's ``spec.predictor.logger``
(``pkg/webhook/admission/pod/agent_injector.go``: ``--log-store-path`` = ``storage.path``, ``--log-store-format`` =
``storage.parameters.format``, ``--log-batch-size``, ``--log-batch-interval``); ``cmd/agent/main.go``
``startLogger`` (format default ``json``, an unknown one also JSON; a store only when the url is not http and the
store path is not empty; ``batchSize > 1`` with an interval: ``TimedBatch``, without: ``SizeBatch``, else
``ImmediateBatch``); ``pkg/logger/dispatcher.go`` (no store: every batch dropped with an error log);
``store.go`` (bucket = the url's host, prefix = its path; key ``path.Join(prefix, namespace, inference service,
component, store path)/<id>-<reqType after the last '.'>.<ext>`` from the batch's *first* record; a failed upload
is logged and dropped); ``marshaller_json.go`` (one record: the object, several: an array; ``LogRequest``'s json
tags, ``*url.URL`` as Go's struct, bytes base64, omitempty), ``marshaller_record.go`` with ``marshaller_csv.go``
and ``marshaller_parquet.go`` (one row per record, string columns but the boolean ``tlsSkipVerify``, maps as JSON
text). The key layout is written here from store.go on purpose, not imported from driftloop: the tests compare
where this agent writes with where driftloop's builder and monitor expect it.

Not emulated: the ServiceAccount/Secret lookup that gives the agent its credentials (the emulator's one S3
settings stand in, as for the storage initializer), ``marshallerUrl`` (an external marshaller), GCS and Azure.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import logging
import posixpath
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlsplit

from driftloop.storage import S3Settings

_log = logging.getLogger(__name__)
_BLOB_PREFIXES = ("s3", "gs", "abfs")  # store.go GetStorageStrategy; anything else (http…, unknown) is HTTP
# marshaller_record.go logRecordColumns, in order
_COLUMNS = ("url", "bytes", "contentType", "reqType", "id", "sourceUri", "inferenceService", "namespace",
            "component", "endpoint", "metadata", "annotations", "certName", "tlsSkipVerify")


def is_blob_url(url: str) -> bool:
    return url.startswith(_BLOB_PREFIXES)


@dataclass(frozen=True)
class StoreFlags:
    """The agent's storage flags as the webhook derives them from the InferenceService's logger."""

    path: str = ""  # --log-store-path (empty: no store)
    format: str = "json"  # --log-store-format (the agent's default)
    batch_size: int = 1  # --log-batch-size
    batch_interval: float = 0.0  # --log-batch-interval, seconds

    @classmethod
    def from_logger_spec(cls, logger: dict) -> StoreFlags:
        from .cluster import go_duration

        storage = logger.get("storage") or {}
        if logger.get("marshallerUrl"):
            raise NotImplementedError("the emulated agent has only the embedded marshallers")
        return cls(path=storage.get("path") or "", format=(storage.get("parameters") or {}).get("format") or "json",
                   batch_size=logger.get("batchSize") or 1,
                   batch_interval=go_duration(logger.get("batchInterval") or "") or 0.0)

    @property
    def extension(self) -> str:
        return self.format if self.format in ("csv", "parquet") else "json"  # main.go: default → JSON


class BlobStore:
    """Batches one pod's records and uploads each batch as one object (``pool`` runs the uploads)."""

    def __init__(self, url: str, flags: StoreFlags, pool: ThreadPoolExecutor, s3: S3Settings | None) -> None:
        self.url, self.flags, self._pool, self._s3 = url, flags, pool, s3
        self._buffer: list[dict] = []
        self._lock = threading.Lock()
        self._deadline = time.monotonic() + flags.batch_interval
        if flags.batch_size > 1 and flags.batch_interval > 0:  # TimedBatch: its timer runs from the start
            threading.Thread(target=self._timer, daemon=True, name="logger-batch-timer").start()

    def add(self, record: dict) -> None:
        with self._lock:
            self._buffer.append(record)
            if len(self._buffer) >= max(self.flags.batch_size, 1):
                self._flush()

    def _flush(self) -> None:  # holds the lock
        if self._buffer:
            batch, self._buffer = self._buffer, []
            self._pool.submit(self._store, batch)
        self._deadline = time.monotonic() + self.flags.batch_interval  # TimedBatch resets its timer on a flush

    def _timer(self) -> None:
        while True:
            time.sleep(max(self._deadline - time.monotonic(), 0.01))
            with self._lock:
                if time.monotonic() >= self._deadline:
                    self._flush()

    def _store(self, batch: list[dict]) -> None:
        if not self.flags.path:
            _log.error("Logger store not configured, cannot store batch")
            return
        parsed = urlsplit(self.url)
        bucket, prefix = parsed.netloc, parsed.path.removeprefix("/")
        first = batch[0]
        parts = [p for p in (prefix, first["namespace"], first["inferenceService"], first["component"],
                             self.flags.path) if p]
        key = f"{_go_path_join(parts)}/{first['id']}-{first['reqType'].rsplit('.', 1)[-1]}.{self.flags.extension}"
        data = _MARSHALLERS[self.flags.extension](batch)
        try:
            if parsed.scheme != "s3" or self._s3 is None:
                raise RuntimeError(f"the emulator uploads to s3:// only, not {self.url}")
            self._s3.client().put_object(bucket, key, io.BytesIO(data), len(data))
        except Exception as exc:  # noqa: BLE001 - BlobStore.Store logs the error and the batch is gone
            _log.error("Failed to store batch: %s", exc)


def _go_path_join(parts: list[str]) -> str:
    """Go's ``path.Join``: the non-empty parts joined by ``/``, then ``path.Clean``ed."""
    joined = posixpath.normpath("/".join(parts)) if parts else ""
    return joined[1:] if joined.startswith("//") else joined


def _go_url(text: str) -> dict:
    """A ``*url.URL`` as encoding/json writes it (the struct's exported fields)."""
    parsed = urlsplit(text)
    return {"Scheme": parsed.scheme, "Opaque": "", "User": None, "Host": parsed.netloc, "Path": parsed.path,
            "RawPath": "", "OmitHost": False, "ForceQuery": False, "RawQuery": parsed.query,
            "Fragment": parsed.fragment, "RawFragment": ""}


def _go_time(moment: datetime) -> str:
    """``time.Time`` in JSON: RFC 3339 with nanoseconds, trailing zeros trimmed."""
    text = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f").rstrip("0").rstrip(".")
    return text + "Z"


def _json_record(record: dict) -> dict:
    """One LogRequest with its json tags; ``omitempty`` leaves out empty strings, maps and false."""
    out = {"url": _go_url(record["url"]), "bytes": base64.b64encode(record["bytes"]).decode()}
    for name in ("contentType", "reqType", "id"):
        if record[name]:
            out[name] = record[name]
    out["sourceUri"] = _go_url(record["sourceUri"])
    for name in ("inferenceService", "namespace", "component", "endpoint", "metadata", "annotations"):
        if record[name]:
            out[name] = record[name]
    out["occurrenceTime"] = _go_time(record["occurrenceTime"])
    return out


def _flat_record(record: dict) -> dict:
    """marshaller_record.go ``toLogRecord``: URLs as strings, bytes base64, maps as JSON text."""
    def go_json(value) -> str:
        return json.dumps(value, separators=(",", ":"), sort_keys=True)

    return {"url": record["url"], "bytes": base64.b64encode(record["bytes"]).decode(),
            "contentType": record["contentType"], "reqType": record["reqType"], "id": record["id"],
            "sourceUri": record["sourceUri"], "inferenceService": record["inferenceService"],
            "namespace": record["namespace"], "component": record["component"], "endpoint": record["endpoint"],
            "metadata": go_json(record["metadata"]), "annotations": go_json(record["annotations"]),
            "certName": "", "tlsSkipVerify": False}


def _marshal_json(batch: list[dict]) -> bytes:
    records = [_json_record(r) for r in batch]
    return json.dumps(records[0] if len(records) == 1 else records, separators=(",", ":")).encode()


def _marshal_csv(batch: list[dict]) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")  # encoding/csv: "\n" unless UseCRLF, quotes as needed
    writer.writerow(_COLUMNS)
    for record in batch:
        flat = _flat_record(record)
        writer.writerow(["true" if flat[c] is True else "false" if flat[c] is False else flat[c] for c in _COLUMNS])
    return text.getvalue().encode()


def _marshal_parquet(batch: list[dict]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(c, pa.bool_() if c == "tlsSkipVerify" else pa.string()) for c in _COLUMNS])
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist([_flat_record(r) for r in batch], schema=schema), sink)
    return sink.getvalue()


_MARSHALLERS = {"json": _marshal_json, "csv": _marshal_csv, "parquet": _marshal_parquet}
