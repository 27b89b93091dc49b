"""KServe's admission webhooks for InferenceServices: the defaulter (mutating) and the validator.

Follows kserve ``pkg/apis/serving/v1beta1/inference_service_defaults.go`` (``DefaultInferenceService``),
``inference_service_validation.go`` (``ValidateCreate``/``ValidateUpdate``, ``validateCanarySpecs``,
``validateDeploymentMode``, ``validatePredictorNameChange``) and ``component.go`` (``validateLogger``,
``validateReplicas``). A denial reaches the client as the API server words it (k8s.io/apiserver
``admission/plugin/webhook/errors/statuserror.go``): HTTP 403 Forbidden, message
``admission webhook "inferenceservice.kserve-webhook-server.validator" denied the request: <reason>``
(controller-runtime's ``admission.Denied`` carries 403).

Only the rules that matter to the project are here: the name, exactly one predictor implementation, the
logger, replicas, the canary rules of Standard mode, the deployment mode and predictor name on update.
"""

from __future__ import annotations

import re

from .store import ApiError

DEPLOYMENT_MODE = "serving.kserve.io/deploymentMode"
MODEL_FORMAT_ANNOTATION = "modelFormat"  # constants.ModelFormatAnnotationKey
VALIDATOR = "inferenceservice.kserve-webhook-server.validator"
_ISVC_NAME = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_LEGACY_FRAMEWORKS = ("sklearn", "xgboost", "tensorflow", "pytorch", "triton", "onnx", "pmml", "lightgbm",
                      "paddle", "huggingface")
_LEGACY_MODE = {"RawDeployment": "Standard", "Serverless": "Knative"}


class Denied(Exception):
    """A validating webhook's refusal."""


def default_inference_service(isvc: dict, default_deployment_mode: str) -> dict:
    """The mutating webhook: normalises the deployment mode and moves legacy framework specs to ``model``."""
    meta = isvc.setdefault("metadata", {})
    annotations = meta.get("annotations") or {}
    mode = annotations.get(DEPLOYMENT_MODE)
    if mode in _LEGACY_MODE:
        annotations[DEPLOYMENT_MODE] = _LEGACY_MODE[mode]
    elif mode is None and default_deployment_mode == "Standard":
        annotations[DEPLOYMENT_MODE] = "Standard"
    predictor = isvc.get("spec", {}).get("predictor") or {}
    for framework in _LEGACY_FRAMEWORKS:  # setPredictorModelDefaults: sklearn: {...} -> model: {modelFormat: sklearn}
        if framework in predictor and "model" not in predictor:
            predictor["model"] = {"modelFormat": {"name": framework}, **predictor.pop(framework)}
            break
    model_format = (predictor.get("model") or {}).get("modelFormat", {}).get("name")
    if model_format:
        annotations.setdefault(MODEL_FORMAT_ANNOTATION, model_format)
    if annotations:
        meta["annotations"] = annotations
    return isvc


def validate_inference_service(isvc: dict, old: dict | None) -> None:
    """The validating webhook on create (``old`` None) and update.

    Raises:
        ApiError: 403, as the API server reports a webhook denial.
    """
    try:
        if old is not None and not isvc["metadata"].get("deletionTimestamp"):
            _validate_deployment_mode(isvc, old)
            _validate_predictor_name_change(isvc, old)
        _validate(isvc)
    except Denied as denial:
        raise ApiError(403, "Forbidden", f'admission webhook "{VALIDATOR}" denied the request: {denial}') from None


def _validate(isvc: dict) -> None:
    name = isvc["metadata"]["name"]
    if not _ISVC_NAME.fullmatch(name):
        raise Denied(f'the InferenceService "{name}" is invalid: a InferenceService name must consist of lower case '
                     "alphanumeric characters or '-', and must start with alphabetical character. (e.g. \"my-name\" "
                     f"or \"abc-123\", regex used for validation is '{_ISVC_NAME.pattern}')")
    spec = isvc.get("spec") or {}
    for component in ("predictor", "transformer", "explainer"):
        if component in spec:
            _validate_component(spec[component], component)
    _validate_canary_specs(isvc)


def _implementations(predictor: dict) -> list[str]:
    found = [k for k in (*_LEGACY_FRAMEWORKS, "model") if k in predictor]
    containers = predictor.get("containers") or []
    if containers and (any(c.get("name") == "kserve-container" for c in containers) or not found):
        found.append("containers")
    return found


