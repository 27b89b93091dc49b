"""Knative Serving for one Knative Service: Configuration, Revisions (each a pod), Route, and their status.

Follows knative/serving @ HEAD (``98e5ef90aa70``):

- ``pkg/reconciler/configuration/configuration.go``: each change of ``spec.template`` bumps the Configuration's
  generation and creates revision ``<name>-<generation, 5 digits>`` (``resources/revision.go``); a traffic-only
  change creates none. ``latestCreatedRevisionName`` is the newest revision; ``latestReadyRevisionName`` the
  newest *ready* one not older than the current one (``findAndSetLatestReadyRevision``); a failed latest
  revision makes the Configuration ``Ready: False`` (``RevisionFailed``, "Revision %q failed with message: %s.").
- ``pkg/reconciler/revision/reconcile_resources.go`` and ``pkg/apis/serving/v1/revision_lifecycle.go``: a pod
  being deployed is ``Deploying``; a terminated user container is ``ContainerHealthy: False`` with reason
  ``ExitCode<n>`` and message "Container failed with: <termination message>"; no ready pod within the progress
  deadline (``serving.knative.dev/progress-deadline`` on the template, else the cluster's) is
  ``ResourcesAvailable: False`` (``ProgressDeadlineExceeded``, "Initial scale was never achieved").
  Init-container failures are not read by Knative, only the deadline catches them.
- ``pkg/reconciler/route/traffic/traffic.go``, ``errors.go`` and ``route.go``: ``latestRevision: true`` resolves
  to the Configuration's latest ready revision; a target that does not resolve to a ready revision marks
  ``AllTrafficAssigned`` (Unknown while waiting, False on failure, reason ``RevisionMissing``) and the Route
  keeps its previous traffic; otherwise ``status.traffic`` lists every target with ``revisionName`` resolved,
  ``percent``, ``latestRevision`` and, for tagged targets only, ``url`` (host ``<tag>-<service>.<ns>.<domain>``).
- ``pkg/reconciler/service/service.go`` and ``service_lifecycle.go``: the Service status copies the
  Configuration's and Route's fields; ``ConfigurationsReady`` and ``RoutesReady`` make ``Ready``.
- Scaling: revisions that the Route does not reference (and that are neither latest created nor latest ready)
  are unreachable and scale to zero even with ``min-scale`` set; their pod keeps running for a grace period first
  (Knative's ``scale-to-zero-grace-period``, 30 s; ``SCALE_DOWN_GRACE`` here), so requests the ingress routed to
  it before the Route changed complete, and a revision that becomes reachable again within it keeps its pod; a
  reachable revision without a pod gets one again (a cold start).
"""

from __future__ import annotations

import copy
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from .conditions import FALSE, TRUE, UNKNOWN, ConditionSet
from .logger_agent import LoggerAgent
from .pods import Phase, Pod
from .queue_proxy import RevisionMetrics

REVISION_CONDITIONS = ConditionSet("ResourcesAvailable", "ContainerHealthy")
SCALE_DOWN_GRACE = 3.0  # seconds an unreachable revision keeps serving (Knative: scale-to-zero-grace-period 30 s)
CONFIGURATION_CONDITIONS = ConditionSet()
ROUTE_CONDITIONS = ConditionSet("AllTrafficAssigned", "IngressReady", "CertificateProvisioned")
SERVICE_CONDITIONS = ConditionSet("ConfigurationsReady", "RoutesReady")
_HASH_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # k8s.io/apimachinery rand.SafeEncodeString alphabet


def pod_suffix(length: int) -> str:
    return "".join(random.choices(_HASH_CHARS, k=length))


@dataclass
class Endpoint:
    """Where the ingress sends one request: a ready pod with its queue-proxy metrics and logger agent."""

    pod: Pod
    metrics: RevisionMetrics | None
    agent: LoggerAgent | None


