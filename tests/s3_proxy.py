"""A small HTTP proxy on 127.0.0.1 in front of the test S3 server: it records every request and can play a
store that ignores ``If-None-Match`` (it strips the header), hold requests at a rendezvous, or refuse requests
its ``authorize`` hook denies with S3's 403 AccessDenied (as MinIO does for a user whose policy does not
allow the request)."""

from __future__ import annotations

import http.client
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_ACCESS_KEY = re.compile(r"Credential=([^/,\s]+)/")  # SigV4: Credential=<access key>/<date>/<region>/s3/…
_ACCESS_DENIED = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
                  b"<Message>Access Denied.</Message></Error>")
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer"}


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # without the query
    query: str
    access_key: str = ""  # whose signature the request carries


class S3Proxy:
    """Forwards to ``upstream`` (``host:port``).

    Args:
        strip_conditional: Drop ``If-None-Match`` from every request, as a store that ignores it would.
        hold: Called with each request before it is forwarded (e.g. a barrier that makes writers meet).
        authorize: Called with each request; False answers 403 AccessDenied and forwards nothing.
    """

    def __init__(self, upstream: str, *, strip_conditional: bool = False,
                 hold: Callable[[Request], None] | None = None,
                 authorize: Callable[[Request], bool] | None = None) -> None:
        self.upstream = upstream
        self.strip_conditional = strip_conditional
        self.hold = hold
        self.authorize = authorize
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Headers and body leave in two writes; without this, Nagle and delayed ACKs add 40 ms.
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, *args) -> None:
                pass

            def _forward(self) -> None:
                parts = urlsplit(self.path)
                signed = _ACCESS_KEY.search(self.headers.get("Authorization", ""))
                request = Request(self.command, parts.path, parts.query, signed.group(1) if signed else "")
                with proxy._lock:
                    proxy.requests.append(request)
                if proxy.hold is not None:
                    proxy.hold(request)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if proxy.authorize is not None and not proxy.authorize(request):
                    self.send_response(403)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(_ACCESS_DENIED)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(_ACCESS_DENIED)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP
                           and not (proxy.strip_conditional and k.lower() == "if-none-match")}
                upstream = http.client.HTTPConnection(proxy.upstream, timeout=60)
                try:
                    upstream.request(self.command, self.path, body=body or None, headers=headers)
                    response = upstream.getresponse()
                    data = response.read()
                    self.send_response(response.status)
                    for key, value in response.getheaders():
                        if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                            self.send_header(key, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    upstream.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.endpoint = f"127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> S3Proxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    def count(self, method: str, path_contains: str = "", query_contains: str = "") -> int:
        with self._lock:
            return sum(1 for r in self.requests if r.method == method and path_contains in r.path
                       and query_contains in r.query)
