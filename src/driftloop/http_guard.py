"""What driftloop's HTTP services check before a handler runs, and the headers every answer carries.

Used by the drift monitor and the model server (gateway and KServe runtime) alike, as one layer
(:class:`Guard`) that checks, in this order:

* the token — paths that need a role's token answer 401 without it (compared in constant time);
* JSON only — a POST must say it carries JSON (``application/json`` or ``…+json``), else 415. A web
  page can send ``text/plain``, form bodies or no content type across origins without asking (a CORS
  "simple request"); a JSON content type needs the server's consent, which these services never give.
  So no page a user happens to open can post labels or events to a service on their loopback;
* the body's size — over the limit is 413, whether announced by Content-Length or streamed;
* and on every answer ``X-Content-Type-Options: nosniff``, and on HTML a
  ``Content-Security-Policy: sandbox allow-scripts``: the page runs in an opaque origin (Evidently's reports
  draw with script, but cannot read or act as the service's origin).

Tokens come from the environment only (``DRIFTLOOP_<ROLE>_TOKEN``, or ``DRIFTLOOP_<ROLE>_TOKEN_FILE`` naming
a mounted Secret's file), never from flags or config files, and are never logged.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from driftloop.errors import ConfigError

if TYPE_CHECKING:  # the CLI imports this module for its token roles; FastAPI costs half a second to import
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
MIN_TOKEN_LENGTH = 16  # shorter secrets can be guessed; `openssl rand -hex 32` gives 64 characters
REPORT_CSP = "sandbox allow-scripts"
NOSNIFF = (b"x-content-type-options", b"nosniff")  # on every answer


@dataclass(frozen=True)
class Role:
    """Who may post to a write endpoint, and where its token is found."""

    name: str
    env: str  # the token itself; f"{env}_FILE" names a file holding it

    def token(self, environ: Mapping[str, str] | None = None, file: str | Path | None = None) -> str | None:
        """The role's token: from ``file`` when given, else the environment (the value, or the file that
        ``<env>_FILE`` names); None when none is configured.

        Raises:
            ConfigError: the file is missing or empty, or the token is too short to be a secret.
        """
        environ = os.environ if environ is None else environ
        value, origin = (None, str(file)) if file else (environ.get(self.env), self.env)
        if not value and (file or environ.get(f"{self.env}_FILE")):
            origin = str(file or environ[f"{self.env}_FILE"])
            try:
                value = Path(origin).read_text().strip()
            except OSError as exc:
                raise ConfigError(f"cannot read the {self.name} token from {origin}: {exc.strerror}") from None
            if not value:
                raise ConfigError(f"the {self.name} token file {origin} is empty")
        if not value:
            return None
        value = value.strip()
        if value.startswith("<") and value.endswith(">"):
            raise ConfigError(f"the {self.name} token ({origin}) is still the example's placeholder {value}")
        if len(value) < MIN_TOKEN_LENGTH:
            raise ConfigError(f"the {self.name} token ({origin}) has fewer than {MIN_TOKEN_LENGTH} characters")
        return value


# driftloop's gateway posting payload events, and whoever posts delayed labels: separate secrets, so the
# gateway's cannot forge ground truth and a labelling job's cannot inject traffic.
EVENTS = Role("events", "DRIFTLOOP_EVENTS_TOKEN")
LABELS = Role("labels", "DRIFTLOOP_LABELS_TOKEN")


def bearer(token: str | None) -> dict[str, str]:
    """The request header that presents ``token`` (none without one)."""
    return {"authorization": f"Bearer {token}"} if token else {}


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps a service reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def check_exposure(host: str, roles: Mapping[str, Role], tokens: Mapping[str, str | None],
                   network_guard: bool) -> None:
    """Refuses to serve write endpoints beyond loopback that nothing guards.

    Args:
        host: The address the service binds.
        roles: Write path → the role that may post to it.
        tokens: Write path → the token it requires (None: none configured).
        network_guard: The operator declares that the network admits only the right callers (the
            NetworkPolicy of manifests/components/network-guard, the AuthorizationPolicy of istio-guard).

    Raises:
        ConfigError: one line naming the open endpoint and both ways to guard it.
    """
    if is_loopback(host) or network_guard:
        return
    for path, role in roles.items():
        if tokens.get(path) is None:
            raise ConfigError(f"refusing to serve {path} on {host} to anyone who can reach it: set {role.env} "
                              f"(or {role.env}_FILE), or declare the network guard (--trust-network-policy, "
                              "auth.network_guard: true) once a NetworkPolicy admits only the right callers")


class HttpError(Exception):
    """A request the service refuses: its status and one line for ``{"error": ...}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def parse_json(body: bytes) -> object:
    """A request body as JSON: strict UTF-8, no NaN or Infinity, numbers that fit a double, nesting
    at most 1024 deep (orjson's rules).

    Raises:
        HttpError: 400 naming what is wrong.
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise HttpError(400, f"body is not valid JSON: {exc}") from None


def error(status: int, message: str) -> JSONResponse:
    """driftloop's error answer: the status and ``{"error": message}``."""
    from fastapi.responses import JSONResponse

    return JSONResponse(status_code=status, content={"error": message})


def install_error_handlers(app: FastAPI) -> None:
    """Answers malformed requests FastAPI itself rejects in driftloop's shape: 4xx with one line."""
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError

    async def http_error(_: Request, exc: HttpError) -> JSONResponse:
        return error(exc.status, str(exc))

    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = first.get("msg", "invalid request")
        return error(422, f"invalid request: {where}: {message}" if where else message)

    app.add_exception_handler(HttpError, http_error)
    app.add_exception_handler(RequestValidationError, invalid_request)


