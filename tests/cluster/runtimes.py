"""From an InferenceService predictor to a pod template: runtime resolution, container merge, placeholders.

Follows kserve ``pkg/controller/v1beta1/inferenceservice/components/predictor.go`` (``buildPredictorResources``,
``reconcileModel``, ``buildPodSpec``, ``buildObjectMeta``), ``components/component.go``
(``addLoggerAnnotations``), ``utils/utils.go`` (``MergeRuntimeContainers``: strategic merge, args concatenated
runtime first; ``ReplacePlaceholders``: Go ``text/template`` over the container's JSON with the ISVC's
ObjectMeta), ``pkg/apis/serving/v1beta1/predictor_model.go`` (``GetSupportingRuntimes``,
``RuntimeSupportsModel``, sorting by protocol, creation time, name and ``priority``) and
``pkg/apis/serving/v1alpha1/servingruntime_types.go``.

The storage initializer is not part of the template: as in KServe, the predictor carries the annotation
``internal.serving.kserve.io/storage-initializer-sourceuri`` and the pod mutator (here: ``pods.py``) adds it.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass

from .store import ApiError, ObjectStore, ResourceType

KSERVE = "serving.kserve.io"
SERVING_RUNTIMES = ResourceType(KSERVE, "v1alpha1", "servingruntimes", "ServingRuntime", True)
CLUSTER_SERVING_RUNTIMES = ResourceType(KSERVE, "v1alpha1", "clusterservingruntimes", "ClusterServingRuntime", False)
INFERENCE_SERVICES = ResourceType(KSERVE, "v1beta1", "inferenceservices", "InferenceService", True)

CONTAINER_NAME = "kserve-container"
MODEL_MOUNT = "/mnt/models"  # constants.DefaultModelLocalMountPath
STORAGE_URI_ANNOTATION = "internal.serving.kserve.io/storage-initializer-sourceuri"
LOGGER_ANNOTATIONS = {  # constants.Logger*InternalAnnotationKey
    "logger": "internal.serving.kserve.io/logger",
    "url": "internal.serving.kserve.io/logger-sink-url",
    "mode": "internal.serving.kserve.io/logger-mode",
    "metadataHeaders": "internal.serving.kserve.io/logger-metadata-headers",
    "metadataAnnotations": "internal.serving.kserve.io/logger-metadata-annotations",
}
ISVC_LABEL = "serving.kserve.io/inferenceservice"  # constants.InferenceServicePodLabelKey
# constants.ServiceAnnotationDisallowedList: never propagated from the ISVC to its pods
DISALLOWED_ANNOTATIONS = ("autoscaling.knative.dev/min-scale", "autoscaling.knative.dev/max-scale",
                          STORAGE_URI_ANNOTATION, "kubectl.kubernetes.io/last-applied-configuration", "modelFormat")
_MODEL_ONLY_FIELDS = ("modelFormat", "runtime", "runtimeVersion", "protocolVersion", "storageUri", "storage",
                      "storageUris")
_PROTOCOL_ORDER = {"v1": 1, "v2": 2, "grpc-v1": 3, "grpc-v2": 4}  # constants.ProtocolVersion iota; Unknown = 5


class InvalidSpec(Exception):
    """A predictor the controller cannot build; ``reason`` is a KServe ``FailureReason``."""

    def __init__(self, reason: str, message: str, error: str) -> None:
        super().__init__(error)
        self.reason, self.message = reason, message


@dataclass(frozen=True)
class ResolvedRuntime:
    name: str
    spec: dict
    cluster_scoped: bool


def predictor_service_name(isvc_name: str, predictor_name: str = "") -> str:
    """``constants.PredictorServiceName``."""
    return f"{isvc_name}-{predictor_name}-predictor" if predictor_name else f"{isvc_name}-predictor"


def _protocol_priority(spec: dict) -> int:
    versions = spec.get("protocolVersions") or []
    return min((_PROTOCOL_ORDER.get(v, 5) for v in versions), default=5)


def _supports_protocol(spec: dict, protocol: str) -> bool:
    versions = spec.get("protocolVersions") or []
    return not protocol or not versions or protocol in versions


def _supports_format(spec: dict, model: dict, explicit: bool) -> bool:
    """``RuntimeSupportsModel``: labels ``mt:<name>`` and ``mt:<name>:<version>`` by exact string."""
    offered = set()
    for supported in spec.get("supportedModelFormats") or []:
        if explicit or supported.get("autoSelect"):
            offered.add(f"mt:{supported['name']}")
            if "version" in supported:
                offered.add(f"mt:{supported['name']}:{supported['version']}")
    wanted = model.get("modelFormat") or {}
    label = f"mt:{wanted.get('name')}" + (f":{wanted['version']}" if "version" in wanted else "")
    return label in offered


def _priority(spec: dict, format_name: str) -> int | None:
    for supported in spec.get("supportedModelFormats") or []:
        if supported["name"] == format_name and supported.get("autoSelect"):
            return supported.get("priority")
    return None


def _sorted_candidates(runtimes: list[dict], format_name: str) -> list[dict]:
    ordered = sorted(runtimes, key=lambda r: r["metadata"]["name"])
    ordered.sort(key=lambda r: r["metadata"]["creationTimestamp"], reverse=True)  # newest first
    ordered.sort(key=lambda r: _protocol_priority(r["spec"]))
    # sortSupportedRuntimeByPriority: stable; a set priority beats none, higher wins
    return sorted(ordered, key=lambda r: (_priority(r["spec"], format_name) is None,
                                          -(_priority(r["spec"], format_name) or 0)))


def resolve_runtime(store: ObjectStore, namespace: str, model: dict) -> ResolvedRuntime:
    """``reconcileModel``: the named runtime (namespaced first), or the first auto-selectable one.

    Raises:
        InvalidSpec: no such runtime, disabled, or it does not support the protocol or format.
    """
    protocol = model.get("protocolVersion", "")
    name = model.get("runtime")
    if name:
        try:
            found, cluster_scoped = store.get(SERVING_RUNTIMES, namespace, name), False
        except ApiError:
            try:
                found, cluster_scoped = store.get(CLUSTER_SERVING_RUNTIMES, "", name), True
            except ApiError:
                raise InvalidSpec("RuntimeNotRecognized", "Waiting for runtime to become available",
                                  f"No ServingRuntimes or ClusterServingRuntimes with the name: {name}") from None
        spec = found["spec"]
        if spec.get("disabled"):
            raise InvalidSpec("RuntimeDisabled", "Specified runtime is disabled",
                              f"specified runtime {name} is disabled")
        if protocol and not _supports_protocol(spec, protocol):
            raise InvalidSpec("NoSupportingRuntime", "Specified runtime does not support specified protocol version",
                              f"specified runtime {name} does not support specified protocol version")
        if not _supports_format(spec, model, explicit=True):
            raise InvalidSpec("NoSupportingRuntime", "Specified runtime does not support specified framework/version",
                              f"specified runtime {name} does not support specified framework/version")
        return ResolvedRuntime(name, spec, cluster_scoped)
    protocol = protocol or "v1"  # ModelSpec.GetProtocol
    format_name = (model.get("modelFormat") or {}).get("name", "")

    def candidates(found: list[dict]) -> list[dict]:
        usable = [r for r in found if not r["spec"].get("disabled") and not r["spec"].get("multiModel")
                  and "workerSpec" not in r["spec"] and _supports_protocol(r["spec"], protocol)
                  and _supports_format(r["spec"], model, explicit=False)]
        return _sorted_candidates(usable, format_name)

    namespaced = candidates(store.list(SERVING_RUNTIMES, namespace)[0])
    clustered = candidates(store.list(CLUSTER_SERVING_RUNTIMES, None)[0])
    if namespaced:
        return ResolvedRuntime(namespaced[0]["metadata"]["name"], namespaced[0]["spec"], False)
    if clustered:
        return ResolvedRuntime(clustered[0]["metadata"]["name"], clustered[0]["spec"], True)
    raise InvalidSpec("NoSupportingRuntime", "No runtime found to support specified framework/version",
                      f"no runtime found to support predictor with model type: {model.get('modelFormat')}")


def merge_container(runtime_container: dict, isvc_container: dict) -> dict:
    """``MergeRuntimeContainers``: strategic merge (env by name, ports by containerPort, volumeMounts by
    mountPath, other fields replaced), then args concatenated, runtime's first."""
    merged = copy.deepcopy(runtime_container)
    for key, value in isvc_container.items():
        merge_key = {"env": "name", "ports": "containerPort", "volumeMounts": "mountPath"}.get(key)
        if merge_key and isinstance(value, list):
            items = {item[merge_key]: item for item in merged.get(key) or []}
            for item in value:
                items[item[merge_key]] = {**items.get(item[merge_key], {}), **item}
            merged[key] = list(items.values())
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **copy.deepcopy(value)}
        else:
            merged[key] = copy.deepcopy(value)
    merged["args"] = list(runtime_container.get("args") or []) + list(isvc_container.get("args") or [])
    if not merged["args"]:
        del merged["args"]
    return merged


