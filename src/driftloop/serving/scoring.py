"""The scoring worker: where a model server decodes request bodies into columns and runs the model.

KServe calls a model's ``predict`` on the event loop; a synchronous model there stalls everything the
server does — health checks, metrics scrapes, other requests — for as long as one batch takes. The worker
is one thread with a queue in front of it: the event loop hands the work over and keeps serving while it
runs. One thread, not a pool: the model libraries use their own native threads for one batch, and one
batch at a time keeps latency predictable.

Small requests to a version with a verified fast path are the exception. With batching off, a request of at most
:data:`INLINE_MAX_ROWS` rows is decoded and scored on the event loop itself: one row takes about 60 µs there and
32 rows about 150 µs, no more than the hop to the thread and back costs in CPU per request (a thread woken, the
interpreter's lock passed twice: about 150 µs; docs/serving.md, "Speed"). Such a request may overtake larger
ones queued for the thread, and the fast path's session may then run on the loop's thread and the worker's at
once (onnxruntime's ``run`` is thread-safe).

With :class:`Batching` on, the requests that queued while the worker was busy (and, with a wait, those that
arrive within that many microseconds) are scored together: each is decoded on its own (a malformed body
fails only its caller), the rows of every request for the same version go through the model in one call, and
each caller gets its own rows' answers. When that one call fails, each request is scored alone, so a row
that breaks the model fails only the request that sent it. When any request of a batch asks for class
probabilities, the batch's call computes them, and only the requests that asked get theirs.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from kserve.errors import InvalidInput

from driftloop.serving.answers import wants_probabilities
from driftloop.serving.batching import Batching
from driftloop.serving.payload import columns_from_payload, rows_at_most
from driftloop.serving.versions import NoClassProbabilities, Scores, ServedVersion

# The most rows a fast-path request may have to be scored on the event loop (with batching off): 32 rows take
# about as long there as the hop to the worker's thread and back (see the module's docstring).
INLINE_MAX_ROWS = 32


class ModelFailed(Exception):
    """The model raised on input that decoded fine; the message names the exception's type."""


@dataclass(frozen=True)
class Decoded:
    """A request's rows as the version's typed columns, and whether it asks for class probabilities."""

    columns: dict[str, Any]
    probabilities: bool = False

    @property
    def rows(self) -> int:
        return len(next(iter(self.columns.values()))) if self.columns else 0


def decode(version: ServedVersion, payload: dict | Any) -> Decoded:
    """The request's rows and what it asks for; raises InvalidInput (the caller's mistake), e.g. probabilities
    asked of a regression model."""
    probabilities = wants_probabilities(payload)
    if probabilities:
        try:
            version.require_probabilities()
        except NoClassProbabilities as exc:
            raise InvalidInput(str(exc)) from None
    return Decoded(columns_from_payload(payload, version.spec), probabilities)


def predict(version: ServedVersion, decoded: Decoded) -> Scores:
    """The version's answers for decoded rows; raises ModelFailed (a server-side error of this version)."""
    try:
        return version.score(decoded.columns, decoded.probabilities)
    except Exception as exc:
        raise ModelFailed(type(exc).__name__) from exc


def score_request(version: ServedVersion, payload: dict | Any) -> Scores:
    """One request decoded and scored on its own (what the worker does with batching off, and the event loop
    with a small fast-path request)."""
    return predict(version, decode(version, payload))


@dataclass
class _Job:
    version: ServedVersion
    payload: Any
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    decoded: Decoded | None = None
    rows: int = 0


_STOP = object()


