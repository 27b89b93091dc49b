"""The monitor's ingest log: an append-only file that every event half and label batch is written to, and
fsync'd, before the monitor acknowledges it.

Group commit: requests submit records to one writer thread, woken once at the end of each pass of the event
loop, which writes everything that arrived since (and while the previous fsync ran) with one ``write`` and one
``fdatasync``, so requests that arrive together share a sync and throughput holds under load. The written batch
then goes back to the event loop it came from, which applies each record in log order (the monitor's ingestion:
join, buffer, label) and completes the futures of the requests: a request is answered once its record is durable *and* applied. Applying strictly in log order
is what makes a checkpoint ("everything up to record S is in the Parquet store") well defined. Applying on
the loop rather than on a thread of its own saves a thread switch per batch; at thousands of events a
second, the kernel's thread switches had cost a fifth of the monitor's CPU. The loop keeps taking requests in
while the writer waits for the disk.

On disk: ``<dir>/log-<first seq>.wal`` segments of frames ``[u32 length][u32 crc32][u64 seq][payload]``.
A crash mid-write leaves at most a torn last frame, which replay detects (length or checksum) and stops at.
A new segment starts at every start-up, after a failed write and when the current one is full; segments
whose records are all covered by a checkpoint are deleted (:meth:`Journal.drop_through`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import threading
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from driftloop.errors import DriftloopError
from driftloop.monitor.disk import fsync_dir, make_dirs

log = logging.getLogger(__name__)

FRAME = struct.Struct("<IIQ")  # payload length, crc32 of seq and payload, seq
SEGMENT_BYTES = 16 * 1024 * 1024  # a full segment is sealed and a new one started
WAKE_BACKSTOP_SECONDS = 0.5  # the longest a record waits for the writer when its loop never woke it
_PREFIX, _SUFFIX = "log-", ".wal"


class JournalError(DriftloopError):
    """The log could not be written; the records of the failed batch were not acknowledged."""


def encode_frame(seq: int, payload: bytes) -> bytes:
    seq_bytes = seq.to_bytes(8, "little")
    return FRAME.pack(len(payload), zlib.crc32(seq_bytes + payload), seq) + payload


def read_frames(data: bytes, where: str = "") -> Iterator[tuple[int, bytes]]:
    """The frames in ``data``, up to the first torn or corrupt one."""
    offset = 0
    while offset < len(data):
        if len(data) - offset < FRAME.size:
            break
        length, crc, seq = FRAME.unpack_from(data, offset)
        start = offset + FRAME.size
        payload = data[start:start + length]
        if len(payload) != length or zlib.crc32(seq.to_bytes(8, "little") + payload) != crc:
            break
        yield seq, payload
        offset = start + length
    if offset < len(data):
        log.warning("ingest log %s: %d bytes after the last whole record ignored (a write the crash cut short)",
                    where, len(data) - offset)


def segments(directory: Path) -> list[tuple[int, Path]]:
    """The log's segments, oldest first, with the lowest seq each can hold."""
    found = []
    for path in directory.glob(f"{_PREFIX}*{_SUFFIX}"):
        if not path.is_file():
            continue
        try:
            found.append((int(path.name[len(_PREFIX):-len(_SUFFIX)]), path))
        except ValueError:
            continue
    return sorted(found)


def read_log(directory: Path, after: int = 0) -> Iterator[tuple[int, bytes]]:
    """Every record in the log with a seq above ``after``, in log order."""
    for _, path in segments(directory):
        for seq, payload in read_frames(path.read_bytes(), path.name):
            if seq > after:
                yield seq, payload


@dataclass
class _Entry:
    payload: bytes
    item: object  # what the applier is given: the parsed form of ``payload``
    seq: int
    future: asyncio.Future  # on the submitter's loop


