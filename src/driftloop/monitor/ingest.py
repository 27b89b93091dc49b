"""Durable ingestion: an event half or a label batch is acknowledged only once it is on disk.

Every ``/events`` half (or batch of halves) and ``/feedback`` batch is appended to the ingest log (monitor/journal.py) and
fsync'd, with group commit, before the monitor answers; then it is applied in log order — halves go to the
joiner, joined rows to the row store's buffer and the windows, labels to the label store. A checkpoint (each
tick) writes the buffered rows and labels as Parquet parts named with the log position ``S`` they cover,
then a snapshot of the halves still waiting for their partner (``checkpoint-S.snap``): from then on the
log's records up to ``S`` are redundant, and its segments are deleted.

Start-up: parts newer than the last checkpoint (a checkpoint the crash interrupted) are removed, the
snapshot's waiting halves go back into the joiner (with the times they arrived, so they still expire on
time), and the log's records after ``S`` are applied again. Replaying is idempotent: a record is either
covered by the checkpoint (and skipped) or not (and its rows are in no part), so nothing is stored twice,
and a pair whose first half was acknowledged before a crash still joins when the second arrives after it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from driftloop.errors import DriftloopError
from driftloop.monitor.disk import make_dirs, remove_durably, write_durably
from driftloop.monitor.events import (
    UNPARSED,
    EventError,
    EventJoiner,
    event_headers,
    parse_batch,
    parse_event,
)
from driftloop.monitor.journal import Journal, JournalError, encode_frame, read_frames, read_log
from driftloop.monitor.labels import LabelStore, parse_labels
from driftloop.monitor.rows import Rows
from driftloop.monitor.store import RowStore

log = logging.getLogger(__name__)
_CHECKPOINT = "checkpoint-{:016d}.snap"
# A checkpoint is due after this many records or seconds: what a restart replays, and how small the
# Parquet parts may get (rows wait in memory meanwhile, safe in the log).
CHECKPOINT_RECORDS = 5000
CHECKPOINT_SECONDS = 10.0
PARSE_INLINE_BYTES = 64 * 1024  # event bodies up to this size are checked on the event loop


@dataclass(frozen=True)
class EventHalf:
    """One payload event as received: its CloudEvent headers, its body and when it arrived."""

    headers: dict[str, str]
    body: bytes
    at: float
    payload: object = field(default=UNPARSED, compare=False, repr=False)  # the body decoded, when it was

    def encode(self) -> bytes:
        return orjson.dumps({"k": "e", "at": self.at, "h": self.headers}) + b"\n" + self.body


@dataclass(frozen=True)
class EventBatch:
    """Many payload event halves taken in at once: a CloudEvents batch from driftloop's gateway, or the records
    of one object KServe's logger wrote to a store (``source`` names it, so it is never taken twice)."""

    halves: list[EventHalf]
    at: float
    source: str | None = None
    source_time: float = 0.0  # the object's last-modified time (seconds since the epoch)

    def encode(self) -> bytes:
        meta = {"k": "b", "at": self.at, "h": [h.headers for h in self.halves],
                "n": [len(h.body) for h in self.halves], "o": self.source, "ot": self.source_time}
        return orjson.dumps(meta) + b"\n" + b"".join(h.body for h in self.halves)


@dataclass
class BatchResult:
    """What became of a batch's halves: rows of the pairs it completed, and the halves refused."""

    halves: int = 0
    rows: list[Rows] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)  # one line per refused half


@dataclass(frozen=True)
class LabelBatch:
    """One /feedback call's labels, validated: row keys and normalised labels."""

    keys: list[str]
    labels: list[str]
    at: float

    def encode(self) -> bytes:
        return orjson.dumps({"k": "l", "at": self.at, "keys": self.keys, "labels": self.labels}) + b"\n"


def decode(payload: bytes) -> EventHalf | EventBatch | LabelBatch:
    meta, _, body = payload.partition(b"\n")  # orjson never writes a raw newline
    record = orjson.loads(meta)
    if record["k"] == "e":
        return EventHalf(record["h"], body, record["at"])
    if record["k"] == "b":
        halves, offset = [], 0
        for headers, length in zip(record["h"], record["n"], strict=True):
            halves.append(EventHalf(headers, body[offset:offset + length], record["at"]))
            offset += length
        return EventBatch(halves, record["at"], record.get("o"), record.get("ot") or 0.0)
    return LabelBatch(record["keys"], record["labels"], record["at"])


