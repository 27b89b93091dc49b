"""The local InferenceService gateway: every registered model's production version and canary,
on KServe's model server components, following the registry's aliases without a restart.

KServe's :class:`~kserve.ModelServer` composes the model repository and the data plane; the gateway
mounts KServe's own V1 and V2 endpoints on a FastAPI app of its own, because ``ModelServer.start``
binds 0.0.0.0 and shares one global app per process, while the gateway binds 127.0.0.1 by default
and tests run several gateways in one process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import warnings
from contextlib import asynccontextmanager

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from kserve import ModelServer
from kserve.errors import InferenceError, InvalidInput, ModelNotFound, ModelNotReady
from kserve.model_repository import ModelRepository
from kserve.protocol.rest.v1_endpoints import register_v1_endpoints
from kserve.protocol.rest.v2_endpoints import register_v2_endpoints
from prometheus_client import REGISTRY, generate_latest
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from driftloop.errors import DriftloopError, IntegrityError, RegistryError
from driftloop.registry import CANARY, PRODUCTION, ModelRegistry, open_registry
from driftloop.serving.metrics import GatewayMetrics
from driftloop.serving.payload_logger import PayloadLogger
from driftloop.serving.routed_model import RoutedModel
from driftloop.serving.versions import ServedVersion

DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
log = logging.getLogger(__name__)


class Gateway:
    """Serves the registry's models; :meth:`sync` makes what serves match the aliases."""

    def __init__(self, registry: ModelRegistry | str, *, logger_url: str | None = None,
                 poll_interval: float = 1.0, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 namespace: str = "local") -> None:
        self.registry = open_registry(registry) if isinstance(registry, str) else registry
        self.poll_interval = poll_interval
        self.max_body_bytes = max_body_bytes
        self.metrics = GatewayMetrics()
        self.payload_logger = PayloadLogger(logger_url, self.metrics, namespace) if logger_url else None
        self.server = ModelServer(registered_models=ModelRepository(), enable_grpc=False, workers=1)
        self.models: dict[str, RoutedModel] = {}
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
            model = RoutedModel(name, stable, self.metrics, self.payload_logger)
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
            return await asyncio.to_thread(ServedVersion.load, self.registry, name, version)
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
            if self.payload_logger:
                self.payload_logger.start()
            follower = asyncio.create_task(self._follow())
            yield
            follower.cancel()
            if self.payload_logger:
                await self.payload_logger.stop()

        # KServe's endpoints still name ORJSONResponse, which FastAPI now flags on every request.
        warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")
        app = FastAPI(title="driftloop gateway", lifespan=lifespan, docs_url=None, redoc_url=None)
        # What serves is the registry's decision: KServe's repository load/unload endpoints would let any
        # local client (a web page, even) unload a model until restart. This route, added first, answers
        # for them.
        app.add_api_route("/v2/repository/{rest:path}", _repository_not_exposed, methods=["GET", "POST"])
        register_v1_endpoints(app, self.server.dataplane, self.server.model_repository_extension)
        register_v2_endpoints(app, self.server.dataplane, self.server.model_repository_extension)
        app.add_api_route("/metrics", self._metrics, methods=["GET"])
        # KServe's own handlers log a full traceback at ERROR for every bad request; a user's mistake
        # is not a server error, so these answer with the same JSON and log one line.
        app.add_exception_handler(InvalidInput, _error_handler(400))
        app.add_exception_handler(ModelNotFound, _error_handler(404))
        app.add_exception_handler(ModelNotReady, _error_handler(503))
        app.add_exception_handler(InferenceError, _error_handler(500, logging.ERROR))
        app.add_exception_handler(NotImplementedError, _error_handler(501))
        app.add_exception_handler(ValueError, _error_handler(400))  # e.g. KServe parsing a bad header
        app.add_exception_handler(RequestValidationError, _request_validation_handler)
        app.add_exception_handler(json.JSONDecodeError, _json_error_handler)
        app.add_exception_handler(UnicodeDecodeError, _json_error_handler)
        app.add_middleware(BodyLimit, max_bytes=self.max_body_bytes)
        return app

    async def _metrics(self, request: Request) -> Response:
        body = generate_latest(REGISTRY) + generate_latest(self.metrics.registry)
        return Response(body, media_type="text/plain; version=0.0.4")

    def run(self, host: str = "127.0.0.1", port: int = 8080) -> None:
        """Serves until interrupted."""
        uvicorn.run(self.app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5)


def _v(version: int | None) -> str:
    return f"v{version}" if version is not None else "none"


async def _repository_not_exposed(rest: str) -> JSONResponse:
    return JSONResponse(status_code=404, content={
        "error": "model repository operations are not exposed: what serves follows the registry's aliases"})


def _error_handler(status: int, level: int = logging.INFO):
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        log.log(level, "%s %s -> %d: %s", request.method, request.url.path, status, exc)
        return JSONResponse(status_code=status, content={"error": str(exc)})

    return handle


async def _request_validation_handler(_: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    message = first.get("msg", "invalid request")
    return JSONResponse(status_code=422, content={"error": f"invalid request: {where}: {message}" if where else message})


async def _json_error_handler(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(status_code=400, content={"error": f"invalid JSON body: {exc}"})


class BodyLimit:
    """Answers 413 to bodies over the limit, whether announced by Content-Length or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(send)
            return
        seen = 0
        too_large = False

        async def limited_receive() -> Message:
            nonlocal seen, too_large
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    too_large = True
                    return {"type": "http.disconnect"}
            return message

        started = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if too_large and not started:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except ClientDisconnect:
            if not too_large:
                raise
        if too_large and not started:
            await self._too_large(send)

    async def _too_large(self, send: Send) -> None:
        body = json.dumps({"error": f"request body is larger than {self.max_bytes} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
