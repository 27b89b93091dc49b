"""The KServe path: InferenceServices built with the kserve SDK, validated against KServe's CRD schema,
and applied, promoted and rolled back through the official kubernetes client against a recording
API server on 127.0.0.1 (no cluster runs here)."""

from __future__ import annotations

import copy
import json
import threading
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jsonschema
import pytest
import yaml
from kubernetes.client import ApiClient, Configuration

from driftloop.deploy.inference_service import (
    ServingConfig,
    build_inference_service,
    from_dict,
    to_dict,
    to_yaml,
)
from driftloop.deploy.kserve_client import KServeDeployer
from driftloop.errors import ConfigError
from driftloop.registry import ModelVersion

from ..conftest import REPO_ROOT

CRD = REPO_ROOT.parent / "shared" / "schemas" / "kserve" / "serving.kserve.io_inferenceservices.yaml"
CONFIG = ServingConfig(namespace="team-a", logger_url="http://driftloop-monitor.team-a.svc.cluster.local/events")


def _version(number: int) -> ModelVersion:
    uri = f"s3://mlops/registry/models/churn/versions/{number}/model"
    return ModelVersion("churn", number, "2026-11-22T00:00:00Z", "sklearn", uri, {"model/model.joblib": "0" * 64})


@lru_cache(maxsize=1)
def _schema() -> dict:
    crd = yaml.load(CRD.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    [served] = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta1"]
    return served["schema"]["openAPIV3Schema"]


needs_crd = pytest.mark.skipif(not CRD.exists(), reason=f"KServe CRD not found at {CRD} (shared/ is absent)")


@needs_crd
@pytest.mark.parametrize("canary", [None, 10])
def test_generated_inference_services_validate_against_the_crd(canary) -> None:
    body = to_dict(build_inference_service(_version(2), CONFIG, canary))
    jsonschema.validate(body, _schema())
    predictor = body["spec"]["predictor"]
    assert predictor["model"]["modelFormat"] == {"name": "sklearn"}
    assert predictor["model"]["storageUri"].endswith("/versions/2/model")
    assert predictor.get("canaryTrafficPercent") == canary
    assert predictor["logger"] == {"mode": "all", "url": CONFIG.logger_url}
    assert predictor["serviceAccountName"] == "driftloop-serving"


@needs_crd
def test_the_schema_check_rejects_a_wrong_object() -> None:
    body = to_dict(build_inference_service(_version(2), CONFIG, 10))
    body["spec"]["predictor"]["canaryTrafficPercent"] = "ten"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(body, _schema())


def test_round_trip_through_the_kserve_sdk_models() -> None:
    body = to_dict(build_inference_service(_version(3), CONFIG, 25))
    parsed = from_dict(body)
    assert parsed.spec.predictor.canary_traffic_percent == 25
    assert to_dict(parsed) == body
    assert yaml.safe_load(to_yaml(parsed)) == body


def test_a_local_path_cannot_be_deployed_to_a_cluster() -> None:
    local = ModelVersion("churn", 1, "t", "sklearn", "/home/me/.driftloop/registry/models/churn/versions/1/model", {})
    with pytest.raises(ConfigError, match="cannot read; register into an s3:// registry"):
        build_inference_service(local, CONFIG)


class _ApiServer(BaseHTTPRequestHandler):
    """Records every request and keeps one InferenceService, applying merge patches like the API server."""

    requests: list = []
    stored: dict | None = None

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> dict | None:
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        type(self).requests.append((self.command, self.path, self.headers.get("content-type"), body))
        return body

    def do_GET(self) -> None:  # noqa: N802
        self._record()
        if type(self).stored is None:
            self._reply(404, {"kind": "Status", "code": 404, "reason": "NotFound"})
        else:
            self._reply(200, type(self).stored)

    def do_POST(self) -> None:  # noqa: N802
        body = self._record()
        type(self).stored = body | {"status": {"components": {"predictor": {"traffic": [
            {"revisionName": "churn-predictor-00001", "percent": 100, "latestRevision": True}]}},
            "conditions": [{"type": "Ready", "status": "True"}]}}
        self._reply(201, type(self).stored)

    def do_PATCH(self) -> None:  # noqa: N802
        patch = self._record()
        type(self).stored = _merge(copy.deepcopy(type(self).stored), patch)
        self._reply(200, type(self).stored)

    def log_message(self, *args) -> None:
        pass


def _merge(target: dict, patch: dict) -> dict:
    """RFC 7386 JSON merge patch."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict):
            target[key] = _merge(target.get(key) or {}, value)
        else:
            target[key] = value
    return target


@pytest.fixture
def api_server():
    _ApiServer.requests, _ApiServer.stored = [], None
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ApiServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    configuration = Configuration()
    configuration.host = f"http://127.0.0.1:{server.server_port}"
    yield ApiClient(configuration)
    server.shutdown()


def test_deploy_canary_promote_rollback_send_the_requests_kubectl_would(api_server) -> None:
    deployer = KServeDeployer(api_server, CONFIG)
    path = "/apis/serving.kserve.io/v1beta1/namespaces/team-a/inferenceservices"

    deployer.deploy(_version(1), None)
    deployer.deploy(_version(2), 10)
    deployer.promote("churn")
    deployer.deploy(_version(3), 20)
    deployer.rollback("churn")
    split = deployer.traffic("churn")

    calls = [(method, p, ctype, body) for method, p, ctype, body in _ApiServer.requests if method != "GET"]
    assert [(m, p) for m, p, _, _ in calls] == [
        ("POST", path), ("PATCH", f"{path}/churn"), ("PATCH", f"{path}/churn"), ("PATCH", f"{path}/churn"),
        ("PATCH", f"{path}/churn")]
    assert calls[0][3]["spec"]["predictor"]["model"]["storageUri"].endswith("/versions/1/model")
    assert "canaryTrafficPercent" not in calls[0][3]["spec"]["predictor"]
    assert all(ctype == "application/merge-patch+json" for _, _, ctype, _ in calls[1:])
    assert calls[1][3]["spec"]["predictor"] == {
        "canaryTrafficPercent": 10, "model": {"storageUri": "s3://mlops/registry/models/churn/versions/2/model",
                                              "modelFormat": {"name": "sklearn"}}}
    assert calls[2][3] == {"spec": {"predictor": {"canaryTrafficPercent": None}}}
    assert calls[4][3] == {"spec": {"predictor": {"canaryTrafficPercent": 0}}}
    stored = _ApiServer.stored["spec"]["predictor"]
    assert stored["canaryTrafficPercent"] == 0 and stored["model"]["storageUri"].endswith("/versions/3/model")
    assert split.ready and "churn-predictor-00001: 100%" in split.describe()


def test_dry_run_prints_yaml_for_kubectl(tmp_path, s3_server) -> None:
    from driftloop.registry import open_registry

    from ..conftest import run_cli

    registry = open_registry("s3://kserve-dry/registry", s3_server.settings())
    registry.ensure_bucket()
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    (model_dir / "model.joblib").write_bytes(b"x")
    registry.register("churn", model_dir, model_format="sklearn", lineage={}, metrics={}, attachments={}, actor="t")
    registry.promote("churn", 1, actor="t")
    result = run_cli("deploy", "churn", "--target", "kserve", "--dry-run", "--namespace", "team-a",
                     "--registry", "s3://kserve-dry/registry", "--home", str(tmp_path), env=s3_server.env)
    assert result.returncode == 0, result.stderr
    body = yaml.safe_load(result.stdout)
    assert body["kind"] == "InferenceService" and body["metadata"]["namespace"] == "team-a"
    assert body["spec"]["predictor"]["model"]["storageUri"] == "s3://kserve-dry/registry/models/churn/versions/1/model"
    if CRD.exists():
        jsonschema.validate(body, _schema())
    assert not Path(tmp_path / "runs").exists()
