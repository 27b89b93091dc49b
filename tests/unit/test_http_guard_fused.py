"""The guards around a plain ASGI endpoint (``guard_asgi``, what the monitor's ``/events`` uses) answer every
request as the same guards installed as middleware on a FastAPI app do: the token's 401, the content type's
415, the size's 413 (announced or streamed), and ``nosniff`` on every answer."""

from __future__ import annotations

import asyncio

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from driftloop.http_guard import guard_asgi, install_guards

TOKEN = "t" * 32
LIMIT = 100
PATH = "/events"


async def _endpoint(scope, receive, send) -> None:
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    answer = b'{"bytes": %d}' % len(body)
    await send({"type": "http.response.start", "status": 202,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(answer))]})
    await send({"type": "http.response.body", "body": answer})


def _middleware_app() -> FastAPI:
    app = FastAPI()

    @app.post(PATH)
    async def events(request: Request) -> JSONResponse:
        return JSONResponse({"bytes": len(await request.body())}, status_code=202)

    install_guards(app, max_body_bytes=LIMIT, tokens={PATH: TOKEN})
    return app


def _call(app, headers: dict[str, str], chunks: list[bytes]) -> tuple[int, dict[bytes, bytes], bytes]:
    async def run():
        pending = list(chunks)

        async def receive():
            if not pending:
                await asyncio.sleep(3600)
            chunk = pending.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(pending)}

        sent = []

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": PATH, "raw_path": PATH.encode(), "query_string": b"",
                 "root_path": "", "scheme": "http", "http_version": "1.1", "client": ("127.0.0.1", 5000),
                 "server": ("127.0.0.1", 8090),
                 "headers": [(k.encode(), v.encode()) for k, v in headers.items()]}
        await app(scope, receive, send)
        start = next(m for m in sent if m["type"] == "http.response.start")
        body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        return start["status"], {k.lower(): v for k, v in start["headers"]}, body

    return asyncio.run(run())


GOOD = {"content-type": "application/json", "authorization": f"Bearer {TOKEN}"}
CASES = {
    "accepted": (GOOD | {"content-length": "10"}, [b"x" * 10], 202),
    "no token": ({"content-type": "application/json", "content-length": "10"}, [b"x" * 10], 401),
    "wrong token": (GOOD | {"authorization": "Bearer " + "u" * 32, "content-length": "10"}, [b"x" * 10], 401),
    "basic auth": (GOOD | {"authorization": f"Basic {TOKEN}", "content-length": "10"}, [b"x" * 10], 401),
    "text/plain": (GOOD | {"content-type": "text/plain", "content-length": "10"}, [b"x" * 10], 415),
    "no content type": ({"authorization": f"Bearer {TOKEN}", "content-length": "10"}, [b"x" * 10], 415),
    "announced too large": (GOOD | {"content-length": str(LIMIT + 1)}, [b"x" * (LIMIT + 1)], 413),
    "streamed too large": (GOOD | {"transfer-encoding": "chunked"}, [b"x" * 60, b"x" * 60], 413),
    "streamed within the limit": (GOOD | {"transfer-encoding": "chunked"}, [b"x" * 40, b"x" * 40], 202),
    "cloudevents batch type": (GOOD | {"content-type": "application/cloudevents-batch+json", "content-length": "3"},
                               [b"abc"], 202),
    # Checked in the middleware's order: the token before the content type before the size.
    "no token, text, too large": ({"content-type": "text/plain", "content-length": str(LIMIT + 1)},
                                  [b"x" * (LIMIT + 1)], 401),
}


@pytest.mark.parametrize("case", list(CASES))
def test_guarded_endpoint_answers_as_the_middleware_does(case: str) -> None:
    headers, chunks, expected = CASES[case]
    fused = _call(guard_asgi(_endpoint, max_body_bytes=LIMIT, tokens={PATH: TOKEN}), headers, chunks)
    layered = _call(_middleware_app(), headers, chunks)
    assert fused[0] == layered[0] == expected, (fused, layered)
    assert fused[1][b"x-content-type-options"] == layered[1][b"x-content-type-options"] == b"nosniff"
    if expected != 202:
        assert fused[2] == layered[2]  # the same one-line error
        assert b'"error"' in fused[2]
    if expected == 401:
        assert fused[1][b"www-authenticate"] == b'Bearer realm="driftloop"'


def test_without_a_token_configured_the_endpoint_takes_unauthenticated_posts() -> None:
    status, headers, body = _call(guard_asgi(_endpoint, max_body_bytes=LIMIT, tokens={PATH: None}),
                                  {"content-type": "application/json", "content-length": "2"}, [b"{}"])
    assert status == 202 and body == b'{"bytes": 2}' and headers[b"x-content-type-options"] == b"nosniff"
