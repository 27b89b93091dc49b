"""pytest fixtures for the emulated KServe cluster; import the ones a test module uses.

```python
from tests.cluster.fixtures import kserve_cluster, kserve_namespace  # noqa: F401
```

``kserve_cluster`` is session-scoped (one API server, controller and ingress for the whole run); each test takes
its own ``kserve_namespace``, whose InferenceServices (and so their processes) are deleted when the test ends.
The S3 store is moto's server from ``s3_server`` (tests/conftest.py). Helpers build the ServingRuntimes tests
apply and upload model directories the way the registry lays them out.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from ..conftest import REPO_ROOT
from .cluster import KServeCluster
from .controller import ClusterConfig

SCHEMAS = REPO_ROOT.parent / "shared" / "schemas" / "kserve"
STAND_IN_RUNTIME = Path(__file__).with_name("stand_in_runtime.py")
PROJECT_RUNTIME = REPO_ROOT / "manifests" / "base" / "serving-runtime.yaml"
PROGRESS_DEADLINE = 45.0  # seconds a pod may take to become ready (Knative's default is 600)


@pytest.fixture(scope="session")
def kserve_cluster(s3_server, tmp_path_factory) -> Iterator[KServeCluster]:
    """The emulated cluster, shared by the session; stopped (every pod killed) at the end."""
    if not SCHEMAS.exists():
        pytest.skip(f"KServe CRDs not found at {SCHEMAS} (shared/ is absent)")
    cluster = KServeCluster(tmp_path_factory.mktemp("kserve-cluster"), s3_server.settings(), SCHEMAS,
                            ClusterConfig(progress_deadline=PROGRESS_DEADLINE)).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def kserve_namespace(kserve_cluster) -> Iterator[str]:
    """A fresh namespace; its InferenceServices are deleted (and their pods stopped) afterwards."""
    namespace = f"test-{uuid.uuid4().hex[:8]}"
    yield namespace
    kserve_cluster.delete_namespace(namespace)


def serving_runtime(namespace: str, command: list[str], name: str = "driftloop") -> dict:
    """The ``driftloop`` ServingRuntime as CONTRACT.md fixes it, running ``command``."""
    return {
        "apiVersion": "serving.kserve.io/v1alpha1", "kind": "ServingRuntime",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "annotations": {"prometheus.kserve.io/port": "8080", "prometheus.kserve.io/path": "/metrics"},
            "supportedModelFormats": [{"name": "sklearn", "version": "1", "autoSelect": False},
                                      {"name": "xgboost-pipeline", "version": "1", "autoSelect": True}],
            "protocolVersions": ["v1", "v2"],
            "containers": [{"name": "kserve-container", "image": "ghcr.io/driftloop/driftloop:test",
                            "command": command,
                            "args": ["--model_name={{.Name}}", "--model_dir=/mnt/models", "--http_port=8080"],
                            "ports": [{"containerPort": 8080, "protocol": "TCP"}]}],
        },
    }


def stand_in_serving_runtime(namespace: str, name: str = "driftloop") -> dict:
    """The contract's ServingRuntime running ``stand_in_runtime.py`` (no model libraries, starts in ~0.2 s)."""
    return serving_runtime(namespace, ["python", str(STAND_IN_RUNTIME)], name)


def driftloop_serving_runtime(namespace: str) -> dict:
    """The project's own ServingRuntime manifest (``manifests/base/serving-runtime.yaml``) in ``namespace``."""
    manifest = yaml.safe_load(PROJECT_RUNTIME.read_text())
    manifest["metadata"]["namespace"] = namespace
    return manifest


def upload_stand_in_model(s3_settings, bucket: str, prefix: str, name: str, version: int,
                          corrupt: bool = False) -> str:
    """Uploads a layout-2 model directory the stand-in runtime accepts; returns its ``s3://…/model/`` URI.

    ``corrupt`` stores a ``model.joblib`` whose sha256 differs from the manifest, so the runtime refuses it.
    """
    client = s3_settings.client()
    if not client.bucket_exists(bucket):
        client.make_bucket(bucket)
    payload = f"model {name} v{version}".encode()
    manifest = {"layout": 2, "model": name, "model_format": "sklearn", "version": version,
                "files": {"model.joblib": hashlib.sha256(payload).hexdigest()}}
    key = f"{prefix}/models/{name}/versions/{version}/model"
    stored = payload + b" tampered" if corrupt else payload
    for file_name, data in (("model.joblib", stored), ("driftloop-model.json", json.dumps(manifest).encode())):
        client.put_object(bucket, f"{key}/{file_name}", io.BytesIO(data), len(data))
    return f"s3://{bucket}/{key}/"


@dataclass
class ReceivedEvent:
    headers: dict[str, str]
    body: bytes


@dataclass
class EventSink:
    """An HTTP server on 127.0.0.1 that records every POST (CloudEvents from the logger agent)."""

    events: list[ReceivedEvent] = field(default_factory=list)

    def __post_init__(self) -> None:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                sink.events.append(ReceivedEvent({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_port}/events"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def event_sink() -> Iterator[EventSink]:
    sink = EventSink()
    yield sink
    sink.close()

