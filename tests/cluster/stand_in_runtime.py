"""A stand-in for driftloop's serving runtime, for the emulator's own tests (run as a script, stdlib + prometheus).

It keeps the contract of ``python -m driftloop.serving.runtime`` (CONTRACT.md) that the emulator relies on, with
no model behind it: KServe's flags (``--model_name``, ``--model_dir``, ``--http_port``; others accepted), the
layout-2 manifest ``driftloop-model.json`` in the model dir, refusal to start (exit 1, one line on stderr) when a
file's sha256 differs from the manifest, V1 predict answering ``{"predictions": [<version>, ...]}`` (one per
instance, so a test can tell which version answered), readiness on ``/v1/models/<name>`` and
``/v2/health/ready``, and ``driftloop_requests_total`` / ``driftloop_request_latency_seconds`` on ``/metrics``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest


def load_manifest(model_dir: Path) -> dict:
    path = model_dir / "driftloop-model.json"
    if not path.is_file():
        raise SystemExit(f"stand-in runtime: refusing to start: no driftloop-model.json in {model_dir}")
    manifest = json.loads(path.read_text())
    for name, digest in manifest.get("files", {}).items():
        actual = hashlib.sha256((model_dir / name).read_bytes()).hexdigest() if (model_dir / name).is_file() else None
        if actual != digest:
            raise SystemExit(f"stand-in runtime: refusing to start: {name} sha256 {actual} != manifest {digest}")
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model_name", required=True)
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--http_port", type=int, default=8080)
    args, _ = parser.parse_known_args()
    manifest = load_manifest(Path(args.model_dir))
    version = str(manifest.get("version"))
    registry = CollectorRegistry()
    requests = Counter("driftloop_requests", "Requests", ["model", "version", "endpoint", "outcome"],
                       registry=registry)
    latency = Histogram("driftloop_request_latency_seconds", "Latency", ["model", "version", "endpoint"],
                        registry=registry)
    name = args.model_name

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a) -> None:
            pass

        def _json(self, status: int, body: object, content_type: str = "application/json") -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            if self.path in ("/v2/health/ready", "/v2/health/live", f"/v2/models/{name}/ready"):
                return self._json(200, {"ready": True} if "ready" in self.path else {"live": True})
            if self.path == f"/v1/models/{name}":
                return self._json(200, {"name": name, "ready": True})
            if self.path == "/metrics":
                return self._json(200, generate_latest(registry), "text/plain; version=0.0.4")
            return self._json(404, {"error": f"{self.path} not found"})

        def do_POST(self) -> None:  # noqa: N802
            started = time.perf_counter()
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path not in (f"/v1/models/{name}:predict", f"/v2/models/{name}/infer"):
                return self._json(404, {"error": f"model {self.path} not found"})
            try:
                payload = json.loads(body)
                rows = payload["instances"] if "instances" in payload else payload["inputs"]
                if not isinstance(rows, list):
                    raise TypeError("instances must be a list")
            except (ValueError, KeyError, TypeError) as exc:
                requests.labels(name, version, "kserve", "invalid").inc()
                return self._json(400, {"error": f"invalid request: {exc}"})
            requests.labels(name, version, "kserve", "ok").inc()
            latency.labels(name, version, "kserve").observe(time.perf_counter() - started)
            self._json(200, {"predictions": [int(version) if version.isdigit() else version] * len(rows)})

    server = ThreadingHTTPServer(("127.0.0.1", args.http_port), Handler)
    server.daemon_threads = True
    print(f"stand-in runtime: serving {name} version {version} on {args.http_port}", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
