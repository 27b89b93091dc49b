"""The monitor's HTTP service: receives payload-log CloudEvents and keeps every logged row.

``POST /events`` takes binary-mode CloudEvents from the local gateway or KServe's logger; ``GET /status``
says what arrived and what was stored. Windows, drift and retraining triggers build on this store.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from functools import lru_cache
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from driftloop.data import DatasetSpec
from driftloop.errors import DriftloopError
from driftloop.monitor.events import EventError, EventJoiner
from driftloop.monitor.store import RowStore
from driftloop.registry import CANARY, PRODUCTION, ModelRegistry

log = logging.getLogger(__name__)


class Monitor:
    """Joins events into rows and stores them under ``<store_root>``."""

    def __init__(self, registry: ModelRegistry, store_root: str | Path, flush_seconds: float = 2.0,
                 flush_rows: int = 1000) -> None:
        self.registry = registry
        self.store = RowStore(store_root, flush_rows)
        self.flush_seconds = flush_seconds
        self.events_received = 0
        self.events_rejected = 0
        self.joiner = EventJoiner(self._spec_for, self._version_for)
        self.app = self._build_app()

    @lru_cache(maxsize=256)  # noqa: B019 - one monitor per process; specs of versions never change
    def _spec_for(self, model: str, version: int) -> DatasetSpec:
        return DatasetSpec.from_json(self.registry.read_file(model, version, "spec.json").decode())

    def _version_for(self, model: str, endpoint: str) -> int | None:
        return self.registry.aliases(model).get(CANARY if endpoint == "canary" else PRODUCTION)

    async def receive(self, headers: dict[str, str], body: bytes) -> None:
        self.events_received += 1
        try:
            rows = await asyncio.to_thread(self.joiner.add, headers, body)
        except (EventError, DriftloopError) as exc:
            self.events_rejected += 1
            raise EventError(str(exc)) from None
        if rows is not None:
            self.store.add(str(rows["model"].iloc[0]), rows)

    def status(self) -> dict:
        return {"events_received": self.events_received, "events_rejected": self.events_rejected,
                "events_orphaned": self.joiner.orphaned, "rows_stored": self.store.rows_written,
                "store": str(self.store.root)}

    def _build_app(self) -> FastAPI:
        @asynccontextmanager
        async def lifespan(app: FastAPI):
            flusher = asyncio.create_task(self._flush_forever())
            yield
            flusher.cancel()
            await asyncio.to_thread(self.store.flush)  # nothing received is lost on shutdown

        app = FastAPI(title="driftloop monitor", lifespan=lifespan, docs_url=None, redoc_url=None)

        @app.post("/events")
        async def events(request: Request) -> JSONResponse:
            try:
                await self.receive(dict(request.headers), await request.body())
            except EventError as exc:
                log.info("monitor: rejected event: %s", exc)
                return JSONResponse(status_code=400, content={"error": str(exc)})
            return JSONResponse(status_code=202, content={"accepted": True})

        @app.get("/status")
        async def status() -> dict:
            return self.status()

        return app

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self.flush_seconds)
            try:
                await asyncio.to_thread(self.store.flush)
            except Exception:  # noqa: BLE001 - keep flushing; the buffer holds the rows meanwhile
                log.exception("monitor: flush failed")