@dataclass
class Revision:
    """A Knative Revision: an immutable pod template, its pod when scaled up, and its conditions."""

    name: str
    namespace: str
    service: str
    generation: int
    template: dict
    conditions: list[dict] = field(default_factory=list)
    instance: Endpoint | None = None  # the pod while scaled up (one replica)
    retiring: threading.Timer | None = field(default=None, compare=False, repr=False)  # scale-down pending

    @property
    def configuration(self) -> str:
        return self.service  # a Knative Service names its Configuration after itself

    @property
    def ready(self) -> bool:
        return REVISION_CONDITIONS.manage(self.conditions).is_true("Ready")

    @property
    def ready_condition(self) -> dict:
        return REVISION_CONDITIONS.manage(self.conditions).get("Ready") or {"status": UNKNOWN}

    @property
    def pod(self) -> Pod | None:
        return self.instance.pod if self.instance else None

    def endpoint(self) -> Endpoint | None:
        """The ingress backend: the ready pod, if any."""
        instance = self.instance
        return instance if instance is not None and instance.pod.ready else None

    def starting(self) -> bool:
        pod = self.pod
        return pod is not None and pod.phase in (Phase.INITIALIZING, Phase.STARTING)

    def observe_pod(self) -> None:
        """The revision reconciler: conditions from the pod (a scaled-to-zero revision keeps its last ones)."""
        conditions = REVISION_CONDITIONS.manage(self.conditions)
        conditions.initialize()
        pod = self.pod
        if pod is None or pod.phase is Phase.TERMINATED:
            return
        if pod.phase is Phase.READY:
            conditions.mark_true("ResourcesAvailable")
            conditions.mark_true("ContainerHealthy")
        elif pod.phase is Phase.FAILED and pod.termination is not None:
            message = pod.termination.message or "container exited with no error"
            conditions.mark_false("ContainerHealthy", f"ExitCode{pod.termination.exit_code}",
                                  f"Container failed with: {message}")
        elif pod.phase is Phase.DEADLINE_EXCEEDED:
            conditions.mark_false("ResourcesAvailable", "ProgressDeadlineExceeded", "Initial scale was never achieved")
        elif conditions.status("Ready") == UNKNOWN:
            conditions.mark_unknown("ResourcesAvailable", "Deploying")
            conditions.mark_unknown("ContainerHealthy", "Deploying")

    def failed(self) -> bool:
        return REVISION_CONDITIONS.manage(self.conditions).status("Ready") == FALSE

    def snapshot(self) -> dict:
        ready = self.ready_condition
        pod = self.pod
        return {"name": self.name, "ready": ready["status"], "reason": ready.get("reason", ""),
                "message": ready.get("message", ""), "pod": pod.name if pod else None,
                "running": bool(pod and pod.running)}


PodFactory = Callable[["KnativeService", Revision], Endpoint]


