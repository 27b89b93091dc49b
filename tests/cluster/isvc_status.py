"""How KServe turns Knative and Deployment status into InferenceService status.

Follows kserve ``pkg/apis/serving/v1beta1/inference_service_status.go`` function by function:
``PropagateStatus`` (Knative mode: revisions, traffic, the roll-forward/back of ``latestRolledoutRevision``,
``PredictorReady``/``PredictorRouteReady``/``PredictorConfigurationReady`` from the ksvc, ``observedGeneration``
copied from the *ksvc*), ``PropagateRawStatus`` (Standard mode, one Deployment's ``Available``/``Progressing``),
``PropagateCrossComponentStatus`` (``RoutesReady``, ``LatestDeploymentReady``), ``PropagateModelStatus`` and
``UpdateModelRevisionStates`` (``modelStatus``). The top-level ``Ready`` is the living condition set of
``PredictorReady`` and ``IngressReady`` (``conditionSet``).
"""

from __future__ import annotations

import copy

from .conditions import FALSE, TRUE, UNKNOWN, Conditions, ConditionSet
from .pods import Phase, Pod

ISVC_CONDITIONS = ConditionSet("PredictorReady", "IngressReady")


def conditions(status: dict) -> Conditions:
    return ISVC_CONDITIONS.manage(status.setdefault("conditions", []))


def propagate_status(status: dict, ksvc_status: dict) -> None:
    """``PropagateStatus(PredictorComponent, ksvc.Status)``."""
    spec = status.setdefault("components", {}).setdefault("predictor", {})
    latest_ready = ksvc_status.get("latestReadyRevisionName", "")
    latest_created = ksvc_status.get("latestCreatedRevisionName", "")
    _set_or_drop(spec, "latestCreatedRevision", latest_created)
    traffic = ksvc_status.get("traffic") or []
    per_revision: dict[str, int] = {}
    for target in traffic:
        if "percent" in target:
            per_revision[target["revisionName"]] = per_revision.get(target["revisionName"], 0) + target["percent"]
    for target in traffic:
        if target.get("revisionName") != latest_ready or not target.get("latestRevision"):
            continue
        if spec.get("latestRolledoutRevision", "") != latest_ready:
            if target.get("percent") == 100:  # track the last revision that's fully rolled out
                _set_or_drop(spec, "previousRolledoutRevision", spec.get("latestRolledoutRevision", ""))
                spec["latestRolledoutRevision"] = latest_ready
        elif latest_ready == latest_created and target.get("percent", 100) < 100:
            # rolled out at 100 %, then rolled back: the split is over the same revision
            if per_revision.get(target["revisionName"]) == 100 and spec.get("previousRolledoutRevision"):
                spec["latestRolledoutRevision"] = spec["previousRolledoutRevision"]
    _set_or_drop(spec, "latestReadyRevision", latest_ready)
    ksvc_conditions = {c["type"]: c for c in ksvc_status.get("conditions") or []}
    ready = ksvc_conditions.get("Ready")
    if ready is not None and ready["status"] == TRUE:
        for key in ("address", "url"):
            if key in ksvc_status:
                spec[key] = copy.deepcopy(ksvc_status[key])
    managed = conditions(status)
    managed.set_condition("PredictorReady", ready)
    managed.set_condition("PredictorRouteReady", ksvc_conditions.get("RoutesReady"))
    if traffic or "traffic" in spec:
        spec["traffic"] = copy.deepcopy(traffic)
        if not spec["traffic"]:
            del spec["traffic"]
    managed.set_condition("PredictorConfigurationReady", ksvc_conditions.get("ConfigurationsReady"))
    _set_or_drop(status, "observedGeneration", ksvc_status.get("observedGeneration", 0))


def propagate_raw_status(status: dict, deployment_status: dict, url: str) -> None:
    """``PropagateRawStatus(PredictorComponent, [deployment], url)`` for one Deployment."""
    spec = status.setdefault("components", {}).setdefault("predictor", {})
    by_type = {c["type"]: c for c in deployment_status.get("conditions") or []}
    available, progressing = by_type.get("Available"), by_type.get("Progressing")
    ready = {"status": FALSE, "reason": ""}
    if available is not None and available["status"] == TRUE:
        ready = _copy_condition(available, TRUE)
    if progressing is not None:
        if progressing["status"] == FALSE:
            if progressing.get("message"):
                ready = _copy_condition(progressing, FALSE)
        elif progressing["status"] == TRUE:
            if progressing.get("reason") == "NewReplicaSetAvailable":
                ready = _copy_condition(progressing, TRUE)
            elif available is None or available["status"] != TRUE:
                ready = _copy_condition(progressing, UNKNOWN)
    if available is not None and available["status"] == FALSE:
        ready = _copy_condition(available, FALSE)
    if ready["status"] == TRUE:
        spec["url"] = url
    conditions(status).set_condition("PredictorReady", ready)
    _set_or_drop(status, "observedGeneration", deployment_status.get("observedGeneration", 0))


