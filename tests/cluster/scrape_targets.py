"""Prometheus ``file_sd`` targets for every live pod, labelled as the project's PodMonitors label them.

The PodMonitors of ``manifests/components/observability/runtime-podmonitors.yaml`` turn pod metadata into target
labels; the emulator writes the result directly as a file_sd JSON list (Prometheus ``discovery/file``),
rewritten atomically whenever a pod starts or stops:

- Serverless queue-proxy (one per revision pod; Knative's ``:9091/metrics``): ``job=driftloop-queue-proxy``,
  ``namespace``, ``pod``, ``inferenceservice``, ``revision``, ``deployment`` (Knative names a revision's
  Deployment ``<revision>-deployment``, knative ``pkg/reconciler/revision/resources/names``), plus
  ``configuration`` and ``service`` (the Knative names; no PodMonitor of the project adds them);
- every runtime process's own ``/metrics`` (both modes): ``job=driftloop-runtime``, ``namespace``, ``pod``,
  ``inferenceservice``, ``deployment`` and, in Serverless mode only (the pod label exists only there),
  ``revision``. The runtime's series carry ``model`` and ``version`` themselves.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path


class ScrapeTargets:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._last: str | None = None
        self.publish([])

    def move_to(self, path: Path) -> None:
        """Publishes to ``path`` from now on (e.g. into the ``prometheus`` fixture's ``targets_dir``)."""
        with self._lock:
            old, self.path, text, self._last = self.path, path, self._last, None
            old.unlink(missing_ok=True)
        self.publish(json.loads(text or "[]"))

    def publish(self, groups: list[dict]) -> None:
        """Writes ``[{"targets": ["127.0.0.1:port"], "labels": {...}}, ...]`` if it changed."""
        text = json.dumps(sorted(groups, key=lambda g: (g["labels"].get("pod", ""), g["targets"])), indent=1)
        with self._lock:
            if text == self._last:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_suffix(".tmp")
            temporary.write_text(text)
            os.replace(temporary, self.path)
            self._last = text


def queue_proxy_target(port: int, namespace: str, isvc: str, revision: str, service: str, pod: str) -> dict:
    return {"targets": [f"127.0.0.1:{port}"],
            "labels": {"job": "driftloop-queue-proxy", "namespace": namespace, "pod": pod, "inferenceservice": isvc,
                       "revision": revision, "deployment": f"{revision}-deployment", "configuration": service,
                       "service": service}}


def runtime_target(port: int, namespace: str, isvc: str, deployment: str, pod: str, revision: str = "") -> dict:
    labels = {"job": "driftloop-runtime", "namespace": namespace, "pod": pod, "inferenceservice": isvc,
              "deployment": deployment}
    if revision:
        labels["revision"] = revision
    return {"targets": [f"127.0.0.1:{port}"], "labels": labels}
