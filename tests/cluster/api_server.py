"""A Kubernetes API server on 127.0.0.1 (plain HTTP) for KServe's custom resources.

Serves the REST paths the official ``kubernetes`` client uses (``CustomObjectsApi``, ``DynamicClient`` discovery,
``watch.Watch``) for ``serving.kserve.io/v1beta1`` InferenceServices and ``serving.kserve.io/v1alpha1``
ServingRuntimes (namespaced) and ClusterServingRuntimes (cluster-scoped): list (label/field selectors, watch),
get, create, replace, merge patch, JSON patch, delete, and the ``/status`` subresource.

Follows k8s.io/apiserver ``endpoints/handlers/{create,update,patch,delete,get,watch}.go`` for the request
pipeline: decode, mutating admission, schema (prune, default, validate), validating admission, storage
(``store.py``); patches without a resourceVersion retry on conflict as ``GuaranteedUpdate`` does; strategic
merge patch is refused for custom resources (415), as the API server does; server-side apply is not emulated
(415 too). Every request is recorded (method, path, query, content type, body) for assertions.
"""

from __future__ import annotations

import copy
import json
import random
import string
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import jsonpatch

from .schema import CrdSchema
from .store import ApiError, ObjectStore, ResourceType

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
PATCH_TYPES = f"{JSON_PATCH}, {MERGE_PATCH}, application/apply-patch+yaml"


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    content_type: str | None
    body: object


@dataclass
class Resource:
    """A served resource with its admission chain."""

    schema: CrdSchema
    mutate: Callable[[dict], dict] | None = None
    validate: Callable[[dict, dict | None], None] | None = None  # (new, old or None on create)

    @property
    def rtype(self) -> ResourceType:
        return self.schema.rtype


