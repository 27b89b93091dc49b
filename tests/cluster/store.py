"""The API server's storage semantics for custom resources (what etcd plus the generic registry do).

Follows Kubernetes' generic registry and apiextensions-apiserver (k8s.io/apiserver ``registry/generic/registry/
store.go``, apiextensions-apiserver ``pkg/registry/customresource/strategy.go``):

- create sets ``uid``, ``creationTimestamp``, ``generation: 1`` and a ``resourceVersion``; with the status
  subresource enabled the status in a create body is dropped;
- an update of the main resource keeps the stored status; ``generation`` goes up only when something outside
  ``metadata`` and ``status`` changed; an update of ``/status`` changes only the status;
- an update that changes nothing is not written (``resourceVersion`` stays);
- an update carrying a stale ``resourceVersion`` fails with 409 Conflict;
- delete of an object with finalizers only sets ``deletionTimestamp``; it disappears once they are removed.

Every write becomes a watch event (ADDED, MODIFIED, DELETED) with its resourceVersion.
"""

from __future__ import annotations

import copy
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .conditions import now_rfc3339

MAX_EVENTS = 20_000  # watch history kept; older resourceVersions answer 410 Gone, as etcd compaction does


@dataclass(frozen=True)
class ResourceType:
    """One served resource of a CRD."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    status_subresource: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"

    @property
    def qualified(self) -> str:
        return f"{self.plural}.{self.group}"


class ApiError(Exception):
    """A Kubernetes ``Status`` failure (``metav1.Status``) with its HTTP code."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self) -> dict:
        body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message, "reason": self.reason, "code": self.code}
        if self.details is not None:
            body["details"] = self.details
        return body


def not_found(rtype: ResourceType, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{rtype.qualified} "{name}" not found',
                    {"name": name, "group": rtype.group, "kind": rtype.plural})


def conflict(rtype: ResourceType, name: str) -> ApiError:
    return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {rtype.qualified} "{name}": the object has '
                    "been modified; please apply your changes to the latest version and try again",
                    {"name": name, "group": rtype.group, "kind": rtype.plural})


@dataclass(frozen=True)
class WatchEvent:
    resource_version: int
    type: str  # ADDED | MODIFIED | DELETED
    rtype: ResourceType
    object: dict


