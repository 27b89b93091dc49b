"""docs/serving.md's requests, exactly as documented, against the local gateway and driftloop's KServe runtime:
every body answers the documented predictions, which are the Pipeline's own, from both servers; the page's
multi-class example, with class probabilities, from the gateway; and every body, its variants and mistakes,
answered by the lean routes exactly as KServe's own V1 and V2 handlers answer them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import numpy as np
import pandas as pd
import pytest

from driftloop import steps, synthetic
from driftloop.data import infer_spec
from driftloop.evaluation import GateDecision, evaluate_model
from driftloop.registry import PRODUCTION, LocalRegistry
from driftloop.serving.app import inference_app
from driftloop.serving.gateway import Gateway
from driftloop.serving.lean_routes import LeanRoutes
from driftloop.tasks import BINARY
from driftloop.training import save_model, train_model
from driftloop.validation import validate_table

from ..conftest import REPO_ROOT, ServerThread, free_port
from ..task_tables import Trained, register

DOC = REPO_ROOT / "docs" / "serving.md"
FEATURES = ["tenure_months", "support_calls", "plan", "has_autopay"]  # the documented models' spec, in order
CHURN, TICKETS = "churn", "tickets"
QUEUES = ["billing", "cancellations", "retention"]
SHOWN_DECIMALS = 2  # the page shows probabilities rounded to two decimals


def _all_requests() -> list[tuple[str, dict]]:
    requests = []
    for block in re.findall(r"```bash\n(.*?)```", DOC.read_text(), re.S):
        for path, body in re.findall(r"curl -s \$URL(\S+) .*?-d '(.*?)'", block, re.S):
            requests.append((path, json.loads(body)))
    return requests


def _all_answers() -> list[dict]:
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", DOC.read_text(), re.S)]


def documented_requests(model: str = CHURN) -> list[tuple[str, dict]]:
    """(path, body) of every curl on the page to ``model``."""
    return [(path, body) for path, body in _all_requests() if re.match(rf"/v[12]/models/{model}[:/]", path)]


def documented_answers(model: str = CHURN) -> tuple[dict, dict]:
    """The V1 and V2 answers the page shows for ``model``: churn's come first, then tickets'."""
    answers = _all_answers()
    v1, v2 = answers[:2] if model == CHURN else answers[2:4]
    assert v2["model_name"] == model
    return v1, v2


def _tickets(n_rows: int, seed: int) -> pd.DataFrame:
    """The documented multi-class model's table: its four features and the queue a ticket goes to."""
    frame = synthetic.generate(n_rows, seed=seed)[FEATURES]
    rng = np.random.default_rng(seed)
    scores = np.stack([0.9 * (frame["plan"] == "basic") + 0.8 * ~frame["has_autopay"],
                       0.6 * (frame["support_calls"] - 1.5),
                       0.03 * (frame["tenure_months"] - 25)], axis=1) + rng.gumbel(size=(n_rows, len(QUEUES)))
    frame["queue"] = np.asarray(QUEUES, dtype=object)[scores.argmax(axis=1)]
    return frame


