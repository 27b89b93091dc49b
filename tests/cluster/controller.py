"""KServe's InferenceService controller, driving the emulated Knative and Deployment controllers.

Follows kserve ``pkg/controller/v1beta1/inferenceservice/controller.go`` (``Reconcile``: finalizer, deployment
mode with the status's sticky ``deploymentMode`` first, predictor, ``Stopped``, cross-component conditions in
Knative mode, ingress, ``updateStatus`` only when the status changed), ``components/predictor.go``
(``Reconcile``, ``reconcileCanaryDeployments``, ``canaryReplicaCount``, ``buildCanaryPredictor``),
``reconcilers/knative/ksvc_reconciler.go`` (``createKnativeService``: the traffic KServe writes from
``canaryTrafficPercent`` and ``latestRolledoutRevision``, the autoscaling annotations; the ksvc status KServe
propagates is the one the ksvc had *before* Knative saw the new spec), ``reconcilers/ingress/ingress_reconciler.go``
and ``httproute_reconciler.go`` (``IngressReady``, URLs, ``applyCanaryWeights``).

Like controller-runtime, one worker takes keys from a de-duplicating queue: ``("isvc", ns, name)`` for the KServe
controller, ``("ksvc", ns, name)`` for Knative's controllers. Watches enqueue them: API writes to
InferenceServices and runtimes, ksvc status changes (KServe owns its ksvcs), pod changes (Knative owns its
revisions' pods, KServe the Deployments'). A failed reconcile is retried with exponential backoff.
"""

from __future__ import annotations

import copy
import logging
import math
import threading
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from . import isvc_status
from .deployments import Deployment
from .ingress import Ingress, Route
from .knative import SCALE_DOWN_GRACE, Endpoint, KnativeService, Revision
from .runtimes import (
    CLUSTER_SERVING_RUNTIMES,
    INFERENCE_SERVICES,
    SERVING_RUNTIMES,
    InvalidSpec,
    build_predictor,
    predictor_service_name,
)
from .store import ApiError, ObjectStore, WatchEvent
from .webhooks import DEPLOYMENT_MODE

FINALIZER = "inferenceservice.finalizers"
ENABLE_TAG_ROUTING = "serving.kserve.io/enable-tag-routing"
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClusterConfig:
    """What the ``inferenceservice-config`` ConfigMap and Knative's config would say."""

    domain: str = "example.com"               # ingress.ingressDomain / Knative config-domain
    default_deployment_mode: str = "Serverless"  # deploy.defaultDeploymentMode as shipped
    progress_deadline: float = 60.0           # Knative/Deployment progress deadline (600 s in a cluster)


class Requeue(Exception):
    """A reconcile that could not finish (the status says why) and is retried with backoff."""