@dataclass
class ApiServer:
    """The HTTP front of an :class:`ObjectStore`; ``start()`` binds 127.0.0.1 on a free port."""

    store: ObjectStore
    resources: list[Resource]
    requests: list[RecordedRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._by_path = {(r.rtype.group, r.rtype.version, r.rtype.plural): r for r in self.resources}
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.api = self  # type: ignore[attr-defined]
        self._stopping = False
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="kube-apiserver", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)

    def resource(self, group: str, version: str, plural: str) -> Resource | None:
        return self._by_path.get((group, version, plural))

    # -- discovery -----------------------------------------------------------------------------------------------

    def discovery(self, path: str) -> dict | None:
        groups: dict[str, list[str]] = {}
        for r in self.resources:
            versions = groups.setdefault(r.rtype.group, [])
            if r.rtype.version not in versions:
                versions.append(r.rtype.version)
        if path == "/version":
            return {"major": "1", "minor": "31", "gitVersion": "v1.31.0-driftloop-emulator", "platform": "linux/amd64"}
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        if path == "/api/v1":
            return {"kind": "APIResourceList", "groupVersion": "v1", "resources": []}
        if path == "/apis":
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [_api_group(g, v) for g, v in groups.items()]}
        parts = path.strip("/").split("/")
        if len(parts) == 2 and parts[1] in groups:
            return {"kind": "APIGroup", "apiVersion": "v1", **_api_group(parts[1], groups[parts[1]])}
        if len(parts) == 3 and parts[1] in groups and parts[2] in groups[parts[1]]:
            listed = []
            for r in self.resources:
                if (r.rtype.group, r.rtype.version) != (parts[1], parts[2]):
                    continue
                verbs = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
                listed.append({"name": r.rtype.plural, "singularName": r.rtype.kind.lower(),
                               "namespaced": r.rtype.namespaced, "kind": r.rtype.kind, "verbs": verbs})
                if r.rtype.status_subresource:
                    listed.append({"name": f"{r.rtype.plural}/status", "singularName": "",
                                   "namespaced": r.rtype.namespaced, "kind": r.rtype.kind,
                                   "verbs": ["get", "patch", "update"]})
            return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{parts[1]}/{parts[2]}",
                    "resources": listed}
        return None

    # -- verbs ---------------------------------------------------------------------------------------------------

    def create(self, res: Resource, namespace: str, body: dict, query: dict) -> tuple[int, dict, list[str]]:
        meta = body.setdefault("metadata", {})
        _check_kind(res.rtype, body)
        if res.rtype.namespaced and meta.get("namespace") not in (None, namespace):
            raise ApiError(400, "BadRequest", "the namespace of the provided object does not match the namespace "
                           "sent on the request")
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise ApiError(422, "Invalid", f'{res.rtype.kind}.{res.rtype.group} "" is invalid: metadata.name: '
                               "Required value: name or generateName is required")
            meta["name"] = meta["generateName"] + "".join(random.choices(string.ascii_lowercase + string.digits, k=5))
        obj, warnings = self._admit(res, body, None, query)
        if query.get("dryRun") == "All":
            return 201, obj, warnings
        return 201, self.store.create(res.rtype, namespace, obj), warnings

    def replace(self, res: Resource, namespace: str, name: str, body: dict, query: dict,
                subresource: str | None) -> tuple[int, dict, list[str]]:
        _check_kind(res.rtype, body)
        meta = body.get("metadata") or {}
        if meta.get("name") != name:
            raise ApiError(400, "BadRequest", f"the name of the object ({meta.get('name')}) does not match the name on "
                           f"the URL ({name})")
        if not meta.get("resourceVersion"):
            raise ApiError(422, "Invalid", f'{res.rtype.kind}.{res.rtype.group} "{name}" is invalid: '
                           "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update")
        old = self.store.get(res.rtype, namespace, name)
        return 200, *self._update(res, namespace, old, body, query, subresource)

    def patch(self, res: Resource, namespace: str, name: str, patch: object, content_type: str, query: dict,
              subresource: str | None) -> tuple[int, dict, list[str]]:
        if content_type not in (MERGE_PATCH, JSON_PATCH):
            raise ApiError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - accepted "
                           f"media types include: {PATCH_TYPES}"
                           + (" (server-side apply is not emulated)" if "apply-patch" in content_type else ""))
        for _attempt in range(10):  # GuaranteedUpdate: re-apply the patch to a fresh copy on conflict
            old = self.store.get(res.rtype, namespace, name)
            try:
                if content_type == MERGE_PATCH:
                    if not isinstance(patch, dict):
                        raise ApiError(400, "BadRequest", "a merge patch must be a JSON object")
                    new = merge_patch(copy.deepcopy(old), patch)
                else:
                    new = jsonpatch.apply_patch(old, patch)
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError) as exc:
                raise ApiError(422, "Invalid", f"the server rejected our request due to an error in our request: "
                               f"{exc}") from None
            pinned = new.get("metadata", {}).get("resourceVersion") != old["metadata"]["resourceVersion"]
            try:
                return 200, *self._update(res, namespace, old, new, query, subresource)
            except ApiError as exc:
                if exc.code != 409 or pinned or exc.reason != "Conflict":
                    raise
        raise ApiError(409, "Conflict", "too many concurrent updates")

    def _update(self, res: Resource, namespace: str, old: dict, new: dict, query: dict,
                subresource: str | None) -> tuple[dict, list[str]]:
        name = old["metadata"]["name"]
        if subresource == "status":
            candidate = copy.deepcopy(old)
            candidate["status"] = new.get("status")
            candidate["metadata"]["resourceVersion"] = new["metadata"].get("resourceVersion")
            obj, warnings = res.schema.admit(candidate, query.get("fieldValidation") == "Strict")
        else:
            obj, warnings = self._admit(res, new, old, query)
        if query.get("dryRun") == "All":
            return obj, warnings
        return self.store.replace(res.rtype, namespace, name, obj, subresource=subresource), warnings

    def _admit(self, res: Resource, obj: dict, old: dict | None, query: dict) -> tuple[dict, list[str]]:
        strict = query.get("fieldValidation") == "Strict"
        obj, warnings = res.schema.admit(obj, strict)  # decode: prune and default what the client sent
        if res.mutate is not None:
            obj, _ = res.schema.admit(res.mutate(obj), strict=False)
        if res.validate is not None:
            res.validate(obj, old)
        return obj, warnings

    def delete(self, res: Resource, namespace: str, name: str) -> tuple[int, dict]:
        obj = self.store.delete(res.rtype, namespace, name)
        if obj["metadata"].get("finalizers"):
            return 202, obj  # waiting for finalizers: the object, with its deletionTimestamp
        return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                     "details": {"name": name, "group": res.rtype.group, "kind": res.rtype.plural,
                                 "uid": obj["metadata"]["uid"]}}

    def list(self, res: Resource, namespace: str | None, query: dict) -> dict:
        items, revision = self.store.list(res.rtype, namespace)
        items = [i for i in items if _selected(i, query)]
        return {"apiVersion": res.rtype.api_version, "kind": f"{res.rtype.kind}List", "items": items,
                "metadata": {"resourceVersion": str(revision)}}


def _api_group(group: str, versions: list[str]) -> dict:
    listed = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"name": group, "versions": listed, "preferredVersion": listed[0]}


def _check_kind(rtype: ResourceType, body: dict) -> None:
    if body.get("apiVersion") not in (None, rtype.api_version):
        raise ApiError(400, "BadRequest", f"the API version in the data ({body['apiVersion']}) does not match the "
                       f"expected API version ({rtype.api_version})")
    if body.get("kind") not in (None, rtype.kind):
        raise ApiError(400, "BadRequest", f"the kind in the data ({body['kind']}) does not match the expected kind "
                       f"({rtype.kind})")


