"""The HTTP app every driftloop model server shares: the local gateway and the KServe runtime.

KServe's own V1 and V2 endpoints over a :class:`kserve.ModelServer`'s data plane, mounted on a FastAPI app of
our own (``ModelServer.start`` binds 0.0.0.0 and shares one global app per process), with ``/metrics``, a
body limit and a JSON content type required (``driftloop.http_guard``), KServe's model-repository endpoints
closed, and every user mistake answered 4xx with ``{"error": "..."}`` in one log line instead of KServe's
traceback. Inference takes lean routes in front of KServe's handlers (``driftloop.serving.lean_routes``).
"""

from __future__ import annotations

import json
import logging
import warnings

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from kserve import ModelServer
from kserve.errors import InferenceError, InvalidInput, ModelNotFound, ModelNotReady
from kserve.protocol.rest.v1_endpoints import register_v1_endpoints
from kserve.protocol.rest.v2_endpoints import register_v2_endpoints
from prometheus_client import REGISTRY, generate_latest

from driftloop.http_guard import DEFAULT_MAX_BODY_BYTES, install_guards
from driftloop.serving.lean_routes import LeanRoutes
from driftloop.serving.metrics import GatewayMetrics

__all__ = ["DEFAULT_MAX_BODY_BYTES", "inference_app"]
log = logging.getLogger(__name__)


def inference_app(title: str, server: ModelServer, metrics: GatewayMetrics, lifespan,
                  max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> FastAPI:
    """KServe's V1/V2 REST endpoints for ``server``'s models, with driftloop's metrics and error handling."""
    # KServe's endpoints still name ORJSONResponse, which FastAPI now flags on every request.
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")
    app = FastAPI(title=title, lifespan=lifespan, docs_url=None, redoc_url=None)
    # What serves is decided by the deployment (registry aliases, an InferenceService): KServe's repository
    # load/unload endpoints would let any client (a web page, even) unload a model. This route, added
    # first, answers for them.
    app.add_api_route("/v2/repository/{rest:path}", _repository_not_exposed, methods=["GET", "POST"])
    register_v1_endpoints(app, server.dataplane, server.model_repository_extension)
    register_v2_endpoints(app, server.dataplane, server.model_repository_extension)

    async def metrics_endpoint(request: Request) -> Response:
        body = generate_latest(REGISTRY) + generate_latest(metrics.registry)
        return Response(body, media_type="text/plain; version=0.0.4")

    app.add_api_route("/metrics", metrics_endpoint, methods=["GET"])
    app.add_exception_handler(InvalidInput, _error_handler(400))
    app.add_exception_handler(ModelNotFound, _error_handler(404))
    app.add_exception_handler(ModelNotReady, _error_handler(503))
    app.add_exception_handler(InferenceError, _error_handler(500, logging.ERROR))
    app.add_exception_handler(NotImplementedError, _error_handler(501))
    app.add_exception_handler(ValueError, _error_handler(400))  # e.g. KServe parsing a bad header
    app.add_exception_handler(json.JSONDecodeError, _json_error_handler)
    app.add_exception_handler(UnicodeDecodeError, _json_error_handler)
    # V1 and V2 JSON inference without FastAPI's (and pydantic's) per-request layers, the same answers (see the
    # module); added before the guards, so it runs inside them.
    app.add_middleware(LeanRoutes, dataplane=server.dataplane, exception_handlers=app.exception_handlers)
    # Size, JSON content type (no web page can post predictions, and through them rows, to a loopback
    # gateway), nosniff; FastAPI's own validation errors in driftloop's shape.
    install_guards(app, max_body_bytes=max_body_bytes)
    return app


async def _repository_not_exposed(rest: str) -> JSONResponse:
    return JSONResponse(status_code=404, content={
        "error": "model repository operations are not exposed: what serves is the deployment's decision"})


def _error_handler(status: int, level: int = logging.INFO):
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        log.log(level, "%s %s -> %d: %s", request.method, request.url.path, status, exc)
        return JSONResponse(status_code=status, content={"error": str(exc)})

    return handle


async def _json_error_handler(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(status_code=400, content={"error": f"invalid JSON body: {exc}"})