class ScoringWorker:
    """Decodes and scores requests on one dedicated thread, in the order they were handed over, batching them
    as ``batching`` says; scores small fast-path requests on the caller's loop instead (:meth:`scores_inline`)."""

    def __init__(self, batching: Batching | None = None, name: str = "driftloop-scoring") -> None:
        self.batching = batching or Batching()
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._held: _Job | None = None  # a job taken while gathering that did not fit the batch
        self._stopped = False
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    async def score(self, version: ServedVersion, payload: dict | Any) -> Scores:
        """The version's answers for the request's rows, computed on the worker's thread (the caller's event
        loop stays free meanwhile) or, for a small fast-path request, on the loop. Raises InvalidInput or
        ModelFailed for this request alone."""
        if self._stopped:
            raise RuntimeError("the scoring worker has stopped")
        if self.scores_inline(version, payload):
            return score_request(version, payload)
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._jobs.put(_Job(version, payload, future, loop))
        return await future

    def scores_inline(self, version: ServedVersion, payload: dict | Any) -> bool:
        """Whether the request is scored on the caller's event loop: a small request (at most
        :data:`INLINE_MAX_ROWS` rows) to a version with a fast path, with batching off."""
        return (version.fast is not None and not self.batching.enabled
                and rows_at_most(payload, INLINE_MAX_ROWS))

    def shutdown(self) -> None:
        """Stops taking work; what is queued and not started is cancelled."""
        self._stopped = True
        self._jobs.put(_STOP)

    # -- the worker's thread ------------------------------------------------------------------

    def _serve(self) -> None:
        while True:
            job = self._held if self._held is not None else self._jobs.get()
            self._held = None
            if job is _STOP:
                break
            if not self.batching.enabled:
                self._settle(job, _outcome(score_request, job.version, job.payload))
                continue
            batch = self._gather(job)
            if batch is _STOP:
                break
            self._score_batch(batch)
        self._cancel_queued()

    def _gather(self, first: _Job) -> list[_Job] | object:
        """The first job plus what is queued (or arrives within the wait), decoded, up to ``max_rows`` rows."""
        batch: list[_Job] = []
        rows = 0
        deadline = time.perf_counter() + self.batching.wait_us / 1e6
        job = first
        while True:
            if job is _STOP:
                self._score_batch(batch)
                return _STOP
            if self._decode(job):
                if batch and rows + job.rows > self.batching.max_rows:
                    self._held = job  # the next batch starts with it
                    break
                batch.append(job)
                rows += job.rows
            if rows >= self.batching.max_rows:
                break
            job = self._next(deadline)
            if job is None:
                break
        return batch

    def _next(self, deadline: float):
        try:
            return self._jobs.get_nowait()
        except queue.Empty:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return None
        try:
            return self._jobs.get(timeout=remaining)
        except queue.Empty:
            return None

    def _decode(self, job: _Job) -> bool:
        """Decodes the job's body; a body that does not decode is answered at once (only its caller fails)."""
        if job.future.done():  # the caller went away
            return False
        if job.decoded is not None:  # held over from the last batch, already decoded
            return True
        try:
            job.decoded = decode(job.version, job.payload)
        except Exception as exc:  # noqa: BLE001 - InvalidInput, or anything else, goes to this caller alone
            self._settle(job, exc)
            return False
        job.rows = job.decoded.rows
        return True

    def _score_batch(self, batch: list[_Job]) -> None:
        groups: dict[int, list[_Job]] = {}
        for job in batch:
            groups.setdefault(id(job.version), []).append(job)
        for jobs in groups.values():
            if len(jobs) == 1:
                self._settle(jobs[0], _outcome(predict, jobs[0].version, jobs[0].decoded))
                continue
            together = Decoded(_concatenate([job.decoded.columns for job in jobs]),
                               any(job.decoded.probabilities for job in jobs))
            try:
                scores = predict(jobs[0].version, together)
            except ModelFailed:  # find whose rows broke it: each request alone
                for job in jobs:
                    self._settle(job, _outcome(predict, job.version, job.decoded))
                continue
            start = 0
            for job in jobs:
                self._settle(job, scores.rows(start, start + job.rows, job.decoded.probabilities))
                start += job.rows

    def _settle(self, job: _Job, outcome: Any) -> None:
        try:
            job.loop.call_soon_threadsafe(_resolve, job.future, outcome)
        except RuntimeError:  # the caller's loop has closed: nobody is waiting
            pass

    def _cancel_queued(self) -> None:
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            if job is not _STOP:
                self._settle(job, RuntimeError("the scoring worker has stopped"))


def _outcome(work, *args) -> Any:
    """The work's result, or the exception it raised (handed to the caller's future)."""
    try:
        return work(*args)
    except Exception as exc:  # noqa: BLE001 - whatever it is belongs to the caller
        return exc


def _resolve(future: asyncio.Future, outcome: Any) -> None:
    if future.done():  # cancelled: the client disconnected
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


def _concatenate(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Typed columns of several requests, in order, as one set of columns."""
    columns: dict[str, Any] = {}
    for name, first in parts[0].items():
        if isinstance(first, np.ndarray):
            columns[name] = np.concatenate([part[name] for part in parts])
        else:
            columns[name] = [value for part in parts for value in part[name]]
    return columns