def _register(tmp, registry: LocalRegistry, name: str, frame: pd.DataFrame, target: str):
    """Trains a logistic regression on ``frame`` and registers it in production, fast path and all: a binary model
    by the CT pipeline's register step, a multi-class one by the registry with the graph and record
    registration compiles; returns the Pipeline."""
    spec = infer_spec(frame, target)
    frame, _, spec = validate_table(frame, spec)
    assert spec.feature_names == FEATURES
    trained = train_model(frame, spec, "logistic_regression", seed=1)
    if spec.task != BINARY:
        register(registry, tmp, name, Trained(frame, spec, trained))
    else:
        frame.to_parquet(tmp / f"{name}-data.parquet", index=False)
        save_model(trained.model, tmp / name)
        trained.holdout_frame.to_parquet(tmp / f"{name}-holdout.parquet", index=False)
        evaluation = evaluate_model(trained.model, trained.holdout_frame, spec)
        decision = GateDecision(True, ["first version"], "roc_auc", evaluation.metrics["roc_auc"], None, None, {})
        outcome = json.dumps({"evaluation": evaluation.to_dict(), "decision": decision.to_dict()})
        steps.register(str(tmp / name), str(tmp / f"{name}-data.parquet"), spec.to_json(), outcome,
                       str(registry.root), name, {"run_id": f"docs-{name}"},
                       holdout_path=str(tmp / f"{name}-holdout.parquet"))
    registry.set_alias(name, PRODUCTION, 1, actor="test")
    return trained.model


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> dict:
    """The documented models (their four features, from the synthetic churn world) registered by the CT pipeline's
    register step, fast path and all: ``churn``, served by a gateway and by the runtime (batching on), and the
    multi-class ``tickets``, served by the gateway."""
    tmp = tmp_path_factory.mktemp("serving-docs")
    registry = LocalRegistry(tmp / "registry")
    churn = _register(tmp, registry, CHURN, synthetic.generate(1500, seed=7)[[*FEATURES, synthetic.TARGET]],
                      synthetic.TARGET)
    tickets = _register(tmp, registry, TICKETS, _tickets(1500, seed=7), "queue")
    model_dir = registry.fetch_model("churn", 1, tmp / "served")
    port = free_port()
    runtime = subprocess.Popen(
        [sys.executable, "-m", "driftloop.serving.runtime", "--model_name=churn", f"--model_dir={model_dir}",
         f"--http_port={port}", "--batch_max_rows", "64"],
        env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=open(tmp / "runtime.log", "w"))  # noqa: SIM115
    try:
        with ServerThread(Gateway(registry, poll_interval=3600).app) as gateway:
            _wait_ready(f"http://127.0.0.1:{port}", runtime, tmp / "runtime.log")
            yield {"gateway": gateway.url, "runtime": f"http://127.0.0.1:{port}", "pipeline": churn,
                   "tickets": tickets, "log": tmp / "runtime.log", "registry": registry}
    finally:
        runtime.terminate()
        runtime.wait(timeout=30)


def _wait_ready(url: str, process: subprocess.Popen, log) -> None:
    import time

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the runtime exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the runtime did not become ready")


def _predictions(response: httpx.Response) -> list:
    assert response.status_code == 200, response.text
    body = response.json()
    return body["predictions"] if "predictions" in body else body["outputs"][0]["data"]


def test_the_page_documents_every_format() -> None:
    requests = documented_requests()
    assert sum(path.startswith("/v1/") for path, _ in requests) == 5  # records, columns ×2, list of records, lists
    assert sum(path.startswith("/v2/") for path, _ in requests) == 3  # pd, named tensors, one row-major tensor
    assert len(documented_requests(TICKETS)) == 2 and len(_all_requests()) == 10  # every curl is checked
    assert len(_all_answers()) == 4


def _pipeline_answer(served) -> list:
    """The Pipeline's own predictions for the page's rows (its first body, the records)."""
    path, body = documented_requests()[0]
    return served["pipeline"].predict(pd.DataFrame(body["instances"])[FEATURES]).tolist()


def test_every_documented_request_answers_the_documented_predictions_on_both_servers(served) -> None:
    v1_answer, v2_answer = documented_answers()
    expected = _pipeline_answer(served)
    assert v1_answer == {"predictions": expected}  # the page shows what the model answers
    assert v2_answer["outputs"][0]["data"] == expected and sorted(set(expected)) == [0, 1]

    for server in ("gateway", "runtime"):
        with httpx.Client(base_url=served[server], timeout=30) as client:
            for path, body in documented_requests():
                response = client.post(path, json=body)
                assert _predictions(response) == expected, (server, path, body)
                if path.startswith("/v1/"):
                    assert response.json() == v1_answer
                else:
                    answer = response.json()
                    assert {k: answer[k] for k in ("model_name", "model_version", "outputs")} == \
                        {k: v2_answer[k] for k in ("model_name", "model_version", "outputs")}
    assert "scoring with the fast path" in served["log"].read_text()  # the runtime served the verified graph


