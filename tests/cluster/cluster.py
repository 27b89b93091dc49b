"""The emulated cluster: API server, KServe + Knative controllers, ingress, pods, scrape targets, in one object.

``KServeCluster`` wires the parts (each module names the upstream code it follows) and gives tests what a cluster
user has: a kubeconfig (or ``api_client()``) for the official ``kubernetes`` client, the ingress URL and hosts,
the Prometheus file_sd path. It also gives what only an emulator can: the recorded API requests, revision and
Deployment snapshots, and ``wait_settled()``, which returns once the controllers are idle and no pod is still
starting, so tests need no sleeps.
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import urllib3
import yaml

from driftloop.storage import S3Settings

from .api_server import ApiServer, Resource
from .controller import ClusterConfig, Controller
from .deployments import Deployment
from .ingress import Ingress
from .knative import Endpoint, KnativeService, Revision, pod_suffix
from .logger_agent import AgentConfig, LoggerAgent
from .pods import Pod
from .queue_proxy import RevisionMetrics
from .runtimes import INFERENCE_SERVICES, ISVC_LABEL
from .schema import CrdSchema
from .scrape_targets import ScrapeTargets, queue_proxy_target, runtime_target
from .store import ApiError, ObjectStore
from .webhooks import default_inference_service, validate_inference_service

# Knative's per-revision progress deadline (serving.ProgressDeadlineAnnotationKey), else config-deployment's
PROGRESS_DEADLINE_ANNOTATION = "serving.knative.dev/progress-deadline"
CRD_FILES = {"inferenceservices": ("serving.kserve.io_inferenceservices.yaml", "v1beta1"),
             "servingruntimes": ("serving.kserve.io_servingruntimes.yaml", "v1alpha1"),
             "clusterservingruntimes": ("serving.kserve.io_clusterservingruntimes.yaml", "v1alpha1")}


class KServeCluster:
    """KServe (both deployment modes) on loopback; ``start()`` it, ``stop()`` it (kills every pod)."""

    def __init__(self, workdir: Path, s3: S3Settings | None, schemas: Path,
                 config: ClusterConfig = ClusterConfig()) -> None:
        self.workdir, self.s3, self.config = workdir, s3, config
        self.store = ObjectStore()
        loaded = {plural: CrdSchema.load(schemas / file, version) for plural, (file, version) in CRD_FILES.items()}
        isvc_schema = loaded["inferenceservices"]
        self.api = ApiServer(self.store, [
            Resource(isvc_schema, lambda obj: default_inference_service(obj, config.default_deployment_mode),
                     validate_inference_service),
            Resource(loaded["servingruntimes"]),
            Resource(loaded["clusterservingruntimes"]),
        ])
        self.ingress = Ingress()
        self.scrape_targets = ScrapeTargets(workdir / "file_sd" / "kserve.json")
        self._agent_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="logger-agent")
        self._agent_http = urllib3.PoolManager(maxsize=8)
        self.controller = Controller(self.store, config, self.ingress, self._start_revision_pod,
                                     self._start_deployment_pod, self._publish_targets,
                                     check_status=lambda obj: isvc_schema.admit(obj, strict=True))
        self._pods: list[Pod] = []

    # -- lifecycle -----------------------------------------------------------------------------------------------

    def start(self) -> KServeCluster:
        self.api.start()
        self.ingress.start()
        self.controller.start()
        return self

    def stop(self) -> None:
        """Stops the controllers, kills every pod, closes the servers."""
        self.controller.stop()
        for pod in list(self._pods):
            pod.terminate()
        self.api.stop()
        self.ingress.stop()
        self._agent_pool.shutdown(wait=False, cancel_futures=True)

    # -- what a cluster user gets --------------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        return self.api.url

    @property
    def ingress_url(self) -> str:
        return self.ingress.url

    def write_kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        """A kubeconfig for ``kubernetes.config.load_kube_config(config_file=path)`` (or ``KUBECONFIG``)."""
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
            "clusters": [{"name": "emulator", "cluster": {"server": self.api_url}}],
            "users": [{"name": "emulator", "user": {"token": "emulator"}}],
            "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "emulator",
                                                           "namespace": namespace}}]}))
        return path

    def api_client(self):
        """A ``kubernetes.client.ApiClient`` for this API server."""
        from kubernetes.client import ApiClient, Configuration

        configuration = Configuration()
        configuration.host = self.api_url
        return ApiClient(configuration)

    def host(self, namespace: str, name: str) -> str:
        """The ``Host`` header that reaches an InferenceService through the ingress (Serverless form)."""
        return f"{name}.{namespace}.{self.config.domain}"

    def url(self, namespace: str, name: str) -> str:
        """The path form on the ingress: ``<ingress>/serving/<ns>/<name>`` (append ``/v1/models/...``)."""
        return f"{self.ingress_url}/serving/{namespace}/{name}"

    @property
    def requests(self) -> list:
        return self.api.requests

    # -- what only an emulator gives -----------------------------------------------------------------------------

    def inference_service(self, namespace: str, name: str) -> dict | None:
        try:
            return self.store.get(INFERENCE_SERVICES, namespace, name)
        except ApiError:
            return None

    def wait_for(self, namespace: str, name: str, predicate: Callable[[dict], bool], timeout: float = 90,
                 what: str = "condition") -> dict:
        """Polls the stored InferenceService until ``predicate(isvc)``; fails with its status otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            isvc = self.inference_service(namespace, name)
            if isvc is not None and predicate(isvc):
                return isvc
            if time.monotonic() > deadline:
                errors = "\n".join(self.controller.errors[-3:])
                raise TimeoutError(f"{namespace}/{name}: no {what} after {timeout:.0f}s; status: "
                                   f"{yaml.safe_dump((isvc or {}).get('status'))}revisions: "
                                   f"{self.revisions(namespace, name)}\n{errors}")
            time.sleep(0.05)

    def wait_settled(self, timeout: float = 90) -> None:
        """Returns once the work queue is empty, no reconcile runs and no pod is starting (twice in a row)."""
        deadline = time.monotonic() + timeout
        calm = 0
        while calm < 2:
            quiet = self.controller.queue.idle() and all(p.settled for p in list(self._pods))
            calm = calm + 1 if quiet else 0
            if time.monotonic() > deadline:
                raise TimeoutError(f"the cluster did not settle in {timeout:.0f}s: "
                                   f"{[(p.name, p.phase.value) for p in self._pods if not p.settled]}")
            time.sleep(0.05)

    def revisions(self, namespace: str, name: str) -> list[dict]:
        """Snapshots of the Knative revisions of an InferenceService's predictor, oldest first."""
        return [r.snapshot() for k in list(self.controller.ksvcs.values()) if (k.namespace, k.owner) == (namespace, name)
                for r in list(k.revisions.values())]

    def knative_service(self, namespace: str, name: str) -> KnativeService | None:
        return next((k for k in list(self.controller.ksvcs.values()) if (k.namespace, k.owner) == (namespace, name)),
                    None)

    def deployments(self, namespace: str, name: str) -> list[dict]:
        return [d.snapshot() for d in list(self.controller.deployments.values())
                if (d.namespace, d.owner) == (namespace, name)]

    def live_pods(self) -> list[Pod]:
        return [p for p in self._pods if p.phase.value not in ("Terminated",)]

    def delete_namespace(self, namespace: str, timeout: float = 30) -> None:
        """Deletes every InferenceService in ``namespace`` and waits until their pods are gone."""
        for isvc in self.store.list(INFERENCE_SERVICES, namespace)[0]:
            try:
                self.store.delete(INFERENCE_SERVICES, namespace, isvc["metadata"]["name"])
            except ApiError:
                pass
        deadline = time.monotonic() + timeout
        while self.store.list(INFERENCE_SERVICES, namespace)[0] and time.monotonic() < deadline:
            time.sleep(0.05)
        self.wait_settled(timeout)

    # -- pods ----------------------------------------------------------------------------------------------------

    def _new_pod(self, name: str, namespace: str, template: dict, on_change: Callable, extra_env: dict,
                 progress_deadline: float | None = None) -> Pod:
        pod = Pod(name, namespace, copy.deepcopy(template), self.workdir / "pods", self.s3, on_change,
                  progress_deadline or self.config.progress_deadline, extra_env)
        self._pods.append(pod)
        return pod

    def _agent(self, pod: Pod) -> LoggerAgent | None:
        isvc_name = pod.labels.get(ISVC_LABEL, "")
        isvc = self.inference_service(pod.namespace, isvc_name) or {}
        # The webhook takes logger.storage and the batch settings from the InferenceService's predictor
        # (agent_injector.go getLoggerConfigs), the rest from the pod's annotations.
        logger_spec = ((isvc.get("spec") or {}).get("predictor") or {}).get("logger")
        config = AgentConfig.from_pod(pod.name, pod.namespace, isvc_name, pod.annotations, pod.labels, logger_spec)
        return LoggerAgent(config, self._agent_pool, self._agent_http, self.s3) if config else None

    def _start_revision_pod(self, ksvc: KnativeService, revision: Revision, on_change: Callable) -> Endpoint:
        name = f"{revision.name}-deployment-{pod_suffix(10)}-{pod_suffix(5)}"
        annotations = revision.template["metadata"].get("annotations") or {}
        deadline = go_duration(annotations.get(PROGRESS_DEADLINE_ANNOTATION, "")) or self.config.progress_deadline
        pod = self._new_pod(name, ksvc.namespace, revision.template, on_change,
                            {"K_SERVICE": ksvc.name, "K_CONFIGURATION": ksvc.name, "K_REVISION": revision.name},
                            deadline)
        metrics = RevisionMetrics(ksvc.namespace, ksvc.name, ksvc.name, revision.name, name)
        endpoint = Endpoint(pod, metrics, self._agent(pod))
        pod.start()
        return endpoint

    def _start_deployment_pod(self, deployment: Deployment, name: str, on_change: Callable) -> Endpoint:
        pod = self._new_pod(name, deployment.namespace, deployment.template, on_change, {})
        endpoint = Endpoint(pod, None, self._agent(pod))
        pod.start()
        return endpoint

    def _publish_targets(self) -> None:
        groups = []
        for ksvc in list(self.controller.ksvcs.values()):
            for revision in list(ksvc.revisions.values()):
                instance = revision.instance
                if instance is None or instance.pod.phase.value == "Terminated":
                    continue
                pod = instance.pod
                groups.append(queue_proxy_target(instance.metrics.port, ksvc.namespace, ksvc.owner, revision.name,
                                                 ksvc.name, pod.name))
                if pod.running:
                    groups.append(runtime_target(pod.port, ksvc.namespace, ksvc.owner, f"{revision.name}-deployment",
                                                 pod.name, revision.name))
        for deployment in list(self.controller.deployments.values()):
            for pod in deployment.pods:
                if pod.running:
                    groups.append(runtime_target(pod.port, deployment.namespace, deployment.owner, deployment.name,
                                                 pod.name))
        self.scrape_targets.publish(groups)
        self._pods = [p for p in self._pods if p.phase.value != "Terminated"]


def go_duration(text: str) -> float | None:
    """Seconds in a Go duration such as ``"90s"``, ``"1m30s"`` or ``"500ms"``; None when empty or invalid."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    if not text or "".join(a + b for a, b in parts) != text:
        return None
    return sum(float(number) * units[unit] for number, unit in parts)