_ACTION = re.compile(r"{{-?\s*(.*?)\s*-?}}")


def replace_placeholders(container: dict, meta: dict) -> dict:
    """``ReplacePlaceholders``: the container's JSON through Go text/template with the ISVC ObjectMeta as data.

    Supports field paths (``.Name``, ``.Namespace``, ``.Labels.key``, ``.Annotations.key``) and
    ``index .Annotations "key"``; a missing map key renders ``<no value>`` as Go does.

    Raises:
        ValueError: an action this subset of Go templates cannot evaluate.
    """
    data = {"Name": meta.get("name", ""), "Namespace": meta.get("namespace", ""),
            "Labels": meta.get("labels") or {}, "Annotations": meta.get("annotations") or {},
            "GenerateName": meta.get("generateName", ""), "UID": meta.get("uid", "")}

    def evaluate(match: re.Match) -> str:
        action = match.group(1)
        index = re.fullmatch(r'index\s+\.(\w+)\s+"([^"]*)"', action)
        if index:
            field, key = index.groups()
            if not isinstance(data.get(field), dict):
                raise ValueError(f"can't index item of type {field}")
            return str(data[field].get(key, "<no value>"))
        path = re.fullmatch(r"((?:\.[\w-]+)+)", action)
        if not path:
            raise ValueError(f"unsupported template action {{{{{action}}}}}")
        value: object = data
        for part in path.group(1).split(".")[1:]:
            if isinstance(value, dict) and value is not data:
                value = value.get(part, "<no value>")
            elif isinstance(value, dict) and part in value:
                value = value[part]
            else:
                raise ValueError(f"can't evaluate field {part} in type v1.ObjectMeta")
        return str(value)

    return json.loads(_ACTION.sub(evaluate, json.dumps(container)))


