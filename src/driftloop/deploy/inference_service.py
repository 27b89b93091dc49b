"""Building KServe InferenceService objects for registry versions with the kserve SDK's models.

The predictor runs on **driftloop's own ServingRuntime** (``runtime: driftloop``, manifests/base), so the
libraries that trained a model are the ones that serve it; ``storageUri`` is the version's self-contained
model directory (ending in ``/``). The version rides on the predictor as an annotation that the payload logger
forwards (``logger.metadataAnnotations``), so the drift monitor files every logged row under the version
that answered it. The logger sends to one place: the monitor's ``/events`` over HTTP (``logger_url``), or an
object store the monitor polls (``logger_storage``: ``logger.url: s3://…`` with ``logger.storage``, laid out as
:mod:`driftloop.logger_storage` defines).

Two KServe deployment modes, chosen by configuration:

* ``Serverless`` (Knative): a canary is the predictor's new revision taking ``canaryTrafficPercent`` %; the
  previously rolled-out revision takes the rest.
* ``Standard`` (KServe ≥ 0.20): a canary is an entry of ``spec.canary[]`` — its own predictor named ``v<n>`` and a
  ``trafficPercent`` — beside the stable predictor named ``v<m>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml
from kserve import (
    V1beta1CanarySpec,
    V1beta1InferenceService,
    V1beta1InferenceServiceSpec,
    V1beta1LoggerSpec,
    V1beta1ModelFormat,
    V1beta1ModelSpec,
    V1beta1PredictorSpec,
)
from kserve.models import V1beta1LoggerStorageSpec
from kubernetes.client import ApiClient, V1ObjectMeta, V1ResourceRequirements

from driftloop.ct_params import (
    DEPLOYMENT_MODES,
    LOGGER_SETTINGS,
    check_value,
    default_of,
    logger_sink_problem,
)
from driftloop.errors import ConfigError
from driftloop.logger_storage import BATCH_INTERVAL, STORE_KEY, STORE_PATH
from driftloop.model_dir import VERSION_ANNOTATION
from driftloop.registry import ModelVersion

GROUP, VERSION, PLURAL = "serving.kserve.io", "v1beta1", "inferenceservices"
MANAGED_BY = "driftloop"
RUNTIME = "driftloop"  # the ServingRuntime in manifests/base (and the ClusterServingRuntime component)
MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
CLUSTER_SCHEMES = ("s3://", "gs://", "pvc://", "https://")


@dataclass(frozen=True)
class ServingConfig:
    """Cluster settings for one InferenceService (all configuration, none in code).

    Attributes:
        namespace: Where the InferenceService lives (a Kubeflow profile namespace, say).
        service_account: Carries the S3 read credentials and KServe's s3 annotations.
        logger_url: The drift monitor's ``/events`` URL; empty (and no ``logger_storage``) turns payload
            logging off.
        logger_storage: ``s3://bucket/prefix`` KServe's agent writes payload logs to instead (the monitor's
            ``kserve_store.uri``); excludes ``logger_url``.
        logger_storage_format: json, parquet or csv.
        logger_storage_account: The ServiceAccount whose Secret gives the agent its S3 write credentials.
        logger_batch_size: Records per object (1: one object per event half).
        deployment_mode: "Serverless" (Knative) or "Standard" (KServe's own Deployments; canaries since 0.20).
        cpu, memory: Requests; limits are twice the requests.
    """

    namespace: str = "default"
    service_account: str = default_of("serving_account")
    logger_url: str = default_of("logger_url")
    deployment_mode: str = default_of("deployment_mode")
    cpu: str = "100m"
    memory: str = "512Mi"
    labels: dict = field(default_factory=dict)
    logger_storage: str = default_of("logger_storage")
    logger_storage_format: str = default_of("logger_storage_format")
    logger_storage_account: str = default_of("logger_storage_account")
    logger_batch_size: int = default_of("logger_batch_size")

    def __post_init__(self) -> None:
        if self.deployment_mode not in DEPLOYMENT_MODES:
            raise ConfigError(f"deployment mode must be one of {', '.join(DEPLOYMENT_MODES)}, "
                              f"got '{self.deployment_mode}'")
        for name in LOGGER_SETTINGS:
            check_value(name, getattr(self, name))
        problem = logger_sink_problem(self)
        if problem:
            raise ConfigError(problem)

    @property
    def standard(self) -> bool:
        return self.deployment_mode == "Standard"


def predictor_name(version: ModelVersion | int) -> str:
    """The Standard-mode predictor (and Deployment) name of a version: ``v<n>``."""
    return f"v{version if isinstance(version, int) else version.version}"


def build_inference_service(stable: ModelVersion, config: ServingConfig, canary: ModelVersion | None = None,
                            percent: int | None = None) -> V1beta1InferenceService:
    """The InferenceService serving ``stable``, and ``canary`` at ``percent`` % when given.

    In Serverless mode the spec names only the newest version (the canary), with ``canaryTrafficPercent``;
    the stable version is the revision KServe rolled out before it.
    """
    for version in (stable, canary):
        if version is not None and not version.storage_uri.startswith(CLUSTER_SCHEMES):
            raise ConfigError(f"{version.name} v{version.version} is stored at {version.storage_uri}, which a "
                              "cluster cannot read; register into an s3:// registry to deploy to KServe")
    if canary is not None:
        percent = check_value("canary_percent", percent if percent is not None else default_of("canary_percent"))
    if config.standard:
        predictor = predictor_spec(stable, config, named=True)
        canaries = None if canary is None else [V1beta1CanarySpec(
            predictor=canary_predictor(canary), traffic_percent=percent)]
        spec = V1beta1InferenceServiceSpec(predictor=predictor, canary=canaries)
    else:
        predictor = predictor_spec(canary or stable, config)
        predictor.canary_traffic_percent = percent if canary is not None else None
        spec = V1beta1InferenceServiceSpec(predictor=predictor)
    return V1beta1InferenceService(
        api_version=f"{GROUP}/{VERSION}",
        kind="InferenceService",
        metadata=V1ObjectMeta(
            name=stable.name,
            namespace=config.namespace,
            # driftloop.io/model marks the objects the pipeline owns (kubectl apply -l '!driftloop.io/model').
            labels={"app.kubernetes.io/managed-by": MANAGED_BY, "driftloop.io/model": stable.name, **config.labels},
            annotations={MODE_ANNOTATION: config.deployment_mode},
        ),
        spec=spec,
    )


def model_spec(version: ModelVersion, config: ServingConfig | None = None) -> V1beta1ModelSpec:
    """The predictor's model: driftloop's runtime, the version's format and storage, resources."""
    resources = None
    if config is not None:
        limits = {"cpu": _double(config.cpu), "memory": _double(config.memory)}
        resources = V1ResourceRequirements(requests={"cpu": config.cpu, "memory": config.memory}, limits=limits)
    return V1beta1ModelSpec(
        name="kserve-container", runtime=RUNTIME, model_format=V1beta1ModelFormat(name=version.model_format),
        storage_uri=version.storage_uri, resources=resources,
    )


def predictor_spec(version: ModelVersion, config: ServingConfig, named: bool = False) -> V1beta1PredictorSpec:
    """The whole predictor for ``version``: model, identity, version annotation and payload logger."""
    return V1beta1PredictorSpec(
        name=predictor_name(version) if named else None,
        service_account_name=config.service_account,
        annotations={VERSION_ANNOTATION: str(version.version)},
        model=model_spec(version, config),
        logger=logger_spec(config),
    )


def logger_spec(config: ServingConfig) -> V1beta1LoggerSpec | None:
    """KServe's payload logger: every request and response, with the version annotation, sent to the monitor
    (``logger_url``) or written to object storage (``logger_storage``); None when neither is set.

    For storage KServe needs (pkg/apis/serving/v1beta1 ``LoggerStorageSpec``, ``validateLogger``; the pod
    webhook's agent_injector.go): a url that is not http(s), ``storage.path`` (the agent writes only with one),
    ``parameters.format`` (``--log-store-format``; ``type`` is KServe's documented companion, read by nothing),
    ``key`` (required, unused for credentials) and ``serviceAccountName`` (whose Secrets the agent gets).
    ``batchSize`` / ``batchInterval`` exist since KServe 0.17 and are left out at 1 so a 0.16 CRD admits the spec.
    """
    if config.logger_storage:
        batched = config.logger_batch_size > 1
        storage = V1beta1LoggerStorageSpec(
            path=STORE_PATH, parameters={"type": "s3", "format": config.logger_storage_format}, key=STORE_KEY,
            service_account_name=config.logger_storage_account)
        return V1beta1LoggerSpec(mode="all", url=config.logger_storage, metadata_annotations=[VERSION_ANNOTATION],
                                 storage=storage, batch_size=config.logger_batch_size if batched else None,
                                 batch_interval=BATCH_INTERVAL if batched else None)
    if config.logger_url:
        return V1beta1LoggerSpec(mode="all", url=config.logger_url, metadata_annotations=[VERSION_ANNOTATION])
    return None


def canary_predictor(version: ModelVersion) -> V1beta1PredictorSpec:
    """A Standard-mode canary: only what differs from the stable predictor (KServe merges it over a copy)."""
    return V1beta1PredictorSpec(name=predictor_name(version), annotations={VERSION_ANNOTATION: str(version.version)},
                                model=model_spec(version))


def to_dict(obj) -> dict:
    """An SDK object as the API server sees it (camelCase keys, no nulls)."""
    return ApiClient().sanitize_for_serialization(obj)


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