def _validate_component(component: dict, kind: str) -> None:
    if kind == "predictor" and len(_implementations(component)) != 1:
        raise Denied("exactly one of [XGBoost, PyTorch, Triton, SKLearn, Tensorflow, ONNX, PMML, LightGBM, Paddle, "
                     "HuggingFace, Model, PodSpec] must be specified in PredictorSpec")
    minimum, maximum = component.get("minReplicas", 1), component.get("maxReplicas", 0)
    if minimum < 0:
        raise Denied("'MinReplicas' cannot be less than 0")
    if maximum < 0:
        raise Denied("'MaxReplicas' cannot be less than 0")
    if maximum != 0 and minimum > maximum:
        raise Denied("'MinReplicas' cannot be greater than MaxReplicas")
    logger = component.get("logger")
    if logger is not None:
        if logger.get("mode") not in ("all", "request", "response"):
            raise Denied("invalid logger type")  # validateLogger: no default for mode, despite the field comment
        storage = logger.get("storage")
        if storage is not None and not all(k in storage for k in ("path", "parameters", "key")):
            raise Denied("invalid logger storage configuration")


def _storage_uri(predictor: dict) -> str:
    for implementation in ("model", *_LEGACY_FRAMEWORKS):
        if implementation in predictor:
            return predictor[implementation].get("storageUri", "")
    return ""


def _validate_canary_specs(isvc: dict) -> None:
    canaries = isvc["spec"].get("canary") or []
    if not canaries:
        return
    if (isvc["metadata"].get("annotations") or {}).get(DEPLOYMENT_MODE) != "Standard":
        raise Denied("canary is only supported in Standard deployment mode")
    stable = isvc["spec"]["predictor"]
    if not _storage_uri(stable) and "model" not in stable:
        raise Denied("canary requires a stable predictor with a model (multi-model serving is not supported "
                     "with canary)")
    names: set[str] = set()
    total = 0
    for index, canary in enumerate(canaries):
        predictor = canary.get("predictor") or {}
        name = predictor.get("name", "")
        if not name:
            raise Denied(f"canary[{index}] predictor.name is required")
        if name in names:
            raise Denied(f'canary predictor.name "{name}" is duplicated')
        names.add(name)
        if name == stable.get("name", ""):
            raise Denied(f'canary predictor.name "{name}" conflicts with stable predictor name')
        percent = canary.get("trafficPercent", 0)
        if not 0 <= percent <= 100:
            raise Denied(f'canary "{name}" trafficPercent must be between 0 and 100, got {percent}')
        total += percent
        if len(_implementations(predictor)) != 1:
            raise Denied(f'canary "{name}" predictor: exactly one of [XGBoost, PyTorch, Triton, SKLearn, Tensorflow, '
                         "ONNX, PMML, LightGBM, Paddle, HuggingFace, Model, PodSpec] must be specified in PredictorSpec")
        _validate_component(predictor, "canary")
        if "workerSpec" in predictor:
            raise Denied(f'canary "{name}" must not set workerSpec (multi-node is not yet supported for canary)')
        for field in ("maxReplicas", "scaleTarget", "scaleMetric", "autoScaling"):
            if predictor.get(field):
                raise Denied(f'canary "{name}" must not set {field} (canary uses fixed replicas)')
        if "minReplicas" in predictor and predictor["minReplicas"] > stable.get("minReplicas", 1):
            raise Denied(f'canary "{name}" minReplicas ({predictor["minReplicas"]}) must not exceed stable predictor '
                         f'minReplicas ({stable.get("minReplicas", 1)})')
    if total > 100:
        raise Denied(f"sum of canary trafficPercent values ({total}) must be <= 100")


def _validate_deployment_mode(isvc: dict, old: dict) -> None:
    recorded = (old.get("status") or {}).get("deploymentMode", "")
    if not recorded:
        return
    recorded = _LEGACY_MODE.get(recorded, recorded)
    annotation = (isvc["metadata"].get("annotations") or {}).get(DEPLOYMENT_MODE)
    if annotation is not None and annotation != recorded:
        raise Denied(f"update rejected: deploymentMode cannot be changed from '{recorded}' to '{annotation}'")


def _validate_predictor_name_change(isvc: dict, old: dict) -> None:
    new_predictor, old_predictor = isvc["spec"]["predictor"], old["spec"]["predictor"]
    if new_predictor.get("name", "") == old_predictor.get("name", ""):
        return
    if _storage_uri(new_predictor) == _storage_uri(old_predictor):
        raise Denied("predictor.name change requires a model change (e.g. storageUri)")