def _filtered(annotations: dict | None) -> dict:
    return {k: v for k, v in (annotations or {}).items() if k not in DISALLOWED_ANNOTATIONS}


@dataclass(frozen=True)
class PredictorResources:
    """``predictorResources``: what a Knative revision or a Deployment is made from."""

    name: str               # <isvc>-predictor or <isvc>-<predictor.name>-predictor
    labels: dict
    annotations: dict
    containers: list[dict]  # kserve-container first
    runtime: ResolvedRuntime

    def template(self) -> dict:
        """The pod template (``metadata`` + ``spec``) as JSON, for comparisons and for the pod launcher."""
        return {"metadata": {"labels": dict(self.labels), "annotations": dict(self.annotations)},
                "spec": {"containers": copy.deepcopy(self.containers)}}


def build_predictor(store: ObjectStore, isvc: dict, predictor: dict | None = None) -> PredictorResources:
    """``buildPredictorResources`` for the ISVC's predictor (or, for a canary, the merged ``predictor``).

    Raises:
        InvalidSpec: runtime resolution or placeholder substitution failed.
    """
    meta = isvc["metadata"]
    predictor = predictor if predictor is not None else isvc["spec"]["predictor"]
    model = predictor.get("model")
    if model is None:
        raise InvalidSpec("InvalidPredictorSpec", "only spec.predictor.model is emulated",
                          "the emulator only builds predictors from spec.predictor.model")
    annotations = _filtered(meta.get("annotations"))
    logger = predictor.get("logger")
    if logger is not None:
        annotations[LOGGER_ANNOTATIONS["logger"]] = "true"
        if "url" in logger:
            annotations[LOGGER_ANNOTATIONS["url"]] = logger["url"]
        annotations[LOGGER_ANNOTATIONS["mode"]] = logger.get("mode", "")
        for field in ("metadataHeaders", "metadataAnnotations"):
            if field in logger:
                annotations[LOGGER_ANNOTATIONS[field]] = ",".join(logger[field])
    if model.get("storageUri"):
        annotations[STORAGE_URI_ANNOTATION] = model["storageUri"]
    runtime = resolve_runtime(store, meta["namespace"], model)
    runtime_containers = runtime.spec.get("containers") or []
    kserve = next((c for c in runtime_containers if c.get("name") == CONTAINER_NAME), None)
    if kserve is None:
        raise InvalidSpec("InvalidPredictorSpec", "No container configuration found in selected serving runtime",
                          "No container configuration found in selected serving runtime")
    isvc_container = {k: v for k, v in model.items() if k not in _MODEL_ONLY_FIELDS}
    merged = merge_container(kserve, isvc_container)
    try:
        merged = replace_placeholders(merged, meta)
    except ValueError as exc:
        raise InvalidSpec("InvalidPredictorSpec", f"Failed to replace placeholders in serving runtime "
                          f"{runtime.name} Container {CONTAINER_NAME}", str(exc)) from None
    env = [e for e in merged.get("env") or [] if e.get("name") != "INFERENCE_SERVICE_NAME"]
    merged["env"] = [*env, {"name": "INFERENCE_SERVICE_NAME", "value": meta["name"]}]
    others = [c for c in runtime_containers if c.get("name") not in (CONTAINER_NAME, "transformer-container")]
    labels = {**(runtime.spec.get("labels") or {}), **(meta.get("labels") or {}), **(predictor.get("labels") or {}),
              ISVC_LABEL: meta["name"], "component": "predictor"}
    pod_annotations = {**_filtered(runtime.spec.get("annotations")), **annotations,
                       **_filtered(predictor.get("annotations"))}
    return PredictorResources(predictor_service_name(meta["name"], predictor.get("name", "")), labels,
                              pod_annotations, [merged, *others], runtime)