class Journal:
    """An fsync'd append-only log with group commit and in-order application.

    Args:
        directory: Where the segments live.
        apply: Called as ``apply(seq, item)`` for each written record, in log order, on the event loop of the
            batch's first record (on the writer thread if that loop has closed); its result (or exception)
            completes the record's future.
        sync: fdatasync each batch (only benchmarks of the cost turn it off).
        segment_bytes: Size at which a segment is sealed and a new one started.
        on_commit: Called with the number of records after each durable batch (metrics).
        on_failure: Called once per failed batch (metrics).
    """

    def __init__(self, directory: str | Path, apply: Callable[[int, object], object], *, sync: bool = True,
                 segment_bytes: int = SEGMENT_BYTES, on_commit: Callable[[int], None] = lambda n: None,
                 on_failure: Callable[[], None] = lambda: None) -> None:
        self.directory = Path(directory)
        self.apply = apply
        self.sync = sync
        self.segment_bytes = segment_bytes
        self.on_commit, self.on_failure = on_commit, on_failure
        self._cond = threading.Condition()  # the queue of records to write, and closing
        self._queue: list[_Entry] = []
        # Loops that will wake the writer once their current pass ends (see submit).
        self._wakes: set[asyncio.AbstractEventLoop] = set()
        self._next_seq = 1
        self._closing = False
        self._written: deque[list[_Entry]] = deque()  # durable batches not applied yet, in log order
        self._applying = threading.Lock()  # one applier at a time, whichever thread it runs on
        self._io = threading.Lock()  # the current segment: written by the writer, rotated by drop_through
        self._segments: list[tuple[int, Path]] = []
        self._fd: int | None = None
        self._size = 0  # bytes of whole, synced records in the current segment
        self._last_written = 0
        self._broken = False  # the last write failed: the next batch starts a new segment
        self._writer: threading.Thread | None = None

    @property
    def last_written(self) -> int:
        return self._last_written

    def open(self, next_seq: int) -> None:
        """Starts writing at ``next_seq`` (above every seq already in the log) in a new segment."""
        make_dirs(self.directory)
        self._next_seq, self._last_written = next_seq, next_seq - 1
        self._segments = segments(self.directory)
        with self._io:
            self._start_segment(next_seq)
        self._closing = False
        self._writer = threading.Thread(target=self._write_loop, name="ingest-log-writer", daemon=True)
        self._writer.start()

    def submit(self, payload: bytes, item: object) -> asyncio.Future:
        """Queues one record (called on an event loop); the future completes with ``apply``'s result once
        it is durable and applied, or with :class:`JournalError` if it could not be written."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._cond:
            if self._closing or self._writer is None:
                raise JournalError("the ingest log is not open")
            self._queue.append(_Entry(payload, item, self._next_seq, future))
            self._next_seq += 1
            # The writer is woken once per pass of the loop, after every record that pass took in, not per
            # record: waking it per record woke a thread and handed it the interpreter's lock per event, and
            # synced batches of one or two records.
            if loop not in self._wakes:
                self._wakes.add(loop)
                loop.call_soon(self._wake, loop)
        return future

    def _wake(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._cond:
            self._wakes.discard(loop)
            self._cond.notify()

    def drop_through(self, seq: int) -> int:
        """Deletes the segments whose records all have seqs up to ``seq`` (a checkpoint covers them);
        returns how many. The current segment is sealed first when it is wholly covered."""
        with self._io:
            if self._fd is not None and self._size > 0 and self._last_written <= seq:
                self._start_segment(self._last_written + 1)
            # A segment's records end below the next segment's first seq; the last one is the current one.
            doomed = [path for (_, path), (following, _) in zip(self._segments, self._segments[1:], strict=False)
                      if following - 1 <= seq]
            if self._fd is None and self._segments and self._last_written <= seq:  # closed, and all covered
                doomed.append(self._segments[-1][1])
            for path in doomed:
                path.unlink(missing_ok=True)
            self._segments = [s for s in self._segments if s[1] not in doomed]
        if doomed:
            fsync_dir(self.directory)
        return len(doomed)

    def close(self) -> None:
        """Writes and applies what is queued, then stops the writer. Call it off the event loop (the loop may
        be applying a batch meanwhile)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._writer is not None:
            self._writer.join()
            self._writer = None
        self._apply_written()  # what a loop was asked to apply and has not (or never will: it closed)
        with self._io:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    # ---- writing and applying --------------------------------------------------------------------

    def _write_loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    # Woken by submit's wake at the end of a loop's pass; the timeout is a backstop for records
                    # whose loop closed before its wake ran (their callers gone, nothing acknowledged).
                    self._cond.wait(WAKE_BACKSTOP_SECONDS)
                if not self._queue:
                    return
                batch, self._queue = self._queue, []
                self._wakes = {loop for loop in self._wakes if not loop.is_closed()}
            self._commit(batch)

    def _commit(self, batch: list[_Entry]) -> None:
        data = b"".join(encode_frame(e.seq, e.payload) for e in batch)
        with self._io:
            try:
                if self._broken or self._fd is None or self._size >= self.segment_bytes:
                    self._start_segment(batch[0].seq)
                _write_all(self._fd, data)
                if self.sync:
                    os.fdatasync(self._fd)
            except OSError as exc:
                self._fail(batch, exc)
                return
            self._size += len(data)
            self._last_written = batch[-1].seq
        self.on_commit(len(batch))
        self._written.append(batch)
        try:
            batch[0].future.get_loop().call_soon_threadsafe(self._apply_written)
        except RuntimeError:  # that loop has closed: nobody awaits these answers, but the records are applied
            self._apply_written()

    def _apply_written(self) -> None:
        """Applies every durable batch not applied yet, oldest first, and completes its futures. Whichever
        thread gets here first applies them all: a batch whose loop closed before applying it is not skipped."""
        with self._applying:
            while self._written:
                batch = self._written.popleft()
                outcomes: list[_Outcome] = []
                for entry in batch:
                    try:
                        outcomes.append((entry.future, self.apply(entry.seq, entry.item), None))
                    except Exception as exc:  # noqa: BLE001 - the record's own failure, reported to its request
                        outcomes.append((entry.future, None, exc))
                _settle_all(outcomes)

    def _fail(self, batch: list[_Entry], exc: OSError) -> None:
        """Nothing of a failed batch is acknowledged, and nothing of it may come back on replay: the
        segment is cut back to its last whole batch and the next batch starts a new one."""
        self._broken = True
        if self._fd is not None:
            try:
                if os.fstat(self._fd).st_size > self._size:
                    os.ftruncate(self._fd, self._size)
                    os.fsync(self._fd)
            except OSError as cut:
                log.error("ingest log: cannot cut the failed write back (%s); on restart, records answered "
                          "503 may be replayed", cut)
        log.error("ingest log: writing %d records failed: %s", len(batch), exc)
        self.on_failure()
        error = JournalError(f"the monitor could not write to its ingest log ({exc.strerror or exc}); "
                             "nothing was stored, try again")
        _settle_all([(entry.future, None, error) for entry in batch])

    def _start_segment(self, first_seq: int) -> None:
        """Closes the current segment (removing it if nothing was ever written to it) and opens a new one."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            if self._size == 0 and self._segments:
                self._segments.pop()[1].unlink(missing_ok=True)
        path = self.directory / f"{_PREFIX}{first_seq:016d}{_SUFFIX}"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fsync_dir(self.directory)
        self._segments.append((first_seq, path))
        self._size = os.fstat(self._fd).st_size
        self._broken = False


_Outcome = tuple[asyncio.Future, object, BaseException | None]


def _settle_all(outcomes: list[_Outcome]) -> None:
    """Completes the futures: at once on the loop this runs on, with one cross-thread call per other loop."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
    for outcome in outcomes:
        by_loop.setdefault(outcome[0].get_loop(), []).append(outcome)
    for loop, settled in by_loop.items():
        if loop is running:
            _settle(settled)
            continue
        try:
            loop.call_soon_threadsafe(_settle, settled)
        except RuntimeError:  # the loop has closed: nobody is waiting for these answers any more
            pass


def _settle(outcomes: list[_Outcome]) -> None:
    for future, result, error in outcomes:
        if future.done():  # its request was cancelled (the sender went away); the record stands
            continue
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
