"""The cluster's ingress gateway on one 127.0.0.1 port, plus queue-proxy and the logger agent in the data path.

Routing, as the gateway would see the objects KServe and Knative program:

- Serverless: the Knative Route's ``status.traffic`` (what Knative actually programmed, kept while a target
  does not resolve), reachable at ``<isvc>.<ns>.<domain>`` (KServe's VirtualService), ``<isvc>-predictor.<ns>.
  <domain>`` (the Knative Route) and, per tagged target, ``<tag>-<isvc>-predictor.<ns>.<domain>`` (knative
  ``pkg/reconciler/route/traffic``; default tag template ``{{.Tag}}-{{.Name}}``);
- Standard: the HTTPRoute's weighted backendRefs (kserve ``reconcilers/ingress/httproute_reconciler.go``
  ``applyCanaryWeights``), at ``<isvc>-<ns>.<domain>`` (domainTemplate ``{{ .Name }}-{{ .Namespace }}``) and,
  for convenience, ``<isvc>.<ns>.<domain>``;
- both: the path form ``/serving/<ns>/<isvc>/<rest>`` (an emulator convenience, no such route exists in a
  cluster), forwarded as ``/<rest>``.

The split is a smooth weighted round-robin (nginx's): in every run of 100 requests each backend gets exactly its
percent, interleaved. Envoy splits by weighted random; the emulator is deterministic so tests can assert exact
shares of small samples without flakiness, like ``driftloop.serving.split.TrafficSplit`` (which interleaves two
backends the same way). A Serverless revision with no ready pod holds requests for up to ``activation_timeout``
seconds (Knative's activator), then answers 503.

In Serverless mode each proxied request is recorded in its revision pod's queue-proxy histogram, and when the pod
has a logger agent the request and response are posted as CloudEvents (``logger_agent.py``).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Protocol

import urllib3

from .knative import Endpoint

_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade",
               "content-length", "host"}


class Backend(Protocol):
    """A Knative revision or a Standard-mode Deployment."""

    name: str

    def endpoint(self) -> Endpoint | None: ...

    def starting(self) -> bool: ...


@dataclass
class Route:
    """Where one InferenceService's traffic goes."""

    hosts: set[str]
    path_prefix: str
    targets: list[tuple[Backend, int]]
    tag_hosts: dict[str, Backend] = field(default_factory=dict)

    def signature(self) -> tuple:
        return tuple((b.name, w) for b, w in self.targets)


class SmoothWeightedPicker:
    """nginx's smooth weighted round-robin over (backend, weight)."""

    def __init__(self, targets: list[tuple[Backend, int]]) -> None:
        self.targets = [(b, w) for b, w in targets if w > 0]
        self._current = [0] * len(self.targets)
        self._lock = threading.Lock()

    def pick(self) -> Backend | None:
        with self._lock:
            if not self.targets:
                return None
            total = sum(w for _, w in self.targets)
            for i, (_, weight) in enumerate(self.targets):
                self._current[i] += weight
            best = max(range(len(self.targets)), key=lambda i: self._current[i])
            self._current[best] -= total
            return self.targets[best][0]


class Ingress:
    def __init__(self, activation_timeout: float = 60.0) -> None:
        self.activation_timeout = activation_timeout
        self._routes: dict[tuple[str, str], Route] = {}
        self._pickers: dict[tuple[str, str], tuple[tuple, SmoothWeightedPicker]] = {}
        self._lock = threading.Lock()
        self.http = urllib3.PoolManager(maxsize=16)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.ingress = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="ingress", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)

    def set_route(self, key: tuple[str, str], route: Route | None) -> None:
        with self._lock:
            if route is None:
                self._routes.pop(key, None)
                self._pickers.pop(key, None)
                return
            self._routes[key] = route
            signature = route.signature()
            if key not in self._pickers or self._pickers[key][0] != signature:
                self._pickers[key] = (signature, SmoothWeightedPicker(route.targets))

    def route_for(self, key: tuple[str, str]) -> Route | None:
        with self._lock:
            return self._routes.get(key)

    def resolve(self, host: str, path: str) -> tuple[Backend | None, str, bool]:
        """(backend, forwarded path, known) for a request; ``known`` False means no route matched."""
        host = host.split(":")[0].lower()
        with self._lock:
            for key, route in self._routes.items():
                if host in route.tag_hosts:
                    return route.tag_hosts[host], path, True
                if host in route.hosts:
                    return self._pickers[key][1].pick(), path, True
            for key, route in self._routes.items():
                if path == route.path_prefix or path.startswith(route.path_prefix + "/"):
                    return self._pickers[key][1].pick(), path[len(route.path_prefix):] or "/", True
        return None, path, False

    def wait_endpoint(self, backend: Backend) -> Endpoint | None:
        """The activator: hold the request while the backend's pod is still coming up."""
        deadline = time.monotonic() + self.activation_timeout
        while True:
            endpoint = backend.endpoint()
            if endpoint is not None or not backend.starting() or time.monotonic() > deadline:
                return endpoint
            time.sleep(0.05)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "istio-envoy"

    def log_message(self, *args) -> None:
        pass

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _reply(self, status: int, body: bytes, headers: list[tuple[str, str]] = (),
               content_type: str = "text/plain") -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if not any(name.lower() == "content-type" for name, _ in headers):
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _proxy(self) -> None:
        ingress: Ingress = self.server.ingress  # type: ignore[attr-defined]
        body = self._read_body()
        arrived = datetime.now(UTC)
        backend, path, known = ingress.resolve(self.headers.get("Host", ""), self.path)
        if not known:
            return self._reply(404, b"")  # no VirtualService/HTTPRoute matches this host
        endpoint = ingress.wait_endpoint(backend) if backend is not None else None
        if endpoint is None:
            return self._reply(503, b"no healthy upstream")
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        started = time.perf_counter()
        try:
            response = ingress.http.request(self.command, f"{endpoint.pod.url}{path}", body=body or None,
                                            headers=headers, retries=False, redirect=False,
                                            timeout=urllib3.Timeout(connect=5, read=300))
            status, data = response.status, response.data
            reply_headers = [(k, v) for k, v in response.headers.items() if k.lower() not in _HOP_BY_HOP]
        except urllib3.exceptions.HTTPError as exc:  # queue-proxy: the user container went away
            status, data, reply_headers = 502, f"upstream connect error: {type(exc).__name__}".encode(), []
        elapsed = time.perf_counter() - started
        if endpoint.metrics is not None:
            endpoint.metrics.record(status, elapsed)
        if endpoint.agent is not None:
            endpoint.agent.exchange(dict(self.headers.items()), body, arrived, status, data, datetime.now(UTC))
        self._reply(status, data, reply_headers)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _proxy  # noqa: N815