def merge_patch(target: object, patch: object) -> object:
    """RFC 7386 JSON merge patch (what ``application/merge-patch+json`` means)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(target, dict):
        target = {}
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        else:
            target[key] = merge_patch(target.get(key), value)
    return target


def _selected(obj: dict, query: dict) -> bool:
    """Equality-based label and field selectors (``a=b``, ``a!=b``, ``a``)."""
    labels = obj["metadata"].get("labels") or {}
    for term in filter(None, query.get("labelSelector", "").split(",")):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.strip() not in labels:
            return False
    fields = {"metadata.name": obj["metadata"]["name"], "metadata.namespace": obj["metadata"].get("namespace", "")}
    for term in filter(None, query.get("fieldSelector", "").split(",")):
        negate = "!=" in term
        key, value = term.replace("!=", "=").replace("==", "=").split("=", 1)
        if (fields.get(key.strip()) == value.strip()) == negate:
            return False
    return True


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "driftloop-kube-apiserver-emulator"

    @property
    def api(self) -> ApiServer:
        return self.server.api  # type: ignore[attr-defined]

    def log_message(self, *args) -> None:  # quiet: the recorded requests are the log
        pass

    def _send(self, code: int, body: dict, warnings: list[str] = ()) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for warning in warnings:
            self.send_header("Warning", f'299 - "{warning}"')
        self.end_headers()
        self.wfile.write(data)

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip() or None
        body: object = None
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        self.api.requests.append(RecordedRequest(self.command, url.path, query, content_type, copy.deepcopy(body)))
        try:
            if isinstance(body, str):
                raise ApiError(400, "BadRequest", "the body of the request could not be decoded as JSON")
            self._route(url.path, query, body, content_type)
        except ApiError as exc:
            self._send(exc.code, exc.status())

    def _route(self, path: str, query: dict, body, content_type: str | None) -> None:
        if self.command == "GET" and (discovered := self.api.discovery(path.rstrip("/") or "/")) is not None:
            return self._send(200, discovered)
        parts = path.strip("/").split("/")
        if len(parts) < 4 or parts[0] != "apis":
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        group, version, rest = parts[1], parts[2], parts[3:]
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        res = self.api.resource(group, version, rest[0])
        if res is None or len(rest) > 3 or (namespace is not None and not res.rtype.namespaced):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if res.rtype.namespaced and namespace is None and len(rest) > 1:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else None
        subresource = rest[2] if len(rest) > 2 else None
        if subresource not in (None, "status") or (subresource and not res.rtype.status_subresource):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        ns = namespace or ""
        if name is None:
            if self.command == "GET":
                if query.get("watch") in ("1", "t", "T", "TRUE", "true", "True"):  # Go's strconv.ParseBool
                    return self._watch(res, namespace, query)
                return self._send(200, self.api.list(res, namespace, query))
            if self.command == "POST" and (namespace is not None or not res.rtype.namespaced):
                if not isinstance(body, dict):
                    raise ApiError(400, "BadRequest", "the body of the request must be a JSON object")
                return self._send(*self.api.create(res, ns, body, query))
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
        if self.command == "GET":
            return self._send(200, self.api.store.get(res.rtype, ns, name))
        if self.command == "PUT":
            if not isinstance(body, dict):
                raise ApiError(400, "BadRequest", "the body of the request must be a JSON object")
            return self._send(*self.api.replace(res, ns, name, body, query, subresource))
        if self.command == "PATCH":
            return self._send(*self.api.patch(res, ns, name, body, content_type or "", query, subresource))
        if self.command == "DELETE" and subresource is None:
            return self._send(*self.api.delete(res, ns, name))
        raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    def _watch(self, res: Resource, namespace: str | None, query: dict) -> None:
        timeout = float(query.get("timeoutSeconds") or 1800)
        since = query.get("resourceVersion") or ""
        if since in ("", "0"):  # "get state and start at most recent": the current objects as ADDED events
            items, revision = self.api.store.list(res.rtype, namespace)
            initial = [{"type": "ADDED", "object": i} for i in items if _selected(i, query)]
        else:
            initial, revision = [], int(since)
        events = self.api.store.watch(res.rtype, namespace, revision, timeout, lambda: self.api._stopping)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def chunk(payload: dict) -> None:
            line = json.dumps(payload).encode() + b"\n"
            self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
            self.wfile.flush()

        try:
            for event in initial:
                chunk(event)
            for event in events:
                if _selected(event.object, query):
                    chunk({"type": event.type, "object": event.object})
            self.wfile.write(b"0\r\n\r\n")
        except ApiError as exc:
            chunk({"type": "ERROR", "object": exc.status()})
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True  # the client went away

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch  # noqa: N815
