"""A recording fake of the Kubeflow Pipelines v2beta1 API, served on 127.0.0.1 by the tests.

It implements the endpoints kfp.Client 2.16's generated service APIs call (healthz, pipelines, pipeline
versions and the multipart version upload, experiments, runs, recurring runs) with KFP's wire format
(proto field names, int64 as strings), and records every request. Used by the submission tests and by
the test that executes notebook 02.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

CREATED_AT = "2025-06-01T03:00:00Z"


@dataclass
class Recorded:
    method: str
    path: str  # after /apis/v2beta1/
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    upload: bytes | None = None

    @property
    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class FakeKfp:
    """The KFP API's state and the requests it saw."""

    token: str | None = None  # when set, anything else is 401
    multi_user: bool = False
    run_states: list[str] = field(default_factory=lambda: ["SUCCEEDED"])
    run_error: str = ""
    requests: list[Recorded] = field(default_factory=list)
    pipelines: dict[str, dict] = field(default_factory=dict)
    versions: dict[str, dict] = field(default_factory=dict)
    experiments: dict[str, dict] = field(default_factory=dict)
    runs: dict[str, dict] = field(default_factory=dict)
    recurring: dict[str, dict] = field(default_factory=dict)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def calls(self, method: str | None = None, pattern: str = "") -> list[Recorded]:
        return [r for r in self.requests if (method is None or r.method == method) and re.fullmatch(pattern or ".*", r.path)]

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.api_route("/apis/v2beta1/{path:path}", methods=["GET", "POST", "DELETE"])
        async def handle(path: str, request: Request):
            upload = None
            body = await request.body()
            if request.headers.get("content-type", "").startswith("multipart/form-data"):
                upload = await (await request.form())["uploadfile"].read()
            record = Recorded(request.method, path, dict(request.query_params),
                              {k.lower(): v for k, v in request.headers.items()}, body, upload)
            self.requests.append(record)
            if self.token and record.headers.get("authorization") != f"Bearer {self.token}":
                return _error(401, "Unauthenticated: Request header error: there is no user identity header.")
            status, payload = self._dispatch(record)
            return JSONResponse(payload, status_code=status)

        return app

    def _new_id(self, kind: str) -> str:
        return f"{kind}-{next(self._ids):04d}"

    def _dispatch(self, r: Recorded) -> tuple[int, dict]:
        route = (r.method, r.path)
        if route == ("GET", "healthz"):
            return 200, {"multi_user": self.multi_user, "pipeline_store": "database"}
        if route == ("GET", "pipelines"):
            return 200, {"pipelines": _filtered(self.pipelines.values(), r.query), "total_size": len(self.pipelines)}
        if route == ("POST", "pipelines"):
            if _filtered(self.pipelines.values(), {"filter": _name_filter(r.json["display_name"])}):
                return 409, {"code": 6, "message": "pipeline exists"}
            pid = self._new_id("pipeline")
            self.pipelines[pid] = {**r.json, "pipeline_id": pid, "created_at": CREATED_AT}
            return 200, self.pipelines[pid]
        if route == ("POST", "pipelines/upload_version"):
            pid, name = r.query["pipelineid"], r.query["name"]
            if any(v["pipeline_id"] == pid and v["name"] == name for v in self.versions.values()):
                return 409, {"code": 6, "message": "Failed to create a pipeline version"}
            vid = self._new_id("version")
            self.versions[vid] = {"pipeline_id": pid, "pipeline_version_id": vid, "name": name, "display_name": name,
                                  "created_at": CREATED_AT, "spec": r.upload.decode()}
            return 200, {k: v for k, v in self.versions[vid].items() if k != "spec"}
        if m := re.fullmatch(r"pipelines/([^/]+)/versions", r.path):
            mine = [{k: v for k, v in x.items() if k != "spec"} for x in self.versions.values()
                    if x["pipeline_id"] == m.group(1)]
            return 200, {"pipeline_versions": _filtered(mine, r.query), "total_size": len(mine)}
        if route == ("GET", "experiments"):
            return 200, {"experiments": _filtered(self.experiments.values(), r.query)}
        if route == ("POST", "experiments"):
            eid = self._new_id("experiment")
            self.experiments[eid] = {**r.json, "experiment_id": eid, "created_at": CREATED_AT,
                                     "storage_state": "AVAILABLE"}
            return 200, self.experiments[eid]
        if route == ("POST", "runs"):
            rid = self._new_id("run")
            self.runs[rid] = {**r.json, "run_id": rid, "state": "PENDING", "created_at": CREATED_AT}
            return 200, self.runs[rid]
        if m := re.fullmatch(r"runs/([^/:]+)", r.path):
            if m.group(1) not in self.runs:
                return 404, {"code": 5, "message": f"Run {m.group(1)} not found"}
            state = self.run_states.pop(0) if len(self.run_states) > 1 else self.run_states[0]
            error = {"code": 2, "message": self.run_error} if state == "FAILED" and self.run_error else None
            return 200, {**self.runs[m.group(1)], "state": state, "error": error}
        if route == ("POST", "recurringruns"):
            sid = self._new_id("schedule")
            body = r.json
            self.recurring[sid] = {**body, "recurring_run_id": sid, "created_at": CREATED_AT,
                                   "max_concurrency": str(body["max_concurrency"]), "status": "ENABLED"}
            return 200, self.recurring[sid]
        if route == ("GET", "recurringruns"):
            mine = [x for x in self.recurring.values() if x["experiment_id"] == r.query.get("experiment_id")]
            # KFP's proto names this one field in camelCase, so the JSON key is too.
            return 200, {"recurringRuns": _filtered(mine, r.query), "total_size": len(mine)}
        if m := re.fullmatch(r"recurringruns/([^/:]+)(?::(enable|disable))?", r.path):
            sid, verb = m.groups()
            if sid not in self.recurring:
                return 404, {"code": 5, "message": f"RecurringRun {sid} not found"}
            if r.method == "DELETE":
                del self.recurring[sid]
                return 200, {}
            if verb:
                self.recurring[sid].update(mode=verb.upper(), status="ENABLED" if verb == "enable" else "DISABLED")
                return 200, {}
            return 200, self.recurring[sid]
        return 404, {"code": 5, "message": f"the fake has no {r.method} {r.path}"}


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"code": 16, "message": message}, status_code=status)


def _name_filter(name: str) -> str:
    return json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]})


def _filtered(items, query: dict) -> list[dict]:
    """Applies a display_name EQUALS filter the way the KFP API server does."""
    items = list(items)
    if not query.get("filter"):
        return items
    for predicate in json.loads(query["filter"])["predicates"]:
        assert predicate["operation"] in ("EQUALS", 1) and predicate["key"] == "display_name"
        items = [i for i in items if i.get("display_name") == predicate["stringValue"]]
    return items
