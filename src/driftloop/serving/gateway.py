"""The local InferenceService gateway: every registered model's production version and canary,
on KServe's model server components, following the registry's aliases without a restart.

KServe's :class:`~kserve.ModelServer` composes the model repository and the data plane; the gateway
serves them through :func:`driftloop.serving.app.inference_app` (the app the KServe runtime shares),
bound to 127.0.0.1 by default.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI
from kserve import ModelServer
from kserve.model_repository import ModelRepository

from driftloop.errors import DriftloopError, IntegrityError, RegistryError
from driftloop.http_server import UVICORN_OPTIONS, freeze_heap
from driftloop.registry import CANARY, PRODUCTION, ModelRegistry, open_registry
from driftloop.serving.app import DEFAULT_MAX_BODY_BYTES, inference_app
from driftloop.serving.batching import Batching
from driftloop.serving.metrics import GatewayMetrics
from driftloop.serving.payload_logger import PayloadLogger
from driftloop.serving.routed_model import RoutedModel
from driftloop.serving.scoring import ScoringWorker
from driftloop.serving.versions import ServedVersion

log = logging.getLogger(__name__)


class Gateway:
    """Serves the registry's models; :meth:`sync` makes what serves match the aliases.

    ``logger_token`` is the monitor's events token the payload logger presents (``DRIFTLOOP_EVENTS_TOKEN``);
    ``batching`` says how requests that arrive together are scored together (default: :class:`Batching`'s).
    ``logger_batch`` > 0 posts up to that many events per request as a CloudEvents batch (driftloop's monitor
    only; KServe-style single events otherwise).
    """

    def __init__(self, registry: ModelRegistry | str, *, logger_url: str | None = None,
                 poll_interval: float = 1.0, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 namespace: str = "local", logger_token: str | None = None, logger_batch: int = 0,
                 batching: Batching | None = None) -> None:
        self.registry = open_registry(registry) if isinstance(registry, str) else registry
        self.poll_interval = poll_interval
        self.max_body_bytes = max_body_bytes
        self.metrics = GatewayMetrics()
        self.payload_logger = (PayloadLogger(logger_url, self.metrics, namespace, token=logger_token,
                                             batch=logger_batch) if logger_url else None)
        self.server = ModelServer(registered_models=ModelRepository(), enable_grpc=False, workers=1)
        self.models: dict[str, RoutedModel] = {}
        self.scoring = ScoringWorker(batching)  # one for every model: the machine's cores are the model libraries' to use
        self._failed: set[tuple[str, int]] = set()  # versions that failed to load; not retried
        self.app = self._build_app()

    # -- following the registry --------------------------------------------------------------

    async def sync(self) -> list[str]:
        """Loads what the aliases name and swaps it in; returns what changed, for the log.

        A version that fails to load (checksum, unpickling) never takes traffic: production keeps the
        version it had, and a canary that cannot load is left out of the split.
        """
        changes = []
        for name in await asyncio.to_thread(self.registry.list_models):
            try:
                change = await self._sync_model(name)
            except Exception as exc:  # noqa: BLE001 - one model's trouble must not stop the others
                log.warning("gateway: %s: sync failed: %s", name, exc)
                continue
            if change:
                changes.append(change)
        for change in changes:
            log.info("gateway: %s", change)
        return changes

    async def _sync_model(self, name: str) -> str | None:
        """Brings one model's endpoints in line with its aliases; returns what changed."""
        state = await asyncio.to_thread(self.registry.state, name)
        production, canary = state.aliases.get(PRODUCTION), state.aliases.get(CANARY)
        if production is None:
            return None
        current = self.models.get(name)
        stable = await self._version(name, production, current)
        if stable is None:
            if current is None:
                return None
            stable = current.stable  # the new production cannot load: keep serving the old one
        canary_version = None
        if canary is not None and canary != stable.version:
            canary_version = await self._version(name, canary, current)
        percent = (state.canary_percent or 0) if canary_version else 0
        if current is None:
            model = RoutedModel(name, stable, self.metrics, self.payload_logger, self.scoring)
            model.set_versions(stable, canary_version, percent)
            self.server.register_model(model)
            self.models[name] = model
            return f"{name}: serving v{stable.version}"
        before = (current.stable.version, current.canary.version if current.canary else None,
                  current.split.percent)
        current.set_versions(stable, canary_version, percent)
        after = (stable.version, canary_version.version if canary_version else None, current.split.percent)
        return f"{name}: production v{after[0]}, canary {_v(after[1])} at {after[2]}%" if before != after else None

    async def _version(self, name: str, version: int, current: RoutedModel | None) -> ServedVersion | None:
        for loaded in (current.stable if current else None, current.canary if current else None):
            if loaded is not None and loaded.version == version:
                return loaded
        if (name, version) in self._failed:
            return None
        try:
            return await asyncio.to_thread(_load_warm, self.registry, name, version)
        except RegistryError as exc:
            if not isinstance(exc, IntegrityError):  # unreachable storage: try again next poll
                log.warning("gateway: %s v%s not loaded yet: %s", name, version, exc)
                return None
            self._refuse(name, version, exc)
        except Exception as exc:  # noqa: BLE001 - a damaged or unloadable model never takes traffic
            self._refuse(name, version, exc)
        return None

    def _refuse(self, name: str, version: int, exc: Exception) -> None:
        self._failed.add((name, version))
        self.metrics.load_failures.labels(name, str(version)).inc()
        log.error("gateway: %s v%s cannot be served: %s", name, version, exc)

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                await self.sync()
            except DriftloopError as exc:
                log.warning("gateway: registry sync failed: %s", exc)
            except Exception:  # noqa: BLE001 - the follower must outlive any registry hiccup
                log.exception("gateway: registry sync failed")

    # -- the HTTP app -------------------------------------------------------------------------

    def _build_app(self) -> FastAPI:
        @asynccontextmanager
        async def lifespan(app: FastAPI):
            await self.sync()
            await asyncio.to_thread(freeze_heap)  # the versions are loaded
            if self.payload_logger:
                self.payload_logger.start()
            follower = asyncio.create_task(self._follow())
            yield
            follower.cancel()
            if self.payload_logger:
                await self.payload_logger.stop()
            self.scoring.shutdown()

        return inference_app("driftloop gateway", self.server, self.metrics, lifespan, self.max_body_bytes)

    def run(self, host: str = "127.0.0.1", port: int = 8080) -> None:
        """Serves until interrupted."""
        uvicorn.run(self.app, host=host, port=port, timeout_graceful_shutdown=5, **UVICORN_OPTIONS)


def _load_warm(registry: ModelRegistry, name: str, version: int) -> ServedVersion:
    served = ServedVersion.load(registry, name, version)
    served.warm_up()  # before it takes traffic: a canary's first requests must not look slow
    return served


def _v(version: int | None) -> str:
    return f"v{version}" if version is not None else "none"