def test_documented_requests_sent_at_once_each_get_their_own_answer(served) -> None:
    """The runtime batches requests that arrive together (--batch_max_rows 64); each caller still gets its own."""
    requests = documented_requests() * 4
    with httpx.Client(base_url=served["runtime"], timeout=30) as client, ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda request: client.post(request[0], json=request[1]), requests))
    assert [_predictions(a) for a in answers] == [_pipeline_answer(served)] * len(requests)


def test_the_multiclass_example_answers_the_documented_labels_and_probabilities(served) -> None:
    """The page's ``tickets`` requests ask for class probabilities; the gateway answers the Pipeline's labels and
    probabilities, which the page shows to two decimals."""
    v1_answer, v2_answer = documented_answers(TICKETS)
    (v1_path, v1_body), (v2_path, v2_body) = documented_requests(TICKETS)
    rows = pd.DataFrame(v1_body["instances"])[FEATURES]
    pipeline = served["tickets"]
    labels = [QUEUES[i] for i in pipeline.predict(rows)]
    probabilities = pipeline.predict_proba(rows)
    assert v1_answer["predictions"] == labels and v1_answer["classes"] == QUEUES
    np.testing.assert_array_equal(v1_answer["probabilities"], probabilities.round(SHOWN_DECIMALS))
    with httpx.Client(base_url=served["gateway"], timeout=30) as client:
        v1 = client.post(v1_path, json=v1_body).json()
        v2 = client.post(v2_path, json=v2_body).json()
    assert v1["predictions"] == labels and v1["classes"] == QUEUES
    np.testing.assert_allclose(v1["probabilities"], probabilities, rtol=0, atol=1e-5)
    assert [{k: v for k, v in output.items() if k != "data"} for output in v2["outputs"]] == \
        [{k: v for k, v in output.items() if k != "data"} for output in v2_answer["outputs"]]
    (shown_labels, shown_probabilities), (answered_labels, answered_probabilities) = (
        [o["data"] for o in answer["outputs"]] for answer in (v2_answer, v2))
    assert shown_labels == answered_labels == labels
    np.testing.assert_allclose(answered_probabilities, probabilities.ravel(), rtol=0, atol=1e-5)
    np.testing.assert_array_equal(shown_probabilities, probabilities.round(SHOWN_DECIMALS).ravel())


# -- the lean routes answer exactly as KServe's handlers ------------------------------------------------------


class _Events(BaseHTTPRequestHandler):
    """The payload log's receiver: keeps every event's headers and body."""

    events: list = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["content-length"]))
        _Events.events.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(202)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


KSERVE_ROUTE = {"x-test-route": "kserve"}


@pytest.fixture(scope="module")
def two_routes(served):
    """A gateway on the page's models with payload logging, served with, beside its app, the same app without the
    lean routes (a request with the header ``x-test-route: kserve`` goes there): one event loop, one set of
    models, metrics and payload logger, so both routes can be compared request by request. Yields the client and
    a count of the predictions that reached the gateway app's FastAPI router (KServe's handlers), which the lean
    routes answer before it."""
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Events)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    gateway = Gateway(served["registry"], poll_interval=3600,
                      logger_url=f"http://127.0.0.1:{receiver.server_port}/events")
    reference = inference_app("reference", gateway.server, gateway.metrics, _no_lifespan, gateway.max_body_bytes)
    reference.user_middleware = [m for m in reference.user_middleware if m.cls is not LeanRoutes]

    async def app(scope, receive, send):
        if scope["type"] == "http" and (b"x-test-route", b"kserve") in scope["headers"]:
            await reference(scope, receive, send)
        else:
            await gateway.app(scope, receive, send)

    router = gateway.app.router
    reached = [0]
    kserve_handlers = router.middleware_stack

    async def counting_router(scope, receive, send):
        reached[0] += scope["type"] == "http" and scope["method"] == "POST"
        await kserve_handlers(scope, receive, send)

    router.middleware_stack = counting_router
    try:
        with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
            yield client, reached
    finally:
        receiver.shutdown()