class CheckpointError(DriftloopError):
    """Rows and labels could not be written to the Parquet store; they stay buffered (and in the log)."""


class Ingest:
    """The log, the order records are applied in, and the checkpoints that make the log's records redundant.

    Args:
        root: The monitor's store (the log goes under ``<root>/ingest``).
        joiner, store, labels: Where records are applied.
        on_rows: Called with (model, rows) for each joined pair, after the row store (windows, /quality).
        sync: fsync the log (benchmarks of the cost turn it off).
        on_commit, on_failure: Metrics hooks of the log.
    """

    def __init__(self, root: str | Path, joiner: EventJoiner, store: RowStore, labels: LabelStore,
                 on_rows: Callable[[str, Rows], None], *, sync: bool = True,
                 on_commit: Callable[[int], None] = lambda n: None, on_failure: Callable[[], None] = lambda: None) -> None:
        self.directory = Path(root) / "ingest"
        self.joiner, self.store, self.labels, self.on_rows = joiner, store, labels, on_rows
        self.journal = Journal(self.directory, self._apply, sync=sync, on_commit=on_commit, on_failure=on_failure)
        self._lock = threading.Lock()  # applying a record vs. taking a checkpoint's snapshot
        self._checkpointing = threading.Lock()
        self.applied = 0  # the seq of the last record applied
        self.checkpoint = 0  # every record up to this seq is in the Parquet store
        self.replayed = 0
        self._checkpointed_at = 0.0  # time.monotonic() of the last checkpoint
        self._unfinished: list[Path] = []  # parts of a failed checkpoint not removed yet
        # Objects of a store (KServe's blob logger) whose records are in, with their last-modified times, and
        # the time before which every object counts as taken: the log and the checkpoints keep both, so an
        # object is taken exactly once across restarts (monitor/kserve_store.py decides what to forget).
        self.sources: dict[str, float] = {}
        self.sources_before = 0.0

    # ---- start-up ----------------------------------------------------------------------------------

    def discard_unfinished_checkpoint(self) -> int:
        """Finds the last completed checkpoint and removes the parts of any later one (a crash interrupted
        it; the log still holds their records). Returns how many parts were removed. Call before anything
        reads the store."""
        self.checkpoint = self.applied = _latest_checkpoint(self.directory)
        return self.store.remove_after(self.checkpoint) + self.labels.remove_after(self.checkpoint)

    def open(self) -> int:
        """Puts the waiting halves of the last checkpoint back, applies the log's records after it, and starts
        the log; returns how many records were replayed."""
        make_dirs(self.directory)
        waiting, self.sources, self.sources_before = _read_snapshot(self.directory, self.checkpoint)
        for headers, body, at in waiting:
            self._apply_replayed(EventHalf(headers, body, at))
        highest = self.checkpoint
        for seq, payload in read_log(self.directory):
            highest = max(highest, seq)
            if seq > self.checkpoint:
                self._apply_replayed(decode(payload), seq)
                self.replayed += 1
        if self.replayed:
            log.info("monitor: replayed %d records of the ingest log after checkpoint %d", self.replayed,
                     self.checkpoint)
        self.journal.open(highest + 1)
        self.journal.drop_through(self.checkpoint)  # segments a checkpoint covered before the crash
        return self.replayed

    def _apply_replayed(self, item: EventHalf | LabelBatch, seq: int | None = None) -> None:
        try:
            self._apply_item(item, seq)
        except (EventError, DriftloopError) as exc:  # as it was when it first arrived: the sender was told
            log.debug("monitor: replayed record refused again: %s", exc)

    # ---- receiving ---------------------------------------------------------------------------------

    async def event(self, headers: dict[str, str], body: bytes) -> Rows | None:
        """Logs one event half and applies it; returns the pair's rows once both halves are in.

        Raises:
            EventError: not a payload event, or the pair does not decode (the sender's mistake).
            JournalError: the log could not be written (nothing was kept).
        """
        return await self.event_nowait(event_headers(headers), body)

    def event_nowait(self, headers: dict[str, str], body: bytes) -> asyncio.Future:
        """:meth:`event` without a coroutine (called on the event loop for every event half): the future
        completes as :meth:`event` returns. ``headers`` are the CloudEvent headers only, lower-cased
        (:func:`~driftloop.monitor.events.event_headers`).

        Raises:
            EventError: not a payload event, or its body is not JSON (before anything is logged).
        """
        if len(body) > PARSE_INLINE_BYTES:  # refused before it is logged; a large body off the event loop
            return asyncio.ensure_future(self._event_parsed_aside(headers, body))
        return self._log_half(headers, body, parse_event(headers, body)[2])

    async def _event_parsed_aside(self, headers: dict[str, str], body: bytes) -> Rows | None:
        return await self._log_half(headers, body, (await asyncio.to_thread(parse_event, headers, body))[2])

    def _log_half(self, headers: dict[str, str], body: bytes, payload: object) -> asyncio.Future:
        half = EventHalf(headers, body, time.time(), payload)
        return self.journal.submit(half.encode(), half)

    async def batch(self, body: bytes) -> BatchResult:
        """Logs a CloudEvents batch as one record and applies its halves; returns once it is on disk.

        Raises:
            EventError: the batch is malformed (nothing of it was kept).
            JournalError: the log could not be written (nothing was kept).
        """
        halves = await asyncio.to_thread(parse_batch, body) if len(body) > PARSE_INLINE_BYTES else parse_batch(body)
        at = time.time()
        return await self.submit_batch(EventBatch([EventHalf(h, b, at, p) for h, b, p in halves], at))

    async def submit_batch(self, batch: EventBatch) -> BatchResult:
        """Logs and applies halves taken in together (a gateway's batch, a store object's records)."""
        return await self.journal.submit(batch.encode(), batch)

    async def feedback(self, items: list) -> int:
        """Validates, logs and applies one batch of labels; returns how many."""
        return await self.log_labels(*parse_labels(items))

    async def log_labels(self, keys: list[str], labels: list[str]) -> int:
        """Logs and applies labels already validated (:func:`~driftloop.monitor.labels.parse_labels`)."""
        if not keys:
            return 0
        batch = LabelBatch(keys, labels, time.time())
        return await self.journal.submit(batch.encode(), batch)

    def _apply(self, seq: int, item: EventHalf | EventBatch | LabelBatch):
        return self._apply_item(item, seq)

    def _apply_item(self, item: EventHalf | EventBatch | LabelBatch, seq: int | None = None):
        # Under the lock, with ``applied``: a checkpoint's snapshot holds exactly the records up to its seq.
        with self._lock:
            try:
                if isinstance(item, LabelBatch):
                    self.labels.apply(item.keys, item.labels, item.at)
                    return len(item.keys)
                if isinstance(item, EventBatch):
                    return self._apply_batch(item)
                rows = self.joiner.add(item.headers, item.body, item.at, item.payload)
                if rows is not None:
                    self._take(rows)
                return rows
            finally:
                if seq is not None:
                    self.applied = seq

    def _apply_batch(self, batch: EventBatch) -> BatchResult:
        result = BatchResult(len(batch.halves))
        for half in batch.halves:
            try:
                rows = self.joiner.add(half.headers, half.body, batch.at, half.payload)
            except (EventError, DriftloopError) as exc:  # one bad pair must not cost the others their rows
                result.rejected.append(str(exc))
                continue
            if rows is not None:
                self._take(rows)
                result.rows.append(rows)
        if batch.source is not None:
            self.sources[batch.source] = batch.source_time
        return result

    def taken(self, source: str, modified: float) -> bool:
        """Whether the store object ``source`` (last modified at ``modified``) was taken in already."""
        with self._lock:
            return modified < self.sources_before or source in self.sources

    def forget_sources(self, before: float) -> None:
        """Objects last modified before ``before`` count as taken from now on; their keys are dropped."""
        with self._lock:
            self.sources_before = max(self.sources_before, before)
            self.sources = {k: t for k, t in self.sources.items() if t >= self.sources_before}

    def _take(self, rows: Rows) -> None:
        self.store.add(rows.model, rows)
        self.on_rows(rows.model, rows)

    # ---- checkpoints -------------------------------------------------------------------------------

    def due(self) -> bool:
        """Whether a checkpoint is due (records applied since the last, and enough of them or time)."""
        waiting = self.applied - self.checkpoint
        return waiting >= CHECKPOINT_RECORDS or (
            waiting > 0 and time.monotonic() - self._checkpointed_at >= CHECKPOINT_SECONDS)

    def flush(self) -> bool:
        """Writes what was applied since the last checkpoint to the Parquet store, then deletes the log's
        records it covers. Returns whether there was anything to write.

        Raises:
            CheckpointError: the store could not be written; everything stays buffered and in the log.
        """
        with self._checkpointing:
            self._remove_unfinished()
            with self._lock:
                seq = self.applied
                if seq == self.checkpoint:
                    return False
                rows, labels = self.store.take(), self.labels.take()
                waiting, sources = self.joiner.pending_halves(), (dict(self.sources), self.sources_before)
            written: list[Path] = []
            try:
                written += self.store.write(rows, seq)
                written += self.labels.write(labels, seq)
                _write_snapshot(self.directory, seq, waiting, sources)
            except OSError as exc:
                self.store.put_back(rows)
                self.labels.put_back(labels)
                self._unfinished = written + getattr(exc, "written", [])
                try:
                    self._remove_unfinished()
                except CheckpointError:
                    pass  # retried before the next checkpoint writes anything
                raise CheckpointError(f"checkpoint {seq} failed, rows stay in the ingest log: {exc}") from None
            previous, self.checkpoint = self.checkpoint, seq
            self._checkpointed_at = time.monotonic()
        self.journal.drop_through(seq)
        remove_durably([self.directory / _CHECKPOINT.format(previous)])
        return True

    def _remove_unfinished(self) -> None:
        """A failed checkpoint's parts must go before the next one writes the same rows again."""
        if not self._unfinished:
            return
        try:
            remove_durably(self._unfinished)
        except OSError as exc:
            raise CheckpointError(f"cannot remove the parts of a failed checkpoint: {exc}") from None
        self._unfinished = []

    def close(self) -> None:
        """Applies what is queued, writes a last checkpoint and stops the log."""
        self.journal.close()
        try:
            self.flush()
        except CheckpointError as exc:
            log.error("monitor: %s (they are replayed at the next start)", exc)

    def status(self) -> dict:
        return {"applied": self.applied, "checkpoint": self.checkpoint, "replayed_at_start": self.replayed,
                "pending_halves": self.joiner.pending[0], "rows_in_parquet": self.store.rows_written}