class WorkQueue:
    """client-go's workqueue: a key is queued at most once and never handled by two workers at once."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: deque = deque()
        self._pending: set = set()
        self._busy = 0

    def add(self, key: tuple) -> None:
        with self._cond:
            if key not in self._pending:
                self._pending.add(key)
                self._queue.append(key)
                self._cond.notify_all()

    def add_after(self, key: tuple, delay: float) -> None:
        timer = threading.Timer(delay, self.add, args=(key,))
        timer.daemon = True
        timer.start()

    def get(self, timeout: float) -> tuple | None:
        with self._cond:
            if not self._queue:
                self._cond.wait(timeout)
            if not self._queue:
                return None
            key = self._queue.popleft()
            self._pending.discard(key)
            self._busy += 1
            return key

    def done(self) -> None:
        with self._cond:
            self._busy -= 1
            self._cond.notify_all()

    def idle(self) -> bool:
        with self._cond:
            return not self._queue and not self._busy


@dataclass
class Controller:
    store: ObjectStore
    config: ClusterConfig
    ingress: Ingress
    start_revision_pod: Callable[[KnativeService, Revision, Callable], Endpoint]
    start_deployment_pod: Callable[[Deployment, str, Callable], Endpoint]
    on_pods_changed: Callable[[], None]
    queue: WorkQueue = field(default_factory=WorkQueue)
    ksvcs: dict[tuple[str, str], KnativeService] = field(default_factory=dict)
    deployments: dict[tuple[str, str], Deployment] = field(default_factory=dict)
    check_status: Callable[[dict], object] | None = None  # the CRD schema, applied to what the controller writes
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._failures: dict[tuple, int] = {}
        self._retiring: list[tuple[threading.Timer, Deployment]] = []  # deleted, pod not yet terminated
        self._thread = threading.Thread(target=self._run, name="kserve-controller", daemon=True)
        self.store.subscribe(self._on_event)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        for ksvc in self.ksvcs.values():
            ksvc.stop()
        for deployment in self.deployments.values():
            deployment.stop()
        for timer, deployment in self._retiring:  # no pod outlives the cluster
            timer.cancel()
            deployment.stop()

    def _on_event(self, event: WatchEvent) -> None:
        meta = event.object["metadata"]
        if event.rtype == INFERENCE_SERVICES:
            self.queue.add(("isvc", meta["namespace"], meta["name"]))
        elif event.rtype in (SERVING_RUNTIMES, CLUSTER_SERVING_RUNTIMES):
            for isvc in self.store.list(INFERENCE_SERVICES, None)[0]:
                self.queue.add(("isvc", isvc["metadata"]["namespace"], isvc["metadata"]["name"]))

    def _run(self) -> None:
        while not self._stop.is_set():
            key = self.queue.get(timeout=0.2)
            if key is None:
                continue
            try:
                if key[0] == "isvc":
                    self._reconcile_isvc(key[1], key[2])
                else:
                    self._reconcile_ksvc(key[1], key[2])
                self._failures.pop(key, None)
            except Requeue:
                self._retry(key)
            except Exception:  # noqa: BLE001 - a controller logs, backs off and retries
                self.errors.append(traceback.format_exc())
                _log.exception("reconcile %s failed", key)
                self._retry(key)
            finally:
                self.queue.done()
                self.on_pods_changed()

    def _retry(self, key: tuple) -> None:
        failures = self._failures[key] = self._failures.get(key, 0) + 1
        self.queue.add_after(key, min(0.1 * 2 ** failures, 5.0))

    # -- Knative -------------------------------------------------------------------------------------------------

    def _reconcile_ksvc(self, namespace: str, name: str) -> None:
        ksvc = self.ksvcs.get((namespace, name))
        if ksvc is None:
            return
        if ksvc.reconcile():
            self.queue.add(("isvc", namespace, ksvc.owner))
        self._publish_serverless_route(namespace, ksvc.owner)

    def _ksvc_pod(self, ksvc: KnativeService, revision: Revision) -> Endpoint:
        return self.start_revision_pod(ksvc, revision, lambda _pod: self.queue.add(("ksvc", ksvc.namespace, ksvc.name)))

    def _deployment_pod(self, deployment: Deployment, pod_name: str) -> Endpoint:
        return self.start_deployment_pod(deployment, pod_name,
                                         lambda _pod: self.queue.add(("isvc", deployment.namespace, deployment.owner)))

    # -- KServe --------------------------------------------------------------------------------------------------

    def _reconcile_isvc(self, namespace: str, name: str) -> None:
        try:
            isvc = self.store.get(INFERENCE_SERVICES, namespace, name)
        except ApiError:
            return self._forget(namespace, name)
        meta = isvc["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        if meta.get("deletionTimestamp"):
            self._forget(namespace, name)
            if FINALIZER in finalizers:
                meta["finalizers"] = [f for f in finalizers if f != FINALIZER]
                self._write(isvc, None)
            return
        if FINALIZER not in finalizers:
            meta["finalizers"] = [*finalizers, FINALIZER]
            isvc = self._write(isvc, None)
            if isvc is None:
                return
        old_status = isvc.get("status") or {}
        status = copy.deepcopy(old_status)
        managed = isvc_status.conditions(status)
        if managed.get("Ready") is None:
            managed.initialize()
        mode = deployment_mode(status.get("deploymentMode", ""), meta.get("annotations") or {},
                               self.config.default_deployment_mode)
        try:
            if mode == "Standard":
                self._reconcile_standard(isvc, status)
            else:
                self._reconcile_serverless(isvc, status)
        except InvalidSpec as exc:  # "fails to reconcile component": status written, retried with backoff
            isvc_status.invalid_spec(status, exc.reason, exc.message)
            status["deploymentMode"] = mode
            self._write_status(isvc, status, old_status)
            raise Requeue(str(exc)) from None
        if managed.get("Stopped") is None:
            managed.mark_false("Stopped")
        if mode == "Knative":
            isvc_status.propagate_cross_component(status, "RoutesReady", "PredictorRouteReady")
            isvc_status.propagate_cross_component(status, "LatestDeploymentReady", "PredictorConfigurationReady")
            self._serverless_ingress(isvc, status)
        else:
            self._standard_ingress(isvc, status)
        status["deploymentMode"] = mode
        self._write_status(isvc, status, old_status)
        if mode == "Knative":
            self._publish_serverless_route(namespace, name)

    def _write(self, isvc: dict, status: dict | None) -> dict | None:
        """``client.Patch``/``Status().Update`` with the resourceVersion read; a conflict requeues."""
        meta = isvc["metadata"]
        try:
            if status is None:
                return self.store.replace(INFERENCE_SERVICES, meta["namespace"], meta["name"], isvc)
            if self.check_status is not None:
                self.check_status({**isvc, "status": status})
            return self.store.replace(INFERENCE_SERVICES, meta["namespace"], meta["name"], {**isvc, "status": status},
                                      subresource="status")
        except ApiError as exc:
            if exc.code not in (404, 409):
                raise
            self.queue.add(("isvc", meta["namespace"], meta["name"]))
            return None

    def _write_status(self, isvc: dict, status: dict, old_status: dict) -> None:
        if status != old_status:  # inferenceServiceStatusEqual: nothing changed, nothing written
            self._write(isvc, status)

    def _forget(self, namespace: str, name: str) -> None:
        """Owned objects go with their InferenceService (owner references, garbage collection)."""
        for key, ksvc in list(self.ksvcs.items()):
            if (ksvc.namespace, ksvc.owner) == (namespace, name):
                ksvc.stop()
                del self.ksvcs[key]
        for key, deployment in list(self.deployments.items()):
            if (deployment.namespace, deployment.owner) == (namespace, name):
                deployment.stop()
                del self.deployments[key]
        self.ingress.set_route((namespace, name), None)

    # -- Knative mode --------------------------------------------------------------------------------------------

    def _reconcile_serverless(self, isvc: dict, status: dict) -> None:
        meta, predictor = isvc["metadata"], isvc["spec"]["predictor"]
        namespace, name = meta["namespace"], meta["name"]
        resources = build_predictor(self.store, isvc)
        _record_runtime(status, resources.runtime)
        template = resources.template()
        annotations = template["metadata"]["annotations"]
        annotations.setdefault("autoscaling.knative.dev/class", "kpa.autoscaling.knative.dev")
        annotations["autoscaling.knative.dev/min-scale"] = str(predictor.get("minReplicas", 1))
        if predictor.get("maxReplicas"):
            annotations["autoscaling.knative.dev/max-scale"] = str(predictor["maxReplicas"])
        for field_name in ("timeoutSeconds", "containerConcurrency"):
            if field_name in predictor:
                template["spec"][field_name] = predictor[field_name]
        traffic = ksvc_traffic(predictor.get("canaryTrafficPercent"),
                               status.get("components", {}).get("predictor", {}).get("latestRolledoutRevision", ""),
                               (meta.get("annotations") or {}).get(ENABLE_TAG_ROUTING) == "true")
        key = (namespace, resources.name)
        for other_key, other in list(self.ksvcs.items()):
            if (other.namespace, other.owner) == (namespace, name) and other_key != key:
                other.stop()
                del self.ksvcs[other_key]
        ksvc = self.ksvcs.get(key)
        if ksvc is None:  # r.client.Create(desired): KServe propagates the empty status of the new object
            ksvc = self.ksvcs[key] = KnativeService(resources.name, namespace, name, self.config.domain,
                                                    self._ksvc_pod)
            ksvc.update_spec(template, traffic)
            ksvc_status: dict = {}
            self.queue.add(("ksvc", namespace, resources.name))
        else:  # r.client.Update(existing): the status is the ksvc's current one, before Knative acts on it
            ksvc_status = copy.deepcopy(ksvc.status)
            if ksvc.update_spec(template, traffic):
                self.queue.add(("ksvc", namespace, resources.name))
        isvc_status.propagate_status(status, ksvc_status)
        latest = ksvc.revisions.get(status.get("components", {}).get("predictor", {}).get("latestCreatedRevision", ""))
        isvc_status.propagate_model_status(status, latest.pod if latest else None, raw=False, ksvc_status=ksvc_status,
                                           termination_messages=True)

    def _serverless_ingress(self, isvc: dict, status: dict) -> None:
        meta = isvc["metadata"]
        managed = isvc_status.conditions(status)
        if not managed.is_true("PredictorReady"):  # createIngress: no VirtualService yet
            unknown = managed.is_unknown("PredictorReady")
            (managed.mark_unknown if unknown else managed.mark_false)("IngressReady", "Predictor ingress not created")
        if status.get("components", {}).get("predictor", {}).get("url"):
            status["url"] = f"http://{meta['name']}.{meta['namespace']}.{self.config.domain}"
            status["address"] = {"url": f"http://{meta['name']}.{meta['namespace']}.svc.cluster.local"}
            managed.mark_true("IngressReady")

    def _publish_serverless_route(self, namespace: str, name: str) -> None:
        ksvc = next((k for k in self.ksvcs.values() if (k.namespace, k.owner) == (namespace, name)), None)
        if ksvc is None:
            return
        traffic = ksvc.route_status["traffic"]
        if not traffic:
            return self.ingress.set_route((namespace, name), None)
        domain = self.config.domain
        hosts = {f"{ksvc.name}.{namespace}.{domain}"}
        try:
            if (self.store.get(INFERENCE_SERVICES, namespace, name).get("status") or {}).get("url"):
                hosts |= {f"{name}.{namespace}.{domain}"}  # the VirtualService exists once the ISVC has a URL
        except ApiError:
            return
        weights: dict[str, int] = {}
        for target in traffic:
            weights[target["revisionName"]] = weights.get(target["revisionName"], 0) + target.get("percent", 0)
        tags = {f"{t['tag']}-{ksvc.name}.{namespace}.{domain}": ksvc.revisions[t["revisionName"]]
                for t in traffic if t.get("tag")}
        self.ingress.set_route((namespace, name), Route(
            hosts, f"/serving/{namespace}/{name}", [(ksvc.revisions[r], w) for r, w in weights.items()], tags))

    # -- Standard mode -------------------------------------------------------------------------------------------

    def _deployment(self, namespace: str, name: str, owner: str) -> Deployment:
        deployment = self.deployments.get((namespace, name))
        if deployment is None:
            deployment = self.deployments[(namespace, name)] = Deployment(
                name, namespace, owner, self._deployment_pod, self.config.progress_deadline)
        return deployment

    def _reconcile_standard(self, isvc: dict, status: dict) -> None:
        meta, spec = isvc["metadata"], isvc["spec"]
        namespace, name = meta["namespace"], meta["name"]
        stable = spec["predictor"]
        stable_resources = build_predictor(self.store, isvc)
        _record_runtime(status, stable_resources.runtime)
        expected = {stable_resources.name}
        canaries = spec.get("canary") or []
        canary_statuses = []
        for canary in canaries:  # reconcileCanaryDeployments: canaries first
            replicas = canary_replica_count(stable, canary)
            resources = build_predictor(self.store, isvc, build_canary_predictor(stable, canary, replicas))
            expected.add(resources.name)
            deployment = self._deployment(namespace, resources.name, name)
            deployment.apply(resources.template(), replicas)
            deployment.sync()
            canary_statuses.append({"name": canary["predictor"]["name"],
                                    "ready": deployment.status()["availableReplicas"] > 0,
                                    "trafficPercent": canary.get("trafficPercent", 0)})
        managed = isvc_status.conditions(status)
        if canaries:
            status["canaryStatuses"] = canary_statuses
            ready = all(c["ready"] for c in canary_statuses)
            (managed.mark_true if ready else managed.mark_false)(
                "CanaryPredictorReady", "AllCanariesReady" if ready else "CanariesNotReady")
        else:
            status.pop("canaryStatuses", None)
            managed.clear("CanaryPredictorReady")
        for key, deployment in list(self.deployments.items()):  # orphaned predictor Deployments are deleted
            if (deployment.namespace, deployment.owner) == (namespace, name) and deployment.name not in expected:
                # Deleted now, its pod terminated after a grace period: the HTTPRoute no longer sends it traffic,
                # and requests already routed to it complete (terminationGracePeriodSeconds; a preStop sleep).
                retire = threading.Timer(SCALE_DOWN_GRACE, deployment.stop)
                retire.daemon = True
                retire.start()
                self._retiring.append((retire, deployment))
                del self.deployments[key]
        ready_canary_replicas = sum(canary_replica_count(stable, c) for c, s in zip(canaries, canary_statuses)
                                    if s["ready"])
        replicas = stable.get("minReplicas", 1)
        if ready_canary_replicas:
            replicas = max(replicas - ready_canary_replicas, 1)  # adjustStableMinReplicasForCanaries
        deployment = self._deployment(namespace, stable_resources.name, name)
        deployment.apply(stable_resources.template(), replicas)
        deployment.sync()
        isvc_status.propagate_raw_status(status, deployment.status(),
                                         f"http://{stable_resources.name}-{namespace}.{self.config.domain}")
        isvc_status.propagate_model_status(status, deployment.newest_pod, raw=True, ksvc_status=None,
                                           termination_messages=False)

    def _standard_ingress(self, isvc: dict, status: dict) -> None:
        meta, spec = isvc["metadata"], isvc["spec"]
        namespace, name = meta["namespace"], meta["name"]
        managed = isvc_status.conditions(status)
        stable = self.deployments[(namespace, predictor_service_name(name, spec["predictor"].get("name", "")))]
        if managed.is_true("PredictorReady"):  # createRawPredictorHTTPRoute + applyCanaryWeights
            canaries = spec.get("canary") or []
            ready = {c["name"] for c in status.get("canaryStatuses") or [] if c["ready"]}
            backends = []
            for canary in canaries:
                canary_name = canary["predictor"]["name"]
                if canary_name in ready:
                    backends.append((self.deployments[(namespace, predictor_service_name(name, canary_name))],
                                     canary.get("trafficPercent", 0)))
            stable_weight = 100 - sum(w for _, w in backends)
            domain = self.config.domain
            self.ingress.set_route((namespace, name), Route(
                {f"{name}-{namespace}.{domain}", f"{name}-predictor-{namespace}.{domain}", f"{name}.{namespace}.{domain}"},
                f"/serving/{namespace}/{name}", [(stable, stable_weight), *backends]))
        if self.ingress.route_for((namespace, name)) is not None:
            managed.mark_true("IngressReady")
        else:
            managed.mark_false("IngressReady", "Predictor ingress not created")
        status["url"] = f"http://{name}-{namespace}.{self.config.domain}"
        status["address"] = {"url": f"http://{stable.name}.{namespace}.svc.cluster.local"}


def deployment_mode(recorded: str, annotations: dict, default: str) -> str:
    """``GetDeploymentMode``: status first, then the annotation, then the ConfigMap default; legacy names mapped."""
    legacy = {"RawDeployment": "Standard", "Serverless": "Knative"}
    if recorded:
        return legacy.get(recorded, recorded)
    mode = legacy.get(annotations.get(DEPLOYMENT_MODE, ""), annotations.get(DEPLOYMENT_MODE, ""))
    if mode in ("Standard", "Knative", "ModelMesh"):
        return mode
    return legacy.get(default, default)


def ksvc_traffic(percent: int | None, rolled_out: str, tag_latest: bool) -> list[dict]:
    """``createKnativeService``: the traffic KServe writes into the ksvc spec."""
    latest: dict = {"latestRevision": True}
    if tag_latest:
        latest["tag"] = "latest"
    if percent is not None and rolled_out:
        targets = [{**latest, "percent": percent}]
        if percent < 100:
            targets.append({"revisionName": rolled_out, "latestRevision": False, "percent": 100 - percent,
                            "tag": "prev"})
        return targets
    return [{**latest, "percent": 100}]  # blue-green: the first rollout ignores canaryTrafficPercent


def canary_replica_count(stable: dict, canary: dict) -> int:
    """``canaryReplicaCount``: the canary's minReplicas, else ceil(stable minReplicas × percent / 100)."""
    if "minReplicas" in canary["predictor"]:
        return canary["predictor"]["minReplicas"]
    return math.ceil(stable.get("minReplicas", 1) * canary.get("trafficPercent", 0) / 100)


def build_canary_predictor(stable: dict, canary: dict, replicas: int) -> dict:
    """``buildCanaryPredictor``: the stable spec with the canary's non-empty fields merged over it (mergo
    ``WithOverride``: maps merged key by key, lists and scalars replaced), autoscaling cleared."""
    merged = _mergo(copy.deepcopy(stable), canary["predictor"])
    for cleared in ("maxReplicas", "scaleTarget", "scaleMetric", "autoScaling"):
        merged.pop(cleared, None)
    merged["minReplicas"] = replicas
    return merged


def _mergo(target: dict, source: dict) -> dict:
    for key, value in source.items():
        if value in (None, "", 0, False, [], {}):
            continue  # mergo never overrides with an empty value
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            target[key] = _mergo(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


def _record_runtime(status: dict, runtime) -> None:
    if runtime.cluster_scoped:
        status["clusterServingRuntimeName"] = runtime.name
        status.pop("servingRuntimeName", None)
    else:
        status["servingRuntimeName"] = runtime.name
        status.pop("clusterServingRuntimeName", None)

