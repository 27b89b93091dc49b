"""The drift monitor: a service that watches live traffic and retrains the model when the world moves.

HTTP API (FastAPI):

* ``POST /events`` — KServe payload-log CloudEvents (from the local gateway or KServe's logger);
  request and response are joined by ``ce-id`` and every row is stored. One binary-mode event half per
  POST (KServe's agent; 202), or a structured-mode batch with ``content-type:
  application/cloudevents-batch+json`` (driftloop's gateway with batching on; 202 with
  ``{"accepted": N, "rejected": [...]}`` once the whole batch is on disk).
* A store of KServe's blob logger (``logger.storage``) is read by polling instead, when the config names it
  (``kserve_store``: monitor/kserve_store.py).
* ``POST /feedback`` — delayed labels: ``{"id": ..., "label": ..., "row": 0}``, a list of them, or
  ``{"labels": [...]}``; ``id`` is the request id (``x-request-id`` / ``ce-id``). They are checked against one
  model's task (``?model=`` or ``"model"`` beside ``"labels"``; default the config's model): a regression
  model's labels must be numbers (else 400, nothing kept); labels naming a class its production version never
  learned are kept and counted in the answer's ``unseen_classes``.
* ``GET /status`` — counters, the latest windows with drift and realised quality, the trigger state
  and the retrains; ``GET /windows/{model}``; ``GET /reports/{model}/window-NNNNNN.html`` — a window's
  page; ``GET /reports/{model}/index.html`` — the model's trend and windows (monitor/pages.py).
* ``GET /quality/{model}?since=ISO`` — realised quality per version (the canary analysis asks this).
* ``GET /metrics`` — Prometheus: drift share, per-feature scores, realised quality per metric, retrains.

What arrives is on disk before it is acknowledged (monitor/ingest.py: an fsync'd log, replayed at
start-up). A background loop checkpoints it into the Parquet store, closes windows, analyses them one at a
time in a worker thread (drift verdict first, the window's page after), hands each verdict to the retrain
coordinator (monitor/coordinator.py: trigger policy, retrains, their audit entries) and applies retention.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from contextlib import asynccontextmanager
from datetime import datetime
from functools import lru_cache, partial
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Receive, Scope, Send

from driftloop.data import DatasetSpec
from driftloop.drift import load_evidently
from driftloop.errors import DriftloopError, ModelNotFoundError
from driftloop.http_guard import error_body, parse_json, send_error
from driftloop.http_server import freeze_heap
from driftloop.monitor.analysis import Reference, analyse, prediction_values
from driftloop.monitor.config import MonitorConfig
from driftloop.monitor.coordinator import RetrainCoordinator
from driftloop.monitor.events import EventError, EventJoiner
from driftloop.monitor.events_http import EventsProtocol
from driftloop.monitor.guard import EVENTS_PATH, protect, protect_endpoint, report_file, valid_model_name
from driftloop.monitor.ingest import BatchResult, CheckpointError, Ingest, JournalError
from driftloop.monitor.kserve_store import KServeStoreSource
from driftloop.monitor.labels import LabelStore, normalise_label, parse_labels, row_key
from driftloop.monitor.metrics import MonitorMetrics
from driftloop.monitor.pages import Pages
from driftloop.monitor.quality import realised_quality
from driftloop.monitor.retention import Retention
from driftloop.monitor.retrain import TrainingTable, assemble_training_data
from driftloop.monitor.rows import Chunk, Rows, assemble
from driftloop.monitor.store import RowStore
from driftloop.monitor.trigger import quality_signal
from driftloop.monitor.windows import WindowBuffer, WindowRecord, read_summaries, summaries_path
from driftloop.registry import CANARY, PRODUCTION, ModelRegistry
from driftloop.reports.drift_window import INDEX_FILE
from driftloop.runners import make_runner
from driftloop.serving.payload_logger import BATCH_CONTENT_TYPE
from driftloop.tasks import BINARY, REGRESSION

log = logging.getLogger(__name__)
KEEP_WINDOWS = 200  # closed windows kept in memory per model (summaries are also on disk)
KEEP_RECENT_BATCHES = 20_000  # logged requests kept per model for /quality (a canary's recent traffic)
RECENT_ROWS_AT_START = 20_000  # stored rows put back into /quality's recent traffic after a restart
# Events that name no version or endpoint (KServe's agent sends an empty endpoint) are attributed with the
# aliases as read at most this long ago (Monitor._recent_aliases): reading the audit trail for every event cost
# more than the event.
ALIASES_MAX_AGE = 1.0
_ACCEPTED = orjson.dumps({"accepted": True})
# A model's index page on disk is rewritten at most this often (GET renders it live): at full rate windows close
# several times a second, and every index lists up to KEEP_WINDOWS windows and reads the audit trail.
INDEX_EVERY_SECONDS = 5.0


class Monitor:
    """Receives events and labels durably, turns windows of rows into drift verdicts, and hands those to
    the retrain coordinator.

    Args:
        registry: Where versions, references and the audit trail live.
        store_root: Rows, labels, the ingest log, window summaries, reports and retrain tables go under it.
        config: Windows, drift tests, trigger policy, retrain and retention settings.
        home: Working directory for local retrain runs (default: ``store_root``).
        tick_seconds: How often rows are checkpointed, windows closed and retrains polled.
        registry_uri: The registry's URI as runners should see it (default: ``registry.uri``).
        sync: fsync the ingest log (only benchmarks of its cost turn this off).
    """

    def __init__(self, registry: ModelRegistry, store_root: str | Path, config: MonitorConfig | None = None,
                 home: str | Path | None = None, tick_seconds: float = 1.0, registry_uri: str | None = None,
                 sync: bool = True) -> None:
        self.registry = registry
        self.config = config or MonitorConfig()
        self.root = Path(store_root)
        self.store = RowStore(self.root / "rows")
        self.labels = LabelStore(self.root)
        self.tick_seconds = tick_seconds
        self.metrics = MonitorMetrics()
        self._events_accepted, self._events_rejected = (self.metrics.events.labels(outcome)
                                                        for outcome in ("accepted", "rejected"))
        self.events_received = self.events_rejected = 0
        self.joiner = EventJoiner(self._spec_for, self._version_for, self._endpoint_for,
                                  on_drop=lambda outcome, n: self.metrics.events.labels(outcome).inc(n))
        self.buffers: dict[str, WindowBuffer] = {}
        self.windows: dict[str, deque[WindowRecord]] = {}
        self.recent: dict[str, deque[Chunk]] = {}  # a canary's recent traffic, as it came in
        self._aliases: dict[str, tuple[float, dict[str, int]]] = {}  # model → (time.monotonic(), aliases)
        self._refreshing_aliases = False  # a background task keeps _aliases fresh (while the monitor serves)
        self._rows_lock = threading.Lock()  # the open windows and recent traffic: filled by ingestion, read by the tick
        retrain = self.config.retrain
        runner = make_runner(retrain.runner, Path(home or self.root), registry_uri or registry.uri,
                             kfp_host=retrain.kfp_host, kfp_namespace=retrain.kfp_namespace or None,
                             experiment=retrain.experiment)
        self.coordinator = RetrainCoordinator(registry, self.config.trigger, self.config.retrain, runner,
                                              self._assemble, self.metrics, self.root / "reports")
        self.ingest = Ingest(self.root, self.joiner, self.store, self.labels, self._on_rows, sync=sync,
                             on_commit=self._on_commit, on_failure=self.metrics.log_failures.inc)
        self.kserve_store = (KServeStoreSource(self.config.kserve_store, self.ingest)
                             if self.config.kserve_store.uri else None)
        self.retention = Retention(self.config.retention, self.store, self.labels, self.root / "reports", self.metrics,
                                   checkpoint=lambda: self.ingest.checkpoint)
        self.pages = Pages(self.root / "reports", registry, self.config.trigger, self.config.report_rows)
        self._reports: asyncio.Queue | None = None
        self._summaries_lock = threading.Lock()  # summaries are appended at close and by the page worker
        self._index_lock = threading.Lock()  # index pages are written by the page worker, the tick and the stop
        self._index_written: dict[str, float] = {}  # model → time.monotonic() of its index page's last write
        self._index_stale: set[str] = set()  # models whose index page on disk lacks a window
        self._stopping = False
        # Start-up: the store as the last checkpoint left it, the windows from it, then the log on top.
        self.ingest.discard_unfinished_checkpoint()
        summaries = read_summaries(self.root)
        self._next_window = max((s["id"] for ss in summaries.values() for s in ss), default=0) + 1
        for model in self.store.models():
            self._refill(model, summaries.get(model, []))
        self.ingest.open()
        for model in sorted({self.config.model, *self.store.models(), *summaries}):
            self._restore_trigger(model, summaries.get(model, []))
        self.app = self._build_app()

    # ---- ingestion -------------------------------------------------------------------------------

    @lru_cache(maxsize=256)  # noqa: B019 - one monitor per process; specs of versions never change
    def _spec_for(self, model: str, version: int) -> DatasetSpec:
        return DatasetSpec.from_json(self.registry.read_file(model, version, "spec.json").decode())

    @lru_cache(maxsize=64)  # noqa: B019 - versions are immutable, so their references are too
    def _reference(self, model: str, version: int) -> Reference:
        return Reference.load(self.registry, model, version)

    def _version_for(self, model: str, endpoint: str) -> int | None:
        return self._recent_aliases(model).get(CANARY if endpoint == "canary" else PRODUCTION)

    def _endpoint_for(self, model: str, version: int) -> str:
        return "canary" if self._recent_aliases(model).get(CANARY) == version else "default"

    def _recent_aliases(self, model: str) -> dict[str, int]:
        """The model's aliases as read at most ALIASES_MAX_AGE ago.

        Events are applied on the event loop, and a registry read there (an S3 GET, the audit trail's checks)
        would hold up every connection: while the monitor serves, :meth:`_refresh_aliases_forever` re-reads them
        in a worker thread, and they are read here only for a model seen for the first time. Without it (tests,
        tools), they are read here when older than ALIASES_MAX_AGE.
        """
        read_at, aliases = self._aliases.get(model, (None, {}))
        now = time.monotonic()
        if read_at is None or (not self._refreshing_aliases and now - read_at >= ALIASES_MAX_AGE):
            aliases = self.registry.aliases(model)
            self._aliases[model] = (now, aliases)
        return aliases

    async def _refresh_aliases_forever(self) -> None:
        """Re-reads the aliases of every model seen, every ALIASES_MAX_AGE, in a worker thread."""
        self._refreshing_aliases = True
        try:
            while True:
                await asyncio.sleep(ALIASES_MAX_AGE)
                for model in list(self._aliases):
                    try:
                        aliases = await asyncio.to_thread(self.registry.aliases, model)
                    except Exception as exc:  # noqa: BLE001 - the last aliases read stay; the next pass tries again
                        log.warning("monitor: cannot re-read the aliases of %s: %s", model, exc)
                        continue
                    self._aliases[model] = (time.monotonic(), aliases)
        finally:
            self._refreshing_aliases = False

    def take_events(self, content_type: str | None, headers: dict[str, str], body: bytes) -> asyncio.Future:
        """``POST /events``: takes one binary-mode event half, or a CloudEvents batch (``content_type``
        ``application/cloudevents-batch+json``); called on the event loop.

        Args:
            headers: The request's CloudEvent headers (``ce-*``), lower-cased: all an event keeps.

        Returns:
            A future of the answer, (status, JSON body): 202 once all of it is on disk (a batch's answer counts
            its halves and names those refused), 400 for the sender's mistake (nothing of a malformed batch is
            kept), 503 when it could not be written (nothing was kept).
        """
        if _media_type(content_type) == BATCH_CONTENT_TYPE:
            return asyncio.ensure_future(self._take_batch(body))
        answer = asyncio.get_running_loop().create_future()
        self.events_received += 1
        try:
            stored = self.ingest.event_nowait(headers, body)
        except Exception as exc:  # noqa: BLE001 - answered as _event_answer says, like a failure once logged
            answer.set_result(self._event_answer(exc))
        else:
            stored.add_done_callback(partial(self._settle_event, answer))
        return answer

    def _settle_event(self, answer: asyncio.Future, stored: asyncio.Future) -> None:
        outcome = self._event_answer(JournalError("the event was not taken in") if stored.cancelled()
                                     else stored.exception())
        if not answer.done():  # the sender went away meanwhile; what was stored stays (and is counted)
            answer.set_result(outcome)

    def _event_answer(self, error: BaseException | None) -> tuple[int, bytes]:
        """The answer to an event post (one half, or a batch) that succeeded or failed with ``error``."""
        if error is None:
            self._events_accepted.inc()
            return 202, _ACCEPTED
        if isinstance(error, JournalError):
            return 503, error_body(str(error))
        if isinstance(error, EventError | DriftloopError):
            self.events_rejected += 1
            self._events_rejected.inc()
            log.info("monitor: rejected event: %s", error)
            return 400, error_body(str(error))
        log.error("monitor: taking an event failed", exc_info=error)
        return 500, error_body(f"the monitor failed to take the event ({type(error).__name__}); see its log")

    async def _take_batch(self, body: bytes) -> tuple[int, bytes]:
        """A CloudEvents batch, answered once all of it is on disk (see :meth:`take_events`)."""
        try:
            result = await self.ingest.batch(body)
        except Exception as exc:  # noqa: BLE001 - answered as a single event's failure is
            return self._event_answer(exc)
        return 202, orjson.dumps(self._count_batch(result))

    def _count_batch(self, result: BatchResult) -> dict:
        """Counts a batch's halves; its pairs whose request or response did not decode are named."""
        accepted = result.halves - len(result.rejected)
        self.events_received += result.halves
        self.events_rejected += len(result.rejected)
        self._events_accepted.inc(accepted)
        if result.rejected:
            self._events_rejected.inc(len(result.rejected))
        return {"accepted": accepted, "rows": sum(len(r) for r in result.rows), "rejected": result.rejected[:20]}

    def _on_rows(self, model: str, rows: Rows) -> None:
        """A pair joined (or was replayed at start-up): its rows join the open window and recent traffic.
        Called for every prediction, so it only appends: DataFrames are built when rows are used."""
        self.metrics.rows.labels(model).inc(len(rows))
        with self._rows_lock:
            buffer = self.buffers.get(model)
            if buffer is None:
                buffer = self.buffers[model] = WindowBuffer(self.config.window)
            buffer.add(rows)
            recent = self.recent.get(model)
            if recent is None:
                recent = self.recent[model] = deque(maxlen=KEEP_RECENT_BATCHES)
            recent.append(rows)

    def _served(self, model: str, rows: pd.DataFrame) -> tuple[str, np.ndarray, dict[int, frozenset[str]]]:
        """The task of the versions that served ``rows`` (the first one's), each row's prediction as its version's
        class label or number, and the class labels each classification version learned."""
        versions = rows["version"].astype(int).to_numpy()
        sent = rows["prediction"].to_numpy()
        predictions = np.empty(len(rows), dtype=object)
        task, classes = None, {}
        for version in np.unique(versions):
            chosen = versions == version
            try:
                spec = self._spec_for(model, int(version))
            except DriftloopError as exc:  # a version since deleted from the registry: its predictions as sent
                log.warning("monitor: predictions of %s v%s compared as sent: %s", model, version, exc)
                predictions[chosen] = [normalise_label(p) for p in sent[chosen]]
                continue
            task = task or spec.task
            predictions[chosen] = prediction_values(sent[chosen], spec)
            if spec.is_classification:
                classes[int(version)] = frozenset(normalise_label(c) for c in spec.target_classes)
        return task or BINARY, predictions, classes

    def _recent_frame(self, model: str, rows: pd.DataFrame) -> tuple[pd.DataFrame, str, dict[int, frozenset[str]]]:
        task, predictions, classes = self._served(model, rows)
        frame = pd.DataFrame({
            "key": [row_key(e, r) for e, r in zip(rows["event_id"], rows["row"], strict=True)],
            "version": rows["version"].astype(int).to_numpy(), "prediction": predictions,
            "received_at": rows["received_at"].to_numpy()})
        return frame, task, classes

    def _on_commit(self, records: int) -> None:
        self.metrics.log_commits.inc()
        self.metrics.log_records.inc(records)

    async def add_labels(self, body, model: str | None = None) -> dict:
        """Stores labels from a /feedback body once they are on disk, checked against one model's task.

        Args:
            model: The model the labels are for (``"model"`` beside ``"labels"`` in the body names it too);
                default the config's model.

        Returns:
            ``{"accepted": n, "model": ..., "version": <production>, "unseen_classes": {label: n}}``.

        Raises:
            EventError: a malformed label, a label of a regression model that is not a number, or a model named
                that the registry does not hold (400; nothing of the batch is kept).
        """
        if isinstance(body, dict) and "labels" in body:
            model = body.get("model") or model
            body = body["labels"]
        items = body if isinstance(body, list) else [body]
        model, version, spec = await asyncio.to_thread(self._labelled_model, model)
        keys, labels = parse_labels(items, model, numbers=spec is not None and spec.task == REGRESSION)
        count = await self.ingest.log_labels(keys, labels)
        self.metrics.labels.inc(count)
        unseen: dict[str, int] = {}
        if spec is not None and spec.is_classification:
            learned = {normalise_label(c) for c in spec.target_classes}
            for label in labels:
                if label not in learned:
                    unseen[label] = unseen.get(label, 0) + 1
            if unseen:
                self.metrics.unseen_classes.labels(model).inc(sum(unseen.values()))
                log.warning("monitor: %d labels of %s name classes v%s never learned (%s); kept, counted as wrong",
                            sum(unseen.values()), model, version, ", ".join(sorted(unseen)[:10]))
        return {"accepted": count, "model": model, "version": version, "unseen_classes": dict(sorted(unseen.items()))}

    def _labelled_model(self, named: str | None) -> tuple[str, int | None, DatasetSpec | None]:
        """The model labels are checked against, its production version and that version's spec (None when
        nothing of it serves, or the registry cannot say: the labels are then kept unchecked)."""
        model = named or self.config.model
        if not isinstance(model, str) or not valid_model_name(model):
            raise EventError(f"model must be a model name, got {str(model)[:60]!r}")
        try:
            version, spec = self._production(model)
            if named and version is None:
                self.registry.require_model(model)  # a name nothing was registered under is the caller's mistake
            return model, version, spec
        except ModelNotFoundError:
            raise EventError(f"no model '{model}' in the registry to label") from None
        except DriftloopError as exc:
            log.warning("monitor: labels of %s kept unchecked: %s", model, exc)
            return model, None, None

    def _production(self, model: str) -> tuple[int | None, DatasetSpec | None]:
        """The model's production version and its spec (None, None when nothing of it serves)."""
        version = self._recent_aliases(model).get(PRODUCTION)
        return version, None if version is None else self._spec_for(model, version)

    def quality_since(self, model: str, since: datetime | None) -> dict:
        """Realised quality per version of the model's recent traffic received since ``since`` (what the canary
        analysis compares)."""
        with self._rows_lock:
            frames = list(self.recent.get(model, ()))
        if not frames:
            try:
                spec = self._production(model)[1]
            except DriftloopError:  # the registry cannot say now: no traffic is no quality either way
                spec = None
            return realised_quality(pd.DataFrame(), self.labels, spec.task if spec else BINARY) | {"versions": {}}
        rows, task, classes = self._recent_frame(model, assemble(frames))
        if since is not None:
            rows = rows[rows["received_at"] >= pd.Timestamp(since).tz_convert("UTC")]
        quality = realised_quality(rows, self.labels, task, classes)
        return quality | {"versions": quality["by_version"]}

    # ---- start-up ---------------------------------------------------------------------------------

    def _refill(self, model: str, summaries: list[dict]) -> None:
        """Puts stored rows that no window took yet back into the open window, and recent stored rows into
        /quality's traffic: a restart must not reset a window or a canary's evidence."""
        closed_at = max((float(s["closed_at"]) for s in summaries), default=None)
        since = pd.Timestamp(closed_at, unit="s", tz="UTC") if closed_at is not None else None
        # Rows a full window left over just before closing arrived before it closed: they are not put back.
        rows = self.store.read(model, since)
        if not rows.empty:
            rows = rows.sort_values("received_at").tail(self.config.window.rows).reset_index(drop=True)
            buffer = WindowBuffer(self.config.window, now=closed_at or rows["received_at"].min().timestamp())
            buffer.add(rows)
            self.buffers[model] = buffer
        recent = self.store.newest(model, RECENT_ROWS_AT_START)
        if not recent.empty:
            self.recent[model] = deque([recent], maxlen=KEEP_RECENT_BATCHES)

    def _restore_trigger(self, model: str, summaries: list[dict]) -> None:
        """The coordinator rebuilds the trigger state from the audit trail; the signals of the last windows
        (against the version still in production) come from their summaries."""
        production = self.registry.aliases(model).get(PRODUCTION) if model in self.registry.list_models() else None
        signals = [(int(s["id"]), bool(s.get("signal"))) for s in summaries
                   if s.get("error") is None and s.get("reference_version") == production]
        self.coordinator.remember_windows(model, production, signals[-self.config.trigger.n:])

    # ---- windows and triggers ---------------------------------------------------------------------

    async def tick(self, now: float | None = None) -> None:
        """One pass of the background loop (tests call it directly)."""
        now = time.time() if now is None else now
        try:
            if self.ingest.due() and await asyncio.to_thread(self.ingest.flush):
                self.metrics.checkpoints.labels("ok").inc()
        except CheckpointError as exc:  # the rows stay buffered and in the log; the next tick tries again
            self.metrics.checkpoints.labels("failed").inc()
            log.error("monitor: %s", exc)
        for model, buffer in list(self.buffers.items()):
            while True:
                with self._rows_lock:
                    if not buffer.due(now):
                        break
                    chunks = buffer.take_chunks(now)
                # Built beside the event loop: a thousand rows' DataFrame would hold up the events arriving.
                try:
                    rows, rest = await asyncio.to_thread(buffer.split, chunks)
                except BaseException:  # the rows stay in the open window (a stop cancels this; a bug raises)
                    with self._rows_lock:
                        buffer.put_back(*chunks)
                    raise
                with self._rows_lock:
                    buffer.put_back(rest)
                await self._close_window(model, rows, now)
        await asyncio.to_thread(self.coordinator.tick, now)
        if self._index_stale:
            await asyncio.to_thread(self._write_stale_indexes)
        if self.retention.due(now):
            await asyncio.to_thread(self.retention.apply, now)

    async def _close_window(self, model: str, rows: pd.DataFrame, now: float) -> WindowRecord:
        production = self.registry.aliases(model).get(PRODUCTION)
        # The window opens with its earliest row, where a retrain since this window takes its rows from; not with
        # its buffer, which opened when the previous window's tick began: that window's last rows may have been
        # received later (while the tick checkpointed), and rows it left over earlier.
        opened_at = rows["received_at"].min().timestamp()
        record = WindowRecord.open(self._next_window, model, rows, opened_at, production or 0, closed_at=now)
        self._next_window += 1
        record.task, predictions, record.classes = self._served(model, rows)
        record.predictions = predictions.tolist()
        reference = None
        try:
            if production is None:
                raise DriftloopError(f"no production version of {model} to compare with")
            reference = await asyncio.to_thread(self._reference, model, production)
            await asyncio.to_thread(analyse, record, rows, reference, self.config.drift)
        except Exception as exc:  # noqa: BLE001 - one window that cannot be analysed must not stop the monitor
            record.error = str(exc) if isinstance(exc, DriftloopError) else f"{type(exc).__name__}: {exc}"
            log.warning("monitor: window %d of %s not analysed: %s", record.id, model, record.error,
                        exc_info=not isinstance(exc, DriftloopError))
        self._refresh_quality(model, record)
        self.metrics.window(record)
        earlier = list(self.windows.get(model, ()))
        decision = await asyncio.to_thread(self.coordinator.on_window, model, production, record, earlier, now)
        if decision is not None:
            record.decision = {"action": decision.action, "reason": decision.reason}
        # Shown once decided; the page follows when rendered (and the summary again, naming it).
        self.windows.setdefault(model, deque(maxlen=KEEP_WINDOWS)).append(record)
        if self._reports is not None:
            self._reports.put_nowait((record, rows, reference))
        self._append_summary(record)
        return record

    def _refresh_quality(self, model: str, record: WindowRecord) -> None:
        """Re-evaluates realised quality of recent windows (labels arrive late) and their quality signal."""
        trigger = self.config.trigger
        for window in [*self.windows.get(model, ()), record][-trigger.n:]:
            quality = window.quality(self.labels)
            window.quality_reason = quality_signal(window.quality_metric, window.reference_quality, quality, trigger,
                                                   window.reference_version)
            window.quality_dropped = window.quality_reason is not None
            self.metrics.quality(model, quality)

    def _assemble(self, model: str, version: int, key: str, since: pd.Timestamp | None) -> TrainingTable:
        return assemble_training_data(self.registry, self.store, self.labels, model, version, self.config.retrain,
                                      key, self.root / "retrain", since)

    # ---- reports and persistence ------------------------------------------------------------------

    def _append_summary(self, record: WindowRecord) -> None:
        path = summaries_path(self.root, record.model)
        path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record.summary(self.labels), default=str) + "\n"
        with self._summaries_lock, open(path, "a") as handle:
            handle.write(line)

    async def _render_reports(self) -> None:
        while True:
            record, rows, reference = await self._reports.get()
            # A window's page costs far more than its verdict: when windows close faster than pages are written,
            # only the newest waiting window of a model gets one (its verdict is there either way), so ingestion
            # keeps up.
            newer = self._drain_reports(record.model)
            if newer:
                self.metrics.reports_skipped.labels(record.model).inc(len(newer))
                record, rows, reference = newer[-1]
            await asyncio.to_thread(self._publish, record, rows, reference)

    def _publish(self, record: WindowRecord, rows: pd.DataFrame, reference: Reference | None) -> None:
        """Writes the window's page (when it was analysed), rewrites the pages of recent windows whose realised
        quality moved and the model's index, then the summaries: the new window's, naming its page, and theirs."""
        model, refreshed = record.model, []
        try:
            if reference is not None:
                retrain = next((r.to_dict() for r in self.coordinator.retrains(model)
                                if r.windows and r.windows[-1] == record.id), None)
                self.pages.write_window(record, rows, reference, self.labels, retrain)
            recent = list(self.windows.get(model, ()))[-self.config.trigger.n - 1:-1]
            refreshed = self.pages.refresh(recent, self.labels)
            self._write_index(model)
        except Exception:  # noqa: BLE001 - a page is a view; its failure must not stop the monitor
            log.exception("monitor: pages for window %d of %s failed", record.id, model)
        for window in [*refreshed, record]:
            self._append_summary(window)

    def _write_index(self, model: str, force: bool = False) -> None:
        """Rewrites the model's index page on disk, unless it was written less than INDEX_EVERY_SECONDS ago (then
        a tick after that writes it, or the monitor's stop)."""
        with self._index_lock:
            now = time.monotonic()
            force = force or self._stopping  # a page still being published as the monitor stops writes it
            if not force and now - self._index_written.get(model, -INDEX_EVERY_SECONDS) < INDEX_EVERY_SECONDS:
                self._index_stale.add(model)
                return
            self._index_stale.discard(model)
            self._index_written[model] = now
            self.pages.write_index(model, self._summaries(model, self.labels))

    def _write_stale_indexes(self, force: bool = False) -> None:
        for model in sorted(self._index_stale):
            try:
                self._write_index(model, force)
            except Exception:  # noqa: BLE001 - a page is a view; its failure must not stop the monitor
                log.exception("monitor: the index page of %s failed", model)

    def _summaries(self, model: str, labels: LabelStore | None = None) -> list[dict]:
        """The model's window summaries, oldest first: those on disk, with the windows in memory as they are now."""
        # A copy first: this runs in a worker thread while the event loop may append a closing window.
        in_memory = list(self.windows.get(model, ()))
        # The file holds every summary ever written: read only while memory holds fewer windows than are shown.
        on_disk = read_summaries(self.root).get(model, [])[-KEEP_WINDOWS:] if len(in_memory) < KEEP_WINDOWS else []
        by_id = {s["id"]: s for s in on_disk}
        by_id |= {w.id: w.summary(labels) for w in in_memory}
        return [by_id[i] for i in sorted(by_id)][-KEEP_WINDOWS:]

    def _drain_reports(self, model: str) -> list[tuple[WindowRecord, pd.DataFrame, Reference]]:
        """Takes the waiting report requests of ``model``; those of other models stay, in order."""
        waiting = []
        while not self._reports.empty():
            waiting.append(self._reports.get_nowait())
        for item in waiting:
            if item[0].model != model:
                self._reports.put_nowait(item)
        return [item for item in waiting if item[0].model == model]

    def status(self, model: str | None = None, limit: int = 10) -> dict:
        models = [model] if model else sorted(set(self.windows) | set(self.buffers) | set(self.coordinator.models()))
        return {
            "events_received": self.events_received, "events_rejected": self.events_rejected,
            "events_orphaned": self.joiner.orphaned, "rows_stored": self.store.rows_added,
            "labels": len(self.labels), "store": str(self.root), "ingest": self.ingest.status(),
            "kserve_store": self.kserve_store.status() if self.kserve_store else None,
            "models": {m: self._model_status(m, limit) for m in models},
        }

    def _model_status(self, model: str, limit: int) -> dict:
        buffer = self.buffers.get(model)
        return {
            "aliases": self.registry.aliases(model),
            "open_window_rows": buffer.rows if buffer else 0,
            "windows": [w.summary(self.labels) for w in list(self.windows.get(model, ()))[-limit:]],
            **self.coordinator.status(model, limit),
        }

    # ---- HTTP -------------------------------------------------------------------------------------

    def _build_app(self) -> ASGIApp:
        @asynccontextmanager
        async def lifespan(app: FastAPI):
            self._reports = asyncio.Queue()
            tasks = [asyncio.create_task(self._tick_forever()), asyncio.create_task(self._render_reports()),
                     asyncio.create_task(self._refresh_aliases_forever()),
                     # Now, while traffic is starting, not in the first window's verdict, when the GIL it
                     # holds for seconds would stall the events arriving at full rate.
                     asyncio.create_task(asyncio.to_thread(_load_and_freeze))]
            tasks[-1].add_done_callback(_log_failure("importing Evidently"))
            if self.kserve_store is not None:
                tasks.append(asyncio.create_task(self.kserve_store.run_forever()))
            yield
            for task in tasks:
                task.cancel()
            self._stopping = True
            await asyncio.to_thread(self._write_stale_indexes, True)
            await asyncio.to_thread(self.ingest.close)  # a last checkpoint: the next start replays nothing

        app = FastAPI(title="driftloop monitor", lifespan=lifespan, docs_url=None, redoc_url=None)
        protect(app, self.config)  # body limit, JSON only, tokens, security headers (monitor/guard.py)


        @app.post("/feedback")
        async def feedback(request: Request, model: str | None = None) -> JSONResponse:
            try:
                answer = await self.add_labels(await asyncio.to_thread(parse_json, await request.body()), model)
            except JournalError as exc:
                return _error(503, str(exc))
            except EventError as exc:
                return _error(400, str(exc))
            return JSONResponse(answer)

        @app.get("/status")
        async def status(model: str | None = None, limit: int = 10) -> dict:
            return await asyncio.to_thread(self.status, model, max(1, min(limit, KEEP_WINDOWS)))

        @app.get("/windows/{model}")
        async def windows(model: str, limit: int = 50) -> JSONResponse:
            if model not in self.windows:
                return _error(404, f"no windows for model '{model}' yet")
            records = list(self.windows[model])[-max(1, limit):]
            return JSONResponse([w.summary(self.labels) for w in records])

        @app.get("/reports/{model}/{name}")
        async def report(model: str, name: str) -> Response:
            if name == INDEX_FILE:  # rendered now: realised accuracy as the labels stand
                known = valid_model_name(model) and (model in self.windows or summaries_path(self.root, model).is_file())
                if not known:
                    return _error(404, f"no windows for model '{model}' yet")
                summaries = await asyncio.to_thread(self._summaries, model, self.labels)
                return HTMLResponse(await asyncio.to_thread(self.pages.index, model, summaries))  # CSP: protect's
            path = report_file(self.root / "reports", model, name)  # only files the monitor wrote
            if path is None:
                return _error(404, f"no report '{name}' for model '{model}'")
            return FileResponse(path, media_type="text/html")  # sandboxed by protect's CSP

        @app.get("/quality/{model}")
        async def quality(model: str, since: str | None = None) -> JSONResponse:
            if not valid_model_name(model):
                return _error(400, f"invalid model name {model[:60]!r}")
            try:
                when = datetime.fromisoformat(since) if since else None
            except ValueError:
                return _error(400, f"since must be an ISO 8601 time, got '{since}'")
            if when is not None and when.tzinfo is None:
                return _error(400, "since needs a time zone (e.g. 2026-01-01T00:00:00+00:00)")
            return JSONResponse(await asyncio.to_thread(self.quality_since, model, when))

        @app.get("/metrics")
        async def metrics() -> Response:
            return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

        # /events is called for every event half: served beside FastAPI, behind the same guards, without
        # FastAPI's and Starlette's per-request layers (they cost more than taking the event in).
        self._events_guard = protect_endpoint(_EventsEndpoint(self), self.config)
        return _EventsFirst(app, self._events_guard)

    def http_protocol(self, events_port: int | None = None) -> Callable[..., asyncio.Protocol]:
        """The protocol uvicorn should run for the monitor (its ``http`` option): plain event posts answered by
        monitor/events_http.py without ASGI, every other request handed to uvicorn's own protocol and the app.

        Args:
            events_port: The port events are taken on when it is not the API port (None: the API port).
        """
        return partial(EventsProtocol, self.take_events, self._events_guard, events_port)

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.tick_seconds)
            try:
                await self.tick()
            except Exception:  # noqa: BLE001 - keep watching; the log and the buffers hold the rows meanwhile
                log.exception("monitor: tick failed")