def _spec_part(obj: dict) -> dict:
    """Everything whose change bumps ``metadata.generation`` (all but metadata and status)."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


class ObjectStore:
    """Custom resources by (type, namespace, name), with resourceVersions and a watch history."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._objects: dict[tuple[str, str, str], dict] = {}
        self._revision = 0
        self._events: list[WatchEvent] = []
        self._listeners: list[Callable[[WatchEvent], None]] = []

    # -- reading -------------------------------------------------------------------------------------------------

    def get(self, rtype: ResourceType, namespace: str, name: str) -> dict:
        with self._lock:
            obj = self._objects.get((rtype.plural, namespace, name))
            if obj is None:
                raise not_found(rtype, name)
            return copy.deepcopy(obj)

    def list(self, rtype: ResourceType, namespace: str | None) -> tuple[list[dict], int]:
        """Objects of one type (all namespaces when ``namespace`` is None) and the current resourceVersion."""
        with self._lock:
            items = [copy.deepcopy(obj) for (plural, ns, _), obj in sorted(self._objects.items())
                     if plural == rtype.plural and (namespace is None or ns == namespace)]
            return items, self._revision

    @property
    def resource_version(self) -> int:
        with self._lock:
            return self._revision

    # -- writing -------------------------------------------------------------------------------------------------

    def create(self, rtype: ResourceType, namespace: str, body: dict) -> dict:
        name = body["metadata"]["name"]
        with self._lock:
            key = (rtype.plural, namespace, name)
            if key in self._objects:
                raise ApiError(409, "AlreadyExists", f'{rtype.qualified} "{name}" already exists',
                               {"name": name, "group": rtype.group, "kind": rtype.plural})
            obj = copy.deepcopy(body)
            obj["apiVersion"], obj["kind"] = rtype.api_version, rtype.kind
            meta = obj["metadata"]
            for server_owned in ("resourceVersion", "uid", "creationTimestamp", "generation", "deletionTimestamp",
                                 "deletionGracePeriodSeconds", "managedFields"):
                meta.pop(server_owned, None)
            if rtype.namespaced:
                meta["namespace"] = namespace
            meta.update(uid=str(uuid.uuid4()), creationTimestamp=now_rfc3339(), generation=1)
            if rtype.status_subresource:
                obj.pop("status", None)
            self._write(rtype, key, obj, "ADDED")
            return copy.deepcopy(obj)

    def replace(self, rtype: ResourceType, namespace: str, name: str, new: dict, *,
                subresource: str | None = None) -> dict:
        """Writes ``new`` over the stored object, if ``new`` carries the stored resourceVersion.

        Raises:
            ApiError: 404 when absent, 409 Conflict when ``new``'s resourceVersion is stale.
        """
        with self._lock:
            key = (rtype.plural, namespace, name)
            old = self._objects.get(key)
            if old is None:
                raise not_found(rtype, name)
            if str(new.get("metadata", {}).get("resourceVersion")) != old["metadata"]["resourceVersion"]:
                raise conflict(rtype, name)
            if subresource == "status":
                obj = copy.deepcopy(old)
                obj["status"] = copy.deepcopy(new.get("status"))
                if obj["status"] is None:
                    obj.pop("status")
            else:
                obj = copy.deepcopy(new)
                obj["apiVersion"], obj["kind"] = rtype.api_version, rtype.kind
                meta = obj["metadata"]
                for server_owned in ("uid", "creationTimestamp", "generation", "deletionTimestamp",
                                     "deletionGracePeriodSeconds", "name", "namespace"):
                    if server_owned in old["metadata"]:
                        meta[server_owned] = old["metadata"][server_owned]
                    else:
                        meta.pop(server_owned, None)
                if rtype.status_subresource:
                    obj.pop("status", None)
                    if "status" in old:
                        obj["status"] = copy.deepcopy(old["status"])
                if _spec_part(obj) != _spec_part(old):
                    meta["generation"] = old["metadata"]["generation"] + 1
            if obj == old:
                return copy.deepcopy(old)  # a no-op update is not written
            if obj["metadata"].get("deletionTimestamp") and not obj["metadata"].get("finalizers"):
                obj["metadata"].pop("finalizers", None)
                self._write(rtype, key, obj, "DELETED")
                return copy.deepcopy(obj)
            self._write(rtype, key, obj, "MODIFIED")
            return copy.deepcopy(obj)

    def delete(self, rtype: ResourceType, namespace: str, name: str) -> dict:
        with self._lock:
            key = (rtype.plural, namespace, name)
            old = self._objects.get(key)
            if old is None:
                raise not_found(rtype, name)
            if old["metadata"].get("finalizers"):
                if old["metadata"].get("deletionTimestamp"):
                    return copy.deepcopy(old)
                obj = copy.deepcopy(old)
                obj["metadata"].update(deletionTimestamp=now_rfc3339(), deletionGracePeriodSeconds=0)
                self._write(rtype, key, obj, "MODIFIED")
                return copy.deepcopy(obj)
            self._write(rtype, key, copy.deepcopy(old), "DELETED")
            return copy.deepcopy(old)

    def _write(self, rtype: ResourceType, key: tuple[str, str, str], obj: dict, event_type: str) -> None:
        self._revision += 1
        obj["metadata"]["resourceVersion"] = str(self._revision)
        if event_type == "DELETED":
            del self._objects[key]
        else:
            self._objects[key] = obj
        event = WatchEvent(self._revision, event_type, rtype, copy.deepcopy(obj))
        self._events.append(event)
        del self._events[:-MAX_EVENTS]
        self._lock.notify_all()
        listeners = list(self._listeners)
        for listener in listeners:  # the controller's informer: it only enqueues, so holding the lock is fine
            listener(event)

    # -- watching ------------------------------------------------------------------------------------------------

    def subscribe(self, listener: Callable[[WatchEvent], None]) -> None:
        with self._lock:
            self._listeners.append(listener)

    def watch(self, rtype: ResourceType, namespace: str | None, since: int, timeout: float,
              stopped: Callable[[], bool]) -> Iterator[WatchEvent]:
        """Events of one type after resourceVersion ``since``, until ``timeout`` seconds pass.

        Raises:
            ApiError: 410 Gone when ``since`` is older than the kept history.
        """
        deadline = time.monotonic() + timeout
        with self._lock:
            if self._events and since < self._events[0].resource_version - 1:
                raise ApiError(410, "Expired", f"too old resource version: {since} ({self._revision})")
        cursor = since
        while not stopped():
            with self._lock:
                pending = [e for e in self._events if e.resource_version > cursor]
                if not pending:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return
                    self._lock.wait(min(remaining, 0.5))
                    continue
            for event in pending:
                cursor = event.resource_version
                if event.rtype == rtype and (namespace is None
                                             or event.object["metadata"].get("namespace") == namespace):
                    yield event