@asynccontextmanager
async def _no_lifespan(app):
    yield


def _cases() -> list[tuple[str, str, bytes, dict, bool]]:
    """(label, path, body, extra headers, whether a lean route answers it): every body on the page, V1 and V2,
    their variants and mistakes, and what the lean V2 route leaves to KServe."""
    churn = [(path, body) for path, body in documented_requests() if path.startswith("/v2/")]
    v1_path, records = documented_requests()[0]
    (tickets_path, tickets_body), = [(p, b) for p, b in documented_requests(TICKETS) if p.startswith("/v2/")]
    path, row_major = churn[-1]
    columns = churn[0][1]
    tensors = columns["inputs"]

    def with_tensor(feature: str, **changes) -> dict:
        return {**columns, "inputs": [{**t, **changes} if t["name"] == feature else t for t in tensors]}

    first = records["instances"][0]
    lean = [(f"documented {path}, {i}", path, body) for i, (path, body) in enumerate(documented_requests())] + [
        (f"documented {path}", path, body) for path, body in documented_requests(TICKETS)] + [
        ("V1 probabilities not a boolean", v1_path, {**records, "parameters": {"probabilities": 1}}),
        ("V1 an unknown feature", v1_path, {"instances": [{**first, "zone": "x"}]}),
        ("V1 a number as text", v1_path, {"instances": [{**first, "support_calls": "six"}]}),
        ("V1 a JSON array", v1_path, [first]),
        ("V1 an unknown model", "/v1/models/nope:predict", records),
        ("tickets, probabilities output only", tickets_path,
         {"inputs": row_major["inputs"], "outputs": [{"name": "probabilities"}]}),
        ("tickets, both outputs named", tickets_path,
         {"inputs": row_major["inputs"], "outputs": [{"name": "output-0"}, {"name": "probabilities"}],
          "parameters": {"probabilities": False}}),
        ("an id", path, {**row_major, "id": "request-7"}),
        ("an unknown output", path, {**row_major, "outputs": [{"name": "nope"}]}),
        ("probabilities not a boolean", path, {**row_major, "parameters": {"probabilities": "yes"}}),
        ("a number as text", path, with_tensor("support_calls", datatype="BYTES", data=["six", 0])),
        ("true as a number", path, with_tensor("tenure_months", data=[True, 48])),
        ("null as a boolean", path, with_tensor("has_autopay", data=[None, True])),
        ("an unknown input", path, with_tensor("plan", name="zone")),
        ("inputs of different lengths", path, with_tensor("plan", shape=[1], data=["basic"])),
        ("no inputs", path, {"inputs": []}),
        ("an unknown model", "/v2/models/nope/infer", row_major),
        ("extra keys", path, {**row_major, "x": 1}),
    ]
    kserve = [
        ("inputs not a list", path, {"inputs": "x"}),
        ("a JSON array", path, [row_major]),
        ("a shape as text", path, with_tensor("plan", shape=["2"])),
        ("binary outputs", path, {**row_major, "parameters": {"binary_data_output": True}}),
        ("an input parameter", path, with_tensor("plan", parameters={"content_type": "str"})),
        ("FP16", path, with_tensor("tenure_months", datatype="FP16")),
        ("a version in the path", "/v2/models/churn/versions/1/infer", row_major),
    ]
    cases = [(label, p, json.dumps(b).encode(), {}, True) for label, p, b in lean]
    cases += [(label, p, json.dumps(b).encode(), {}, False) for label, p, b in kserve]
    nan = json.dumps(with_tensor("tenure_months", data=[float("nan"), 48])).encode()
    binary_event = {"ce-specversion": "1.0", "ce-source": "test", "ce-type": "t", "ce-id": "e-1"}
    structured = json.dumps({"specversion": "1.0", "source": "test", "type": "t", "id": "e-2",
                             "data": records}).encode()
    return cases + [
        ("V1 not JSON", v1_path, b'{"instances": [', {}, True),
        ("V1 a binary CloudEvent", v1_path, json.dumps(records).encode(), binary_event, True),
        ("V1 a structured CloudEvent", v1_path, structured, {"content-type": "application/cloudevents+json"}, True),
        ("NaN", path, nan, {}, False), ("not JSON", path, b'{"inputs": [', {}, False),
        ("a binary CloudEvent", path, json.dumps(row_major).encode(), binary_event, False)]


