"""The deployment port's cluster backend: an InferenceService, through the official kubernetes client.

Every change is a JSON merge patch (as ``kubectl patch --type merge`` sends), followed by waiting until
KServe's status shows the asked-for split on ready revisions — only then does the registry move.

Serverless (Knative): a canary is a patch of ``storageUri`` + the version annotation + ``canaryTrafficPercent``;
KServe sends P % to the new (latest ready) revision and the rest to ``latestRolledoutRevision``. Promote removes
the field; abort sets it to 0, which routes everything back to the rolled-out revision without a new one.
Standard: the canary is ``spec.canary[0]`` with its own predictor and ``trafficPercent``; promote makes that
predictor the stable one and drops the canary list; abort drops the list.
See ``../shared/CLUSTER_FACTS.md`` §1–2 for the status fields read here and their upstream sources.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from kubernetes.client import ApiClient, CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from driftloop.ct_params import LOGGER_SETTINGS
from driftloop.deploy.base import Deployment, DeploymentError, ServedTraffic
from driftloop.deploy.inference_service import (
    GROUP,
    PLURAL,
    VERSION,
    VERSION_ANNOTATION,
    ServingConfig,
    build_inference_service,
    canary_predictor,
    predictor_spec,
    to_dict,
)
from driftloop.errors import ConfigError, DriftloopError
from driftloop.registry import PRODUCTION, ModelRegistry, ModelVersion
from driftloop.rollout.metrics import ServingTarget

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def kube_api_client(context: str | None = None) -> ApiClient:
    """In a pod: its ServiceAccount; elsewhere the kubeconfig (``KUBECONFIG`` or ~/.kube/config)."""
    from kubernetes import config as kube_config

    try:
        kube_config.load_incluster_config()
    except kube_config.ConfigException:
        try:
            kube_config.load_kube_config(context=context)
        except (kube_config.ConfigException, FileNotFoundError) as exc:
            raise ConfigError(f"no Kubernetes configuration (in-cluster or kubeconfig): {exc}") from None
    return ApiClient()


def own_namespace(context: str | None = None) -> str:
    """The namespace this process runs in (a pipeline pod's), else the kubeconfig context's."""
    if SERVICE_ACCOUNT_NAMESPACE.is_file():
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    from kubernetes import config as kube_config

    try:
        _, active = kube_config.list_kube_config_contexts()
    except (kube_config.ConfigException, FileNotFoundError):
        active = None
    namespace = ((active or {}).get("context") or {}).get("namespace")
    if not namespace:
        raise ConfigError("no serving namespace given and none to infer (not in a pod; the kubeconfig context "
                          "names none): set serving_namespace / --namespace")
    return namespace


class KServeDeployment(Deployment):
    """Serves versions as one InferenceService per model in one namespace.

    Args:
        api_client: A configured kubernetes ``ApiClient`` (see :func:`kube_api_client`).
        config: Namespace, mode, identity and logger of the InferenceServices.
        ready_timeout: Seconds a change may take to show on ready revisions before it counts as failed.
        poll_interval: Seconds between status reads while waiting.
    """

    def __init__(self, registry: ModelRegistry, api_client: ApiClient, config: ServingConfig, *,
                 actor: str = "driftloop", ready_timeout: float = 600.0, poll_interval: float = 2.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        super().__init__(registry, actor)
        self.api_client = api_client  # also who asks the API server who we are (driftloop.identity)
        self.api = CustomObjectsApi(api_client)
        self.config = config
        self.ready_timeout = ready_timeout
        self.poll_interval = poll_interval
        self.sleep = sleep

    target = "kserve"

    def serving(self) -> dict:
        return {"target": self.target, "namespace": self.config.namespace,
                "deployment_mode": self.config.deployment_mode, "service_account": self.config.service_account,
                **{name: getattr(self.config, name) for name in LOGGER_SETTINGS}}

    # -- the Kubernetes API -----------------------------------------------------------------------

    def _call(self, what: str, fn, *args, **kwargs):
        from urllib3.exceptions import HTTPError

        try:
            return fn(GROUP, VERSION, self.config.namespace, PLURAL, *args, **kwargs)
        except ApiException as exc:
            if exc.status == 404:
                raise
            raise DeploymentError(f"{what} failed: HTTP {exc.status} {_api_message(exc)}") from None
        except (HTTPError, OSError) as exc:
            raise DeploymentError(f"{what} failed: cannot reach the Kubernetes API ({type(exc).__name__})") from None

    def get(self, name: str) -> dict | None:
        """The InferenceService as the API server has it, or None."""
        try:
            return self._call(f"reading InferenceService {name}", self.api.get_namespaced_custom_object, name)
        except ApiException:
            return None

    def _create(self, body: dict) -> dict:
        return self._call(f"creating InferenceService {body['metadata']['name']}",
                          self.api.create_namespaced_custom_object, body)

    def _patch(self, name: str, patch: dict) -> dict:
        try:
            return self._call(f"patching InferenceService {name}", self.api.patch_namespaced_custom_object,
                              name, patch)
        except ApiException:
            raise DeploymentError(f"InferenceService {name} not found in namespace {self.config.namespace}") from None

    # -- the port's primitives --------------------------------------------------------------------

    def observe(self, model: str) -> ServedTraffic | None:
        obj = self.get(model)
        if obj is None:
            return None
        production = self.registry.aliases(model).get(PRODUCTION)
        return _standard_traffic(obj) if self.config.standard else _serverless_traffic(obj, production)

    def _serve(self, model: str, stable: ModelVersion, canary: ModelVersion | None, percent: int) -> ServedTraffic:
        current = self.get(model)
        if current is None:
            self._create(to_dict(build_inference_service(stable, self.config)))
            if not self.config.standard:
                self._wait_for_revision(model, previous="")
            return self._wait(model, stable, None, 100)
        if self.config.standard:
            return self._serve_standard(model, current, stable, canary, percent)
        return self._serve_serverless(model, current, stable, canary, percent)

    def _serve_serverless(self, model: str, current: dict, stable: ModelVersion, canary: ModelVersion | None,
                          percent: int) -> ServedTraffic:
        predictor = (current.get("spec") or {}).get("predictor") or {}
        in_spec = _annotated_version(predictor)
        production = self.registry.aliases(model).get(PRODUCTION)
        if (canary is None and stable.version == production and in_spec != stable.version
                and predictor.get("canaryTrafficPercent") is not None):
            # Abort: the canary's revision keeps 0 % and the rolled-out revision (production) takes everything
            # back, without a new revision.
            self._patch(model, {"spec": {"predictor": {"canaryTrafficPercent": 0}}})
            return self._wait(model, stable, None, 100)
        newest = canary or stable
        if in_spec != newest.version:
            # A new version is a new revision, and `latestRevision: true` resolves to the latest *ready* one:
            # until the new revision is ready, its share would go to the previous latest — after an abort, the
            # aborted revision. So it enters at 0 % (the rolled-out revision keeps everything) and takes its share
            # only once it is ready. The serving settings go with it as configured.
            previous = _predictor_status(current).get("latestCreatedRevision", "")
            entering = {"canaryTrafficPercent": 0, **_predictor_patch(predictor_spec(newest, self.config))}
            self._patch(model, {"spec": {"predictor": entering}})
            self._wait_for_revision(model, previous)
        self._patch(model, {"spec": {"predictor": {"canaryTrafficPercent": percent if canary is not None else None}}})
        return self._wait(model, stable, canary, percent if canary else 100)

    def _wait_for_revision(self, model: str, previous: str) -> None:
        """Polls until a revision newer than ``previous`` is created and ready; fails when KServe says it failed.

        The revision is identified by name: status.observedGeneration is the Knative Service's generation, not
        the InferenceService's (PropagateStatus), so it cannot tell whether this change was seen."""
        deadline = time.monotonic() + self.ready_timeout
        while True:
            obj = self.get(model) or {}
            status = _predictor_status(obj)
            created = status.get("latestCreatedRevision", "")
            if created and created != previous:
                if status.get("latestReadyRevision") == created:
                    return
                failure = _revision_failure(obj, created)
                if failure:
                    raise DeploymentError(f"InferenceService {model}: {failure}")
            if time.monotonic() > deadline:
                raise DeploymentError(f"InferenceService {model}: no new revision was ready within "
                                      f"{self.ready_timeout:.0f} s (latest created: {created or 'none'})")
            self.sleep(self.poll_interval)

    def _serve_standard(self, model: str, current: dict, stable: ModelVersion, canary: ModelVersion | None,
                        percent: int) -> ServedTraffic:
        spec = current.get("spec") or {}
        serving = _annotated_version(spec.get("predictor") or {})
        canaries = [_annotated_version(c.get("predictor") or {}) for c in spec.get("canary") or []]
        if canary is None and serving != stable.version and stable.version not in canaries:
            # A new stable version (a roll back) enters as a canary taking all traffic, so its Deployment is
            # seen ready before the stable predictor is renamed to it: Standard mode's status has no revision
            # names, and its observedGeneration follows the stable Deployment, not the spec.
            self._patch(model, {"spec": {"canary": [
                {"predictor": to_dict(canary_predictor(stable)), "trafficPercent": 100}]}})
            self._wait(model, self.registry.get_version(model, serving) if serving else stable, stable, 100)
        patch: dict = {"canary": None if canary is None else [
            {"predictor": to_dict(canary_predictor(canary)), "trafficPercent": percent}]}
        if serving != stable.version:
            # Promotion (or a roll back): the stable predictor becomes this version, under its own name, so its
            # already-running canary Deployment carries on as the stable one.
            patch["predictor"] = _predictor_patch(predictor_spec(stable, self.config, named=True))
        self._patch(model, {"spec": patch})
        return self._wait(model, stable, canary, percent if canary else 100, watch_failures=canary is not None)

    def _wait(self, model: str, stable: ModelVersion, canary: ModelVersion | None, canary_percent: int,
              watch_failures: bool = False) -> ServedTraffic:
        """Polls status until it shows ``stable`` (and ``canary`` at ``canary_percent``) on ready revisions.

        What the status shows is the confirmation: a split that differs from the one asked for is still being
        reconciled (or never will be, and the timeout says what it shows instead)."""
        deadline = time.monotonic() + self.ready_timeout
        while True:
            obj = self.get(model)
            traffic = None
            if obj is not None:
                traffic = (_standard_traffic(obj) if self.config.standard
                           else _serverless_traffic(obj, stable.version))
                failure = _canary_failure(obj) if watch_failures else None
                if failure:
                    raise DeploymentError(f"InferenceService {model}: {failure}")
                if _matches(traffic, stable, canary, canary_percent):
                    return traffic
            if time.monotonic() > deadline:
                raise DeploymentError(
                    f"InferenceService {model} did not reach "
                    f"{_describe_goal(stable, canary, canary_percent)} within {self.ready_timeout:.0f} s; "
                    f"it shows: {traffic.describe() if traffic else 'nothing'}")
            self.sleep(self.poll_interval)


def _predictor_patch(predictor) -> dict:
    """A merge patch that makes the predictor exactly ``predictor`` in the fields driftloop owns (a logger turned
    off is removed, not left behind, and so are the storage settings of a logger that moved to HTTP)."""
    body = to_dict(predictor)
    patch = {key: body.get(key) for key in ("name", "serviceAccountName", "annotations", "model", "logger")
             if key in body or key == "logger"}
    if patch["logger"] is not None:
        patch["logger"] = {**dict.fromkeys(("storage", "batchSize", "batchInterval")), **patch["logger"]}
    return patch


# -- reading KServe's status ----------------------------------------------------------------------------

def _annotated_version(predictor: dict) -> int | None:
    value = (predictor.get("annotations") or {}).get(VERSION_ANNOTATION)
    return int(value) if value and str(value).isdigit() else None


def _conditions(obj: dict) -> dict[str, dict]:
    return {c.get("type"): c for c in ((obj.get("status") or {}).get("conditions") or [])}


def _predictor_status(obj: dict) -> dict:
    return ((obj.get("status") or {}).get("components") or {}).get("predictor") or {}


def _revision_failure(obj: dict, revision: str) -> str | None:
    """Why ``revision`` cannot serve, when KServe says it failed (Knative's RevisionFailed names it), not merely
    that it is still starting."""
    for condition in _conditions(obj).values():
        if condition.get("status") == "False" and revision in (condition.get("message") or ""):
            return f"{condition.get('type')} is False ({condition.get('reason', 'no reason')}): {condition['message']}"
    failure = ((obj.get("status") or {}).get("modelStatus") or {}).get("lastFailureInfo") or {}
    if failure.get("modelRevisionName") == revision and failure.get("message"):
        return f"revision {revision} failed ({failure.get('reason', '')}): {failure['message']}"
    return None


def _canary_failure(obj: dict) -> str | None:
    """Why a Standard-mode canary cannot serve, when KServe's status says its model failed to load."""
    for canary in (obj.get("status") or {}).get("canaryStatuses") or []:
        failure = (canary.get("modelStatus") or {}).get("lastFailureInfo") or {}
        if failure.get("message") and not canary.get("ready"):
            return f"canary {canary.get('name')} failed ({failure.get('reason', '')}): {failure['message']}"
    return None


def _serverless_traffic(obj: dict, stable_version: int | None) -> ServedTraffic:
    """Serverless status → versions. The spec's annotated version runs on the latest created revision; any
    other revision taking traffic is the rolled-out one, serving ``stable_version`` (the registry's production).
    Knative routes only to ready revisions, so every revision in ``traffic`` is ready."""
    status = obj.get("status") or {}
    predictor = (status.get("components") or {}).get("predictor") or {}
    spec_version = _annotated_version((obj.get("spec") or {}).get("predictor") or {})
    ready = (_conditions(obj).get("Ready") or {}).get("status") == "True"
    latest_created = predictor.get("latestCreatedRevision", "")
    shares: dict[str, int] = {}
    for entry in predictor.get("traffic") or []:  # one revision may appear twice (tag prev and latest)
        name = entry.get("revisionName", "")
        shares[name] = shares.get(name, 0) + int(entry.get("percent") or 0)

    def target(revision: str, share: int) -> ServingTarget:
        version = spec_version if revision == latest_created else stable_version
        return ServingTarget(version if version is not None else 0, share, revision)

    targets = sorted((target(r, s) for r, s in shares.items() if s > 0), key=lambda t: -t.percent)
    name = obj["metadata"]["name"]
    detail = "" if ready else _message(obj)
    if not targets:
        return ServedTraffic(name, None, None, ready, detail)
    canary = next((t for t in targets if t.revision == latest_created), None) if len(targets) > 1 else None
    stable = next(t for t in targets if t is not canary)
    return ServedTraffic(name, stable, canary, ready, detail)


def _standard_traffic(obj: dict) -> ServedTraffic:
    """Standard status → versions: the stable predictor and each ready canary by its predictor name."""
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    conditions = _conditions(obj)
    stable_version = _annotated_version(spec.get("predictor") or {})
    ready = (conditions.get("Ready") or {}).get("status") == "True"
    name = obj["metadata"]["name"]
    if stable_version is None:
        return ServedTraffic(name, None, None, ready)
    canary = None
    canary_share = 0
    states = {state.get("name"): state for state in status.get("canaryStatuses") or []}
    for entry in spec.get("canary") or []:
        predictor = entry.get("predictor") or {}
        version, state = _annotated_version(predictor), states.get(predictor.get("name"), {})
        # The HTTPRoute gives a canary its weight only once its Deployment is ready (applyCanaryWeights).
        share = int(state.get("trafficPercent") or 0) if state.get("ready") else 0
        canary_share += share
        if version is not None and canary is None:
            canary = ServingTarget(version, share, f"{name}-{predictor.get('name')}-predictor", bool(state.get("ready")))
    stable_name = (spec.get("predictor") or {}).get("name")
    deployment = f"{name}-{stable_name}-predictor" if stable_name else f"{name}-predictor"
    predictor_ready = (conditions.get("PredictorReady") or {}).get("status") == "True"  # the stable Deployment
    stable = ServingTarget(stable_version, 100 - canary_share, deployment, predictor_ready)
    return ServedTraffic(name, stable, canary, ready, _message(obj) if not ready else "")


def _matches(traffic: ServedTraffic, stable: ModelVersion, canary: ModelVersion | None, percent: int) -> bool:
    """Whether what serves is what was asked for, on ready targets. The InferenceService's own Ready may be False
    meanwhile: an aborted canary's failed revision keeps it so while the stable revision serves everything."""
    if traffic.stable is None or not traffic.stable.ready:
        return False
    if canary is None:
        return traffic.canary is None and traffic.stable.version == stable.version and traffic.stable.percent == 100
    return (traffic.canary is not None and traffic.canary.version == canary.version and traffic.canary.ready
            and traffic.canary.percent == percent and traffic.stable.version == stable.version)


def _describe_goal(stable: ModelVersion, canary: ModelVersion | None, percent: int) -> str:
    if canary is None:
        return f"v{stable.version} at 100%"
    return f"v{canary.version} at {percent}% beside v{stable.version}"


def _message(obj: dict) -> str:
    for condition in _conditions(obj).values():
        if condition.get("status") != "True" and condition.get("message"):
            return f"{condition.get('type')}: {condition['message']}"
    return ""


def _api_message(exc: ApiException) -> str:
    import json

    try:
        return json.loads(exc.body).get("message") or exc.reason
    except (TypeError, ValueError, AttributeError):
        return str(exc.reason)


def serving_config_for(namespace: str, deployment_mode: str, service_account: str, context: str | None = None,
                       **logger) -> ServingConfig:
    """A ServingConfig whose namespace defaults to the one this process runs in.

    Args:
        logger: The payload logger's settings (:data:`~driftloop.ct_params.LOGGER_SETTINGS`).
    """
    return ServingConfig(namespace=namespace or own_namespace(context), service_account=service_account,
                         deployment_mode=deployment_mode, **logger)


__all__ = ["DriftloopError", "KServeDeployment", "kube_api_client", "own_namespace", "serving_config_for"]