def propagate_cross_component(status: dict, condition_type: str, component_condition: str) -> None:
    """``PropagateCrossComponentStatus`` for the predictor alone."""
    managed = conditions(status)
    if managed.is_true(component_condition):
        managed.mark_true(condition_type)
    elif managed.is_unknown(component_condition):
        managed.mark_unknown(condition_type, f"{component_condition} not ready")
    else:
        managed.mark_false(condition_type, f"{component_condition} not ready")


def update_model_revision_states(status: dict, state: str, failure: dict | None = None) -> None:
    """``UpdateModelRevisionStates``."""
    model = status.setdefault("modelStatus", {"transitionStatus": ""})
    states = model.setdefault("states", {"activeModelState": ""})
    states["targetModelState"] = state
    if state in ("Pending", "Loading"):
        model["transitionStatus"] = "InProgress"
    elif state == "Loaded":
        model["transitionStatus"] = "UpToDate"
        states["activeModelState"] = "Loaded"
    elif state == "FailedToLoad":
        model["transitionStatus"] = "BlockedByFailedLoad"
    if failure is not None:
        model["lastFailureInfo"] = failure


def invalid_spec(status: dict, reason: str, message: str) -> None:
    """``UpdateModelTransitionStatus(InvalidSpec, FailureInfo{reason, message})``."""
    model = status.setdefault("modelStatus", {"transitionStatus": ""})
    model["transitionStatus"] = "InvalidSpec"
    model.setdefault("states", {"activeModelState": ""})["targetModelState"] = "FailedToLoad"
    model["lastFailureInfo"] = {"reason": reason, "message": message}


def propagate_model_status(status: dict, pod: Pod | None, raw: bool, ksvc_status: dict | None,
                           termination_messages: bool) -> None:
    """``PropagateModelStatus`` from the predictor's pod (the latest created revision's, or the Deployment's).

    ``termination_messages`` says whether the container's termination message reaches the pod status
    (Knative's ``FallbackToLogsOnError``) or not (Standard mode's ``File`` policy; the init container always).
    """
    model = status.setdefault("modelStatus", {"transitionStatus": ""})
    running = pod is not None and pod.phase is not Phase.TERMINATED
    model["copies"] = {"failedCopies": 0, **({"totalCopies": 1} if running and pod.ready else {})}
    if not running:
        if not raw and any(c["status"] == FALSE for c in (ksvc_status or {}).get("conditions") or []):
            return update_model_revision_states(status, "FailedToLoad")
        return update_model_revision_states(status, "Pending")
    termination = pod.termination
    if pod.phase is Phase.INITIALIZING:
        return update_model_revision_states(status, "Loading")
    if termination is not None and termination.container == "storage-initializer":
        return update_model_revision_states(status, "FailedToLoad", {
            "reason": "ModelLoadFailed", "message": termination.message, "exitCode": termination.exit_code})
    spec = status.get("components", {}).get("predictor", {})
    if conditions(status).is_true("Ready") and (raw or spec.get("latestCreatedRevision")
                                                == spec.get("latestReadyRevision")):
        return update_model_revision_states(status, "Loaded")
    if pod.phase is Phase.FAILED and termination is not None and termination.exit_code != 0:
        failure = {"reason": "ModelLoadFailed", "exitCode": termination.exit_code}
        if termination_messages and termination.message:
            failure["message"] = termination.message
        return update_model_revision_states(status, "FailedToLoad", failure)
    update_model_revision_states(status, "Pending")


def _copy_condition(condition: dict, status: str) -> dict:
    return {"status": status, "reason": condition.get("reason", ""), "message": condition.get("message", "")}


def _set_or_drop(target: dict, key: str, value) -> None:
    """Go's ``omitempty``: empty strings and zeros are absent from the JSON."""
    if value:
        target[key] = value
    else:
        target.pop(key, None)