def _metric_counts(client: httpx.Client) -> dict:
    """driftloop's counters and KServe's request histograms' counts on /metrics (what a request adds to; the
    sums are timings, the process's own metrics move by themselves)."""
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(client.get("/metrics").text) for s in family.samples
            if s.name.startswith(("driftloop_", "request_")) and s.name.endswith(("_total", "_count"))
            and "payload_log" not in s.name}


GENERATED_ID = re.compile(rb'"id": ?"[0-9a-f-]{36}"')
GENERATED_HEADERS = ("date", "ce-id", "ce-time")  # a CloudEvent answer's id and time are new for every answer


def _exchange(client: httpx.Client, path: str, body: bytes, headers: dict, request_id: str) -> dict:
    """One request: its answer (status, headers, body; the date and generated ids aside), what it added to the
    metrics, and the payload events logged for it."""
    before = _metric_counts(client)
    response = client.post(path, content=body,
                           headers={"content-type": "application/json", "x-request-id": request_id, **headers})
    after = _metric_counts(client)
    events = []
    if response.status_code == 200:  # a served prediction is logged: its request and its response
        deadline = time.monotonic() + 10
        while len(events := [e for e in _Events.events if e[0].get("ce-id") == request_id]) < 2:
            assert time.monotonic() < deadline, f"the payload log of {request_id} did not arrive"
            time.sleep(0.02)
        events = [({k: v for k, v in headers.items() if k != "ce-id"}, _without_generated_id(json.loads(body)))
                  for headers, body in events]
    return {"status": response.status_code, "content": GENERATED_ID.sub(b'"id":"<generated>"', response.content),
            "headers": [(k, "<generated>" if k in GENERATED_HEADERS else v) for k, v in response.headers.items()],
            "metrics": {key: after[key] - before.get(key, 0) for key in after if after[key] != before.get(key, 0)},
            "events": sorted(events, key=lambda event: event[0]["ce-type"])}


def _without_generated_id(body: dict) -> dict:
    """A logged V2 body without its ``id``, which KServe generates anew for a request that has none."""
    return {k: v for k, v in body.items() if k != "id"}


@pytest.mark.parametrize("case", _cases(), ids=lambda case: case[0])
def test_the_lean_routes_answer_exactly_as_kserves_handlers(two_routes, case) -> None:
    """Every body on the page, V1 and V2, their variants and mistakes, sent through the lean routes and through
    KServe's own handlers: the same status, headers and body byte for byte, the same metrics counted and the same
    payload events logged; what the lean V2 route does not take on reaches KServe's handler."""
    client, reached_router = two_routes
    label, path, body, headers, lean = case
    request_id = f"r-{label.replace(' ', '-')}"
    before = reached_router[0]
    through_lean = _exchange(client, path, body, headers, f"{request_id}-lean")
    assert reached_router[0] - before == (not lean), "a lean route answered" if lean else "KServe's handler answered"
    through_kserve = _exchange(client, path, body, {**headers, **KSERVE_ROUTE}, f"{request_id}-kserve")
    assert through_lean == through_kserve
