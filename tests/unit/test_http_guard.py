"""driftloop's HTTP guard, installed on a FastAPI app (every service's API) and around a plain ASGI endpoint (the
monitor's ``/events``), answers each request the same way: the token's 401, the content type's 415, the size's
413 (announced or streamed), in that order, and ``nosniff`` on every answer."""

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


def _call(app, headers: dict[str, str] | list[tuple[str, str]], chunks: list[bytes],
          method: str = "POST") -> tuple[int, dict[bytes, bytes], bytes]:
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

        scope = {"type": "http", "method": method, "path": PATH, "raw_path": PATH.encode(), "query_string": b"",
                 "root_path": "", "scheme": "http", "http_version": "1.1", "client": ("127.0.0.1", 5000),
                 "server": ("127.0.0.1", 8090),
                 "headers": [(k.encode(), v.encode()) for k, v in (headers.items() if isinstance(headers, dict)
                                                                    else headers)]}
        await app(scope, receive, send)
        start = next(m for m in sent if m["type"] == "http.response.start")
        body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        return start["status"], {k.lower(): v for k, v in start["headers"]}, body

    return asyncio.run(run())


GOOD = {"content-type": "application/json", "authorization": f"Bearer {TOKEN}"}
UNAUTHORISED = b'{"error": "/events needs a valid bearer token"}'
NOT_JSON = b'{"error": "send the body as JSON with content-type: application/json"}'
TOO_LARGE = b'{"error": "request body is larger than 100 bytes"}'
CASES = {  # headers, body chunks, status, body answered
    "accepted": (GOOD | {"content-length": "10"}, [b"x" * 10], 202, b'{"bytes": 10}'),
    "no token": ({"content-type": "application/json", "content-length": "10"}, [b"x" * 10], 401, UNAUTHORISED),
    "wrong token": (GOOD | {"authorization": "Bearer " + "u" * 32, "content-length": "10"}, [b"x" * 10], 401,
                    UNAUTHORISED),
    "basic auth": (GOOD | {"authorization": f"Basic {TOKEN}", "content-length": "10"}, [b"x" * 10], 401,
                   UNAUTHORISED),
    "text/plain": (GOOD | {"content-type": "text/plain", "content-length": "10"}, [b"x" * 10], 415, NOT_JSON),
    "no content type": ({"authorization": f"Bearer {TOKEN}", "content-length": "10"}, [b"x" * 10], 415, NOT_JSON),
    "announced too large": (GOOD | {"content-length": str(LIMIT + 1)}, [b"x" * (LIMIT + 1)], 413, TOO_LARGE),
    "streamed too large": (GOOD | {"transfer-encoding": "chunked"}, [b"x" * 60, b"x" * 60], 413, TOO_LARGE),
    # A Content-Length beside chunked framing is not trusted: the body is counted as it arrives.
    "chunked with a small length": (GOOD | {"transfer-encoding": "chunked", "content-length": "5"},
                                    [b"x" * 60, b"x" * 60], 413, TOO_LARGE),
    # Two Content-Lengths: neither is trusted, the body is counted (the first one alone would pass).
    "two lengths": ([*GOOD.items(), ("content-length", "5"), ("content-length", "200")], [b"x" * 60, b"x" * 60],
                    413, TOO_LARGE),
    "streamed within the limit": (GOOD | {"transfer-encoding": "chunked"}, [b"x" * 40, b"x" * 40], 202,
                                  b'{"bytes": 80}'),
    "cloudevents batch type": (GOOD | {"content-type": "application/cloudevents-batch+json", "content-length": "3"},
                               [b"abc"], 202, b'{"bytes": 3}'),
    # The token before the content type before the size.
    "no token, text, too large": ({"content-type": "text/plain", "content-length": str(LIMIT + 1)},
                                  [b"x" * (LIMIT + 1)], 401, UNAUTHORISED),
    "text and too large": (GOOD | {"content-type": "text/plain", "content-length": str(LIMIT + 1)},
                           [b"x" * (LIMIT + 1)], 415, NOT_JSON),
}


@pytest.mark.parametrize("deployment", ["installed on FastAPI", "around an ASGI endpoint"])
@pytest.mark.parametrize("case", list(CASES))
def test_the_guard_answers(case: str, deployment: str) -> None:
    headers, chunks, status, body = CASES[case]
    app = (_middleware_app() if deployment == "installed on FastAPI"
           else guard_asgi(_endpoint, max_body_bytes=LIMIT, tokens={PATH: TOKEN}))
    answered, answer_headers, answer = _call(app, headers, chunks)
    assert (answered, answer.replace(b" ", b"")) == (status, body.replace(b" ", b""))
    assert answer_headers[b"x-content-type-options"] == b"nosniff"
    if status == 401:
        assert answer_headers[b"www-authenticate"] == b'Bearer realm="driftloop"'


def test_without_a_token_configured_the_endpoint_takes_unauthenticated_posts() -> None:
    status, headers, body = _call(guard_asgi(_endpoint, max_body_bytes=LIMIT, tokens={PATH: None}),
                                  {"content-type": "application/json", "content-length": "2"}, [b"{}"])
    assert status == 202 and body == b'{"bytes": 2}' and headers[b"x-content-type-options"] == b"nosniff"


def test_html_answers_are_sandboxed() -> None:
    async def page(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/html")]})
        await send({"type": "http.response.body", "body": b"<p>hi</p>"})

    scope_headers = {"authorization": f"Bearer {TOKEN}"}
    status, headers, _ = _call(guard_asgi(page, tokens={}), scope_headers, [b""], method="GET")
    assert status == 200 and headers[b"content-security-policy"] == b"sandbox allow-scripts"