def install_guards(app: FastAPI, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                   tokens: Mapping[str, str | None] | None = None) -> None:
    """Puts every check of this module (:class:`Guard`) in front of ``app``, and driftloop's error answers."""
    app.add_middleware(Guard, max_body_bytes=max_body_bytes, tokens=tokens)
    install_error_handlers(app)


def guard_asgi(app: ASGIApp, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
               tokens: Mapping[str, str | None] | None = None) -> ASGIApp:
    """The same checks around a plain ASGI app: for an endpoint called so often that FastAPI's own
    per-request layers cost more than its work."""
    return Guard(app, max_body_bytes=max_body_bytes, tokens=tokens)


class Guard:
    """Every check, in this order: the path's token (401), a JSON content type on a body (415), the body's
    size (413, announced or streamed), then ``nosniff`` (and the CSP on HTML) on whatever is answered.

    One layer with one pass over the headers, and no wrapper around ``receive`` unless the body's size is
    not announced: as four nested layers, the checks cost a monitor taking thousands of events a second a
    tenth of its CPU, and the gateway about as much per prediction.
    """

    def __init__(self, app: ASGIApp, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 tokens: Mapping[str, str | None] | None = None) -> None:
        self.app, self.limit = app, _StreamedBodyLimit(app, max_body_bytes)
        self.max_bytes = max_body_bytes
        self.tokens = {path: token.encode() for path, token in (tokens or {}).items() if token}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = content_type = authorization = None
        streamed = False  # the body's size is counted as it arrives, not taken from Content-Length
        for key, value in scope["headers"]:  # the first of a repeated header counts, as Starlette reads it
            key = key.lower()
            if key == b"content-length":
                streamed = streamed or length is not None  # two lengths: trust neither
                length = length or value
            elif key == b"content-type":
                content_type = content_type or value
            elif key == b"authorization":
                authorization = authorization or value
            elif key == b"transfer-encoding":
                streamed = True
        secured = _secured_send(send)
        announced = length if length is not None and length.isdigit() and not streamed else None
        refused = self.refusal(scope.get("path", ""), scope["method"], content_type, authorization, announced)
        if refused is not None:
            await send_error(secured, *refused)
        elif announced is not None:  # the server reads that many bytes
            await self.app(scope, receive, secured)
        else:  # streamed: counted as it arrives
            await self.limit(scope, receive, secured)

    def refusal(self, path: str, method: str, content_type: bytes | None, authorization: bytes | None,
                length: bytes | None) -> tuple[int, str, list[tuple[bytes, bytes]]] | None:
        """What the checks answer before a body is read, as (status, message, extra headers); None to go on.

        Args:
            length: The body's announced size (Content-Length digits), None when it is streamed.
        """
        expected = self.tokens.get(path)
        if expected is not None and not bearer_matches(authorization, expected):
            return 401, f"{path} needs a valid bearer token", [(b"www-authenticate", b'Bearer realm="driftloop"')]
        if method in _BODY_METHODS and not is_json_media_type(content_type):
            return 415, "send the body as JSON with content-type: application/json", []
        if length is not None and int(length) > self.max_bytes:
            return 413, _too_large_message(self.max_bytes), []
        return None


def error_body(message: str) -> bytes:
    """driftloop's error answer's body: ``{"error": message}``."""
    return json.dumps({"error": message}).encode()


async def send_error(send: Send, status: int, message: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    body = error_body(message)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


class _StreamedBodyLimit:
    """A body whose size is not announced: counted as it arrives, 413 once it passes the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
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

        from starlette.requests import ClientDisconnect

        try:
            await self.app(scope, limited_receive, guarded_send)
        except ClientDisconnect:
            if not too_large:
                raise
        if too_large and not started:
            await _too_large(send, self.max_bytes)


async def _too_large(send: Send, max_bytes: int) -> None:
    await send_error(send, 413, _too_large_message(max_bytes))


def _too_large_message(max_bytes: int) -> str:
    return f"request body is larger than {max_bytes} bytes"


def is_json_media_type(value: bytes | None) -> bool:
    """``application/json`` or a ``+json`` type, any parameters (charset) aside."""
    if not value:
        return False
    media = value.split(b";", 1)[0].strip().lower()
    return media == b"application/json" or (media.startswith(b"application/") and media.endswith(b"+json"))


_BODY_METHODS = ("POST", "PUT", "PATCH")


def bearer_matches(presented: bytes | None, expected: bytes) -> bool:
    """Whether an ``Authorization`` header presents ``expected`` as a bearer token."""
    scheme, _, token = (presented or b"").partition(b" ")
    # compare_digest takes as long whatever the first differing byte: no timing oracle.
    return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), expected)


def _secured_send(send: Send) -> Send:
    """``send`` with ``nosniff`` on the answer, and the sandboxing CSP on HTML."""

    async def with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", [])
                       if k.lower() not in (b"x-content-type-options", b"content-security-policy")]
            headers.append(NOSNIFF)
            content_type = dict((k.lower(), v) for k, v in headers).get(b"content-type", b"")
            if content_type.split(b";")[0].strip().lower() in (b"text/html", b"application/xhtml+xml"):
                headers.append((b"content-security-policy", REPORT_CSP.encode()))
            message = {**message, "headers": headers}
        await send(message)

    return with_headers
