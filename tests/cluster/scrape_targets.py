"""Prometheus ``file_sd`` targets for every live pod, labelled as the project's PodMonitors would label them.

A PodMonitor's relabelling turns pod metadata into target labels; the emulator writes the result directly as a
file_sd JSON list (Prometheus ``discovery/file``), rewritten atomically whenever a pod starts or stops:

- Serverless queue-proxy (one per revision pod; Knative's ``:9091/metrics``): ``namespace``, ``revision``,
  ``configuration``, ``service`` (the Knative Service) and ``pod``;
- every runtime process's own ``/metrics`` (both modes): ``namespace``, ``deployment`` (Knative names a
  revision's Deployment ``<revision>-deployment``, knative ``pkg/reconciler/revision/resources/names``) and
  ``pod``. The runtime's series carry ``version`` themselves.
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


def queue_proxy_target(port: int, namespace: str, revision: str, service: str, pod: str) -> dict:
    return {"targets": [f"127.0.0.1:{port}"],
            "labels": {"namespace": namespace, "revision": revision, "configuration": service, "service": service,
                       "pod": pod}}


def runtime_target(port: int, namespace: str, deployment: str, pod: str) -> dict:
    return {"targets": [f"127.0.0.1:{port}"], "labels": {"namespace": namespace, "deployment": deployment, "pod": pod}}
