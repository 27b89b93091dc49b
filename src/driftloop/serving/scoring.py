"""The scoring worker: where a model server decodes request bodies into columns and runs the model.

KServe calls a model's ``predict`` on the event loop; a synchronous model there stalls everything the
server does — health checks, metrics scrapes, other requests — for as long as one batch takes. The worker
is one thread with a queue in front of it: the event loop hands the work over and keeps serving while it
runs. One thread, not a pool: the model libraries use their own native threads for one batch, and one
batch at a time keeps latency predictable.

With :class:`Batching` on, the requests that queued while the worker was busy (and, with a wait, those that
arrive within that many microseconds) are scored together: each is decoded on its own (a malformed body
fails only its caller), the rows of every request for the same version go through the model in one call, and
each caller gets its own rows' answers. When that one call fails, each request is scored alone, so a row
that breaks the model fails only the request that sent it.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from driftloop.serving.batching import Batching
from driftloop.serving.payload import columns_from_payload
from driftloop.serving.versions import ServedVersion


class ModelFailed(Exception):
    """The model raised on input that decoded fine; the message names the exception's type."""


def decode(version: ServedVersion, payload: dict | Any) -> dict[str, Any]:
    """The request's rows as the version's typed columns; raises InvalidInput (the caller's mistake)."""
    return columns_from_payload(payload, version.spec)


def predict(version: ServedVersion, columns: dict[str, Any]) -> np.ndarray:
    """The version's predictions for typed columns; raises ModelFailed (a server-side error of this version)."""
    try:
        return version.predict(columns)
    except Exception as exc:
        raise ModelFailed(type(exc).__name__) from exc


def score_request(version: ServedVersion, payload: dict | Any) -> np.ndarray:
    """One request decoded and scored on its own (what the worker does with batching off)."""
    return predict(version, decode(version, payload))


@dataclass
class _Job:
    version: ServedVersion
    payload: Any
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    columns: dict[str, Any] | None = None
    rows: int = 0


_STOP = object()


class ScoringWorker:
    """Decodes and scores requests on one dedicated thread, in the order they were handed over, batching them
    as ``batching`` says."""

    def __init__(self, batching: Batching | None = None, name: str = "driftloop-scoring") -> None:
        self.batching = batching or Batching()
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._held: _Job | None = None  # a job taken while gathering that did not fit the batch
        self._stopped = False
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    async def score(self, version: ServedVersion, payload: dict | Any) -> np.ndarray:
        """The version's predictions for the request's rows, computed on the worker's thread (the caller's event
        loop stays free meanwhile). Raises InvalidInput or ModelFailed for this request alone."""
        if self._stopped:
            raise RuntimeError("the scoring worker has stopped")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._jobs.put(_Job(version, payload, future, loop))
        return await future

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
        if job.columns is not None:  # held over from the last batch, already decoded
            return True
        try:
            job.columns = decode(job.version, job.payload)
        except Exception as exc:  # noqa: BLE001 - InvalidInput, or anything else, goes to this caller alone
            self._settle(job, exc)
            return False
        job.rows = len(next(iter(job.columns.values()))) if job.columns else 0
        return True

    def _score_batch(self, batch: list[_Job]) -> None:
        groups: dict[int, list[_Job]] = {}
        for job in batch:
            groups.setdefault(id(job.version), []).append(job)
        for jobs in groups.values():
            if len(jobs) == 1:
                self._settle(jobs[0], _outcome(predict, jobs[0].version, jobs[0].columns))
                continue
            try:
                predictions = predict(jobs[0].version, _concatenate([job.columns for job in jobs]))
            except ModelFailed:  # find whose rows broke it: each request alone
                for job in jobs:
                    self._settle(job, _outcome(predict, job.version, job.columns))
                continue
            start = 0
            for job in jobs:
                self._settle(job, predictions[start:start + job.rows])
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

