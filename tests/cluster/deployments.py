"""A Kubernetes Deployment (Standard mode) as pods with a rolling update, and its status.

Follows kubernetes ``pkg/controller/deployment`` (``rolling.go``, ``sync.go``, ``util/deployment_util.go``):
a changed pod template starts a new ReplicaSet's pod; with one replica and the default ``maxSurge: 25%``,
``maxUnavailable: 25%`` (rounded to 1 and 0) the old pod keeps serving until the new one is ready, then is
stopped. Status: ``replicas``, ``readyReplicas``, ``availableReplicas``, ``updatedReplicas``,
``observedGeneration`` and the conditions ``Available`` (``MinimumReplicasAvailable`` /
``MinimumReplicasUnavailable``) and ``Progressing`` (``NewReplicaSetAvailable``, ``ReplicaSetUpdated``,
``ProgressDeadlineExceeded`` after ``progressDeadlineSeconds``). KServe's raw Deployments keep the default
``terminationMessagePolicy: File`` (kserve ``reconcilers/deployment/deployment_reconciler.go``), so a crashed
container's termination message is empty here, unlike Knative's ``FallbackToLogsOnError``.
Replicas above one are run as one pod; zero replicas run none.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .knative import Endpoint, pod_suffix, stop_endpoint
from .pods import Phase

EndpointFactory = Callable[["Deployment", str], Endpoint]  # (deployment, pod name) -> started endpoint


@dataclass
class Deployment:
    name: str
    namespace: str
    owner: str                       # the InferenceService
    start_pod: EndpointFactory
    progress_deadline: float
    template: dict = field(default_factory=dict)
    replicas: int = 1
    generation: int = 0
    current: Endpoint | None = None  # the pod of the ReplicaSet that serves
    rolling: Endpoint | None = None  # the new ReplicaSet's pod during a rollout
    _template_hash: str = ""
    _current_template: dict | None = None
    _rollout_started: float = 0.0

    def apply(self, template: dict, replicas: int) -> bool:
        """``client.Update`` of the Deployment spec; the deployment controller acts at once."""
        if template == self.template and replicas == self.replicas and self.generation:
            return False
        self.template, self.replicas = copy.deepcopy(template), replicas
        self.generation += 1
        self.sync()
        return True

    def sync(self) -> None:
        """The deployment controller: scale, roll out, and finish a rollout whose new pod is ready."""
        if self.replicas == 0:
            for endpoint in (self.current, self.rolling):
                stop_endpoint(endpoint)
            self.current = self.rolling = None
            self._current_template = None
            return
        if self.current is None or self.current.pod.phase is Phase.TERMINATED:
            if self._current_template != self.template or self.current is None:
                self._template_hash = pod_suffix(10)
            stop_endpoint(self.rolling)
            self.rolling = None
            self.current = self.start_pod(self, f"{self.name}-{self._template_hash}-{pod_suffix(5)}")
            self._current_template = copy.deepcopy(self.template)
            self._rollout_started = time.monotonic()
            return
        if self._current_template != self.template:
            if self.rolling is None or self.rolling.pod.template != self.template:
                stop_endpoint(self.rolling)
                self._template_hash = pod_suffix(10)
                self.rolling = self.start_pod(self, f"{self.name}-{self._template_hash}-{pod_suffix(5)}")
                self._rollout_started = time.monotonic()
            if self.rolling.pod.ready:
                stop_endpoint(self.current)
                self.current, self.rolling = self.rolling, None
                self._current_template = copy.deepcopy(self.template)

    def endpoint(self) -> Endpoint | None:
        """The ready pod the Service's endpoints point at."""
        for endpoint in (self.current, self.rolling):
            if endpoint is not None and endpoint.pod.ready:
                return endpoint
        return None

    def starting(self) -> bool:
        return any(pod.phase in (Phase.INITIALIZING, Phase.STARTING) for pod in self.pods)

    @property
    def pods(self) -> list:
        return [e.pod for e in (self.current, self.rolling) if e is not None]

    @property
    def newest_pod(self):
        endpoint = self.rolling or self.current
        return endpoint.pod if endpoint else None

    def status(self) -> dict:
        ready = sum(1 for pod in self.pods if pod.ready)
        updated = 1 if (self.rolling is None and self.current is not None) or self.rolling is not None else 0
        rs = f"{self.name}-{self._template_hash}"
        conditions = []
        if ready >= min(self.replicas, 1):
            conditions.append({"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                               "message": "Deployment has minimum availability."})
        else:
            conditions.append({"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable",
                               "message": "Deployment does not have minimum availability."})
        newest = self.newest_pod
        if self.replicas == 0 or (newest is not None and newest.ready and self.rolling is None):
            conditions.append({"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                               "message": f'ReplicaSet "{rs}" has successfully progressed.'})
        elif time.monotonic() - self._rollout_started > self.progress_deadline:
            conditions.append({"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                               "message": f'ReplicaSet "{rs}" has timed out progressing.'})
        else:
            conditions.append({"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated",
                               "message": f'ReplicaSet "{rs}" is progressing.'})
        return {"observedGeneration": self.generation, "replicas": len(self.pods) if self.replicas else 0,
                "updatedReplicas": updated if self.replicas else 0, "readyReplicas": ready,
                "availableReplicas": ready, "conditions": conditions}

    def stop(self) -> None:
        for endpoint in (self.current, self.rolling):
            stop_endpoint(endpoint)

    def snapshot(self) -> dict:
        status = self.status()
        newest = self.newest_pod
        return {"name": self.name, "replicas": self.replicas, "available": status["availableReplicas"],
                "pod": newest.name if newest else None, "phase": newest.phase.value if newest else None,
                "conditions": status["conditions"]}