class _EventsFirst:
    """``POST /events`` to the events endpoint, everything else (and the lifespan) to the FastAPI app."""

    def __init__(self, api: FastAPI, events: ASGIApp) -> None:
        self.api, self.events = api, events

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == EVENTS_PATH:
            if scope["method"] != "POST":
                await send_error(send, 405, "POST events to /events")
                return
            await self.events(scope, receive, send)
            return
        await self.api(scope, receive, send)


class _EventsEndpoint:
    """``POST /events``: a binary-mode event half, or a CloudEvents batch → 202 once on disk; 400 / 503."""

    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        # The CloudEvent headers (all an event keeps) and the content type; ASGI names come lower-cased.
        headers, content_type = {}, None
        for name, value in scope["headers"]:
            name = name.lower()  # ASGI servers should lower-case them; not every one must
            if name.startswith(b"ce-"):  # without surrounding blanks (not part of a value), as events_http reads it
                headers[name.decode("latin-1")] = value.decode("latin-1").strip(" \t")
            elif name == b"content-type":
                content_type = value.decode("latin-1")
        status, answer = await self.monitor.take_events(content_type, headers, body)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(answer))]})
        await send({"type": "http.response.body", "body": answer})


def _load_and_freeze() -> None:
    """Imports Evidently, then freezes the heap start-up built (http_server.freeze_heap)."""
    load_evidently()
    freeze_heap()


def _log_failure(what: str):
    """A done-callback that logs a background task's failure (it has no one to raise it to)."""

    def done(task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("monitor: %s failed: %s", what, task.exception())

    return done


def _media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": message})
