"""The drift monitor: a service that watches live traffic and retrains the model when the world moves.

HTTP API (FastAPI):

* ``POST /events`` — KServe payload-log CloudEvents (from the local gateway or KServe's logger);
  request and response are joined by ``ce-id`` and every row is stored.
* ``POST /feedback`` — delayed labels: ``{"id": ..., "label": ..., "row": 0}``, a list of them, or
  ``{"labels": [...]}``; ``id`` is the request id (``x-request-id`` / ``ce-id``).
* ``GET /status`` — counters, the latest windows with drift and realised quality, the trigger state
  and the retrains; ``GET /windows/{model}``; ``GET /reports/{model}/{file}`` — a window's HTML report.
* ``GET /quality/{model}?since=ISO`` — realised quality per version (the canary analysis asks this).
* ``GET /metrics`` — Prometheus: drift share, per-feature scores, accuracy, retrains.

A background loop closes windows, analyses them one at a time in a worker thread (drift verdict
first, the HTML report after), feeds the trigger policy, and starts and watches retrains.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections import deque
from contextlib import asynccontextmanager
from datetime import datetime
from functools import lru_cache
from pathlib import Path

import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from driftloop.ct_params import CTParams
from driftloop.data import DatasetSpec
from driftloop.errors import DriftloopError
from driftloop.http_guard import parse_json
from driftloop.monitor.analysis import Reference, analyse, class_values, write_report
from driftloop.monitor.config import MonitorConfig
from driftloop.monitor.events import EventError, EventJoiner
from driftloop.monitor.guard import protect, report_file
from driftloop.monitor.labels import LabelStore, row_key
from driftloop.monitor.metrics import MonitorMetrics
from driftloop.monitor.retrain import (
    CANARY_SERVING,
    PROMOTED,
    ROLLED_BACK,
    assemble_training_data,
    make_runner,
    rollout_outcome,
)
from driftloop.monitor.store import RowStore
from driftloop.monitor.trigger import Decision, TriggerPolicy
from driftloop.monitor.windows import WindowBuffer, WindowRecord, realised_quality
from driftloop.registry import CANARY, PRODUCTION, ModelRegistry

log = logging.getLogger(__name__)
KEEP_WINDOWS = 200  # closed windows kept in memory per model (summaries are also on disk)
KEEP_RECENT_BATCHES = 20_000  # logged requests kept per model for /quality (a canary's recent traffic)


class Monitor:
    """Joins events into rows, keeps them, and turns windows of them into drift verdicts and retrains.

    Args:
        registry: Where versions, references and the audit trail live.
        store_root: Rows, labels, window summaries, reports and retrain tables go under it.
        config: Windows, drift tests, trigger policy and retrain settings.
        home: Working directory for local retrain runs (default: ``store_root``).
        tick_seconds: How often buffers are flushed, windows closed and retrains polled.
        registry_uri: The registry's URI as runners should see it (default: ``registry.uri``).
    """

    def __init__(self, registry: ModelRegistry, store_root: str | Path, config: MonitorConfig | None = None,
                 home: str | Path | None = None, tick_seconds: float = 1.0, registry_uri: str | None = None) -> None:
        self.registry = registry
        self.config = config or MonitorConfig()
        self.root = Path(store_root)
        self.store = RowStore(self.root / "rows")
        self.labels = LabelStore(self.root)
        self.tick_seconds = tick_seconds
        self.metrics = MonitorMetrics()
        self.events_received = self.events_rejected = 0
        self.joiner = EventJoiner(self._spec_for, self._version_for, self._endpoint_for,
                                  on_drop=lambda outcome, n: self.metrics.events.labels(outcome).inc(n))
        self.buffers: dict[str, WindowBuffer] = {}
        self.windows: dict[str, deque[WindowRecord]] = {}
        self.recent: dict[str, deque[pd.DataFrame]] = {}
        self.policies: dict[str, TriggerPolicy] = {}
        self.retrains: list[dict] = []
        self._reference_versions: dict[str, int] = {}
        self._next_window = self._last_window_id() + 1
        self.runner = make_runner(self.config.retrain, Path(home or self.root), registry_uri or registry.uri)
        self._reports: asyncio.Queue | None = None
        self.app = self._build_app()

    # ---- ingestion -------------------------------------------------------------------------------

    @lru_cache(maxsize=256)  # noqa: B019 - one monitor per process; specs of versions never change
    def _spec_for(self, model: str, version: int) -> DatasetSpec:
        return DatasetSpec.from_json(self.registry.read_file(model, version, "spec.json").decode())

    @lru_cache(maxsize=64)  # noqa: B019 - versions are immutable, so their references are too
    def _reference(self, model: str, version: int) -> Reference:
        return Reference.load(self.registry, model, version)

    def _version_for(self, model: str, endpoint: str) -> int | None:
        return self.registry.aliases(model).get(CANARY if endpoint == "canary" else PRODUCTION)

    def _endpoint_for(self, model: str, version: int) -> str:
        return "canary" if self.registry.aliases(model).get(CANARY) == version else "default"

    async def receive(self, headers: dict[str, str], body: bytes) -> None:
        self.events_received += 1
        try:
            rows = await asyncio.to_thread(self.joiner.add, headers, body)
        except (EventError, DriftloopError) as exc:
            self.events_rejected += 1
            self.metrics.events.labels("rejected").inc()
            raise EventError(str(exc)) from None
        self.metrics.events.labels("accepted").inc()
        if rows is None:
            return
        model = str(rows["model"].iloc[0])
        self.store.add(model, rows)
        self.metrics.rows.labels(model).inc(len(rows))
        self.buffers.setdefault(model, WindowBuffer(self.config.window)).add(rows)
        spec = self._spec_for(model, int(rows["version"].iloc[0]))
        recent = pd.DataFrame({
            "key": [row_key(e, r) for e, r in zip(rows["event_id"], rows["row"], strict=True)],
            "version": rows["version"].astype(int), "prediction": class_values(rows["prediction"], spec),
            "received_at": rows["received_at"],
        })
        self.recent.setdefault(model, deque(maxlen=KEEP_RECENT_BATCHES)).append(recent)

    def add_labels(self, body) -> int:
        """Stores labels from a /feedback body; returns how many."""
        if isinstance(body, dict) and "labels" in body:
            body = body["labels"]
        items = body if isinstance(body, list) else [body]
        count = self.labels.add(items)
        self.metrics.labels.inc(count)
        return count

    def quality_since(self, model: str, since: datetime | None) -> dict:
        frames = list(self.recent.get(model, ()))
        if not frames:
            return realised_quality(pd.DataFrame(), self.labels) | {"versions": {}}
        rows = pd.concat(frames, ignore_index=True)
        if since is not None:
            rows = rows[rows["received_at"] >= pd.Timestamp(since).tz_convert("UTC")]
        quality = realised_quality(rows, self.labels)
        return quality | {"versions": quality["by_version"]}

    # ---- windows and triggers ---------------------------------------------------------------------

    async def tick(self, now: float | None = None) -> None:
        """One pass of the background loop (tests call it directly)."""
        now = time.time() if now is None else now
        await asyncio.to_thread(self.store.flush)
        for model, buffer in list(self.buffers.items()):
            while buffer.due(now):
                rows, opened_at = buffer.take(now)
                await self._close_window(model, rows, opened_at, now)
        await asyncio.to_thread(self._poll_retrains, now)

    async def _close_window(self, model: str, rows: pd.DataFrame, opened_at: float, now: float) -> WindowRecord:
        production = self.registry.aliases(model).get(PRODUCTION)
        record = WindowRecord.open(self._next_window, model, rows, opened_at, production or 0, closed_at=now)
        self._next_window += 1
        spec = self._spec_for(model, int(rows["version"].iloc[0]))
        record.predictions = class_values(rows["prediction"], spec)
        policy = self.policies.setdefault(model, TriggerPolicy(self.config.trigger))
        if self._reference_versions.get(model) not in (None, production):
            policy.reset_signals()  # earlier windows were measured against the previous version's reference
        self._reference_versions[model] = production
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
        self.windows.setdefault(model, deque(maxlen=KEEP_WINDOWS)).append(record)
        self.metrics.window(record)
        if reference is not None and self._reports is not None:
            self._reports.put_nowait((record, rows, reference))
        if record.error is None:
            for window in self.windows[model]:  # labels that arrived since may have changed old signals
                policy.update(window.id, window.signal)
            decision = policy.observe(record.id, record.signal, now)
            record.decision = {"action": decision.action, "reason": decision.reason}
            await asyncio.to_thread(self._act, model, production, decision, now)
        self._append_summary(record)
        return record

    def _refresh_quality(self, model: str, record: WindowRecord) -> None:
        """Re-evaluates realised quality of recent windows (labels arrive late) and their quality signal."""
        trigger = self.config.trigger
        for window in [*self.windows.get(model, ()), record][-trigger.n:]:
            quality = window.quality(self.labels)
            accuracy, labelled = quality["accuracy"], quality["labelled"]
            window.quality_dropped = bool(
                accuracy is not None and labelled >= trigger.min_labels and window.reference_accuracy is not None
                and accuracy < window.reference_accuracy - trigger.quality_drop)
            self.metrics.quality(model, quality)

    def _act(self, model: str, production: int, decision: Decision, now: float) -> None:
        policy = self.policies[model]
        self.metrics.decisions.labels(model, decision.action).inc()
        if decision.action == "in-flight":
            self.registry.record(model, "retrain-refused", actor="drift-monitor", version=production,
                                 reason=decision.reason, evidence={"in_flight": policy.in_flight})
            return
        if not decision.triggers:  # "stopped" was recorded when the last failure stopped the policy
            return
        windows = [w for w in self.windows[model] if w.id in policy.signalling_windows()]
        key = _idempotency_key(model, production, [w.id for w in windows])
        if self._already_triggered(model, key):
            return
        policy.started(key, now)
        evidence = {"key": key, "windows": [_window_evidence(w, self.root) for w in windows]}
        retrain = {"model": model, "key": key, "state": "starting", "started_at": now, "reason": decision.reason,
                   "reference_version": production, "windows": [w.id for w in windows]}
        self.retrains.append(retrain)
        since = (pd.Timestamp(min(w.opened_at for w in windows), unit="s", tz="UTC")
                 if self.config.retrain.since_signal and windows else None)
        try:
            table = assemble_training_data(self.registry, self.store, self.labels, model, production,
                                           self.config.retrain, key, self.root / "retrain", since)
        except Exception as exc:  # noqa: BLE001 - whatever blocks a retrain must end it, not wedge the policy
            if not isinstance(exc, DriftloopError):
                log.exception("monitor: assembling the data of retrain %s failed", key)
            retrain.update(state="blocked", error=str(exc), finished_at=time.time())
            self.registry.record(model, "retrain-blocked", actor="drift-monitor", version=production,
                                 reason=f"retrain {key} blocked: {exc}", evidence=evidence)
            self._finish(model, False)
            return
        spec = self._spec_for(model, production)
        params = CTParams(data_uri=table.uri, target=spec.target, model_name=model, spec_json=spec.to_json(),
                          id_column=spec.id_column or "", timestamp_column=spec.timestamp_column or "",
                          triggered_by=f"drift:{key}", **self.config.retrain.pipeline_params)
        evidence |= {"data_uri": table.uri, "reference_rows": table.n_reference, "recent_rows": table.n_recent}
        if self.runner is None:
            retrain.update(state="recorded", data_uri=table.uri)
            self.registry.record(model, "retrain-triggered", actor="drift-monitor", version=production,
                                 reason=decision.reason + " (runner 'none': not started)", evidence=evidence)
            self._finish(model, False, count=False)
            return
        try:
            run = self.runner.start(params, key)
        except Exception as exc:  # noqa: BLE001 - a retrain that cannot start has failed; the policy counts it
            retrain.update(state="failed", error=str(exc), finished_at=time.time())
            self.registry.record(model, "retrain-failed", actor="drift-monitor", version=production,
                                 reason=f"retrain {key} could not start: {exc}", evidence=evidence)
            self._finish(model, False)
            return
        retrain.update(state="running", run=run, data_uri=table.uri)
        self.registry.record(model, "retrain-triggered", actor="drift-monitor", version=production,
                             reason=decision.reason, evidence=evidence | {"run": run})

    def _poll_retrains(self, now: float) -> None:
        for retrain in self.retrains:
            if retrain.get("state") != "running":
                continue
            try:
                outcome = self.runner.poll(retrain["key"])
            except DriftloopError as exc:
                log.warning("monitor: cannot poll retrain %s: %s", retrain["key"], exc)
                continue
            if outcome is None:
                continue
            model = retrain["model"]
            version = next((v.version for v in reversed(self.registry.list_versions(model))
                            if v.lineage.get("triggered_by") == f"drift:{retrain['key']}"), None)
            # Judged by how the version's rollout ended, not by "production moved": on a cluster the run may
            # end with the canary still serving its share, waiting for evidence or a person.
            rollout = rollout_outcome(self.registry, model, version) if version is not None else None
            if rollout in (PROMOTED, CANARY_SERVING, ROLLED_BACK):
                state = rollout
                self.metrics.rollouts.labels(model, rollout.replace("-", "_")).inc()
            else:
                state = "failed" if outcome.state == "FAILED" else "not-promoted"
            retrain.update(state=state, version=version, error=outcome.error, finished_at=now)
            reason = (f"retrain {retrain['key']}: v{version} {state}" if version is not None
                      else f"retrain {retrain['key']} ended {state}") + (f": {outcome.error}" if outcome.error else "")
            self.registry.record(model, "retrain-finished", actor="drift-monitor", version=version, reason=reason,
                                 evidence={"key": retrain["key"], "state": state, "run": retrain.get("run")})
            self._finish(model, state in (PROMOTED, CANARY_SERVING))

    def _finish(self, model: str, succeeded: bool, count: bool = True) -> None:
        policy = self.policies[model]
        if count:
            policy.finished(succeeded)
        else:
            policy.in_flight = None
        if policy.stopped:
            reason = (f"retraining of {model} stopped after {policy.consecutive_failures} consecutive failed or "
                      "rolled-back retrains")
            self.registry.record(model, "retrain-stopped", actor="drift-monitor", reason=reason)
            self.retrains.append({"model": model, "state": "stopped", "reason": reason, "at": time.time()})

    def _already_triggered(self, model: str, key: str) -> bool:
        """Idempotency: a trigger with this key is in the audit trail already (e.g. before a restart)."""
        return any(e.action == "retrain-triggered" and (e.evidence or {}).get("key") == key
                   for e in self.registry.history(model))

    # ---- reports and persistence ------------------------------------------------------------------

    def _append_summary(self, record: WindowRecord) -> None:
        path = self.root / "windows" / f"{record.model}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as handle:
            handle.write(json.dumps(record.summary(), default=str) + "\n")

    def _last_window_id(self) -> int:
        last = 0
        for path in (self.root / "windows").glob("*.jsonl"):
            for line in path.read_text().splitlines():
                try:
                    last = max(last, int(json.loads(line)["id"]))
                except (ValueError, KeyError):
                    continue  # a torn last line after a crash
        return last

    async def _render_reports(self) -> None:
        while True:
            record, rows, reference = await self._reports.get()
            path = self.root / "reports" / record.model / f"window-{record.id:06d}.html"
            try:
                await asyncio.to_thread(write_report, rows, record.predictions, reference, self.config.drift,
                                        self.config.report_rows, path)
                record.report = path.name
            except Exception:  # noqa: BLE001 - a report is a view; its failure must not stop the monitor
                log.exception("monitor: report for window %d failed", record.id)

    def status(self, model: str | None = None, limit: int = 10) -> dict:
        models = [model] if model else sorted(set(self.windows) | set(self.buffers))
        return {
            "events_received": self.events_received, "events_rejected": self.events_rejected,
            "events_orphaned": self.joiner.orphaned, "rows_stored": self.store.rows_written,
            "labels": len(self.labels), "store": str(self.root),
            "models": {m: self._model_status(m, limit) for m in models},
        }

    def _model_status(self, model: str, limit: int) -> dict:
        policy = self.policies.get(model)
        buffer = self.buffers.get(model)
        return {
            "aliases": self.registry.aliases(model),
            "open_window_rows": buffer.rows if buffer else 0,
            "windows": [w.summary(self.labels) for w in list(self.windows.get(model, ()))[-limit:]],
            "trigger": policy.state() if policy else None,
            "retrains": [r for r in self.retrains if r.get("model") == model][-limit:],
        }

    # ---- HTTP -------------------------------------------------------------------------------------

    def _build_app(self) -> FastAPI:
        @asynccontextmanager
        async def lifespan(app: FastAPI):
            self._reports = asyncio.Queue()
            tasks = [asyncio.create_task(self._tick_forever()), asyncio.create_task(self._render_reports())]
            yield
            for task in tasks:
                task.cancel()
            await asyncio.to_thread(self.store.flush)  # nothing received is lost on shutdown

        app = FastAPI(title="driftloop monitor", lifespan=lifespan, docs_url=None, redoc_url=None)
        protect(app, self.config)  # body limit, JSON only, tokens, security headers (monitor/guard.py)

        @app.post("/events")
        async def events(request: Request) -> JSONResponse:
            try:
                await self.receive(dict(request.headers), await request.body())
            except EventError as exc:
                log.info("monitor: rejected event: %s", exc)
                return _error(400, str(exc))
            return JSONResponse(status_code=202, content={"accepted": True})

        @app.post("/feedback")
        async def feedback(request: Request) -> JSONResponse:
            try:
                count = await asyncio.to_thread(self.add_labels, parse_json(await request.body()))
            except EventError as exc:
                return _error(400, str(exc))
            return JSONResponse({"accepted": count})

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
            path = report_file(self.root / "reports", model, name)  # only files the monitor wrote
            if path is None:
                return _error(404, f"no report '{name}' for model '{model}'")
            return FileResponse(path, media_type="text/html")  # sandboxed by protect's CSP

        @app.get("/quality/{model}")
        async def quality(model: str, since: str | None = None) -> JSONResponse:
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

        return app

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self.tick_seconds)
            try:
                await self.tick()
            except Exception:  # noqa: BLE001 - keep watching; the buffers hold the rows meanwhile
                log.exception("monitor: tick failed")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": message})


def _idempotency_key(model: str, version: int, window_ids: list[int]) -> str:
    digest = hashlib.sha256(f"{model}:{version}:{','.join(map(str, window_ids))}".encode()).hexdigest()[:12]
    return f"{model}-v{version}-{digest}"


def _window_evidence(window: WindowRecord, root: Path) -> dict:
    return {"id": window.id, "drift_share": window.drift_share, "drifted_features": window.drifted_features,
            "prediction_drift": window.prediction_drift, "quality_dropped": window.quality_dropped,
            "report": str(root / "reports" / window.model / f"window-{window.id:06d}.html")}
