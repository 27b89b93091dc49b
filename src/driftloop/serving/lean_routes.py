"""Lean routes for inference (V1 ``POST /v1/models/{name}:predict``, V2 JSON ``POST /v2/models/{name}/infer``)
in front of KServe's own handlers: the same calls, without FastAPI's per-request layers.

KServe's REST endpoints spend more on their framework than driftloop spends decoding and scoring a row: FastAPI's
route matching and dependency solving on every request and, on V2, the standard library parsing the body,
pydantic validating every input (``InferenceRequest``), then validating the answer again (``InferenceResponse``)
and encoding it through ``jsonable_encoder``. A no-op model answers 289 req/s on V2 against 590 on V1
(docs/serving.md, "Speed").

This layer sits inside driftloop's guards (body limit, JSON content type, ``nosniff``) and in front of FastAPI's
router, and makes the calls KServe's handlers make — ``DataPlane.model_ready``, ``DataPlane.decode`` (V1),
``DataPlane.infer`` (the model's ``__call__``, with KServe's timing histograms, so routing, driftloop's metrics,
response headers and the payload log are the model's own), ``DataPlane.encode`` — and answers errors with the
app's own exception handlers. V1 is KServe's handler line for line (its response class without the
deprecation warning FastAPI now issues per answer). V2 parses the body once (orjson), checks the shape pydantic
would check and builds KServe's ``InferRequest`` directly; what it does not take on falls through, untouched,
to KServe's handler: anything but a plain ``application/json`` POST, CloudEvents, the binary tensor extension,
parameters other than ``content_type`` and ``probabilities``, input or output parameters, FP16, a body orjson
refuses (NaN, huge integers) or whose shape pydantic might coerce (a shape of ``"2"``) or refuse, and
``/versions/{v}/infer`` (which KServe answers 501). Tests send every documented body through both routes and
compare the answers, metrics and payload events (tests/integration/test_serving_docs.py).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from inspect import isawaitable
from typing import Any

import orjson
from kserve.errors import ModelNotReady
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.infer_type import InferInput, InferRequest, RequestedOutput
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# KServe's routes; FastAPI's {model_name} path parameter is one segment.
V1_PREDICT = re.compile(r"/v1/models/([^/]+):predict")
V2_INFER = re.compile(r"/v2/models/([^/]+)/infer")
# Request parameters this route understands; any other makes the request KServe's (binary_data_output …).
HANDLED_PARAMETERS = frozenset({"content_type", "probabilities"})
_PARAMETER_TYPES = (str, int, float, bool)  # KServe's InferParameter: StrictFloat | StrictInt | StrictBool | str
_CLOUDEVENT_HEADERS = (b"ce-specversion", b"ce-source", b"ce-type", b"ce-id")


class LeanRoutes:
    """ASGI middleware: answers V1 predictions and V2 JSON inference itself, exactly as KServe's handlers would;
    passes the rest on.

    Args:
        app: the rest of the app (FastAPI's router with KServe's endpoints).
        dataplane: the model server's KServe data plane.
        exception_handlers: the app's exception handlers (``FastAPI.exception_handlers``, read per error, so
            handlers added after this middleware count).
    """

    def __init__(self, app: ASGIApp, dataplane: DataPlane, exception_handlers: Mapping) -> None:
        self.app = app
        self.dataplane = dataplane
        self.exception_handlers = exception_handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if (match := V1_PREDICT.fullmatch(path)) is not None:
            await self._answer(scope, receive, send, self._predict_v1(scope, receive, match.group(1)))
            return
        match = V2_INFER.fullmatch(path)
        if match is None or not _plain_json(scope["headers"]):
            await self.app(scope, receive, send)
            return
        messages, body = await _read_body(receive)
        request = None if body is None else infer_request(body, match.group(1))
        if request is None:  # KServe's handler answers it, from the same bytes
            await self.app(scope, _replay(messages, receive), send)
            return
        await self._answer(scope, receive, send, self._infer_v2(scope, request))

    async def _answer(self, scope: Scope, receive: Receive, send: Send, answering) -> None:
        """Sends what ``answering`` (a handler's coroutine) answers, or the app's answer to what it raises."""
        try:
            answer = await answering
        except Exception as exc:
            handler = self._handler(exc)
            if handler is None:  # what FastAPI leaves to the server's error middleware
                raise
            answer = handler(Request(scope, receive), exc)
            if isawaitable(answer):
                answer = await answer
        await answer(scope, receive, send)

    async def _predict_v1(self, scope: Scope, receive: Receive, name: str) -> Response:
        """KServe's ``V1Endpoints.predict``, line for line."""
        if not await self.dataplane.model_ready(name, True):
            raise ModelNotReady(name)
        _, body = await _read_body(receive)
        if body is None:  # as Starlette's Request.body() raises it (the body limit then answers 413)
            raise ClientDisconnect()
        headers = _headers(scope)
        infer_request, req_attributes = self.dataplane.decode(body=body, headers=headers)
        response, response_headers = await self.dataplane.infer(model_name=name, request=infer_request,
                                                                headers=headers)
        response, res_headers = self.dataplane.encode(model_name=name, response=response, headers=headers,
                                                      req_attributes=req_attributes)
        response_headers.update(res_headers)
        response_headers.pop("content-length", None)
        if isinstance(response, (bytes, str)):
            return Response(content=response, headers=response_headers)
        if isinstance(response, AsyncIterator):
            return StreamingResponse(content=response)
        return _OrjsonResponse(content=response, headers=response_headers)

    async def _infer_v2(self, scope: Scope, request: InferRequest) -> Response:
        """What KServe's ``V2Endpoints.infer`` does once FastAPI has validated the body, and FastAPI with its
        answer."""
        name = request.model_name
        headers = _headers(scope)
        if not await self.dataplane.model_ready(name, True):
            raise ModelNotReady(name)
        response, response_headers = await self.dataplane.infer(model_name=name, request=request, headers=headers)
        response, encoded_headers = self.dataplane.encode(model_name=name, response=response, headers=headers,
                                                          req_attributes={})
        response_headers.update(encoded_headers)
        response_headers.pop("content-length", None)
        response_headers.pop("content-type", None)
        answer = JSONResponse(_inference_response(response))
        # FastAPI appends the endpoint's response headers after the answer's own.
        answer.raw_headers.extend((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response_headers.items())
        return answer

    def _handler(self, exc: Exception):
        """The app's handler for ``exc`` (by its class's MRO, as Starlette looks it up); None for what falls to the
        server error middleware."""
        for cls in type(exc).__mro__:
            if cls is Exception:
                return None
            handler = self.exception_handlers.get(cls)
            if handler is not None:
                return handler
        return None


class _OrjsonResponse(JSONResponse):
    """What KServe's V1 handler answers with (FastAPI's ``ORJSONResponse``, which now warns, at a cost, on every
    construction): the same bytes."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY)


def infer_request(body: bytes, model_name: str) -> InferRequest | None:
    """KServe's ``InferRequest`` for a V2 JSON body, as ``InferRequest.from_inference_request`` builds it from
    the pydantic ``InferenceRequest``; None when the body is not one this route takes as is (see the module)."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(payload, dict):
        return None
    request_id, parameters = payload.get("id"), payload.get("parameters")
    inputs, outputs = payload.get("inputs"), payload.get("outputs")
    if request_id is not None and not isinstance(request_id, str):
        return None
    if parameters is not None and not (_parameters(parameters) and parameters.keys() <= HANDLED_PARAMETERS):
        return None
    if not isinstance(inputs, list):
        return None
    infer_inputs = []
    for tensor in inputs:
        if not isinstance(tensor, dict):
            return None
        name, shape, datatype, data = tensor.get("name"), tensor.get("shape"), tensor.get("datatype"), tensor.get("data")
        if not (isinstance(name, str) and isinstance(datatype, str) and isinstance(data, list)
                and isinstance(shape, list) and all(type(size) is int for size in shape)):
            return None
        if not _no_parameters(tensor) or datatype.upper() == "FP16":  # KServe's own: binary sizes, FP16's refusal
            return None
        infer_inputs.append(InferInput(name=name, shape=shape, datatype=datatype, data=data, parameters={}))
    requested = None
    if outputs is not None:
        if not isinstance(outputs, list):
            return None
        for output in outputs:
            if not (isinstance(output, dict) and isinstance(output.get("name"), str) and _no_parameters(output)):
                return None
        requested = [RequestedOutput(name=output["name"], parameters={}) for output in outputs] or None
    return InferRequest(model_name=model_name, infer_inputs=infer_inputs, request_id=request_id,
                        parameters=parameters, request_outputs=requested)


def _parameters(value: Any) -> bool:
    return isinstance(value, dict) and all(type(v) in _PARAMETER_TYPES for v in value.values())


def _no_parameters(item: dict) -> bool:
    """An input or requested output without parameters (absent, null or {}): with any, KServe's handler answers."""
    parameters = item.get("parameters")
    return parameters is None or (isinstance(parameters, dict) and not parameters)


def _inference_response(response: dict) -> dict:
    """``InferResponse.to_rest()``'s dict as KServe's ``InferenceResponse`` model serialises it: its fields in
    its order, absent optional fields as null."""
    return {
        "model_name": response["model_name"],
        "model_version": response.get("model_version"),
        "id": response["id"],
        "parameters": response.get("parameters"),
        "outputs": [{"name": output["name"], "shape": output["shape"], "datatype": output["datatype"],
                     "parameters": output.get("parameters"), "data": output["data"]}
                    for output in response["outputs"]],
    }


def _headers(scope: Scope) -> dict[str, str]:
    """The request's headers as KServe's handlers see them (``dict(request.headers.items())``)."""
    return {key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]}


def _plain_json(headers: list[tuple[bytes, bytes]]) -> bool:
    """A body sent as ``application/json`` (any charset) that is not a CloudEvent: the requests this route
    answers the way KServe does without its CloudEvents and content-type branches."""
    names = set()
    media = b""
    for key, value in headers:
        names.add(key)
        if key == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
    return media == b"application/json" and not all(header in names for header in _CLOUDEVENT_HEADERS)


async def _read_body(receive: Receive) -> tuple[list[Message], bytes | None]:
    """The messages received and the whole body; None for the body when the client went away first (or the
    body limit cut it off)."""
    messages: list[Message] = []
    chunks: list[bytes] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages, None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return messages, b"".join(chunks)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A receive that gives the messages already read again, then the client's."""
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed
