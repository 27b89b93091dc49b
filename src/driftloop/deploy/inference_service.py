"""Building KServe InferenceService objects for registry versions with the kserve SDK's models.

The predictor uses KServe's built-in runtime for the version's model format (``sklearn`` loads the
one ``model.joblib``), ``storageUri`` is the version's model directory in the registry bucket, and
``canaryTrafficPercent`` (Serverless mode) splits traffic between the new revision and the previous one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml
from kserve import (
    V1beta1InferenceService,
    V1beta1InferenceServiceSpec,
    V1beta1LoggerSpec,
    V1beta1ModelFormat,
    V1beta1ModelSpec,
    V1beta1PredictorSpec,
)
from kubernetes.client import ApiClient, V1ObjectMeta, V1ResourceRequirements

from driftloop.errors import ConfigError
from driftloop.registry import ModelVersion

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
MANAGED_BY = "driftloop"


@dataclass(frozen=True)
class ServingConfig:
    """Cluster settings for one InferenceService (all configuration, none in code).

    Attributes:
        namespace: Where the InferenceService lives (a Kubeflow profile namespace, say).
        service_account: Carries the MinIO/S3 credentials Secret and KServe's s3 annotations.
        logger_url: The drift monitor's Service; empty turns payload logging off.
        deployment_mode: "Serverless" (Knative; canaryTrafficPercent works) or "RawDeployment".
        cpu, memory: Requests; limits are twice the requests.
    """

    namespace: str = "default"
    service_account: str = "driftloop-serving"
    logger_url: str = ""
    deployment_mode: str = "Serverless"
    cpu: str = "100m"
    memory: str = "512Mi"
    labels: dict = field(default_factory=dict)


def build_inference_service(version: ModelVersion, config: ServingConfig,
                            canary_percent: int | None = None) -> V1beta1InferenceService:
    """The InferenceService serving ``version``, optionally as a canary taking ``canary_percent``."""
    if not version.storage_uri.startswith(("s3://", "gs://", "pvc://", "https://")):
        raise ConfigError(f"{version.name} v{version.version} is stored at {version.storage_uri}, which a cluster "
                          "cannot read; register into an s3:// registry to deploy to KServe")
    if canary_percent is not None and not 0 <= canary_percent <= 100:
        raise ConfigError(f"canary percent must be within 0..100, got {canary_percent}")
    limits = {"cpu": _double(config.cpu), "memory": _double(config.memory)}
    predictor = V1beta1PredictorSpec(
        service_account_name=config.service_account,
        canary_traffic_percent=canary_percent,
        model=V1beta1ModelSpec(
            name="kserve-container",
            model_format=V1beta1ModelFormat(name=version.model_format),
            storage_uri=version.storage_uri,
            resources=V1ResourceRequirements(requests={"cpu": config.cpu, "memory": config.memory}, limits=limits),
        ),
        logger=V1beta1LoggerSpec(mode="all", url=config.logger_url) if config.logger_url else None,
    )
    return V1beta1InferenceService(
        api_version=f"{GROUP}/{VERSION}",
        kind="InferenceService",
        metadata=V1ObjectMeta(
            name=version.name,
            namespace=config.namespace,
            labels={"app.kubernetes.io/managed-by": MANAGED_BY, "driftloop.io/model-version": str(version.version),
                    **config.labels},
            annotations={"serving.kserve.io/deploymentMode": config.deployment_mode},
        ),
        spec=V1beta1InferenceServiceSpec(predictor=predictor),
    )


def to_dict(isvc: V1beta1InferenceService) -> dict:
    """The object as the API server sees it (camelCase keys, no nulls)."""
    return ApiClient().sanitize_for_serialization(isvc)


def to_yaml(isvc: V1beta1InferenceService) -> str:
    """YAML for ``kubectl apply -f -``."""
    return yaml.safe_dump(to_dict(isvc), sort_keys=False)


def _double(quantity: str) -> str:
    digits = "".join(c for c in quantity if c.isdigit() or c == ".")
    unit = quantity[len(digits):]
    if not digits:
        raise ConfigError(f"invalid resource quantity '{quantity}'")
    value = float(digits) * 2
    return f"{int(value) if value.is_integer() else value}{unit}"


def from_dict(body: dict) -> V1beta1InferenceService:
    """Parses an InferenceService (e.g. read back from the API server) into the kserve SDK's models."""
    import json

    class _Response:
        data = json.dumps(body)

    return _SdkApiClient().deserialize(_Response(), "V1beta1InferenceService")


def _sdk_api_client_class():
    import kubernetes.client.models as kube_models
    from kserve import ApiClient as KServeApiClient
    from kserve import models as kserve_models

    class SdkApiClient(KServeApiClient):
        """kserve's deserializer knows only kserve's classes; Kubernetes types (ObjectMeta,
        ResourceRequirements) inside an InferenceService go to the kubernetes client's."""

        def _ApiClient__deserialize(self, data, klass):  # noqa: N802 - overrides the name-mangled method
            if isinstance(klass, str) and not hasattr(kserve_models, klass) and hasattr(kube_models, klass):
                return ApiClient()._ApiClient__deserialize(data, klass)
            return super()._ApiClient__deserialize(data, klass)

    return SdkApiClient


def _SdkApiClient():  # noqa: N802 - reads as the class it builds
    return _sdk_api_client_class()()