def _latest_checkpoint(directory: Path) -> int:
    seqs = []
    for path in directory.glob("checkpoint-*.snap"):
        try:
            seqs.append(int(path.name.removeprefix("checkpoint-").removesuffix(".snap")))
        except ValueError:
            continue
    return max(seqs, default=0)


def _write_snapshot(directory: Path, seq: int, waiting: list[tuple[dict, bytes, float]],
                    sources: tuple[dict[str, float], float]) -> None:
    data = b"".join(encode_frame(i + 1, EventHalf(h, b, at).encode()) for i, (h, b, at) in enumerate(waiting))
    taken, before = sources
    data += encode_frame(len(waiting) + 1, orjson.dumps({"k": "s", "sources": taken, "before": before}) + b"\n")
    write_durably(directory / _CHECKPOINT.format(seq), lambda tmp: tmp.write_bytes(data))


def _read_snapshot(directory: Path, seq: int) -> tuple[list[tuple[dict, bytes, float]], dict[str, float], float]:
    """The halves a checkpoint left waiting, the store objects taken in up to it and the time before which
    every object counts as taken."""
    path = directory / _CHECKPOINT.format(seq)
    if not path.exists():
        return [], {}, 0.0
    halves, sources, before = [], {}, 0.0
    for _, payload in read_frames(path.read_bytes(), path.name):
        if payload.startswith(b'{"k":"s"'):
            record = orjson.loads(payload.partition(b"\n")[0])
            sources, before = record["sources"], record["before"]
            continue
        half = decode(payload)
        halves.append((half.headers, half.body, half.at))
    return halves, sources, before


__all__ = ["BatchResult", "CheckpointError", "EventBatch", "EventHalf", "Ingest", "JournalError", "LabelBatch"]
