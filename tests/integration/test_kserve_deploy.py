"""InferenceServices built with the kserve SDK: valid against KServe's CRD in both deployment modes, on
driftloop's runtime, with the version annotation the payload logger forwards; and ``deploy --dry-run``.
The rollouts themselves run against the emulated control plane (test_kserve_rollout.py)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import jsonschema
import pytest
import yaml

from driftloop.deploy.inference_service import (
    ServingConfig,
    build_inference_service,
    from_dict,
    to_dict,
    to_yaml,
)
from driftloop.errors import ConfigError
from driftloop.registry import ModelVersion

from ..conftest import REPO_ROOT

CRD = REPO_ROOT.parent / "shared" / "schemas" / "kserve" / "serving.kserve.io_inferenceservices.yaml"
CONFIG = ServingConfig(namespace="team-a", logger_url="http://driftloop-monitor.team-a.svc.cluster.local/events")
STANDARD = ServingConfig(namespace="team-a", logger_url=CONFIG.logger_url, deployment_mode="Standard")


def _version(number: int, model_format: str = "sklearn") -> ModelVersion:
    uri = f"s3://mlops/registry/models/churn/versions/{number}/model/"
    return ModelVersion("churn", number, "2026-11-22T00:00:00Z", model_format, uri, {"model/model.joblib": "0" * 64})


@lru_cache(maxsize=1)
def _schema() -> dict:
    crd = yaml.load(CRD.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    [served] = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta1"]
    return served["schema"]["openAPIV3Schema"]


needs_crd = pytest.mark.skipif(not CRD.exists(), reason=f"KServe CRD not found at {CRD} (shared/ is absent)")


@needs_crd
@pytest.mark.parametrize("canary", [None, 10])
def test_serverless_inference_services_validate_against_the_crd(canary) -> None:
    body = to_dict(build_inference_service(_version(1), CONFIG, _version(2) if canary else None, canary))
    jsonschema.validate(body, _schema())
    assert body["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Serverless"
    predictor = body["spec"]["predictor"]
    newest = 2 if canary else 1
    # Serverless: the spec names the newest version; the stable one is the revision rolled out before it.
    assert predictor["model"] == {
        "name": "kserve-container", "runtime": "driftloop", "modelFormat": {"name": "sklearn"},
        "storageUri": f"s3://mlops/registry/models/churn/versions/{newest}/model/",
        "resources": {"requests": {"cpu": "100m", "memory": "512Mi"}, "limits": {"cpu": "200m", "memory": "1024Mi"}}}
    assert predictor.get("canaryTrafficPercent") == canary
    assert predictor["annotations"] == {"driftloop.io/model-version": str(newest)}
    assert predictor["logger"] == {"mode": "all", "url": CONFIG.logger_url,
                                   "metadataAnnotations": ["driftloop.io/model-version"]}
    assert predictor["serviceAccountName"] == "driftloop-serving"
    assert "canary" not in body["spec"]


@needs_crd
def test_standard_mode_canaries_are_spec_canary_entries_named_by_version() -> None:
    body = to_dict(build_inference_service(_version(1), STANDARD, _version(2, "xgboost-pipeline"), 25))
    jsonschema.validate(body, _schema())
    assert body["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    predictor = body["spec"]["predictor"]
    assert predictor["name"] == "v1" and predictor["annotations"] == {"driftloop.io/model-version": "1"}
    assert "canaryTrafficPercent" not in predictor
    [canary] = body["spec"]["canary"]
    assert canary["trafficPercent"] == 25
    assert canary["predictor"] == {
        "name": "v2", "annotations": {"driftloop.io/model-version": "2"},
        "model": {"name": "kserve-container", "runtime": "driftloop", "modelFormat": {"name": "xgboost-pipeline"},
                  "storageUri": "s3://mlops/registry/models/churn/versions/2/model/"}}


@needs_crd
@pytest.mark.parametrize("config", [CONFIG, STANDARD], ids=["serverless", "standard"])
def test_a_storage_logger_is_what_kserves_agent_needs_to_write_blobs(config) -> None:
    """logger.storage as KServe reads it (LoggerStorageSpec, validateLogger, agent_injector.go): a url that is not
    http(s), a non-empty path (the agent writes nothing without one), the format parameter, the required key, the
    ServiceAccount with the write credentials; batching only when asked for, so a 0.16 CRD admits the spec."""
    storage = ServingConfig(namespace="team-a", deployment_mode=config.deployment_mode,
                            logger_storage="s3://driftloop/payload-logs", logger_storage_format="parquet")
    body = to_dict(build_inference_service(_version(1), storage, _version(2), 25))
    jsonschema.validate(body, _schema())
    logger = {"mode": "all", "url": "s3://driftloop/payload-logs", "metadataAnnotations": ["driftloop.io/model-version"],
              "storage": {"path": "logger", "parameters": {"type": "s3", "format": "parquet"}, "key": "credentials",
                          "serviceAccountName": "driftloop-logger"}}
    assert body["spec"]["predictor"]["logger"] == logger
    assert body["spec"]["predictor"]["annotations"] == {"driftloop.io/model-version": "1" if config is STANDARD else "2"}
    assert to_dict(from_dict(body)) == body  # the kserve SDK's models carry it both ways

    batched = ServingConfig(namespace="team-a", logger_storage="s3://driftloop/payload-logs", logger_batch_size=200)
    logger = to_dict(build_inference_service(_version(1), batched))["spec"]["predictor"]["logger"]
    assert (logger["batchSize"], logger["batchInterval"], logger["storage"]["parameters"]["format"]) == (200, "5s", "json")


@pytest.mark.parametrize("settings, message", [
    ({"logger_url": CONFIG.logger_url, "logger_storage": "s3://driftloop/payload-logs"}, "exclude each other"),
    ({"logger_storage": "http://minio:9000/payload-logs"}, "logger_storage must be an s3://bucket/prefix URI"),
    # The agent would write under a cleaned path the monitor never lists.
    ({"logger_storage": "s3://driftloop/logs/../other"}, "no empty, '.' or '..' segments"),
    ({"logger_storage": "s3://driftloop//logs"}, "no empty, '.' or '..' segments"),
    # Store settings without a store would be silently ignored; a store without an account has no keys.
    ({"logger_url": CONFIG.logger_url, "logger_batch_size": 50}, "logger_batch_size applies only with logger_storage"),
    ({"logger_storage": "s3://driftloop/p", "logger_storage_account": ""}, "needs logger_storage_account"),
    ({"logger_storage": "s3://driftloop/p", "logger_storage_format": "avro"}, "logger_storage_format must be one of"),
    ({"logger_storage": "s3://driftloop/p", "logger_batch_size": 0}, "logger_batch_size must be >= 1"),
])
def test_a_logger_kserve_would_not_run_is_refused_in_one_line(settings, message) -> None:
    with pytest.raises(ConfigError, match=message):
        ServingConfig(namespace="team-a", **settings)


def test_a_canary_percent_outside_0_to_100_is_refused() -> None:
    with pytest.raises(ConfigError, match="canary_percent must be within 0..100, got 150"):
        build_inference_service(_version(1), CONFIG, _version(2), 150)


@needs_crd
def test_the_schema_check_rejects_a_wrong_object() -> None:
    body = to_dict(build_inference_service(_version(1), CONFIG, _version(2), 10))
    body["spec"]["predictor"]["canaryTrafficPercent"] = "ten"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(body, _schema())


@pytest.mark.parametrize("config", [CONFIG, STANDARD], ids=["serverless", "standard"])
def test_round_trip_through_the_kserve_sdk_models(config) -> None:
    body = to_dict(build_inference_service(_version(2), config, _version(3), 25))
    parsed = from_dict(body)
    if config is CONFIG:
        assert parsed.spec.predictor.canary_traffic_percent == 25
    else:
        assert parsed.spec.canary[0].traffic_percent == 25
    assert to_dict(parsed) == body
    assert yaml.safe_load(to_yaml(parsed)) == body


def test_a_local_path_cannot_be_deployed_to_a_cluster() -> None:
    local = ModelVersion("churn", 1, "t", "sklearn", "/home/me/.driftloop/registry/models/churn/versions/1/model", {})
    with pytest.raises(ConfigError, match="cannot read; register into an s3:// registry"):
        build_inference_service(local, CONFIG)


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
    assert body["spec"]["predictor"]["model"]["storageUri"] == "s3://kserve-dry/registry/models/churn/versions/1/model/"
    if CRD.exists():
        jsonschema.validate(body, _schema())
    assert not Path(tmp_path / "runs").exists()