class KnativeService:
    """One ``serving.knative.dev/v1`` Service with its Configuration, Revisions and Route."""

    def __init__(self, name: str, namespace: str, owner: str, domain: str, start_pod: PodFactory) -> None:
        self.name, self.namespace, self.owner, self.domain = name, namespace, owner, domain
        self._start_pod = start_pod
        self.generation = 0
        self.template: dict | None = None
        self.traffic: list[dict] = []
        self.config_generation = 0
        self.config_template: dict | None = None
        self.revisions: dict[str, Revision] = {}
        self.config_status = {"latestCreatedRevisionName": "", "latestReadyRevisionName": "", "conditions": []}
        self.route_status: dict = {"traffic": [], "conditions": []}
        self.status: dict = {}

    # -- what KServe writes (client.Update of the ksvc spec) -----------------------------------------------------

    def update_spec(self, template: dict, traffic: list[dict]) -> bool:
        """Sets the desired template and traffic; True (and a new generation) when either changed."""
        if self.template == template and self.traffic == traffic:
            return False
        self.template, self.traffic = copy.deepcopy(template), copy.deepcopy(traffic)
        self.generation += 1
        return True

    @property
    def url(self) -> str:
        return f"http://{self.name}.{self.namespace}.{self.domain}"

    # -- Knative's controllers ----------------------------------------------------------------------------------

    def reconcile(self) -> bool:
        """Runs the configuration, revision, route and service reconcilers once; True when status changed."""
        before = copy.deepcopy(self.status)
        self._reconcile_configuration()
        self._reconcile_route()
        self._scale()
        self._reconcile_service()
        return self.status != before

    def _reconcile_configuration(self) -> None:
        if self.template is not None and self.template != self.config_template:
            self.config_template = copy.deepcopy(self.template)
            self.config_generation += 1
            name = f"{self.name}-{self.config_generation:05d}"
            revision = Revision(name, self.namespace, self.name, self.config_generation, copy.deepcopy(self.template))
            self.revisions[name] = revision
            revision.instance = self._start_pod(self, revision)
        for revision in self.revisions.values():
            revision.observe_pod()
        if not self.revisions:
            return
        status = self.config_status
        conditions = CONFIGURATION_CONDITIONS.manage(status["conditions"])
        conditions.initialize()
        latest = self.revisions[f"{self.name}-{self.config_generation:05d}"]
        status["latestCreatedRevisionName"] = latest.name
        if status["latestReadyRevisionName"] != latest.name:
            conditions.mark_unknown("Ready")
        if latest.failed():
            conditions.mark_false("Ready", "RevisionFailed", f'Revision "{latest.name}" failed with message: '
                                  f'{latest.ready_condition.get("message", "")}.')
        current = self.revisions.get(status["latestReadyRevisionName"])
        floor = current.generation if current else 0
        for revision in sorted(self.revisions.values(), key=lambda r: r.generation, reverse=True):
            if revision.generation < floor:
                break
            if revision.ready:
                status["latestReadyRevisionName"] = revision.name
                if revision.name == latest.name:
                    conditions.mark_true("Ready")
                break

    def _reconcile_route(self) -> None:
        conditions = ROUTE_CONDITIONS.manage(self.route_status["conditions"])
        conditions.initialize()
        resolved, error = [], None
        for target in self.traffic:
            problem = None
            if target.get("latestRevision"):
                name = self.config_status["latestReadyRevisionName"]
                if not name:
                    failed = CONFIGURATION_CONDITIONS.manage(self.config_status["conditions"]).status("Ready") == FALSE
                    problem = (FALSE, f'Configuration "{self.name}" does not have any ready Revision.') if failed \
                        else (UNKNOWN, f'Configuration "{self.name}" is waiting for a Revision to become ready.')
            else:
                name = target["revisionName"]
            revision = self.revisions.get(name) if name else None
            if problem is None and revision is None:
                problem = (FALSE, f'Revision "{name}" referenced in traffic not found.')
            elif problem is None and not revision.ready:
                problem = (FALSE, f'Revision "{name}" failed to become ready.') if revision.failed() \
                    else (UNKNOWN, f'Revision "{name}" is not yet ready.')
            if problem is not None and (error is None or (problem[0] == FALSE and error[0] != FALSE)):
                error = problem  # deferTargetError: a failure overwrites a wait
            entry = {"revisionName": name, "latestRevision": bool(target.get("latestRevision")),
                     "percent": target.get("percent", 0)}
            if target.get("tag"):
                entry = {"tag": target["tag"], **entry, "url": f"http://{target['tag']}-{self.name}."
                         f"{self.namespace}.{self.domain}"}
            resolved.append(entry)
        if error is not None:  # "Traffic targets aren't ready, no need to configure Route": old traffic stays
            status, message = error
            (conditions.mark_false if status == FALSE else conditions.mark_unknown)(
                "AllTrafficAssigned", "RevisionMissing", message)
            return
        self.route_status["traffic"] = resolved
        self.route_status["url"] = self.url
        self.route_status["address"] = {"url": f"http://{self.name}.{self.namespace}.svc.cluster.local"}
        conditions.mark_true("AllTrafficAssigned")
        conditions.mark_true("IngressReady")
        conditions.mark_true("CertificateProvisioned", "TLSNotEnabled", "autoTLS is not enabled")

    def reachable(self) -> set[str]:
        names = {t["revisionName"] for t in self.route_status["traffic"]}
        return names | {self.config_status["latestCreatedRevisionName"], self.config_status["latestReadyRevisionName"]}

    def _scale(self) -> None:
        reachable = self.reachable()
        for revision in self.revisions.values():
            pod = revision.pod
            if revision.name not in reachable:
                if pod is not None and pod.phase is not Phase.TERMINATED and revision.retiring is None:
                    revision.retiring = threading.Timer(SCALE_DOWN_GRACE, stop_endpoint, args=(revision.instance,))
                    revision.retiring.daemon = True
                    revision.retiring.start()
                continue
            if revision.retiring is not None:  # reachable again within the grace period: it keeps its pod
                revision.retiring.cancel()
                revision.retiring = None
            if (pod is None or pod.phase is Phase.TERMINATED) and revision.ready:
                revision.instance = self._start_pod(self, revision)  # scale from zero

    def _reconcile_service(self) -> None:
        status = self.status
        status["observedGeneration"] = self.generation
        conditions = SERVICE_CONDITIONS.manage(status.setdefault("conditions", []))
        conditions.initialize()
        for key in ("latestCreatedRevisionName", "latestReadyRevisionName"):
            if self.config_status[key]:
                status[key] = self.config_status[key]
        configured = CONFIGURATION_CONDITIONS.manage(self.config_status["conditions"]).get("Ready")
        if configured is not None:
            conditions.set_condition("ConfigurationsReady", configured)
        for key in ("traffic", "url", "address"):
            if key in self.route_status:
                status[key] = copy.deepcopy(self.route_status[key])
        routed = ROUTE_CONDITIONS.manage(self.route_status["conditions"]).get("Ready")
        if routed is not None:
            if routed["status"] == TRUE:
                conditions.mark_true("RoutesReady")
            else:
                conditions.set_condition("RoutesReady", routed)

    def stop(self) -> None:
        for revision in self.revisions.values():
            if revision.retiring is not None:
                revision.retiring.cancel()
            stop_endpoint(revision.instance)


def stop_endpoint(endpoint: Endpoint | None) -> None:
    if endpoint is None:
        return
    endpoint.pod.terminate()
    if endpoint.metrics is not None:
        endpoint.metrics.stop()
